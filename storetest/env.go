package storetest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"time"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// ceiling bounds every wait for something that should happen; generous,
// so that a busy machine does not fail a conformant store.
const ceiling = 5 * time.Second

// quiet is how long a check watches for an eviction that must not come.
const quiet = 50 * time.Millisecond

// env is one check's store, with a hub that serves its streams to
// clients over loopback TCP.
type env struct {
	t     tb
	store sfere.Store
	hub   *sfere.Hub
	srv   *httptest.Server
	ev    *evictions

	mu      sync.Mutex
	opened  []*sfere.Stream // every stream the hub stored, in order
	byKey   map[sfere.Key][]*sfere.Stream
	ended   map[*sfere.Stream]int // AfterEnd runs: evictions completed
	changed chan struct{}         // closed and replaced when opened grows
}

// newEnv builds a store with newStore and serves it. Each eviction is
// recorded, then handed to also (if set) with the env.
func newEnv(t tb, newStore func(sfere.EvictFunc) sfere.Store, also func(*env, sfere.Eviction)) *env {
	t.Helper()
	e := &env{t: t, ev: newEvictions(), byKey: map[sfere.Key][]*sfere.Stream{}, ended: map[*sfere.Stream]int{}, changed: make(chan struct{})}
	e.store = newStore(func(ev sfere.Eviction) {
		e.ev.record(ev)
		if also != nil {
			also(e, ev)
		}
	})
	e.hub = sfere.NewHub(e.store, sfere.HubOptions{OnOpen: e.onOpen})
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, err := sfere.ParseKey(r.URL.Query().Get("key"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := e.hub.Serve(w, r, k, sfere.Comment("hello")); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ceiling)
		defer cancel()
		if err := e.hub.Shutdown(ctx); err != nil {
			// A Serve still waits: closing the server would wait forever.
			t.Errorf("a stream's Serve did not return after the stream left the store "+
				"(does the store hand every eviction to sfere.Evict?): %v", err)
			return
		}
		e.srv.Close()
	})
	return e
}

func (e *env) onOpen(s *sfere.Stream) {
	e.mu.Lock()
	e.opened = append(e.opened, s)
	e.byKey[s.Key()] = append(e.byKey[s.Key()], s)
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
	s.AfterEnd(func() {
		e.mu.Lock()
		e.ended[s]++
		e.mu.Unlock()
	})
}

// dial connects a client to a stream under k and waits for the stream's
// first message; the caller closes the client.
func (e *env) dial(k sfere.Key) (*ssetest.Client, error) {
	c, err := ssetest.Dial(e.srv.Listener.Addr().String(), ssetest.Request{Target: "/sse?key=" + url.QueryEscape(k.String())})
	if err != nil {
		return nil, err
	}
	if _, err := c.Next(ceiling, ssetest.CommentIs("hello")); err != nil {
		c.Close()
		return nil, fmt.Errorf("stream %v did not open: %w", k, err)
	}
	return c, nil
}

// open opens a stream under k and returns it with its client (closed when
// the check ends).
func (e *env) open(k sfere.Key) (*sfere.Stream, *ssetest.Client) {
	e.t.Helper()
	e.mu.Lock()
	n := len(e.byKey[k])
	e.mu.Unlock()
	c, err := e.dial(k)
	if err != nil {
		e.t.Fatalf("%v", err)
	}
	e.t.Cleanup(func() { c.Close() })
	// The hub calls OnOpen before it writes the first message.
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.byKey[k]) <= n {
		e.t.Fatalf("the hub wrote to a stream under %v it never stored", k)
	}
	return e.byKey[k][n], c
}

// streams returns every stream the hub stored so far.
func (e *env) streams() []*sfere.Stream {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*sfere.Stream(nil), e.opened...)
}

// endedCount says how many times s's eviction completed.
func (e *env) endedCount(s *sfere.Stream) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ended[s]
}

// ends checks that c's response ends properly: the stream was ended.
func (e *env) ends(c *ssetest.Client, what string) {
	e.t.Helper()
	if err := c.End(ceiling); err != nil {
		e.t.Fatalf("%s: its client's response did not end: %v", what, err)
	}
}

// isDone reports whether s has been evicted.
func isDone(s *sfere.Stream) bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}

// evictions records every eviction, for exactly-once checks.
type evictions struct {
	mu   sync.Mutex
	all  []sfere.Eviction
	news chan sfere.Eviction
}

func newEvictions() *evictions { return &evictions{news: make(chan sfere.Eviction, 1<<14)} }

func (e *evictions) record(ev sfere.Eviction) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
	select {
	case e.news <- ev:
	default: // nobody waits for this many: the record keeps them
	}
}

func (e *evictions) snapshot() []sfere.Eviction {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]sfere.Eviction(nil), e.all...)
}

// next waits for the next eviction.
func (e *evictions) next(t tb) sfere.Eviction {
	t.Helper()
	select {
	case ev := <-e.news:
		return ev
	case <-time.After(ceiling):
		t.Fatalf("no eviction within %v", ceiling)
		return sfere.Eviction{}
	}
}

// none checks that no eviction comes for a while.
func (e *evictions) none(t tb) {
	t.Helper()
	select {
	case ev := <-e.news:
		t.Fatalf("unexpected eviction %v of %v (%v)", ev.Cause, ev.Key, ev.Err)
	case <-time.After(quiet):
	}
}
