package natspresence_test

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/natscluster"
	"github.com/sfere-go/sfere/presence"
)

// freezer is a TCP proxy to a NATS server that can hold every byte, both
// ways, as long as it is frozen: the node behind it is paused as a
// stalled process would be (its connection stays open, nothing passes),
// and what was held passes once it thaws.
type freezer struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	frozen bool
	thawed *sync.Cond
	conns  []net.Conn
	done   sync.WaitGroup
	// fromClient counts the chunks read from the node behind the proxy,
	// held or not: the node's own clock, seen from outside.
	fromClient atomic.Int64
}

func startFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target}
	f.thawed = sync.NewCond(&f.mu)
	f.done.Go(f.accept)
	t.Cleanup(f.close)
	return f
}

func (f *freezer) url() string { return "nats://" + f.ln.Addr().String() }

func (f *freezer) accept() {
	for {
		in, err := f.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", f.target)
		if err != nil {
			in.Close()
			continue
		}
		f.mu.Lock()
		f.conns = append(f.conns, in, out)
		f.mu.Unlock()
		f.pipe(out, in, &f.fromClient)
		f.pipe(in, out, nil)
	}
}

// pipe copies from src to dst: a reader that never stops (counting its
// chunks in read, if not nil) and a writer that holds them while frozen.
func (f *freezer) pipe(dst, src net.Conn, read *atomic.Int64) {
	chunks := make(chan []byte, 4096)
	f.done.Go(func() {
		defer close(chunks)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				if read != nil {
					read.Add(1)
				}
				chunks <- buf[:n]
			}
			if err != nil {
				return
			}
		}
	})
	f.done.Go(func() {
		defer dst.Close()
		for chunk := range chunks {
			f.mu.Lock()
			for f.frozen {
				f.thawed.Wait()
			}
			f.mu.Unlock()
			if _, err := dst.Write(chunk); err != nil {
				src.Close()
				for range chunks {
				}
				return
			}
		}
	})
}

func (f *freezer) freeze() {
	f.mu.Lock()
	f.frozen = true
	f.mu.Unlock()
}

func (f *freezer) thaw() {
	f.mu.Lock()
	f.frozen = false
	f.thawed.Broadcast()
	f.mu.Unlock()
}

func (f *freezer) close() {
	f.ln.Close()
	f.thaw()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.done.Wait()
}

// decisions records, on one node, the order in which its cluster node
// decided nodes lost and its tracker told departures, and whether the
// node still saw the departed person's node at the moment of each
// departure.
type decisions struct {
	mu     sync.Mutex
	events []string
}

func (d *decisions) add(e string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.events = append(d.events, e)
}

func (d *decisions) list() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.events)
}

// A node paused (its NATS traffic held both ways, as a stalled process's
// would be) is lost to the others by one decision: on each of them its
// streams and its people are declared lost at the same moment, once,
// the streams first and the people within that decision, never one
// without the other. The paused node, which hears nobody either, decides
// nobody lost: it cannot tell the others' silence from its own. Once it
// is heard again, its streams and its people are back on the others.
func TestPausedNodeLostByOneDecision(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	defer ns.Shutdown()
	seen := map[string]*decisions{"a": {}, "b": {}}
	start := func(id string) *node {
		d := seen[id]
		return startNodeWith(t, ns.ClientURL(), id, 0, nodeOptions{OnNodeLost: func(l natscluster.Lost) {
			d.add("lost " + l.Node)
		}})
	}
	a, b := start("a"), start("b")
	fr := startFreezer(t, strings.TrimPrefix(ns.ClientURL(), "nats://"))
	c := startNode(t, fr.url(), "c")
	for id, n := range map[string]*node{"a": a, "b": b} {
		d := seen[id]
		n.tracker.OnDiff(func(diff presence.Diff) {
			for _, l := range diff.Leaves {
				// The tracker's lock is held; the node's is not taken
				// under it anywhere, so asking the node is safe.
				d.add(fmt.Sprintf("left %s %s, c a peer: %v", l.ID, l.Reason, slices.Contains(n.cnode.Peers(), "c")))
			}
		})
	}
	for person, n := range map[string]*node{"alice": a, "bob": b, "carol": c} {
		if err := n.claim(person, "o-"+person); err != nil {
			t.Fatal(err)
		}
	}
	alice, bob, carol := a.open("o-alice"), b.open("o-bob"), c.open("o-carol")
	for _, tb := range []*tab{alice, bob, carol} {
		tb.waitShown("alice", "bob", "carol")
	}
	carolKey := c.hub.List(sfere.All)
	if len(carolKey) != 1 {
		t.Fatalf("c holds %v, want carol's one stream", carolKey)
	}

	fr.freeze()
	alice.waitFor(left("carol", "node-lost"))
	bob.waitFor(left("carol", "node-lost"))
	// c has been as long without news of the others as they were
	// without news of c; it goes on ticking (each tick writes a
	// snapshot, held here) a few more Intervals before it thaws: time
	// enough to decide them lost, if it could not tell its own silence.
	ticked := fr.fromClient.Load()
	ssetest.Eventually(t, waitLong, "c writes on, paused", func() bool { return fr.fromClient.Load() >= ticked+8 })
	fr.thaw()

	for id, n := range map[string]*node{"a": a, "b": b} {
		var ofC []natscluster.Lost
	drain:
		for {
			select {
			case l := <-n.lost:
				if l.Node == "c" {
					ofC = append(ofC, l)
				}
			default:
				break drain
			}
		}
		if len(ofC) != 1 {
			t.Fatalf("%s decided c lost %d times, want once", id, len(ofC))
		}
		if l := ofC[0]; len(l.Evictions) != 1 || l.Evictions[0].Key != carolKey[0] {
			t.Errorf("%s decided %+v, want node c with carol's stream", id, l)
		}
		// Only c's and carol's: on a loaded machine another node may be
		// lost too, which is not what this test is about.
		var ev []string
		for _, e := range seen[id].list() {
			if e == "lost c" || strings.HasPrefix(e, "left carol ") {
				ev = append(ev, e)
			}
		}
		want := []string{"lost c", "left carol node-lost, c a peer: false"}
		if !slices.Equal(ev, want) {
			t.Errorf("%s: decisions and departures %q, want %q (one decision: the streams, then the people)", id, ev, want)
		}
	}

	// Thawed, c is heard again: its stream and its person come back on
	// the others together (carol arrives again), and c, which never
	// found anyone lost while it heard nobody, hears the others.
	for name, tb := range map[string]*tab{"alice": alice, "bob": bob} {
		ssetest.Eventually(t, waitLong, "carol back on "+name+"'s page", func() bool { return tb.count(joined("carol")) == 2 })
	}
	// The line comes through the log; c's streams come with its news,
	// which may follow it.
	for id, n := range map[string]*node{"a": a, "b": b} {
		ssetest.Eventually(t, waitLong, id+" lists carol's stream again", func() bool {
			return slices.Contains(n.cnode.List(sfere.All), carolKey[0])
		})
	}
	if err := a.claim("dave", "o-dave"); err != nil {
		t.Fatal(err)
	}
	a.open("o-dave")
	carol.waitFor(joined("dave"))
	select {
	case l := <-c.lost:
		t.Errorf("the paused node decided %s lost", l.Node)
	default:
	}
	if n := carol.count(`id="leave"`); n != 0 {
		t.Errorf("carol's page on the paused node saw %d departures, want none", n)
	}
}
