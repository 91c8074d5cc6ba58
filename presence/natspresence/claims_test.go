package natspresence_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/natscluster"
	"github.com/sfere-go/sfere/presence"
	"github.com/sfere-go/sfere/presence/natspresence"
)

// Claims counts the claims a node asserts: a person claimed and held
// here, then away within its resume window, then none once it ran out.
func TestClaimsCountsWhatTheNodeAsserts(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	cnode, err := natscluster.New(nc, sfere.NewMemoryStore(sfere.MemoryOptions{}), natscluster.Options{NodeID: "a", Interval: interval})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := natspresence.New(t.Context(), cnode, room, natspresence.Options{ClaimTTL: claimLife})
	if err != nil {
		t.Fatal(err)
	}
	hub := cnode.Hub()
	const resume = 500 * time.Millisecond
	tr, err := presence.New(hub, presence.Options{Room: room, Grace: -1, Resume: resume,
		Snapshot: renderSnapshot, Diff: renderDiff, Cluster: cl})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := tr.Detach(w, r, r.URL.Query().Get("owner")); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
		}
	}))
	t.Cleanup(func() {
		tr.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hub.Shutdown(ctx)
		srv.Close()
		cnode.Close()
		nc.Close()
	})
	if n, away := cl.Claims(); n != 0 || away != 0 {
		t.Fatalf("Claims() = %d, %d before any claim", n, away)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if _, err := tr.Claim(ctx, presence.Claim{Person: "brian", Owner: "s1"}); err != nil {
		t.Fatal(err)
	}
	if n, away := cl.Claims(); n != 1 || away != 0 {
		t.Fatalf("Claims() = %d, %d after brian's claim, want 1, 0", n, away)
	}
	c := ssetest.Open(t, srv.Listener.Addr().String(), ssetest.Request{Method: http.MethodPost, Target: "/?owner=s1"})
	if resp, err := c.Head(waitLong); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("open brian's stream: %v %v", resp, err)
	}
	ssetest.Eventually(t, waitLong, "brian present", func() bool { return tr.Count() == 1 })
	c.Close()
	ssetest.Eventually(t, waitLong, "brian's claim kept, away", func() bool {
		n, away := cl.Claims()
		return n == 1 && away == 1
	})
	ssetest.Eventually(t, waitLong, "the window ran out: no claim", func() bool {
		n, away := cl.Claims()
		return n == 0 && away == 0
	})
}
