package natspresence_test

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/internal/natstest"
	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/natscluster"
	"github.com/sfere-go/sfere/presence"
	"github.com/sfere-go/sfere/presence/natspresence"
)

func TestMain(m *testing.M) { natstest.VerifyTestMain(m) } // goleak, with time for nats-server to stop

const (
	room = "room"
	// interval is the nodes' Interval: a node silent for 3 of them is
	// lost, so it is long enough that a loaded machine (a 2-core one
	// running the race detector beside other work) does not stall a
	// live node's messages that long.
	interval = 200 * time.Millisecond
	grace    = 300 * time.Millisecond
	// claimLife is the nodes' ClaimTTL: short, so that the tests that
	// outwait it are quick, and longer than 3 intervals as it must be.
	claimLife = 6 * interval
	// waitLong bounds a wait for what must come: generous, a test that
	// passes waits far less.
	waitLong = 20 * time.Second
)

func renderSnapshot(ms []presence.Member) []sfere.Effect {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return []sfere.Effect{sfere.PatchElements(`<p id="snapshot" data-ids="` + strings.Join(ids, ",") + `"></p>`)}
}

func renderDiff(d presence.Diff) []sfere.Effect {
	var fx []sfere.Effect
	for _, l := range d.Leaves {
		fx = append(fx, sfere.PatchElements(`<p id="leave" data-id="`+l.ID+`" data-reason="`+l.Reason.String()+`"></p>`))
	}
	for _, j := range d.Joins {
		back := ""
		if j.Back {
			back = ` data-back="true"`
		}
		fx = append(fx, sfere.PatchElements(`<p id="join" data-id="`+j.ID+`"`+back+`></p>`))
	}
	return fx
}

// node is one process of the cluster: its NATS connection, cluster node,
// hub, tracker and HTTP server.
type node struct {
	t       *testing.T
	nc      *nats.Conn
	cnode   *natscluster.Node
	hub     *sfere.Hub
	tracker *presence.Tracker
	srv     *httptest.Server
	lost    chan natscluster.Lost // the node's decisions, as OnNodeLost tells them
}

// nodeOptions are a test node's: its cluster node's Interval and
// Replicas, its room's ClaimTTL. Interval zero means the tests' interval,
// with claimLife unless ClaimTTL is set.
type nodeOptions struct {
	Interval time.Duration
	Replicas int
	ClaimTTL time.Duration
	// OnNodeLost, if set, is called with the node's decisions (after
	// they are sent on the node's lost channel).
	OnNodeLost func(natscluster.Lost)
	// History, if set, is the size of the node's history: the cluster
	// keeps its event log, and the room's changes go through it.
	History int
}

func startNATS(t *testing.T, addr string) *natscluster.Server {
	t.Helper()
	ns, err := natscluster.StartServer(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func startNode(t *testing.T, url, id string) *node {
	t.Helper()
	return startNodeResume(t, url, id, 0)
}

// startNodeResume is startNode with a resume window.
func startNodeResume(t *testing.T, url, id string, resume time.Duration) *node {
	t.Helper()
	return startNodeWith(t, url, id, resume, nodeOptions{})
}

// startNodeWith is startNodeResume with the cluster's options: NodeID is
// id, and Interval and ClaimTTL are the tests' (interval, claimLife)
// unless Interval is set. url may list several servers.
func startNodeWith(t *testing.T, url, id string, resume time.Duration, opts nodeOptions) *node {
	t.Helper()
	copts := []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}
	if opts.History > 0 {
		copts = append(copts, nats.ReconnectBufSize(-1)) // natscluster.ErrReconnectBuffer
	}
	nc, err := nats.Connect(url, copts...)
	if err != nil {
		t.Fatal(err)
	}
	return startNodeResumeOnConn(t, nc, id, resume, opts)
}

// startNodeOnConn is startNodeWith on a connection the test made (the
// node closes it).
func startNodeOnConn(t *testing.T, nc *nats.Conn, id string, opts nodeOptions) *node {
	t.Helper()
	return startNodeResumeOnConn(t, nc, id, 0, opts)
}

func startNodeResumeOnConn(t *testing.T, nc *nats.Conn, id string, resume time.Duration, opts nodeOptions) *node {
	t.Helper()
	n := &node{t: t, nc: nc, lost: make(chan natscluster.Lost, 16)}
	if opts.Interval == 0 {
		opts.Interval, opts.ClaimTTL = interval, cmp.Or(opts.ClaimTTL, claimLife)
	}
	var err error
	n.cnode, err = natscluster.New(nc, sfere.NewMemoryStore(sfere.MemoryOptions{}), natscluster.Options{
		NodeID: id, Interval: opts.Interval, Replicas: opts.Replicas,
		Hub: sfere.HubOptions{History: sfere.HistoryOptions{Size: opts.History}}, AppKinds: []string{natspresence.Kind(room)},
		OnNodeLost: func(l natscluster.Lost) {
			select {
			case n.lost <- l:
			default:
			}
			if opts.OnNodeLost != nil {
				opts.OnNodeLost(l)
			}
		},
	})
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	cl, err := natspresence.New(t.Context(), n.cnode, room, natspresence.Options{ClaimTTL: opts.ClaimTTL})
	if err != nil {
		n.cnode.Close()
		nc.Close()
		t.Fatal(err)
	}
	n.hub = n.cnode.Hub()
	tr, err := presence.New(n.hub, presence.Options{Room: room, Grace: grace, Window: 20 * time.Millisecond,
		Resume: resume, Snapshot: renderSnapshot, Diff: renderDiff, Cluster: cl})
	if err != nil {
		t.Fatal(err)
	}
	n.tracker = tr
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := tr.Detach(w, r, r.URL.Query().Get("owner")); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
		}
	}))
	t.Cleanup(n.stop)
	return n
}

// stop shuts the node down as a process would on SIGTERM.
func (n *node) stop() {
	n.tracker.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n.hub.Shutdown(ctx)
	n.srv.Close()
	n.cnode.Close()
	n.nc.Close()
}

// crash stops the node without a word to the others: its NATS connection
// drops first.
func (n *node) crash() { n.nc.Close() }

func (n *node) claim(person, owner string) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	_, err := n.tracker.Claim(ctx, presence.Claim{Person: person, Owner: owner})
	return err
}

// tab is one stream read over TCP by the test kit.
type tab struct {
	t *testing.T
	*ssetest.Client
}

func (n *node) open(owner string) *tab {
	n.t.Helper()
	c := ssetest.Open(n.t, n.srv.Listener.Addr().String(), ssetest.Request{Method: http.MethodPost, Target: "/?owner=" + owner})
	if resp, err := c.Head(waitLong); err != nil || resp.StatusCode != http.StatusOK {
		n.t.Fatalf("open stream of %s: %v %v", owner, resp, err)
	}
	tb := &tab{t: n.t, Client: c}
	tb.waitFor(`id="snapshot"`) // later changes come as diffs
	return tb
}

// elements returns the elements of every element patch received so far,
// one entry a data line.
func (tb *tab) elements() []string {
	var out []string
	for _, e := range tb.Events() {
		for _, d := range e.Data {
			if el, ok := strings.CutPrefix(d, "elements "); ok {
				out = append(out, el)
			}
		}
	}
	return out
}

func (tb *tab) count(text string) int {
	n := 0
	for _, e := range tb.elements() {
		n += strings.Count(e, text)
	}
	return n
}

// waitFor waits until an event containing text arrived, anywhere in the
// stream.
func (tb *tab) waitFor(text string) {
	tb.t.Helper()
	tb.WaitSeen(waitLong, ssetest.Containing(text))
}

// waitShown waits until the stream shows exactly ids (its snapshot, then
// its diffs).
func (tb *tab) waitShown(ids ...string) {
	tb.t.Helper()
	ssetest.Eventually(tb.t, waitLong, "the stream to show "+strings.Join(ids, ", "), func() bool {
		shown := tb.replay(tb.t, false)
		if len(shown) != len(ids) {
			return false
		}
		for _, id := range ids {
			if !shown[id] {
				return false
			}
		}
		return true
	})
}

func (tb *tab) isEnded() bool {
	select {
	case <-tb.Done():
		return true
	default:
		return false
	}
}

func left(id, reason string) string { return `data-id="` + id + `" data-reason="` + reason + `"` }
func joined(id string) string       { return `id="join" data-id="` + id + `"` }

// A person with tabs on two nodes is one person: one arrival, nothing when
// one tab closes, one departure (on every node) when the last one does.
func TestTabsOnTwoNodesAreOnePerson(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	defer ns.Shutdown()
	a, b, c := startNode(t, ns.ClientURL(), "a"), startNode(t, ns.ClientURL(), "b"), startNode(t, ns.ClientURL(), "c")
	if err := c.claim("phil", "s2"); err != nil {
		t.Fatal(err)
	}
	ps := c.open("s2")
	if err := a.claim("brian", "s1"); err != nil {
		t.Fatal(err)
	}
	ta := a.open("s1")
	ps.waitFor(joined("brian"))
	tb := b.open("s1") // the same session through node b
	tb.waitShown("phil", "brian")
	ta.waitShown("phil", "brian")

	// Taken on every node.
	if err := b.claim("brian", "s9"); !errors.Is(err, presence.ErrTaken) {
		t.Errorf("brian claimed through b by another owner: %v", err)
	}

	ta.Close()
	time.Sleep(grace + 3*interval) // negative check: a departure would come at grace, from any node
	if n := ps.count(left("brian", "closed")); n != 0 {
		t.Fatalf("closing one of two tabs (on two nodes) announced a departure")
	}
	closed := time.Now()
	tb.Close()
	ps.waitFor(left("brian", "closed"))
	t.Logf("last tab closed on node b -> departure on node c's stream after %v (grace %v)", time.Since(closed).Round(time.Millisecond), grace)
	time.Sleep(grace + 3*interval) // negative check: a second departure, from any node, would come by now
	if n := ps.count(`data-id="brian"`); n != 2 {
		t.Errorf("phil saw %d events about brian, want 2 (one arrival, one departure)", n)
	}
	if n := ps.count(joined("brian")); n != 1 {
		t.Errorf("phil saw brian arrive %d times", n)
	}
	ssetest.Eventually(t, waitLong, "the name is free again", func() bool { return b.claim("brian", "s9") == nil })
}

// A node that stops answering: its people depart once on every other
// node, with ReasonNodeLost, within a few intervals; a person it shared
// with a live node stays.
func TestLostNodesPeopleDepartOnce(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	defer ns.Shutdown()
	a, b, c := startNode(t, ns.ClientURL(), "a"), startNode(t, ns.ClientURL(), "b"), startNode(t, ns.ClientURL(), "c")
	if err := a.claim("phil", "s2"); err != nil {
		t.Fatal(err)
	}
	pa := a.open("s2")
	pb := b.open("s2") // phil also has a tab on b
	if err := c.claim("carol", "s3"); err != nil {
		t.Fatal(err)
	}
	c.open("s3")
	if err := c.claim("dora", "s4"); err != nil {
		t.Fatal(err)
	}
	c.open("s4")
	b.open("s4") // dora also has a tab on b
	pa.waitFor(joined("carol"))
	pb.waitFor("dora") // in its snapshot

	crashed := time.Now()
	c.crash()
	for _, tb := range []*tab{pa, pb} {
		tb.waitFor(left("carol", "node-lost"))
	}
	t.Logf("lost node's person departed after %v (interval %v)", time.Since(crashed).Round(time.Millisecond), interval)
	time.Sleep(grace + 5*interval) // negative check: a second departure, from any node, would come by now
	for _, tb := range []*tab{pa, pb} {
		if n := tb.count(`data-id="carol" data-reason`); n != 1 {
			t.Errorf("%d departures of carol, want 1", n)
		}
		if n := tb.count(`data-id="dora" data-reason`); n != 0 {
			t.Errorf("dora, still on b, departed %d times", n)
		}
	}
	if got := names(a.tracker.Members()); got != "phil,dora" {
		t.Errorf("a's members = %s", got)
	}
}

// Leave through one node ends the person's tabs on every node and departs
// once everywhere.
func TestLeaveThroughAnotherNode(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	defer ns.Shutdown()
	a, b := startNode(t, ns.ClientURL(), "a"), startNode(t, ns.ClientURL(), "b")
	if err := a.claim("phil", "s2"); err != nil {
		t.Fatal(err)
	}
	ps := a.open("s2")
	if err := b.claim("carol", "s3"); err != nil {
		t.Fatal(err)
	}
	cs := b.open("s3")
	ps.waitFor(joined("carol"))
	if _, err := a.tracker.Leave(t.Context(), "s3"); err != nil {
		t.Fatal(err)
	}
	ps.waitFor(left("carol", "left"))
	ssetest.Eventually(t, waitLong, "carol's tab on b ends", cs.isEnded)
	time.Sleep(grace + 4*interval) // negative check: a second departure, from any node, would come by now
	if n := ps.count(`data-id="carol"`); n != 2 {
		t.Errorf("phil saw %d events about carol, want 2", n)
	}
}

// The shared state is lost (the NATS server, without storage, restarts):
// every node re-asserts its people, so no name is held twice and no one is
// announced twice.
func TestSharedStateLostIsRebuilt(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	addr := ns.Addr().String()
	restarted := ns
	defer func() { restarted.Shutdown() }()
	a, b := startNode(t, ns.ClientURL(), "a"), startNode(t, ns.ClientURL(), "b")
	if err := b.claim("phil", "s2"); err != nil {
		t.Fatal(err)
	}
	ps := b.open("s2")
	if err := a.claim("brian", "s1"); err != nil {
		t.Fatal(err)
	}
	bs := a.open("s1")
	ps.waitFor(joined("brian"))

	ns.Shutdown()
	restarted = startNATS(t, addr)
	ssetest.Eventually(t, waitLong, "both nodes reconnected", func() bool { return a.nc.IsConnected() && b.nc.IsConnected() })
	// A newcomer on a tries phil's name at once: refused.
	if err := a.claim("phil", "s9"); !errors.Is(err, presence.ErrTaken) {
		t.Fatalf("phil's name given to another owner after the state was lost: %v", err)
	}
	// Within a few intervals phil's claim is back in the new bucket:
	// even a node that never saw phil refuses the name. (Waiting for a's
	// Lookup was not enough: a knows phil from b's news, and at load 16
	// b's re-assertion was refused by a JetStream still starting; a new
	// node that heard no news of phil within its warm-up got the name.)
	js, err := jetstream.New(a.nc)
	if err != nil {
		t.Fatal(err)
	}
	ssetest.Eventually(t, waitLong, "phil's claim re-asserted in the new bucket", func() bool {
		return bucketOwner(js, "phil") == "s2"
	})
	c := startNode(t, restarted.ClientURL(), "c")
	if err := c.claim("phil", "s9"); !errors.Is(err, presence.ErrTaken) {
		t.Errorf("a new node gave phil's name to another owner: %v", err)
	}
	time.Sleep(grace + 4*interval) // negative check: a departure, from any node, would come by now
	for who, tb := range map[string]*tab{"brian": bs, "phil": ps} {
		if n := tb.count(`data-reason`); n != 0 {
			t.Errorf("%s saw %d departures after the state was lost", who, n)
		}
	}
	if n := ps.count(joined("brian")); n != 1 {
		t.Errorf("phil saw brian arrive %d times", n)
	}
}

func names(ms []presence.Member) string {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return strings.Join(ids, ",")
}

var (
	snapshotIDs = regexp.MustCompile(`data-ids="([^"]*)"`)
	eventID     = regexp.MustCompile(`id="(join|leave)" data-id="([^"]*)"`)
)

// replay is what a stream shows after its snapshot and diffs; it fails
// the test if a diff joins someone already shown or drops someone not
// shown.
func (tb *tab) replay(t *testing.T, strict bool) map[string]bool {
	events := tb.elements()
	shown := map[string]bool{}
	for _, e := range events {
		if m := snapshotIDs.FindStringSubmatch(e); m != nil {
			for _, id := range strings.Split(m[1], ",") {
				if id != "" {
					shown[id] = true
				}
			}
			continue
		}
		m := eventID.FindStringSubmatch(e)
		if m == nil {
			continue
		}
		switch id := m[2]; {
		case m[1] == "join" && shown[id], m[1] == "leave" && !shown[id]:
			if strict {
				t.Errorf("%s of %s does not fit the stream's view", m[1], id)
			}
		case m[1] == "join":
			shown[id] = true
		default:
			delete(shown, id)
		}
	}
	return shown
}

// People arriving at once on three nodes: every stream, on every node,
// shows each of them exactly once, its snapshot never crossing a diff.
func TestConcurrentArrivalsAcrossNodesConsistent(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	defer ns.Shutdown()
	nodes := []*node{startNode(t, ns.ClientURL(), "a"), startNode(t, ns.ClientURL(), "b"), startNode(t, ns.ClientURL(), "c")}
	const n = 30
	tabs := make([]*tab, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			nd := nodes[i%len(nodes)]
			id := string(rune('A'+i/10)) + string(rune('a'+i%10))
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
	for i, tb := range tabs {
		ssetest.Eventually(t, waitLong, "every stream shows everyone", func() bool { return len(tb.replay(t, false)) == n })
		if got := tb.replay(t, true); len(got) != n {
			t.Errorf("stream %d shows %d people, want %d", i, len(got), n)
		}
	}
	for _, nd := range nodes {
		if got := len(nd.tracker.Members()); got != n {
			t.Errorf("a node's members: %d, want %d", got, n)
		}
	}
}
