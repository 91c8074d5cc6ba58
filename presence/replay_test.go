package presence_test

import (
	"net/http"
	"testing"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/presence"
)

// A client that reconnects (a Last-Event-ID header) and whose stream
// recovers gets no snapshot where the hub's history holds the tracker's
// batches: it was replayed every batch it missed. The tracker knows when
// that is (a history, no cluster: a cluster's batches are not in its
// shared log); the app says nothing.
func TestRecoveredStreamGetsSnapshotOnlyWhereReplayMissesBatches(t *testing.T) {
	history := sfere.HubOptions{History: sfere.HistoryOptions{Size: 100}}
	for _, tc := range []struct {
		name         string
		hub          sfere.HubOptions
		cluster      presence.Cluster
		wantSnapshot bool
	}{
		{"history", history, nil, false},
		{"history and a cluster", history, &callbackCluster{}, true},
		{"no history", sfere.HubOptions{}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRigHub(t, tc.hub, presence.Options{Cluster: tc.cluster}, 0)
			r.claim("brian", "s1")
			first := r.open("s1")
			r.claim("phil", "s2")
			r.open("s2")
			first.waitFor(`data-joins="phil"`)
			r.settle(first)
			last := ""
			for _, e := range first.Events() {
				if e.HasID {
					last = e.ID
				}
			}
			if tc.hub.History.Size > 0 && last == "" {
				t.Fatal("no event of the first stream carries a position")
			}
			again := ssetest.Open(t, r.srv.Listener.Addr().String(), ssetest.Request{Method: http.MethodPost,
				Target: "/sse?owner=s1", Header: http.Header{"Last-Event-ID": {last}}})
			if st := again.WaitHead(waitLong).StatusCode; st != http.StatusOK {
				t.Fatalf("reconnect: status %d", st)
			}
			re := &tab{t: t, Client: again}
			r.settle(re)
			if got := re.count(`id="snapshot"`) > 0; got != tc.wantSnapshot {
				t.Errorf("the reconnected stream got a snapshot: %v, want %v", got, tc.wantSnapshot)
			}
		})
	}
}
