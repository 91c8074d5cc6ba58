package natspresence_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/natscluster"
	"github.com/sfere-go/sfere/presence"
)

// openFrom opens a stream of owner's person on n as a client that
// reconnects does: with the Last-Event-ID header from. It waits for the
// response head only (a stream that resumes gets no snapshot).
func (n *node) openFrom(owner, from string) *tab {
	n.t.Helper()
	c := ssetest.Open(n.t, n.srv.Listener.Addr().String(), ssetest.Request{Method: http.MethodPost,
		Target: "/?owner=" + owner, Header: http.Header{"Last-Event-Id": {from}}})
	if resp, err := c.Head(waitLong); err != nil || resp.StatusCode != http.StatusOK {
		n.t.Fatalf("open stream of %s from %s: %v %v", owner, from, resp, err)
	}
	return &tab{t: n.t, Client: c}
}

// lastID is the id of the last event tb received that carried one.
func (tb *tab) lastID() string {
	id := ""
	for _, e := range tb.Events() {
		if e.HasID {
			id = e.ID
		}
	}
	return id
}

// With the room's changes in the cluster's log, a page whose stream broke
// before a departure and that reconnects through another node is
// replayed the departure there, once, and holds the room's state (it
// gets no snapshot); every stream on every node shows the departure
// once, although several nodes decided it.
func TestResumeOnAnotherNodeReplaysTheDeparture(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	defer ns.Shutdown()
	opts := nodeOptions{History: 256}
	a, b, c := startNodeWith(t, ns.ClientURL(), "a", 0, opts), startNodeWith(t, ns.ClientURL(), "b", 0, opts),
		startNodeWith(t, ns.ClientURL(), "c", 0, opts)
	if err := a.claim("phil", "s-phil"); err != nil {
		t.Fatal(err)
	}
	phil := a.open("s-phil") // keeps phil here while his other tab is away
	away := a.open("s-phil")
	// Arrivals after phil's tabs opened: they reach them with ids.
	if err := b.claim("carol", "s-carol"); err != nil {
		t.Fatal(err)
	}
	carol := b.open("s-carol")
	if err := c.claim("dave", "s-dave"); err != nil {
		t.Fatal(err)
	}
	dave := c.open("s-dave")
	everyone := map[string]*tab{"phil": phil, "carol": carol, "dave": dave, "phil's other tab": away}
	for _, tb := range everyone {
		tb.waitShown("phil", "carol", "dave")
	}
	time.Sleep(4 * interval) // negative check: a duplicate batch would have come by now (delivered to nobody)
	from := away.lastID()
	if from == "" {
		t.Fatal("phil's other tab got no event with an id")
	}
	away.Close()
	<-away.Done()

	carol.Close() // carol's only stream: she departs after the grace period
	for _, tb := range []*tab{phil, dave} {
		tb.waitFor(left("carol", "closed"))
	}
	for id, n := range map[string]*node{"a": a, "b": b, "c": c} {
		ssetest.Eventually(t, waitLong, "carol gone from node "+id, func() bool { return names(n.tracker.Members()) == "phil,dave" })
	}

	back := c.openFrom("s-phil", from) // the page reconnects through c
	back.waitFor(left("carol", "closed"))
	if _, err := a.tracker.Leave(t.Context(), "s-dave"); err != nil { // a later change reaches it live
		t.Fatal(err)
	}
	back.waitFor(left("dave", "left"))
	time.Sleep(grace + 4*interval) // negative check: anything doubled would have come by now
	if n := back.count(`id="snapshot"`); n != 0 {
		t.Errorf("the resumed stream got %d snapshots, want none (it holds the room's state)", n)
	}
	if got := strings.Join(back.elements(), " "); strings.Count(got, left("carol", "closed")) != 1 ||
		strings.Count(got, `id="join"`) != 0 {
		t.Errorf("the resumed stream got %s, want carol's departure once and no arrival", got)
	}
	for name, tb := range map[string]*tab{"phil": phil, "dave": dave} {
		if n := tb.count(`data-id="carol" data-reason`); n != 1 {
			t.Errorf("%s saw %d departures of carol, want 1:\n%s", name, n, strings.Join(tb.elements(), "\n"))
		}
		for _, person := range []string{"phil", "carol", "dave"} {
			if n := tb.count(joined(person)); n > 1 {
				t.Errorf("%s saw %s arrive %d times", name, person, n)
			}
		}
		tb.replay(t, true)
	}
	keys := c.hub.List(presence.StreamsOf(room, "phil"))
	if len(keys) != 1 {
		t.Fatalf("phil's streams on c: %v, want the resumed one", keys)
	}
	if s, ok := c.hub.Store().Get(keys[0]); !ok || !s.Recovery().Recovered {
		t.Errorf("the stream that reconnected through c did not recover")
	}
}

// A node that starts when the log no longer holds the arrivals of the
// people present (it keeps only its Size) is handed the roster by another
// node: its streams show everyone, and a later departure once.
func TestStartedNodeIsHandedTheRoster(t *testing.T) {
	ns, opts, a, _, phil, carol := arrivalsPushedOut(t, 8)
	ssetest.Eventually(t, waitLong, "the log to move past the arrivals", func() bool {
		st, err := a.cnode.LogState(t.Context())
		return err == nil && st.First > 8
	})

	c := startNodeWith(t, ns.ClientURL(), "c", 0, opts)
	if got := names(c.tracker.Members()); got != "phil,carol" {
		t.Fatalf("a node started after the arrivals left the log has members %q, want phil,carol", got)
	}
	if err := c.claim("dave", "s-dave"); err != nil {
		t.Fatal(err)
	}
	dave := c.open("s-dave")
	dave.waitShown("phil", "carol", "dave")
	carol.Close()
	dave.waitFor(left("carol", "closed"))
	phil.waitFor(left("carol", "closed"))
	time.Sleep(grace + 4*interval) // negative check: anything doubled would have come by now
	for name, tb := range map[string]*tab{"phil": phil, "dave": dave} {
		if n := tb.count(`data-id="carol" data-reason`); n != 1 {
			t.Errorf("%s saw %d departures of carol, want 1", name, n)
		}
		tb.replay(t, true)
	}
}

// With the room's changes in the log, a node paused long enough to be
// found lost and then heard again, twice: each time its person departs
// once and arrives again once, on every page, the paused node's own
// included (every node shows the log's sequence), although the person's
// claim kept its Ref.
func TestPausedNodeHeardAgainThroughTheLog(t *testing.T) {
	t.Run("no resume window", func(t *testing.T) { pausedNodeHeardAgain(t, 0) })
	// With a resume window the person departs resumably and comes back
	// as a return, each time under a Ref of its own (a second return
	// under the first's would be taken for its late news).
	t.Run("resume window", func(t *testing.T) { pausedNodeHeardAgain(t, time.Minute) })
}

func pausedNodeHeardAgain(t *testing.T, resume time.Duration) {
	ns := startNATS(t, "127.0.0.1:0")
	defer ns.Shutdown()
	opts := nodeOptions{History: 256}
	a, b := startNodeWith(t, ns.ClientURL(), "a", resume, opts), startNodeWith(t, ns.ClientURL(), "b", resume, opts)
	fr := startFreezer(t, strings.TrimPrefix(ns.ClientURL(), "nats://"))
	c := startNodeWith(t, fr.url(), "c", resume, opts)
	for person, n := range map[string]*node{"alice": a, "bob": b, "carol": c} {
		if err := n.claim(person, "o-"+person); err != nil {
			t.Fatal(err)
		}
	}
	alice, bob, carol := a.open("o-alice"), b.open("o-bob"), c.open("o-carol")
	for _, tb := range []*tab{alice, bob, carol} {
		tb.waitShown("alice", "bob", "carol")
	}
	pages := map[string]*tab{"alice": alice, "bob": bob, "carol": carol}
	for round := 1; round <= 2; round++ { // lost and heard again twice
		fr.freeze()
		for _, tb := range []*tab{alice, bob} {
			ssetest.Eventually(t, waitLong, "carol lost", func() bool { return tb.count(left("carol", "node-lost")) == round })
		}
		fr.thaw()
		for name, tb := range pages {
			ssetest.Eventually(t, waitLong, "carol back on "+name+"'s page", func() bool { return tb.count(joined("carol")) == round+1 })
		}
		for id, n := range map[string]*node{"a": a, "b": b, "c": c} {
			ssetest.Eventually(t, waitLong, "carol a member on node "+id, func() bool {
				return strings.Contains(names(n.tracker.Members()), "carol")
			})
		}
		time.Sleep(grace + 4*interval) // negative check: anything doubled would have come by now
		for name, tb := range pages {
			if n := tb.count(`data-id="carol" data-reason`); n != round {
				t.Errorf("round %d: %s's page saw %d departures of carol, want %d:\n%s", round, name, n, round, strings.Join(tb.elements(), "\n"))
			}
			if n := tb.count(joined("carol")); n != round+1 {
				t.Errorf("round %d: %s's page saw carol arrive %d times, want %d", round, name, n, round+1)
			}
			tb.replay(t, true)
		}
	}
	if resume > 0 {
		// Decided by c alone, her node (the others crash), her
		// departure is of the arrival the log shows, though c never saw
		// her depart: dave, on c, is shown it.
		if err := c.claim("dave", "o-dave"); err != nil {
			t.Fatal(err)
		}
		dave := c.open("o-dave")
		dave.waitShown("alice", "bob", "carol", "dave")
		a.crash()
		b.crash()
		dave.waitFor(left("alice", "node-lost"))
		carol.Close()
		dave.waitFor(left("carol", "closed"))
		return
	}
	// Her departure later is one line too, whichever nodes decide it.
	carol.Close()
	for name, tb := range map[string]*tab{"alice": alice, "bob": bob} {
		ssetest.Eventually(t, waitLong, "carol gone from "+name+"'s page", func() bool { return tb.count(`data-id="carol" data-reason`) == 3 })
	}
	time.Sleep(grace + 4*interval) // negative check: anything doubled would have come by now
	for name, tb := range map[string]*tab{"alice": alice, "bob": bob} {
		if n := tb.count(`data-id="carol" data-reason`); n != 3 {
			t.Errorf("%s's page saw %d departures of carol, want 3 (node lost twice, then closed)", name, n)
		}
		tb.replay(t, true)
	}
}

// People arriving at once on three nodes, with the room's changes in the
// log: every stream, on every node, shows each of them exactly once, and
// the arrivals reach it in a few batches, not one event each, although
// every node decides every arrival it sees.
func TestConcurrentArrivalsThroughTheLog(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	defer ns.Shutdown()
	opts := nodeOptions{History: 1024}
	nodes := []*node{startNodeWith(t, ns.ClientURL(), "a", 0, opts), startNodeWith(t, ns.ClientURL(), "b", 0, opts),
		startNodeWith(t, ns.ClientURL(), "c", 0, opts)}
	const n = 60
	tabs := make([]*tab, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			nd := nodes[i%len(nodes)]
			id := fmt.Sprintf("p%02d", i)
			if err := nd.claim(id, "s"+id); err != nil {
				t.Error(err)
				return
			}
			tabs[i] = nd.open("s" + id)
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	most := 0
	for i, tb := range tabs {
		ssetest.Eventually(t, waitLong, "every stream shows everyone", func() bool { return len(tb.replay(t, false)) == n })
		if got := tb.replay(t, true); len(got) != n {
			t.Errorf("stream %d shows %d people, want %d", i, len(got), n)
		}
		// The log's batches it got: one position each.
		batches := map[string]bool{}
		for _, e := range tb.Events() {
			if e.HasID && strings.Contains(e.Text(), `id="join"`) {
				pos, _, _ := strings.Cut(e.ID, ".")
				batches[pos] = true
			}
		}
		most = max(most, len(batches))
	}
	t.Logf("%d arrivals on 3 nodes: at most %d batches reached a stream", n, most)
	if most > n/2 {
		t.Errorf("a stream got %d batches for %d arrivals: the log's batches are not batched", most, n)
	}
	for _, nd := range nodes {
		if got := len(nd.tracker.Members()); got != n {
			t.Errorf("a node's members: %d, want %d", got, n)
		}
	}
}

// A node that starts while the log holds an arrival and a departure, with
// the arrivals before them gone from the log, holds its log back for its
// tracker, is handed the roster as it was before those batches, and
// renders them at their positions as the other nodes did: a page that
// resumes on it from before them is replayed both, once.
func TestStartedNodeRendersTheLogItHolds(t *testing.T) {
	ns, opts, a, b, phil, carol := arrivalsPushedOut(t, 16)
	phil.waitFor("<p>19</p>")
	from := phil.lastID()
	if err := b.claim("dave", "s-dave"); err != nil {
		t.Fatal(err)
	}
	b.open("s-dave")
	carol.Close()
	phil.waitFor(left("carol", "closed"))
	ssetest.Eventually(t, waitLong, "the log without the first arrivals", func() bool {
		st, err := a.cnode.LogState(t.Context())
		return err == nil && st.First > 4
	})

	c := startNodeWith(t, ns.ClientURL(), "c", 0, opts)
	if got := names(c.tracker.Members()); got != "phil,dave" {
		t.Fatalf("the started node's members: %q, want phil,dave", got)
	}
	back := c.openFrom("s-phil", from)
	back.waitFor(left("carol", "closed"))
	back.waitFor(joined("dave"))
	time.Sleep(grace + 4*interval) // negative check: anything doubled would have come by now
	if n := back.count(left("carol", "closed")) + back.count(joined("dave")); n != 2 {
		t.Errorf("the page that resumed on the started node got %d of carol's departure and dave's arrival, want each once:\n%s",
			n, strings.Join(back.elements(), "\n"))
	}
	keys := c.hub.List(presence.StreamsOf(room, "phil"))
	if len(keys) != 1 {
		t.Fatalf("phil's streams on c: %v", keys)
	}
	if s, ok := c.hub.Store().Get(keys[0]); !ok || !s.Recovery().Recovered {
		t.Errorf("the page did not resume on the started node")
	}
}

// arrivalsPushedOut starts nodes a and b whose log keeps size events, with
// phil on a and carol on b shown to each other, then 20 broadcasts that
// push their arrivals out of the log.
func arrivalsPushedOut(t *testing.T, size int) (ns *natscluster.Server, opts nodeOptions, a, b *node, phil, carol *tab) {
	t.Helper()
	ns = startNATS(t, "127.0.0.1:0")
	t.Cleanup(ns.Shutdown)
	opts = nodeOptions{History: size}
	a, b = startNodeWith(t, ns.ClientURL(), "a", 0, opts), startNodeWith(t, ns.ClientURL(), "b", 0, opts)
	if err := a.claim("phil", "s-phil"); err != nil {
		t.Fatal(err)
	}
	phil = a.open("s-phil")
	if err := b.claim("carol", "s-carol"); err != nil {
		t.Fatal(err)
	}
	carol = b.open("s-carol")
	phil.waitShown("phil", "carol")
	for i := range 20 {
		if _, err := a.cnode.Broadcast(sfere.All, nil, sfere.AppendElements("#m", fmt.Sprintf("<p>%d</p>", i))); err != nil {
			t.Fatal(err)
		}
	}
	return ns, opts, a, b, phil, carol
}
