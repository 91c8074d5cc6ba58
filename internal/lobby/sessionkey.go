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

// ErrSessionKeyFile says that the session key file cannot be used: it is
// not a regular file (a directory, a dangling symbolic link), cannot be
// read, or does not hold a key.
var ErrSessionKeyFile = errors.New("session key file unusable")

// RevocationFile is where the lobby keeps the sessions that left, beside
// the session key in keyFile (see [Options.RevocationFile]).
func RevocationFile(keyFile string) string { return keyFile + ".revoked" }

// LoadSessionKey reads the session key kept in path (hex), or makes a new
// random one and keeps it there (readable by its owner only) if nothing is
// there. Any other trouble (a directory, a dangling symbolic link, a file
// it cannot read or that holds no key) is an error wrapping
// [ErrSessionKeyFile]; the caller decides whether to run with a fresh key.
func LoadSessionKey(path string) ([]byte, error) {
	// Two tries: if another lobby makes the file between the read and the
	// create, the second read finds it.
	for try := 0; try < 2; try++ {
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			key, err := hex.DecodeString(strings.TrimSpace(string(b)))
			if err != nil || len(key) < 16 {
				return nil, fmt.Errorf("lobby: session key %s: want at least 32 hex digits: %w", path, ErrSessionKeyFile)
			}
			return key, nil
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("lobby: session key: %w: %w", ErrSessionKeyFile, err)
		}
		key, err := makeSessionKey(path)
		if !errors.Is(err, fs.ErrExist) {
			return key, err
		}
		// Something is there that reads as missing: a dangling
		// symbolic link (never followed to make its target), or a file
		// another lobby made meanwhile (read on the second try).
		if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			if _, serr := os.Stat(path); errors.Is(serr, fs.ErrNotExist) {
				return nil, fmt.Errorf("lobby: session key %s: a symbolic link to nothing: %w", path, ErrSessionKeyFile)
			}
		}
	}
	return nil, fmt.Errorf("lobby: session key %s: neither readable nor creatable: %w", path, ErrSessionKeyFile)
}

// makeSessionKey makes a new key in path, which must not exist (an error
// wrapping [fs.ErrExist] if something is there).
func makeSessionKey(path string) ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("lobby: session key: %w: %w", ErrSessionKeyFile, err)
	}
	key := make([]byte, sessionKeySize)
	_, _ = rand.Read(key)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("lobby: session key: %w: %w", ErrSessionKeyFile, err)
	}
	_, err = f.WriteString(hex.EncodeToString(key) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("lobby: session key: %w: %w", ErrSessionKeyFile, err)
	}
	return key, nil
}
