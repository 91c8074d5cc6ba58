package lobby

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultSessionKeyFile is where the lobby command keeps its session key
// by default, so that sessions survive a restart: sfere-lobby/session-key
// in the user's cache directory ("" if there is none).
func DefaultSessionKeyFile() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "sfere-lobby", "session-key")
}

// LoadSessionKey reads the session key kept in path (hex), or makes a new
// random one and keeps it there (readable by its owner only) if the file
// does not exist.
func LoadSessionKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return makeSessionKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("lobby: session key: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) < 16 {
		return nil, fmt.Errorf("lobby: session key %s: want at least 32 hex digits", path)
	}
	return key, nil
}

func makeSessionKey(path string) ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("lobby: session key: %w", err)
	}
	key := make([]byte, sessionKeySize)
	_, _ = rand.Read(key)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadSessionKey(path) // another lobby made it meanwhile
	}
	if err != nil {
		return nil, fmt.Errorf("lobby: session key: %w", err)
	}
	_, err = f.WriteString(hex.EncodeToString(key) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("lobby: session key: %w", err)
	}
	return key, nil
}
