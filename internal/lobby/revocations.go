package lobby

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sfere-go/sfere/presence"
)

// revocations are the sessions that ended: their member cookies must not
// take them back after a restart. A session ends when it leaves (/leave,
// or a new /join from its browser: revoked at once) or when it departed
// because its streams ended and its resume window ran out with no stream
// back (revoked from the window's end: see [sessionEnds]). Each is kept
// until every member cookie signed before it ended has expired (the cookie
// lifetime), so the record is bounded by the sessions that ended within one
// lifetime (and those by the per-address join budget). With a file, every
// change is appended to it (one line: a hash of the session id, when the
// record may go, and when it takes effect if not at once), and a later run
// reads it back and writes it anew without the lapsed lines; without one
// they last for this run only, which is enough when the session key is new
// at each start.
type revocations struct {
	path   string // "": in memory only
	maxAge time.Duration
	now    func() time.Time
	log    *slog.Logger

	mu      sync.Mutex
	entries map[string]revocation // hashed session id -> its revocation
	pruneAt int
	pending bytes.Buffer // lines not yet appended to the file, in order
	writing bool         // a goroutine is appending them (see [revocations.kick])
	wg      sync.WaitGroup

	fileMu sync.Mutex // one writer of the file at a time, in the order of pending
	lines  int        // lines in the file (guarded by fileMu)
}

// revocation is one ended session: its member cookies take nothing back
// from from (zero: since it left) until until.
type revocation struct {
	from, until time.Time
}

func (r revocation) at(now time.Time) bool {
	return !now.Before(r.from) && now.Before(r.until)
}

// loadRevocations reads the revocations kept in path ("" for none),
// dropping those that lapsed by now(); a missing file is an empty record.
func loadRevocations(path string, maxAge time.Duration, now func() time.Time, log *slog.Logger) (*revocations, error) {
	rv := &revocations{path: path, maxAge: maxAge, now: now, log: log, entries: make(map[string]revocation), pruneAt: minPruneAt}
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
	at := rv.now()
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		// "<hash> <until>" or "<hash> <until> <from>", in unix seconds;
		// a later line of a hash replaces an earlier one (an until in
		// the past, such as 0, takes the revocation back).
		f := bytes.Fields(sc.Bytes())
		var unix [2]int64
		ok := (len(f) == 2 || len(f) == 3) && len(f[0]) == 2*sha256.Size
		for i := 1; ok && i < len(f); i++ {
			v, err := strconv.ParseInt(string(f[i]), 10, 64)
			unix[i-1], ok = v, err == nil
		}
		if !ok {
			return nil, fmt.Errorf("lobby: revoked sessions: %s line %d is not \"<hash> <unix time> [<unix time>]\"", path, n)
		}
		id, e := string(f[0]), revocation{until: time.Unix(unix[0], 0)}
		if len(f) == 3 {
			e.from = time.Unix(unix[1], 0)
		}
		if e.until.After(at) {
			rv.entries[id] = e
		} else {
			delete(rv.entries, id)
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

// revoke records that session sid left, on disk before it returns. It
// returns an error only if the record could not be kept on disk (it is
// kept in memory anyway).
func (rv *revocations) revoke(sid string) error {
	now := rv.now()
	rv.mu.Lock()
	rv.setLocked(revocationID(sid), revocation{until: now.Add(rv.maxAge)})
	rv.mu.Unlock()
	if err := rv.flush(); err != nil {
		return fmt.Errorf("lobby: revoke session: %w", err)
	}
	return nil
}

// expire records that session sid ends at at unless it comes back first
// (see [revocations.back]). It does not wait for the disk: it runs under
// the presence tracker's lock.
func (rv *revocations) expire(sid string, at time.Time) {
	// Every member cookie of sid was signed before now (it has no
	// stream), so none is honoured past now + the cookie lifetime.
	until := rv.now().Add(rv.maxAge)
	if !until.After(at) {
		return
	}
	rv.mu.Lock()
	rv.setLocked(revocationID(sid), revocation{from: at, until: until})
	rv.mu.Unlock()
	rv.kick()
}

// back takes back the expiry of session sid: it has a stream again. A
// session that left stays revoked. Like expire, it does not wait for the
// disk.
func (rv *revocations) back(sid string) {
	id := revocationID(sid)
	rv.mu.Lock()
	e, ok := rv.entries[id]
	if !ok || e.from.IsZero() {
		rv.mu.Unlock()
		return
	}
	delete(rv.entries, id)
	if rv.path != "" {
		fmt.Fprintf(&rv.pending, "%s 0\n", id)
	}
	rv.mu.Unlock()
	rv.kick()
}

// setLocked records e under id, and queues its line for the file. rv.mu
// must be held.
func (rv *revocations) setLocked(id string, e revocation) {
	if len(rv.entries) >= rv.pruneAt {
		now := rv.now()
		for k, old := range rv.entries {
			if !old.until.After(now) {
				delete(rv.entries, k)
			}
		}
		rv.pruneAt = max(minPruneAt, 2*len(rv.entries))
	}
	rv.entries[id] = e
	if rv.path == "" {
		return
	}
	if e.from.IsZero() {
		fmt.Fprintf(&rv.pending, "%s %d\n", id, e.until.Unix())
	} else {
		fmt.Fprintf(&rv.pending, "%s %d %d\n", id, e.until.Unix(), e.from.Unix())
	}
}

// revoked reports whether session sid has ended (within the cookie
// lifetime).
func (rv *revocations) revoked(sid string) bool {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	e, ok := rv.entries[revocationID(sid)]
	return ok && e.at(rv.now())
}

// kick has the queued lines appended to the file by a goroutine of its
// own, unless one is at it already.
func (rv *revocations) kick() {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if rv.writing || rv.pending.Len() == 0 {
		return
	}
	rv.writing = true
	rv.wg.Go(func() {
		for {
			if err := rv.flush(); err != nil {
				rv.log.Warn("a session that ended could be taken back after a restart", "err", err)
			}
			rv.mu.Lock()
			if rv.pending.Len() == 0 {
				rv.writing = false
				rv.mu.Unlock()
				return
			}
			rv.mu.Unlock()
		}
	})
}

// close waits for the queued lines to reach the file.
func (rv *revocations) close() error {
	rv.wg.Wait()
	return rv.flush()
}

// flush appends the queued lines to the file; once it holds far more lines
// than the record, it writes the record anew instead.
func (rv *revocations) flush() error {
	if rv.path == "" {
		return nil
	}
	rv.fileMu.Lock()
	defer rv.fileMu.Unlock()
	rv.mu.Lock()
	b := bytes.Clone(rv.pending.Bytes())
	rv.pending.Reset()
	live := len(rv.entries)
	rv.mu.Unlock()
	if len(b) == 0 {
		return nil
	}
	if n := rv.lines + bytes.Count(b, []byte("\n")); n > 2*live+minPruneAt {
		// The queued lines are in the record already.
		return rv.rewrite()
	}
	f, err := os.OpenFile(rv.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		rv.lines += bytes.Count(b, []byte("\n"))
	}
	return err
}

// rewrite writes the record anew (the lapsed lines gone), by a rename so
// a crash leaves the old file or the new one. Only flush and
// loadRevocations call it (under fileMu, or before anyone else has rv).
func (rv *revocations) rewrite() error {
	var b bytes.Buffer
	now := rv.now()
	rv.mu.Lock()
	for id, e := range rv.entries {
		switch {
		case !e.until.After(now):
		case e.from.IsZero():
			fmt.Fprintf(&b, "%s %d\n", id, e.until.Unix())
		default:
			fmt.Fprintf(&b, "%s %d %d\n", id, e.until.Unix(), e.from.Unix())
		}
	}
	rv.mu.Unlock()
	tmp, err := os.CreateTemp(filepath.Dir(rv.path), ".revoked-*")
	if err != nil {
		return fmt.Errorf("lobby: revoked sessions: %w", err)
	}
	_, err = tmp.Write(b.Bytes())
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), rv.path) // CreateTemp made it 0600
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("lobby: revoked sessions: %w", err)
	}
	rv.lines = bytes.Count(b.Bytes(), []byte("\n"))
	return nil
}

// sessionEnds revokes, on a single node, the sessions that end without a
// word: a person departed because its streams ended (the grace period ran
// out, or its peer vanished) keeps its name for the resume window, and if
// no stream of its session comes back within it, the session has ended as
// surely as by /leave. Its member cookie must then take nothing back, in
// this run (a cookie an earlier run signed would otherwise still resume
// it) or a later one. The presence tracker releases such a claim silently,
// so sessionEnds learns of the departures from the tracker's batches and
// records the session as revoked from the window's end, and takes that
// back if the session returns. In a cluster no node takes a session back
// from its cookie, and none is needed.
type sessionEnds struct {
	rv     *revocations
	resume time.Duration // the resume window; <= 0: none
	// batch bounds how long the tracker holds a change before its batch
	// goes out: a departure told of now happened up to that long ago, so
	// its window ends up to that much sooner. The revocation takes effect
	// that much early rather than late (a session that comes back first
	// takes it back; one whose window ended is taken back by nobody).
	batch time.Duration

	mu      sync.Mutex
	owners  map[string][]claimRecord // person id -> its latest claims, oldest first (at most maxClaims)
	size    int                      // claim records held
	pruneAt int
}

// claimRecord is a session's claim of a person id, and when it was made.
// A batch may tell of a departure after the id was claimed again (a
// session that joins again under its own name leaves, and its new session
// claims the name, within one batch window): the departure is that of the
// latest claim made before the departing person arrived.
type claimRecord struct {
	sid string
	at  time.Time
}

// maxClaims is how many claims of one id are remembered.
const maxClaims = 2

func newSessionEnds(rv *revocations, resume, batch time.Duration) *sessionEnds {
	return &sessionEnds{rv: rv, resume: resume, batch: max(batch, 0), owners: make(map[string][]claimRecord), pruneAt: minPruneAt}
}

// claimed records that session sid claimed person id now. known reports
// whether the tracker still knows a session: when the record has grown,
// the sessions it forgot are dropped (it releases names silently).
func (e *sessionEnds) claimed(id, sid string, known func(sid string) bool) {
	if e == nil {
		return
	}
	e.mu.Lock()
	recs := append(e.owners[id], claimRecord{sid: sid, at: time.Now()})
	if len(recs) > maxClaims {
		recs = slices.Delete(recs, 0, len(recs)-maxClaims)
	} else {
		e.size++
	}
	e.owners[id] = recs
	if e.size < e.pruneAt {
		e.mu.Unlock()
		return
	}
	var held []claimRecord
	for _, recs := range e.owners {
		held = append(held, recs...)
	}
	e.pruneAt = max(minPruneAt, 2*e.size) // no other prune meanwhile
	e.mu.Unlock()
	// known takes the tracker's lock, which is held when diff takes
	// e.mu: never call it under e.mu.
	ended := make(map[string]bool)
	for _, r := range held {
		if !known(r.sid) {
			ended[r.sid] = true
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for id := range e.owners {
		e.dropLocked(id, func(r claimRecord) bool { return ended[r.sid] })
	}
	e.pruneAt = max(minPruneAt, 2*e.size)
}

// dropLocked drops the claims of person id that gone reports. e.mu must
// be held.
func (e *sessionEnds) dropLocked(id string, gone func(claimRecord) bool) {
	recs := e.owners[id]
	n := len(recs)
	recs = slices.DeleteFunc(recs, gone)
	e.size -= n - len(recs)
	if len(recs) == 0 {
		delete(e.owners, id)
	} else {
		e.owners[id] = recs
	}
}

// forgetLocked drops the claim of session sid of person id. e.mu must be
// held.
func (e *sessionEnds) forgetLocked(id, sid string) {
	e.dropLocked(id, func(r claimRecord) bool { return r.sid == sid })
}

// ownerLocked returns the session whose claim made the arrival of m: the
// latest claim of m's id made before m arrived. e.mu must be held.
func (e *sessionEnds) ownerLocked(m presence.Member) (string, bool) {
	recs := e.owners[m.ID]
	for i := len(recs) - 1; i >= 0; i-- {
		if m.Since.IsZero() || recs[i].at.Before(m.Since) {
			return recs[i].sid, true
		}
	}
	return "", false
}

// diff learns of a presence batch. It runs under the tracker's lock (it
// is the tracker's OnDiff): it takes only its own lock and the record's.
func (e *sessionEnds) diff(d presence.Diff) {
	if e == nil {
		return
	}
	now := e.rv.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, dep := range d.Leaves {
		sid, ok := e.ownerLocked(dep.Member)
		if !ok {
			continue
		}
		switch {
		case dep.Resumable:
			e.rv.expire(sid, now.Add(max(e.resume-e.batch, 0)))
		case dep.Reason == presence.ReasonClosed || dep.Reason == presence.ReasonNodeLost:
			// No resume window: the session ended now.
			e.rv.expire(sid, now)
			e.forgetLocked(dep.ID, sid)
		default:
			// It left or renamed itself: /leave and /join revoke
			// it themselves.
			e.forgetLocked(dep.ID, sid)
		}
	}
	for _, j := range d.Joins {
		if sid, ok := e.ownerLocked(j); ok {
			e.rv.back(sid)
		}
	}
}
