package lobby_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/natscluster"
)

// clusterHeartbeat is short, so lost nodes are found within a test's patience.
const clusterHeartbeat = 400 * time.Millisecond

// newCluster starts an embedded NATS server and returns a function that
// starts lobby nodes on it under the given ids.
func newCluster(t *testing.T, opts lobby.Options) func(id string) *lobby.Server {
	t.Helper()
	ns, err := natscluster.StartServer("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	if opts.Heartbeat == 0 {
		opts.Heartbeat, opts.TTL = clusterHeartbeat, 10*clusterHeartbeat
	}
	return func(id string) *lobby.Server {
		o := opts
		o.NATS, o.NodeID = ns.ClientURL(), id
		return startServer(t, o)
	}
}

// via returns the same browser (same cookies: cookies ignore ports) talking
// to another node, as a load balancer might route it.
func (b *browser) via(srv *lobby.Server) *browser {
	u, err := url.Parse(srv.URL())
	if err != nil {
		b.t.Fatal(err)
	}
	c := *b
	c.base = u
	return &c
}

func TestClusterJoinsMessagesAndDepartures(t *testing.T) {
	node := newCluster(t, lobby.Options{})
	a, b, c := node("a"), node("b"), node("c")
	brian, phil, carol := newBrowser(t, a), newBrowser(t, b), newBrowser(t, c)
	bs := brian.enter("brian")
	ps := phil.enter("phil")
	cs := carol.enter("carol")
	for _, s := range []*stream{bs, ps} {
		s.waitFor(joinedLine("carol"))
	}
	bs.waitFor(joinedLine("phil"))
	cs.waitFor(`<li id="` + participantID("brian") + `">brian</li>`) // carol's list has brian and phil
	cs.waitFor(`<li id="` + participantID("phil") + `">phil</li>`)

	// A taken name is taken on every node.
	if r := newBrowser(t, c).post("/join", map[string]any{"username": "brian"}); r.status != http.StatusConflict {
		t.Fatalf("joining as brian on another node: status %d, want 409", r.status)
	}

	// Messages reach everyone, from any node; a session works on every node.
	brian.say("hello from a")
	phil.via(c).say("phil through c")
	for _, s := range []*stream{bs, ps, cs} {
		s.waitFor("<strong>brian</strong>: hello from a")
		s.waitFor("<strong>phil</strong>: phil through c")
	}

	// Brian closes his tab: Phil and Carol each see exactly one "left".
	bs.close()
	ps.waitForWithin(leftLine("brian"), testGrace+time.Second)
	cs.waitForWithin(leftLine("brian"), testGrace+time.Second)
	time.Sleep(testGrace + 3*clusterHeartbeat) // negative check: a second departure, from any node, would come by now
	for name, s := range map[string]*stream{"phil": ps, "carol": cs} {
		if n := s.count(leftLine("brian")); n != 1 {
			t.Errorf("%s saw %d \"brian left\" lines, want 1", name, n)
		}
	}

	// Carol leaves through node a (her stream is on c): one line, her stream ends.
	carol.via(a).post("/leave", nil)
	ps.waitFor(leftLine("carol"))
	if err := cs.waitEnd(waitLong); !errors.Is(err, io.EOF) {
		t.Errorf("carol's stream on c: %v", err)
	}
	time.Sleep(2 * clusterHeartbeat) // negative check: a second departure, from any node, would come by now
	if n := ps.count(leftLine("carol")); n != 1 {
		t.Errorf("phil saw %d \"carol left\" lines, want 1", n)
	}
}

// A reload whose new stream lands on another node within grace announces
// nothing, and tabs of one person on two nodes are one person.
func TestClusterReloadThroughAnotherNode(t *testing.T) {
	// A generous grace: on a loaded machine the new stream must still
	// arrive within it, as a reload does.
	const grace = 2 * time.Second
	node := newCluster(t, lobby.Options{Grace: grace})
	a, b := node("a"), node("b")
	brian, phil := newBrowser(t, a), newBrowser(t, b)
	bs := brian.enter("brian")
	ps := phil.enter("phil")
	bs.waitFor(joinedLine("phil"))

	bs.close()
	bs2 := brian.via(b).openStream()
	bs2.waitFor(`id="participant-list"`)
	time.Sleep(grace + 3*clusterHeartbeat) // negative check: past the grace a started departure would end
	if n := ps.count(leftLine("brian")); n != 0 {
		t.Fatalf("a reload through another node announced %d departures", n)
	}
	if n := ps.count(joinedLine("brian")); n != 0 {
		t.Fatalf("a reload through another node announced brian joining again")
	}
	brian.via(a).say("still here")
	ps.waitFor("<strong>brian</strong>: still here")

	// A second tab on the other node while the first is still open: one
	// person with tabs on two nodes. Both tabs stay open and receive, and
	// closing one of them says nothing.
	bs3 := brian.via(a).openStream()
	bs3.waitFor(`id="participant-list"`)
	phil.say("to both tabs")
	for _, s := range []*stream{bs2, bs3} {
		s.waitFor("<strong>phil</strong>: to both tabs")
	}
	bs2.close()
	time.Sleep(grace + 2*clusterHeartbeat) // negative check: a departure would come at grace
	if n := ps.count(leftLine("brian")) + ps.count(joinedLine("brian")); n != 0 {
		t.Fatalf("a second tab on another node, then closing one, announced %d lines", n)
	}
	// Closing the last tab is one departure, seen once.
	bs3.close()
	ps.waitForWithin(leftLine("brian"), grace+2*time.Second)
	time.Sleep(2 * clusterHeartbeat) // negative check: a second departure, from any node, would come by now
	if n := ps.count(leftLine("brian")); n != 1 {
		t.Fatalf("phil saw %d \"brian left\" lines, want 1", n)
	}
}

// A node that dies without a word: the others announce its participants
// as gone, once, within 3 heartbeats.
func TestClusterLostNode(t *testing.T) {
	node := newCluster(t, lobby.Options{})
	a, b, c := node("a"), node("b"), node("c")
	bs := newBrowser(t, a).enter("brian")
	ps := newBrowser(t, b).enter("phil")
	newBrowser(t, c).enter("carol")
	bs.waitFor(joinedLine("carol"))
	ps.waitFor(joinedLine("carol"))

	killed := time.Now()
	lobby.KillForTest(c)
	for _, s := range []*stream{bs, ps} {
		s.waitForWithin(leftLine("carol"), 3*clusterHeartbeat+time.Second)
	}
	t.Logf("lost node's participant announced gone after %v (heartbeat %v)", time.Since(killed).Round(time.Millisecond), clusterHeartbeat)
	time.Sleep(4 * clusterHeartbeat) // negative check: a second departure, from any node, would come by now
	for name, s := range map[string]*stream{"brian": bs, "phil": ps} {
		if n := s.count(leftLine("carol")); n != 1 {
			t.Errorf("%s saw %d \"carol left\" lines, want 1", name, n)
		}
	}
	// Carol is off the list for a newcomer.
	ds := newBrowser(t, a).enter("dora")
	list := ds.waitFor(`id="participant-list"`)
	if want := participantID("carol"); strings.Contains(list.Text(), want) {
		t.Errorf("the lost node's participant is still listed: %s", list.Text())
	}
}

// NATS restarting (on the same storage) does not end local streams, and
// cross-node delivery comes back.
func TestClusterSurvivesNATSRestart(t *testing.T) {
	dir := t.TempDir()
	ns, err := natscluster.StartServer("127.0.0.1:0", dir)
	if err != nil {
		t.Fatal(err)
	}
	addr := ns.Addr().String()
	restarted := ns
	t.Cleanup(func() { restarted.Shutdown() })
	node := func(id string) *lobby.Server {
		return startServer(t, lobby.Options{NATS: ns.ClientURL(), NodeID: id, Heartbeat: 2 * time.Second, TTL: 20 * time.Second,
			NATSPublishTimeout: time.Second})
	}
	a, b := node("a"), node("b")
	brian, phil := newBrowser(t, a), newBrowser(t, b)
	bs := brian.enter("brian")
	ps := phil.enter("phil")
	bs.waitFor(joinedLine("phil"))

	ns.Shutdown()
	// A line the cluster's log cannot take reaches nobody, not even its
	// own node, and is refused: the page keeps it to send again. The
	// refusal may take the publish timeout, twice the allowed clock skew
	// and the time to settle the outcome (1 + 2 + 2 s here): more than
	// waitLong.
	brian.client.Timeout = 4 * waitLong
	if r := brian.post("/message", map[string]any{"message": "during the gap"}); r.status != http.StatusServiceUnavailable {
		t.Fatalf("a line said while NATS is down: status %d, want 503", r.status)
	}
	restarted, err = natscluster.StartServer(addr, dir)
	if err != nil {
		t.Fatal(err)
	}
	ssetest.Eventually(t, 20*time.Second, "cross-node delivery back", func() bool {
		r := brian.post("/message", map[string]any{"message": "after the restart"})
		return r.status == http.StatusOK && ps.count("after the restart") > 0
	})
	bs.waitFor("after the restart")
	if n := ps.count("during the gap") + bs.count("during the gap"); n != 0 {
		t.Fatalf("a refused line was delivered %d times", n)
	}
	if n := ps.count(leftLine("brian")) + bs.count(leftLine("phil")); n != 0 {
		t.Fatalf("the NATS restart announced %d departures", n)
	}
	ssetest.Eventually(t, 5*time.Second, "the gap counted in /metrics", func() bool {
		return strings.Contains(brian.get("/metrics").body, "lobby_cluster_nats_gaps_total 1")
	})
}

// A node that crashes and comes back under the same id leaves no ghosts:
// the participants it held get a while to reconnect, and those who do not
// are announced gone once.
func TestClusterRestartedNodeLeavesNoGhosts(t *testing.T) {
	// The node must be back before the others find it lost (3 intervals,
	// half a heartbeat each): at the suite's heartbeat, 600 ms, a restart
	// at load 16 took longer.
	const heartbeat = 5 * clusterHeartbeat
	node := newCluster(t, lobby.Options{Heartbeat: heartbeat, TTL: 10 * heartbeat})
	a, c := node("a"), node("c")
	ps := newBrowser(t, a).enter("phil")
	newBrowser(t, c).enter("carol")
	cody := newBrowser(t, c)
	cody.enter("cody")
	ps.waitFor(joinedLine("cody"))

	lobby.KillForTest(c)
	c2 := node("c") // back at once: the others never saw it lost
	// Cody's page retries and reaches the new run; Carol's does not.
	cs := cody.via(c2).openStream()
	cs.waitFor(`id="participant-list"`)
	ps.waitForWithin(leftLine("carol"), 3*heartbeat+2*time.Second)
	time.Sleep(2 * heartbeat) // negative check: a second departure, from any node, would come by now
	if n := ps.count(leftLine("carol")); n != 1 {
		t.Fatalf("phil saw %d \"carol left\" lines, want 1", n)
	}
	if n := ps.count(leftLine("cody")) + ps.count(joinedLine("cody")); n != 1 {
		t.Fatalf("cody's reconnect to the restarted node announced %d extra lines", n-1)
	}
	ds := newBrowser(t, a).enter("dora")
	if list := ds.waitFor(`id="participant-list"`); strings.Contains(list.Text(), participantID("carol")) {
		t.Fatalf("carol is a ghost on the list: %s", list.Text())
	}
}

// The shared state is lost, as a new user would lose it: three nodes, NATS
// embedded in node a without a store directory, a killed and restarted.
// Every node re-asserts its people: nobody can take a name that is still
// present on another node, and nobody is announced twice.
func TestClusterSharedStateLost(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsAddr := ln.Addr().String()
	ln.Close()
	opts := lobby.Options{Heartbeat: clusterHeartbeat, TTL: 10 * clusterHeartbeat}
	withEmbedded := func() lobby.Options {
		o := opts
		o.NATSEmbed, o.NodeID = natsAddr, "a"
		return o
	}
	a := startServer(t, withEmbedded())
	node := func(id string) *lobby.Server {
		o := opts
		o.NATS, o.NodeID = "nats://"+natsAddr, id
		return startServer(t, o)
	}
	b, c := node("b"), node("c")
	phil := newBrowser(t, b)
	ps := phil.enter("phil")
	bs := newBrowser(t, c).enter("brian")
	ps.waitFor(joinedLine("brian"))

	lobby.KillForTest(a)
	a2 := startServer(t, withEmbedded())
	// Pacing: a newcomer on the restarted node tries phil's name, at once
	// and for a few presence intervals: refused every time.
	for end := time.Now().Add(4 * clusterHeartbeat); time.Now().Before(end); time.Sleep(clusterHeartbeat / 4) {
		if r := newBrowser(t, a2).post("/join", map[string]any{"username": "phil"}); r.status == http.StatusOK {
			t.Fatalf("phil's name was given to another session while phil is on node b")
		}
	}
	// Cross-node delivery is back, and nobody was announced again.
	ssetest.Eventually(t, 10*time.Second, "chat across nodes after the restart", func() bool {
		r := phil.post("/message", map[string]any{"message": "after the loss"})
		return r.status == http.StatusOK && bs.count("after the loss") > 0
	})
	time.Sleep(testGrace + 3*clusterHeartbeat) // negative check: a repeated arrival or a departure would come by now
	if n := ps.count(joinedLine("brian")); n != 1 {
		t.Errorf("phil saw brian arrive %d times", n)
	}
	if n := ps.count(leftLine("brian")) + bs.count(leftLine("phil")); n != 0 {
		t.Errorf("losing the shared state announced %d departures", n)
	}
}

// Presence lines go through the cluster's log: a tab whose stream broke
// before a departure and an arrival, and that reconnects through another
// node, is replayed both there, once, in order with the chat around them,
// and gets no new list (it holds the room's state); every other stream
// shows the departure once, although each node decided it.
func TestClusterResumeReplaysPresenceLines(t *testing.T) {
	node := newCluster(t, lobby.Options{})
	a, b, c := node("a"), node("b"), node("c")
	phil, carol, brian := newBrowser(t, a), newBrowser(t, b), newBrowser(t, c)
	ps := phil.enter("phil")
	away := phil.openStream() // phil's second tab, on a: it breaks and comes back through c
	away.waitFor(`id="participant-list"`)
	cs := carol.enter("carol")
	bs := brian.enter("brian")
	for _, s := range []*stream{ps, away, cs} {
		s.waitFor(joinedLine("brian"))
	}
	phil.say("before the break")
	lastID := away.idAfter("before the break")
	away.close()

	carol.via(a).post("/leave", nil) // her stream is on b; a, b and c each decide her departure
	bs.waitFor(leftLine("carol"))    // in the log before the next line
	brian.say("after carol left")
	dave := newBrowser(t, b)
	ds := dave.enter("dave")
	for _, s := range []*stream{ps, bs} {
		s.waitFor(joinedLine("dave"))
	}
	back := phil.via(c).openStreamFrom(lastID)
	back.waitFor(joinedLine("dave"))
	phil.say("after the return")
	back.waitFor("after the return")
	time.Sleep(testGrace + 3*clusterHeartbeat) // negative check: a second departure, from any node, would come by now
	assertLinesOnceInOrder(t, back, leftLine("carol"), "after carol left", joinedLine("dave"), "after the return")
	if n := back.count(`id="participant-list"`) + back.count("before the break"); n != 0 {
		t.Errorf("the stream that came back through c got a new list or an old line:\n%s", back.dump())
	}
	for name, s := range map[string]*stream{"phil": ps, "brian": bs} {
		if n := s.count(leftLine("carol")); n != 1 {
			t.Errorf("%s saw %d \"carol left\" lines, want 1", name, n)
		}
		if n := s.count(joinedLine("dave")); n != 1 {
			t.Errorf("%s saw %d \"dave joined\" lines, want 1", name, n)
		}
	}
	if n := ds.count(joinedLine("dave")); n != 1 {
		t.Errorf("dave saw his own arrival %d times, want 1", n)
	}
}
