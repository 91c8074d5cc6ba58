package natscluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/internal/natstest"
	"github.com/sfere-go/sfere/internal/ssetest"
)

func TestMain(m *testing.M) { natstest.VerifyTestMain(m) } // goleak, with time for nats-server to stop

// interval is the test nodes' presence interval: a node silent for three
// of them is lost, so it is long enough that a loaded machine does not
// lose a live node.
const interval = 250 * time.Millisecond

// ceiling bounds every wait for an event: generous, since a wait ends as
// soon as its event happens and only a bug lets it run out.
const ceiling = 20 * time.Second

// testNode is one lobby node: hub, HTTP server and cluster membership.
type testNode struct {
	t     *testing.T
	name  string
	hub   *sfere.Hub
	node  *Node
	nc    *nats.Conn
	srv   *httptest.Server
	evMu  sync.Mutex
	evs   []sfere.Eviction
	lost  chan Lost
	close sync.Once
}

func startNATS(t *testing.T) *Server {
	t.Helper()
	s, err := StartServer("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func newTestNode(t *testing.T, ns *Server, name string) *testNode {
	t.Helper()
	return newTestNodeWith(t, ns, name, Options{Interval: interval})
}

// newTestNodeWith starts a node with opts, whose NodeID, OnNodeLost and
// store it sets.
func newTestNodeWith(t *testing.T, ns *Server, name string, opts Options) *testNode {
	t.Helper()
	return newTestNodeOn(t, ns.ClientURL(), name, opts)
}

// newTestNodeOn is newTestNodeWith on the NATS servers of urls (comma
// separated).
func newTestNodeOn(t *testing.T, urls, name string, opts Options) *testNode {
	t.Helper()
	tn := &testNode{t: t, name: name, lost: make(chan Lost, 16)}
	store := sfere.NewMemoryStore(sfere.MemoryOptions{OnEvict: func(ev sfere.Eviction) {
		tn.evMu.Lock()
		tn.evs = append(tn.evs, ev)
		tn.evMu.Unlock()
	}})
	nc, err := nats.Connect(urls, nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1), nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	tn.nc = nc
	opts.NodeID = name
	opts.OnNodeLost = func(l Lost) { tn.lost <- l }
	tn.node, err = New(nc, store, opts)
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	tn.hub = tn.node.Hub()
	tn.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tn.hub.Serve(w, r, sfere.NewKey(sfere.DefaultScope, "lobby", r.URL.Query().Get("id")), sfere.Comment("hello "+name))
	}))
	t.Cleanup(tn.stop)
	return tn
}

// stop shuts the node down in reverse order of its start.
func (tn *testNode) stop() {
	tn.close.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), ceiling)
		defer cancel()
		tn.hub.Shutdown(ctx)
		tn.srv.Close()
		tn.node.Close()
		tn.nc.Close()
	})
}

// kill stops the node as a crash would: no goodbye to the cluster.
func (tn *testNode) kill() {
	tn.close.Do(func() {
		tn.node.stopRunning()
		tn.nc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), ceiling)
		defer cancel()
		tn.srv.CloseClientConnections()
		tn.hub.Shutdown(ctx)
		tn.srv.Close()
	})
}

func (tn *testNode) evictions() []sfere.Eviction {
	tn.evMu.Lock()
	defer tn.evMu.Unlock()
	return append([]sfere.Eviction(nil), tn.evs...)
}

// client is a browser's stream on one node, read by the test kit.
type client struct{ *ssetest.Client }

// connect opens a stream and waits for its greeting.
func (tn *testNode) connect(t *testing.T, id string) *client {
	t.Helper()
	c := tn.open(t, id)
	c.wait(t, "hello "+tn.name)
	return c
}

// open opens a stream.
func (tn *testNode) open(t *testing.T, id string) *client {
	t.Helper()
	return &client{ssetest.Open(t, tn.srv.Listener.Addr().String(), ssetest.DatastarPost("/?id="+url.QueryEscape(id), "{}"))}
}

// wait waits for an event containing want.
func (c *client) wait(t *testing.T, want string) {
	t.Helper()
	c.Wait(ceiling, ssetest.Containing(want))
}

// waitEnd waits for the server to end the stream.
func (c *client) waitEnd(t *testing.T) {
	t.Helper()
	c.WaitEnd(ceiling)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ssetest.Eventually(t, ceiling, what, cond)
}

func lobbyKey(id string) sfere.Key { return sfere.NewKey(sfere.DefaultScope, "lobby", id) }

func threeNodes(t *testing.T) (a, b, c *testNode) {
	ns := startNATS(t)
	a, b, c = newTestNode(t, ns, "a"), newTestNode(t, ns, "b"), newTestNode(t, ns, "c")
	for _, n := range []*testNode{a, b, c} {
		waitFor(t, n.name+" sees two peers", func() bool { return len(n.node.Peers()) == 2 })
	}
	return a, b, c
}

func TestBroadcastReachesEveryNodeOnce(t *testing.T) {
	a, b, c := threeNodes(t)
	brian, phil, carol := a.connect(t, "brian"), b.connect(t, "phil"), c.connect(t, "carol")
	for _, n := range []*testNode{a, b, c} {
		waitFor(t, "three streams seen from "+n.name, func() bool { return n.node.Count(sfere.InCategory("lobby")) == 3 })
	}
	for i := range 3 {
		if _, err := a.node.Broadcast(sfere.InCategory("lobby"), lobbyKey("phil"), sfere.Comment(fmt.Sprint("msg ", i))); err != nil {
			t.Fatal(err)
		}
	}
	// NATS keeps the order of one publisher's messages, so "end" from a
	// comes after a's three.
	if _, err := a.node.Broadcast(sfere.InCategory("lobby"), nil, sfere.Comment("end")); err != nil {
		t.Fatal(err)
	}
	// Each stream sees each message exactly once, and phil (excluded) none of the three.
	for name, cl := range map[string]*client{"brian": brian, "phil": phil, "carol": carol} {
		var got []string
		cl.waitCollect(t, ": end", &got)
		want := []string{": msg 0", ": msg 1", ": msg 2", ": end"}
		if name == "phil" {
			want = []string{": end"}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s got %q, want %q", name, got, want)
		}
	}
	if _, err := b.node.Broadcast(sfere.All, nil, sfere.Comment("from b")); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*client{brian, phil, carol} {
		cl.wait(t, ": from b")
	}
	if _, err := a.node.Broadcast(sfere.All, matcherFunc(nil), sfere.Comment("x")); !errors.Is(err, ErrUnsupportedMatcher) {
		t.Fatalf("a custom matcher: %v", err)
	}
}

type matcherFunc func(sfere.Key) bool

func (f matcherFunc) Match(k sfere.Key) bool { return f(k) }

// waitCollect gathers the comments "msg…" and "end" until one is last.
func (c *client) waitCollect(t *testing.T, last string, got *[]string) {
	t.Helper()
	end := c.Wait(ceiling, ssetest.CommentIs(strings.TrimPrefix(last, ": ")))
	for _, e := range c.Events()[:end.Seq+1] {
		if e.IsComment && (strings.HasPrefix(e.Comment, "msg") || e.Comment == "end") {
			*got = append(*got, ": "+e.Comment)
		}
	}
}

func TestSendFindsTheStreamOnAnyNode(t *testing.T) {
	a, _, c := threeNodes(t)
	carol := c.connect(t, "carol")
	waitFor(t, "a sees carol", func() bool { return a.node.Count(lobbyKey("carol").Pattern()) == 1 })
	res, err := a.node.Send(lobbyKey("carol"), sfere.Comment("for carol"))
	if err != nil || res.Delivered != 1 {
		t.Fatalf("Send = %+v, %v", res, err)
	}
	carol.wait(t, ": for carol")
	if _, err := a.node.Send(lobbyKey("nobody"), sfere.Comment("?")); !errors.Is(err, sfere.ErrNoStream) {
		t.Fatalf("Send to nobody: %v, want ErrNoStream", err)
	}
	// Any key maps to its own valid subject: dots, NATS wildcards, spaces, non-ASCII.
	odd := []string{"a.b", "*", ">", "x y", "Jürgen", "a.*.>"}
	clients := map[string]*client{}
	for _, id := range odd {
		clients[id] = c.connect(t, id)
	}
	waitFor(t, "a sees the odd keys", func() bool { return a.node.Count(sfere.All) == 1+len(odd) })
	for _, id := range odd {
		if _, err := a.node.Send(lobbyKey(id), sfere.Comment("for "+id)); err != nil {
			t.Fatalf("Send to %q: %v", id, err)
		}
	}
	for _, id := range odd {
		clients[id].wait(t, ": for "+id)
	}
	if _, err := a.node.Send(lobbyKey("a"), sfere.Comment("?")); !errors.Is(err, sfere.ErrNoStream) {
		t.Fatalf("Send to a (a prefix of a.b): %v, want ErrNoStream", err)
	}
}

// A person who reconnects through another node ends up there only.
func TestKeyOpenedElsewhereReplacesTheOldStream(t *testing.T) {
	a, b, _ := threeNodes(t)
	first := a.connect(t, "brian")
	waitFor(t, "b sees brian", func() bool { return b.node.Count(lobbyKey("brian").Pattern()) == 1 })
	second := b.connect(t, "brian")
	first.waitEnd(t)
	waitFor(t, "a's stream evicted", func() bool { return len(a.evictions()) == 1 })
	if ev := a.evictions()[0]; ev.Cause != sfere.CauseReplaced || !errors.Is(ev.Err, ErrMoved) {
		t.Fatalf("a's eviction = %+v, want replaced (moved)", ev)
	}
	waitFor(t, "brian only on b", func() bool {
		return a.hub.Count(sfere.All) == 0 && b.hub.Count(sfere.All) == 1 && a.node.Count(sfere.All) == 1
	})
	if _, err := a.node.Send(lobbyKey("brian"), sfere.Comment("moved")); err != nil {
		t.Fatal(err)
	}
	second.wait(t, ": moved")
	if len(b.evictions()) != 0 {
		t.Fatalf("b evicted %+v", b.evictions())
	}
}

// A node that dies without a word is reported lost by the survivors within
// 3 intervals, once, with exactly one announcer.
func TestLostNodeIsReportedOnce(t *testing.T) {
	a, b, c := threeNodes(t)
	a.connect(t, "brian")
	b.connect(t, "phil")
	c.connect(t, "carol")
	waitFor(t, "a sees everyone", func() bool { return a.node.Count(sfere.All) == 3 })
	waitFor(t, "b sees everyone", func() bool { return b.node.Count(sfere.All) == 3 })
	killed := time.Now()
	c.kill()
	var got []Lost
	for _, n := range []*testNode{a, b} {
		select {
		case l := <-n.lost:
			got = append(got, l)
		case <-time.After(ceiling):
			t.Fatalf("%s never reported c lost", n.name)
		}
	}
	t.Logf("lost node reported after %v", time.Since(killed))
	announcers := 0
	for _, l := range got {
		if l.Node != "c" || len(l.Evictions) != 1 || l.Evictions[0].Key != lobbyKey("carol") || l.Evictions[0].Cause != sfere.CauseNodeLost {
			t.Fatalf("lost = %+v", l)
		}
		if l.Announcer {
			announcers++
		}
	}
	if announcers != 1 {
		t.Fatalf("%d announcers, want exactly 1", announcers)
	}
	if n := a.node.Count(sfere.All); n != 2 {
		t.Fatalf("a counts %d streams after c was lost, want 2", n)
	}
	select {
	case l := <-a.lost:
		t.Fatalf("second report %+v", l)
	case <-time.After(5 * interval):
	}
}

func TestDeliveryResumesAfterNATSRestart(t *testing.T) {
	ns := startNATS(t)
	addr := ns.Addr().String()
	a, b := newTestNode(t, ns, "a"), newTestNode(t, ns, "b")
	waitFor(t, "a sees b", func() bool { return len(a.node.Peers()) == 1 })
	phil := b.connect(t, "phil")
	ns.Shutdown()
	// Local streams survive the gap.
	if _, err := b.hub.Send(lobbyKey("phil"), sfere.Comment("local during gap")); err != nil {
		t.Fatal(err)
	}
	phil.wait(t, ": local during gap")
	ns2, err := StartServer(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns2.Shutdown)
	waitFor(t, "both reconnected", func() bool { return a.nc.IsConnected() && b.nc.IsConnected() })
	// A reconnected client sends its subscriptions again, but the new
	// server may not have read them yet: a round trip on b's connection
	// makes sure b takes broadcasts again before a sends one.
	if err := b.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a sees phil again", func() bool { return a.node.Count(sfere.All) == 1 })
	if _, err := a.node.Broadcast(sfere.All, nil, sfere.Comment("after restart")); err != nil {
		t.Fatal(err)
	}
	phil.wait(t, ": after restart")
	waitFor(t, "the gap counted", func() bool { return a.node.Stats().Gaps >= 1 && a.node.Stats().GapTime > 0 })
}
