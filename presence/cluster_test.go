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

// A person who departed because the node holding it was found lost
// arrives again when that node speaks of it again (it was not lost: a
// stalled process, a cut link). Late news of the departed claim from any
// other node, or of a departure that was not a loss, is still ignored.
func TestPersonOfALostNodeThatSpeaksAgainArrives(t *testing.T) {
	cl := &callbackCluster{}
	r := newRig(t, presence.Options{Grace: 50 * time.Millisecond, Cluster: cl})
	r.claim("watch", "w")
	obs := r.open("w")
	carol := presence.Hold{Claim: presence.Claim{Person: "carol", Owner: "oc", Ref: "r-carol"}, Streams: 1}
	dave := presence.Hold{Claim: presence.Claim{Person: "dave", Owner: "od", Ref: "r-dave"}, Streams: 1}

	cl.n.Held("x", carol)
	cl.n.Held("x", dave)
	obs.waitMembers("watch", "carol", "dave")
	cl.n.NodeLost("x")
	obs.waitFor(`carol:node-lost`)
	obs.waitFor(`dave:node-lost`)

	cl.n.Held("y", carol) // another node's late news of the departed claim
	r.settle(obs)
	if n := r.arrivals("carol"); n != 1 {
		t.Fatalf("carol arrived %d times after late news from another node, want 1", n)
	}
	cl.n.Held("x", carol) // the lost node speaks again
	obs.waitMembers("watch", "carol")
	r.settle(obs)
	if n := r.arrivals("carol"); n != 2 {
		t.Errorf("carol arrived %d times, want 2 (before the loss, after it)", n)
	}

	// Dave back through x too, then gone for good (his last stream there
	// closed): news of that claim from x is late news now.
	cl.n.Held("x", dave)
	obs.waitMembers("watch", "carol", "dave")
	cl.n.Held("x", presence.Hold{Claim: dave.Claim})
	obs.waitFor(`dave:closed`)
	cl.n.Held("x", dave)
	r.settle(obs)
	if n := r.arrivals("dave"); n != 2 {
		t.Errorf("dave arrived %d times, want 2: news of a closed claim is late news", n)
	}
}

// arrivals counts the arrivals of id in the batches.
func (r *rig) arrivals(id string) int {
	n := 0
	for _, b := range r.batches() {
		for _, j := range b.Joins {
			if j.ID == id {
				n++
			}
		}
	}
	return n
}
