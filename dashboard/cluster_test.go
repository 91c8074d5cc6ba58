package dashboard_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/dashboard"
	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/natscluster"
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
