package natscluster

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// watched records what a Watch is told.
type watched struct {
	mu   sync.Mutex
	lost []string
	left []string
}

func (w *watched) watch(n *Node) (cancel func()) {
	return n.Watch(Watch{
		Lost: func(l Lost) { w.mu.Lock(); w.lost = append(w.lost, l.Node); w.mu.Unlock() },
		Left: func(id string) { w.mu.Lock(); w.left = append(w.left, id); w.mu.Unlock() },
	})
}

func (w *watched) got() (lost, left []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.lost), slices.Clone(w.left)
}

// A watch hears the node's one decision about a crashed peer, after
// OnNodeLost, and a peer's goodbye as a departure without a loss.
func TestWatchHearsLostAndLeft(t *testing.T) {
	a, b, c := threeNodes(t)
	var w watched
	defer w.watch(a.node)()
	c.connect(t, "carol")
	waitFor(t, "a sees carol", func() bool { return a.node.Count(lobbyKey("carol").Pattern()) == 1 })

	c.kill()
	select {
	case l := <-a.lost:
		if l.Node != "c" {
			t.Fatalf("OnNodeLost told %q, want c", l.Node)
		}
	case <-time.After(ceiling):
		t.Fatal("no node lost")
	}
	waitFor(t, "the watch hears c lost", func() bool { lost, _ := w.got(); return len(lost) == 1 })
	b.stop()
	waitFor(t, "the watch hears b leave", func() bool { _, left := w.got(); return len(left) == 1 })
	lost, left := w.got()
	if !slices.Equal(lost, []string{"c"}) || !slices.Equal(left, []string{"b"}) {
		t.Errorf("the watch heard lost %q, left %q; want [c], [b]", lost, left)
	}
	if got := a.node.Stats().NodesLost; got != 1 {
		t.Errorf("a decided %d nodes lost, want 1", got)
	}
}

// A node heard of only through an adapter (its own messages never came)
// is a peer whose silence is decided like any other's, and reported to
// every watch.
func TestHeardNodeIsLost(t *testing.T) {
	ns := startNATS(t)
	a := newTestNode(t, ns, "a")
	var w watched
	defer w.watch(a.node)()
	a.node.Heard("ghost")
	if !slices.Contains(a.node.Peers(), "ghost") {
		t.Fatalf("peers %q after Heard(ghost)", a.node.Peers())
	}
	waitFor(t, "the ghost is lost", func() bool { lost, _ := w.got(); return len(lost) == 1 })
	l := <-a.lost
	if l.Node != "ghost" || len(l.Evictions) != 0 {
		t.Errorf("lost %+v, want the ghost with no streams", l)
	}
	if slices.Contains(a.node.Peers(), "ghost") {
		t.Errorf("the lost ghost is still a peer")
	}
	a.node.Heard("a") // itself: never a peer
	if p := a.node.Peers(); len(p) != 0 {
		t.Errorf("peers %q after Heard of itself, want none", p)
	}
}

// A node is cold after it starts, for one and a half Intervals plus its
// connection's reconnect wait: Warm waits until then, or ctx's end.
func TestWarmWaitsAfterStart(t *testing.T) {
	ns := startNATS(t)
	opts := Options{Interval: 2 * time.Second}
	started := time.Now()
	a := newTestNodeWith(t, ns, "a", opts)
	short, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := a.node.Warm(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Warm right after the start: %v, want the context's deadline", err)
	}
	if err := a.node.Warm(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(started); d < 3*opts.Interval/2 {
		t.Errorf("warm after %v, want at least %v", d, 3*opts.Interval/2)
	}
}
