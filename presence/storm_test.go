package presence_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/presence"
)

// A mass disconnect announces nobody who comes back: every stream of the
// room is reset at once (a proxy restart), and the people reconnect slowly,
// well past the base grace period; nobody is told anything. One person who
// never comes back departs once, after the storm grace.
func TestStormOfBreaksAnnouncesNobodyWhoComesBack(t *testing.T) {
	const (
		n          = 30
		grace      = 150 * time.Millisecond
		stormGrace = 5 * time.Second
	)
	r := newRig(t, presence.Options{Grace: grace, StormGrace: stormGrace})
	r.claim("observer", "o")
	obs := r.open("o")
	tabs := make([]*tab, n)
	for i := range n {
		id := fmt.Sprintf("p%02d", i)
		r.claim(id, "s"+id)
		tabs[i] = r.open("s" + id)
	}
	r.claim("gone", "sgone")
	goneTab := r.open("sgone")
	obs.waitMembers(append(ids(n), "observer", "gone")...)

	// The break: every connection reset at once, from the client side.
	broke := time.Now()
	var wg sync.WaitGroup
	for _, tb := range append(tabs, goneTab) {
		wg.Go(func() { _ = tb.Reset() })
	}
	wg.Wait()
	ssetest.Eventually(t, waitLong, "the hub sees every stream end", func() bool {
		return r.hub.Count(presence.Everyone(room)) == 1
	})

	// Slow reconnects: the first after twice the base grace, then one
	// every 20 ms (pacing, as a server answering a crowd would).
	for i := range n {
		wg.Go(func() {
			time.Sleep(time.Until(broke.Add(2*grace + time.Duration(i)*20*time.Millisecond)))
			tabs[i] = r.open(fmt.Sprintf("sp%02d", i))
		})
	}
	wg.Wait()
	t.Logf("the last of %d reconnected %v after the break (grace %v)", n, time.Since(broke).Round(time.Millisecond), grace)
	if got := len(r.tracker.Members()); got != n+2 {
		t.Errorf("%d members after the reconnects, want %d", got, n+2)
	}
	obs.waitFor(`data-leaves="gone:closed"`)
	if took := time.Since(broke); took < stormGrace {
		t.Errorf("the one who did not come back departed %v after the break, before the storm grace (%v)", took, stormGrace)
	}
	for _, d := range r.batches() {
		for _, l := range d.Leaves {
			if l.ID != "gone" {
				t.Errorf("%s was announced gone (%s) though it came back", l.ID, l.Reason)
			}
		}
	}
	if c := obs.count("gone:"); c != 1 {
		t.Errorf("the observer saw %d departures of gone, want 1", c)
	}
}

// A storm grace lasts while the storm's people are still coming back: it
// is renewed a grace period at a time, and runs out a grace period after
// the last of them came back. On a fake clock, so each step is exact.
func TestStormGraceLastsWhileTheyComeBack(t *testing.T) {
	const (
		n          = 25
		grace      = 100 * time.Millisecond
		stormGrace = time.Second
	)
	r := newRigClock(t, presence.Options{Grace: grace, StormGrace: stormGrace})
	r.claim("observer", "o")
	obs := r.open("o")
	tabs := make([]*tab, n)
	for i := range n {
		id := fmt.Sprintf("p%02d", i)
		r.claim(id, "s"+id)
		tabs[i] = r.open("s" + id)
	}
	obs.waitMembers(append(ids(n), "observer")...)
	var wg sync.WaitGroup
	for _, tb := range tabs {
		wg.Go(func() { _ = tb.Reset() })
	}
	wg.Wait()
	for i := range n {
		r.waitState(fmt.Sprintf("p%02d", i), "grace", 0)
	}
	// All but two come back late in the storm grace, one just after it.
	r.clock.Advance(stormGrace - 50*time.Millisecond)
	for i := range n - 2 {
		r.open(fmt.Sprintf("sp%02d", i))
	}
	r.clock.Advance(100 * time.Millisecond) // the storm grace ran out, renewed: someone came back 50 ms ago
	r.checkState("p23", "grace")
	r.checkState("p24", "grace")
	r.open("sp23")
	r.clock.Advance(grace - time.Millisecond) // renewed again
	r.checkState("p24", "grace")
	r.clock.Advance(grace) // a grace period after the last came back
	obs.waitFor(`data-leaves="p24:closed"`)
	r.settle(obs)
	for _, d := range r.batches() {
		for _, l := range d.Leaves {
			if l.ID != "p24" {
				t.Errorf("%s was announced gone (%s) though it came back", l.ID, l.Reason)
			}
		}
	}
}

// ids returns the names p00 to p(n-1) the storm tests use.
func ids(n int) []string {
	out := make([]string, n)
	for i := range n {
		out[i] = fmt.Sprintf("p%02d", i)
	}
	return out
}
