package sfere

import (
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
)

// TestHubStatsCountStreamsBroadcastsAndBytes checks the counters against
// what happened on real connections: streams stored and ended (by cause),
// a broadcast reaching both, a send, and the bytes the clients read.
func TestHubStatsCountStreamsBroadcastsAndBytes(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub := NewHub(NewMemoryStore(MemoryOptions{}), HubOptions{NoHijack: noHijack})
		srv := testServer(t, hub)
		a, b := dial(t, srv, "a"), dial(t, srv, "b")
		ssetest.Eventually(t, 5*time.Second, "two streams stored", func() bool { return hub.Stats().Opened == 2 })
		if _, err := hub.Broadcast(All, nil, PatchElements(`<div id="x">one</div>`)); err != nil {
			t.Fatal(err)
		}
		if _, err := hub.Send(NewKey(DefaultScope, "lobby", "a"), PatchElements(`<div id="x">two</div>`)); err != nil {
			t.Fatal(err)
		}
		a.Wait(5*time.Second, ssetest.Containing("two"))
		b.Wait(5*time.Second, ssetest.Containing("one"))
		s := hub.Stats()
		if s.Broadcasts != 1 || s.Sends != 1 || s.Delivered != 3 || s.Failed != 0 {
			t.Fatalf("after one broadcast to 2 streams and one send: %+v", s)
		}
		event, err := Render(PatchElements(`<div id="x">one</div>`))
		if err != nil {
			t.Fatal(err)
		}
		// The write is recorded after the client may have read it.
		ssetest.Eventually(t, 5*time.Second, "the 3 events' bytes counted as written", func() bool {
			return hub.Stats().Written >= uint64(3*len(event))
		})
		if s.Ended != 0 {
			t.Fatalf("ended %d streams before any closed", s.Ended)
		}
		b.Close()
		ssetest.Eventually(t, 5*time.Second, "the closed client's stream counted as ended", func() bool {
			return hub.Stats().Ended == 1
		})
		if got := hub.Stats().EndedBy(CauseClosed); got != 1 {
			t.Fatalf("EndedBy(closed) = %d, want 1", got)
		}
		dial(t, srv, "a") // replaces a's stream
		ssetest.Eventually(t, 5*time.Second, "the replaced stream counted", func() bool {
			return hub.Stats().EndedBy(CauseReplaced) == 1
		})
		if s := hub.Stats(); s.Opened != 3 || s.Ended != 2 {
			t.Fatalf("after 3 opened, 2 ended: %+v", s)
		}
		if got := hub.Stats().EndedBy(Cause(200)); got != 0 {
			t.Fatalf("EndedBy(unknown) = %d", got)
		}
	})
}
