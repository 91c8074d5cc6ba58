package presence_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/presence"
)

// callbackCluster is a cluster of one node that calls the tracker back
// from within each Hold (as a cluster that snapshots what its node holds
// on every change would), and records each Hold.
type callbackCluster struct {
	n presence.Notify

	mu     sync.Mutex
	holds  []presence.Hold
	locked int // Holds whose call back found the tracker's lock held
}

func (c *callbackCluster) Start(n presence.Notify) error { c.n = n; return nil }
func (c *callbackCluster) Claim(_ context.Context, cl presence.Claim) (presence.Claim, error) {
	return cl, nil
}
func (c *callbackCluster) Lookup(context.Context, string) (presence.Claim, bool) {
	return presence.Claim{}, false
}
func (c *callbackCluster) Release(string, string) {}
func (c *callbackCluster) Reserve(presence.Claim) {}
func (c *callbackCluster) Leave(string, string)   {}
func (c *callbackCluster) Close()                 {}
func (c *callbackCluster) Hold(h presence.Hold) {
	back := make(chan struct{})
	go func() {
		c.n.Holds() // takes the tracker's lock
		close(back)
	}()
	locked := false
	select {
	case <-back:
	case <-time.After(waitLong):
		locked = true // it waits for the lock the caller holds: it would deadlock if called inline
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holds = append(c.holds, h)
	if locked {
		c.locked++
	}
}

func (c *callbackCluster) streams(person string) (streams []int, locked int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range c.holds {
		if h.Person == person {
			streams = append(streams, h.Streams)
		}
	}
	return streams, c.locked
}

// The tracker calls its cluster without its lock held, and in the order
// of the changes: a cluster that calls the tracker back from within a call
// finds the lock free, and hears of each change of a person's streams in
// order.
func TestClusterCalledWithoutLock(t *testing.T) {
	cl := &callbackCluster{}
	r := newRig(t, presence.Options{Grace: 50 * time.Millisecond, Cluster: cl})
	r.claim("phil", "s2")
	ps := r.open("s2")
	r.claim("brian", "s1")
	tab1 := r.open("s1")
	tab2 := r.open("s1")
	ps.waitFor(`data-joins="brian"`)
	tab1.Close()
	ssetest.Eventually(t, waitLong, "brian's first tab ends", func() bool {
		return r.hub.Count(presence.StreamsOf(room, "brian")) == 1
	})
	tab2.Close()
	ps.waitFor(`data-leaves="brian:closed"`)
	got, locked := cl.streams("brian")
	if locked != 0 {
		t.Errorf("%d of the cluster's calls were made with the tracker's lock held", locked)
	}
	// The two tabs opened, then closed.
	if want := []int{1, 2, 1, 0}; !slices.Equal(got, want) {
		t.Errorf("brian's holds as the cluster heard them: %v, want %v", got, want)
	}
}
