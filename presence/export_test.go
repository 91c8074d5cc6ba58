package presence

import (
	"sync"
	"time"
)

// FakeClock is a clock for a tracker's person timers that moves only when
// a test says: a test checks that nothing happens within a grace period
// by moving past it, not by sleeping through it.
type FakeClock struct {
	mu     sync.Mutex
	at     time.Time
	timers map[*fakeTimer]struct{}
}

type fakeTimer struct {
	c    *FakeClock
	when time.Time
	f    func()
}

func (ft *fakeTimer) Stop() bool {
	ft.c.mu.Lock()
	defer ft.c.mu.Unlock()
	_, ok := ft.c.timers[ft]
	delete(ft.c.timers, ft)
	return ok
}

func (c *FakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at
}

func (c *FakeClock) afterFunc(d time.Duration, f func()) stopper {
	c.mu.Lock()
	defer c.mu.Unlock()
	ft := &fakeTimer{c: c, when: c.at.Add(d), f: f}
	c.timers[ft] = struct{}{}
	return ft
}

// Advance moves the clock d ahead, running each timer due by then in
// order, each to its end (timers those set are run too, if due).
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.at.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var next *fakeTimer
		for ft := range c.timers {
			if !ft.when.After(end) && (next == nil || ft.when.Before(next.when)) {
				next = ft
			}
		}
		if next == nil {
			c.at = end
			c.mu.Unlock()
			return
		}
		delete(c.timers, next)
		c.at = next.when
		c.mu.Unlock()
		next.f()
	}
}

// UseFakeClock gives t a fake clock for its person timers; call it before
// the first claim.
func UseFakeClock(t *Tracker) *FakeClock {
	c := &FakeClock{at: time.Now(), timers: make(map[*fakeTimer]struct{})}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.clock = c
	return c
}

// PersonState returns the state of person id ("gone" if the tracker does
// not know it) and how many of its streams it follows on this node.
func PersonState(t *Tracker, id string) (string, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.people[id]
	if p == nil {
		return stGone.String(), 0
	}
	return p.state.String(), len(p.streams)
}

// Flush sends the pending batch now, if any.
func Flush(t *Tracker) {
	t.mu.Lock()
	defer t.unlock()
	if t.flushing != nil {
		t.flushing.Stop()
		t.flushing = nil
	}
	t.flushLocked()
}
