package lobby

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// directory is the lobby's shared registry when several nodes serve one
// lobby: who holds which name, which session is whose, and on which node
// each participant's stream lives. It is two JetStream key-value buckets on
// NATS; their compare-and-set writes decide every race between nodes (two
// people taking one name, two nodes both seeing a departure), so each
// arrival and each departure is announced by exactly one node.
//
// A single-node lobby has no directory: its own maps are the truth.
type directory struct {
	node    string
	parts   jetstream.KeyValue // hex(name) -> entry
	sess    jetstream.KeyValue // session id -> name
	timeout time.Duration
	log     *slog.Logger

	mu     sync.Mutex
	mirror map[string]dirEntry // name -> entry (or tombstone), kept by a watcher and by this node's own writes
	watch  jetstream.KeyWatcher
	stop   context.CancelFunc // ends the watch even if NATS is gone
	done   chan struct{}
}

// Entry states. A departed participant has no entry.
const (
	dirJoining = "joining" // the name is claimed; nobody was told yet
	dirPresent = "present" // announced; its stream lives (or is in grace) on Node
)

type dirEntry struct {
	Name  string `json:"name"`
	SID   string `json:"sid"`
	State string `json:"state"`
	Node  string `json:"node"`  // the node that holds the stream, or that took the join
	Since int64  `json:"since"` // UnixNano of the arrival: the list's order

	rev  uint64    // the bucket revision this mirror entry reflects
	gone bool      // a tombstone: deleted at rev
	at   time.Time // when it was written, for the orphan check
}

var errNotYours = errors.New("that name now belongs to another session")

// newDirectory opens (creating if need be) the buckets under prefix.
func newDirectory(ctx context.Context, nc *nats.Conn, prefix, node string, log *slog.Logger) (*directory, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	bucket := func(name string) (jetstream.KeyValue, error) {
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: prefix + "_" + name, Storage: jetstream.FileStorage})
		if err != nil {
			return nil, fmt.Errorf("directory: bucket %s (does the NATS server have JetStream enabled?): %w", name, err)
		}
		return kv, nil
	}
	d := &directory{node: node, timeout: 5 * time.Second, log: log, mirror: make(map[string]dirEntry), done: make(chan struct{})}
	if d.parts, err = bucket("participants"); err != nil {
		return nil, err
	}
	if d.sess, err = bucket("sessions"); err != nil {
		return nil, err
	}
	wctx, stop := context.WithCancel(context.Background())
	if d.watch, err = d.parts.WatchAll(wctx); err != nil {
		stop()
		return nil, fmt.Errorf("directory: watch: %w", err)
	}
	d.stop = stop
	// Wait for the initial values, so the first list is complete.
	for e := range d.watch.Updates() {
		if e == nil {
			break
		}
		d.apply(e)
	}
	go d.follow()
	return d, nil
}

func (d *directory) follow() {
	defer close(d.done)
	for e := range d.watch.Updates() {
		if e != nil {
			d.apply(e)
		}
	}
}

func (d *directory) apply(e jetstream.KeyValueEntry) {
	var v dirEntry
	if e.Operation() == jetstream.KeyValuePut {
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			d.log.Warn("directory: bad entry", "key", e.Key(), "err", err)
			return
		}
	} else {
		name, err := hex.DecodeString(e.Key()[1:])
		if err != nil {
			return
		}
		v = dirEntry{Name: string(name), gone: true}
	}
	v.rev, v.at = e.Revision(), e.Created()
	d.update(v)
}

// update keeps the newer of v and the mirror's entry.
func (d *directory) update(v dirEntry) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if old, ok := d.mirror[v.Name]; !ok || v.rev > old.rev {
		d.mirror[v.Name] = v
	}
}

func (d *directory) close() {
	d.watch.Stop()
	d.stop()
	<-d.done
}

// nameKey encodes a name as a key-value key (which allows only a few bytes).
func nameKey(name string) string { return "n" + hex.EncodeToString([]byte(name)) }

func (d *directory) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d.timeout)
}

// get returns the current entry of name and its revision.
func (d *directory) get(name string) (dirEntry, uint64, error) {
	ctx, cancel := d.ctx()
	defer cancel()
	e, err := d.parts.Get(ctx, nameKey(name))
	if err != nil {
		return dirEntry{}, 0, err
	}
	var v dirEntry
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return dirEntry{}, 0, fmt.Errorf("directory: entry of %q: %w", name, err)
	}
	v.at = e.Created()
	return v, e.Revision(), nil
}

// remember puts this node's own write into the mirror at once (the watcher
// confirms it a moment later).
func (d *directory) remember(v dirEntry, rev uint64) {
	v.rev, v.at = rev, time.Now()
	d.update(v)
}

// forget marks name deleted after revision rev.
func (d *directory) forget(name string, rev uint64) {
	d.update(dirEntry{Name: name, gone: true, rev: rev + 1, at: time.Now()})
}

// claim reserves name for session sid, or finds it already the session's.
func (d *directory) claim(name, sid string) error {
	ctx, cancel := d.ctx()
	defer cancel()
	v := dirEntry{Name: name, SID: sid, State: dirJoining, Node: d.node}
	b, _ := json.Marshal(v)
	rev, err := d.parts.Create(ctx, nameKey(name), b)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("directory: claim %q: %w", name, err)
		}
		cur, _, err := d.get(name)
		if err != nil {
			return fmt.Errorf("directory: claim %q: %w", name, err)
		}
		if cur.SID != sid {
			return ErrNameTaken
		}
		return nil
	}
	d.remember(v, rev)
	if _, err := d.sess.Put(ctx, sid, []byte(name)); err != nil {
		return fmt.Errorf("directory: session: %w", err)
	}
	return nil
}

// session returns the name session sid joined with, on any node.
func (d *directory) session(sid string) (string, bool) {
	if !wellFormedSID(sid) {
		return "", false
	}
	ctx, cancel := d.ctx()
	defer cancel()
	e, err := d.sess.Get(ctx, sid)
	if err != nil {
		return "", false
	}
	name := string(e.Value())
	if v, _, err := d.get(name); err != nil || v.SID != sid {
		return "", false
	}
	return name, true
}

// announced reports whether name's participant was announced (is on the list).
func (d *directory) announced(name, sid string) bool {
	v, _, err := d.get(name)
	return err == nil && v.SID == sid && v.State == dirPresent
}

// arrive records that name's stream now lives on this node and reports
// whether this is the participant's first arrival (to be announced).
func (d *directory) arrive(name, sid string) (first bool, err error) {
	for range 5 {
		v, rev, err := d.get(name)
		if err != nil {
			return false, fmt.Errorf("directory: arrive %q: %w", name, err)
		}
		if v.SID != sid {
			return false, errNotYours
		}
		first = v.State == dirJoining
		v.State, v.Node = dirPresent, d.node
		if first {
			v.Since = time.Now().UnixNano()
		}
		b, _ := json.Marshal(v)
		ctx, cancel := d.ctx()
		newRev, err := d.parts.Update(ctx, nameKey(name), b, rev)
		cancel()
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // another node wrote it meanwhile: look again
		}
		if err != nil {
			return false, fmt.Errorf("directory: arrive %q: %w", name, err)
		}
		d.remember(v, newRev)
		return first, nil
	}
	return false, fmt.Errorf("directory: arrive %q: too many concurrent writes", name)
}

// leave removes name's participant if it is still sid's and, unless holder
// is "", still held by node holder (a participant whose stream moved to
// another node has not left). It reports whether the participant was
// removed by this call and had been announced: then this node, and no
// other, announces the departure.
func (d *directory) leave(name, sid, holder string) (announce bool) {
	for range 5 {
		v, rev, err := d.get(name)
		if err != nil {
			return false // already gone
		}
		if v.SID != sid || holder != "" && v.Node != holder {
			return false
		}
		ctx, cancel := d.ctx()
		err = d.parts.Delete(ctx, nameKey(name), jetstream.LastRevision(rev))
		if err == nil {
			_ = d.sess.Delete(ctx, sid)
		}
		cancel()
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			d.log.Warn("directory: leave", "name", name, "err", err)
			return false
		}
		d.forget(name, rev)
		return v.State == dirPresent
	}
	return false
}

// orphans removes the entries held by nodes that are neither this node nor
// live, written more than minAge ago, and returns the names of the
// announced ones: their departures are this node's to announce.
func (d *directory) orphans(live map[string]bool, minAge time.Duration) []string {
	d.mu.Lock()
	var suspects []dirEntry
	for _, v := range d.mirror {
		if !v.gone && v.Node != d.node && !live[v.Node] && time.Since(v.at) > minAge {
			suspects = append(suspects, v)
		}
	}
	d.mu.Unlock()
	var gone []string
	for _, s := range suspects {
		if d.leave(s.Name, s.SID, s.Node) {
			gone = append(gone, s.Name)
		}
	}
	return gone
}

// held returns the entries that name this node as their holder: at
// start, what a previous run under the same node id left behind.
func (d *directory) held() []dirEntry {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []dirEntry
	for _, v := range d.mirror {
		if !v.gone && v.Node == d.node {
			out = append(out, v)
		}
	}
	return out
}

// list returns the announced participants, in order of arrival.
func (d *directory) list() []string {
	d.mu.Lock()
	present := make([]dirEntry, 0, len(d.mirror))
	for _, v := range d.mirror {
		if !v.gone && v.State == dirPresent {
			present = append(present, v)
		}
	}
	d.mu.Unlock()
	slices.SortFunc(present, func(a, b dirEntry) int {
		return cmp.Or(cmp.Compare(a.Since, b.Since), cmp.Compare(a.Name, b.Name))
	})
	names := make([]string, len(present))
	for i, v := range present {
		names[i] = v.Name
	}
	return names
}
