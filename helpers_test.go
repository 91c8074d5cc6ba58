package sfere

import (
	"sync"
	"testing"
	"time"
)

// waitLong bounds a wait for what must happen (a stream opens, an event
// arrives, a response ends). It is no timing claim: generous, so that a
// busy machine does not fail the test, and free when things go well.
const waitLong = 5 * time.Second

// evictions records every eviction callback, for exactly-once checks.
type evictions struct {
	mu   sync.Mutex
	all  []Eviction
	news chan Eviction
}

func newEvictions() *evictions {
	return &evictions{news: make(chan Eviction, 1<<16)}
}

func (e *evictions) record(ev Eviction) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
	e.news <- ev
}

func (e *evictions) snapshot() []Eviction {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Eviction(nil), e.all...)
}

// next waits for the next eviction.
func (e *evictions) next(t testing.TB, within time.Duration) Eviction {
	t.Helper()
	select {
	case ev := <-e.news:
		return ev
	case <-time.After(within):
		t.Fatalf("no eviction within %v", within)
		return Eviction{}
	}
}

// none checks that no eviction arrives for a while.
func (e *evictions) none(t testing.TB, for_ time.Duration) {
	t.Helper()
	select {
	case ev := <-e.news:
		t.Fatalf("unexpected eviction %v of %v (%v)", ev.Cause, ev.Key, ev.Err)
	case <-time.After(for_):
	}
}

// fakeClock is a Clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// keepSending sends effect to key every interval (after sending) until
// the returned stop is called; stop waits for the sender to return.
func keepSending(hub *Hub, key Key, effect Effect, every time.Duration) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			hub.Send(key, effect)
			select {
			case <-quit:
				return
			case <-time.After(every):
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// bothPaths runs test over both ways a hub writes a stream: a connection
// it took over (the default for HTTP/1.1) and net/http's response writer
// (HubOptions.NoHijack, as over HTTP/2).
func bothPaths(t *testing.T, test func(t *testing.T, noHijack bool)) {
	t.Run("held", func(t *testing.T) { test(t, false) })
	t.Run("net-http", func(t *testing.T) { test(t, true) })
}
