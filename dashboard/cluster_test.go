package dashboard_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/dashboard"
	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/natscluster"
	"github.com/sfere-go/sfere/presence"
	"github.com/sfere-go/sfere/presence/natspresence"
)

// The Cluster pane of node a shows its id, its peer b, and the streams of
// every node (b's stream among them).
func TestClusterPaneShowsPeersAndStreams(t *testing.T) {
	ns, err := natscluster.StartServer("127.0.0.1:0", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	node := func(id string) (*natscluster.Node, string) {
		t.Helper()
		nc, err := nats.Connect(ns.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		n, err := natscluster.New(nc, sfere.NewMemoryStore(sfere.MemoryOptions{}), natscluster.Options{NodeID: id, Interval: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("POST /sse", func(w http.ResponseWriter, r *http.Request) {
			_ = n.Hub().Serve(w, r, sfere.NewKey(sfere.DefaultScope, "lobby", r.URL.Query().Get("id")))
		})
		if id == "a" {
			d, err := dashboard.New(n.Hub(), dashboard.Options{Node: n, NATS: nc, Interval: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			mux.Handle("/debug/dashboard/", d)
		}
		srv := httptest.NewServer(mux)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = n.Hub().Shutdown(ctx)
			srv.Close()
			n.Close()
			nc.Close()
		})
		return n, srv.Listener.Addr().String()
	}
	_, addrA := node("a")
	_, addrB := node("b")
	ssetest.Open(t, addrB, ssetest.DatastarPost("/sse?id=phil", "{}")).WaitHead(wait)

	sig := url.QueryEscape(`{"conn":"0123456789abcdef0123456789abcdef"}`)
	c := ssetest.Open(t, addrA, ssetest.Request{Target: "/debug/dashboard/stream?datastar=" + sig})
	ev := c.Wait(wait, ssetest.Where("node a sees peer b and b's stream", func(e ssetest.Event) bool {
		return strings.Contains(e.Text(), "peers: <code>b</code>") && strings.Contains(e.Text(), "2 streams on every node")
	}))
	for _, want := range []string{"Node <code>a</code>", "<td>status</td><td>CONNECTED</td>", "<td>server</td><td>nats://127.0.0.1:"} {
		if !strings.Contains(ev.Text(), want) {
			t.Errorf("the Cluster pane lacks %q:\n%s", want, ev.Text())
		}
	}
	if !strings.Contains(ev.Text(), `id="dash-streams-now">0<`) {
		t.Errorf("node a counts a stream of its own:\n%s", ev.Text())
	}
}

// With a history, the Cluster pane shows the event log: its stream,
// replicas, leader, sequences, how far this node applied it, its gaps;
// with a presence cluster, the claims this node asserts.
func TestClusterPaneShowsTheEventLogAndClaims(t *testing.T) {
	ns, err := natscluster.StartServer("127.0.0.1:0", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL(), nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	n, err := natscluster.New(nc, sfere.NewMemoryStore(sfere.MemoryOptions{}), natscluster.Options{NodeID: "a",
		Interval: 200 * time.Millisecond, Hub: sfere.HubOptions{History: sfere.HistoryOptions{Size: 16}}})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := natspresence.New(t.Context(), n, "room", natspresence.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tracker, err := presence.New(n.Hub(), presence.Options{Room: "room", Cluster: pc,
		Snapshot: func([]presence.Member) []sfere.Effect { return []sfere.Effect{sfere.Comment("snapshot")} },
		Diff:     func(presence.Diff) []sfere.Effect { return []sfere.Effect{sfere.Comment("diff")} },
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := dashboard.New(n.Hub(), dashboard.Options{Node: n, NATS: nc, Interval: 100 * time.Millisecond,
		Trackers: []*presence.Tracker{tracker}, Presence: []*natspresence.Cluster{pc}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d)
	t.Cleanup(func() {
		tracker.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.Hub().Shutdown(ctx)
		srv.Close()
		n.Close()
		nc.Close()
	})
	for i := range 2 {
		if _, err := n.Broadcast(sfere.InCategory("lobby"), nil, sfere.PatchElements(`<p id="p">`+strconv.Itoa(i)+`</p>`)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := tracker.Claim(ctx, presence.Claim{Person: "brian", Owner: "owner"}); err != nil {
		t.Fatal(err)
	}
	sig := url.QueryEscape(`{"conn":"0123456789abcdef0123456789abcdef"}`)
	c := ssetest.Open(t, srv.Listener.Addr().String(), ssetest.Request{Target: "/debug/dashboard/stream?datastar=" + sig})
	ev := c.Wait(wait, ssetest.Where("the log applied to 2", func(e ssetest.Event) bool {
		return strings.Contains(e.Text(), "<td>applied here</td><td>2</td>")
	}))
	for _, want := range []string{"Event log (JetStream)", "<td>stream</td><td>SFERE_EVENTS (epoch ", "<td>replicas</td><td>1</td>",
		"<td>sequences held</td><td>1 to 2</td>", "<td>behind (to apply here)</td><td>0</td>",
		"<td>gaps (consumer skipped events)</td><td>0</td>", "<td>events lost before applied here</td><td>0</td>",
		`<td>claims asserted</td><td class="n">1 (0 of people away)</td>`} {
		if !strings.Contains(ev.Text(), want) {
			t.Errorf("the Cluster pane lacks %q:\n%s", want, ev.Text())
		}
	}
	if !regexp.MustCompile(`<td>leader</td><td>[^<]+</td>`).MatchString(ev.Text()) {
		t.Errorf("no leader shown:\n%s", ev.Text())
	}
	// NATS gone: the pane says the log cannot be read, and keeps updating.
	ns.Shutdown()
	c.Wait(wait, ssetest.Containing("The log's state could not be read: natscluster: event log state: "))
}
