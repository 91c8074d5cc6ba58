package lobby

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// revocations are the sessions that left: their member cookies must not
// take them back after a restart. Each is kept until every member cookie
// signed before its revocation has expired (the cookie lifetime), so the
// record is bounded by the sessions that left within one lifetime (and
// those by the per-address join budget). With a file, every revocation is
// appended to it (one line: a hash of the session id and when the record
// may go), and a later run reads it back and writes it anew without the
// lapsed lines; without one they last for this run only, which is enough
// when the session key is new at each start.
type revocations struct {
	path   string // "": in memory only
	maxAge time.Duration
	now    func() time.Time

	mu      sync.Mutex
	until   map[string]time.Time // hashed session id -> end of the record
	pruneAt int
}

// loadRevocations reads the revocations kept in path ("" for none),
// dropping those that lapsed; a missing file is an empty record.
func loadRevocations(path string, maxAge time.Duration) (*revocations, error) {
	rv := &revocations{path: path, maxAge: maxAge, now: time.Now, until: make(map[string]time.Time), pruneAt: minPruneAt}
	if path == "" {
		return rv, nil
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return rv, nil
	case err != nil:
		return nil, fmt.Errorf("lobby: revoked sessions: %w", err)
	}
	now := rv.now()
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		id, at, ok := bytes.Cut(sc.Bytes(), []byte(" "))
		unix, err := strconv.ParseInt(string(at), 10, 64)
		if !ok || len(id) != 2*sha256.Size || err != nil {
			return nil, fmt.Errorf("lobby: revoked sessions: %s line %d is not \"<hash> <unix time>\"", path, n)
		}
		if until := time.Unix(unix, 0); until.After(now) {
			rv.until[string(id)] = until
		}
	}
	if err := rv.rewrite(); err != nil {
		return nil, err
	}
	return rv, nil
}

func revocationID(sid string) string {
	h := sha256.Sum256([]byte("lobby revoked\x00" + sid))
	return hex.EncodeToString(h[:])
}

// revoke records that session sid left. It returns an error only if the
// record could not be kept on disk (it is kept in memory anyway).
func (rv *revocations) revoke(sid string) error {
	id, until := revocationID(sid), rv.now().Add(rv.maxAge)
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if len(rv.until) >= rv.pruneAt {
		now := rv.now()
		for k, u := range rv.until {
			if !u.After(now) {
				delete(rv.until, k)
			}
		}
		rv.pruneAt = max(minPruneAt, 2*len(rv.until))
	}
	rv.until[id] = until
	if rv.path == "" {
		return nil
	}
	f, err := os.OpenFile(rv.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("lobby: revoke session: %w", err)
	}
	_, err = fmt.Fprintf(f, "%s %d\n", id, until.Unix())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("lobby: revoke session: %w", err)
	}
	return nil
}

// revoked reports whether session sid left (within the cookie lifetime).
func (rv *revocations) revoked(sid string) bool {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	until, ok := rv.until[revocationID(sid)]
	return ok && until.After(rv.now())
}

// rewrite writes the record anew (the lapsed lines gone), by a rename so
// a crash leaves the old file or the new one.
func (rv *revocations) rewrite() error {
	var b bytes.Buffer
	for id, until := range rv.until {
		fmt.Fprintf(&b, "%s %d\n", id, until.Unix())
	}
	tmp, err := os.CreateTemp(filepath.Dir(rv.path), ".revoked-*")
	if err != nil {
		return fmt.Errorf("lobby: revoked sessions: %w", err)
	}
	_, err = tmp.Write(b.Bytes())
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), rv.path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("lobby: revoked sessions: %w", err)
	}
	return nil
}
