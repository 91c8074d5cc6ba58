package sfere

import (
	"fmt"
	"testing"

	"github.com/sfere-go/sfere/internal/ssetest"
)

// A client that holds the response head gets every broadcast made after
// it: the stream is stored before its head is written. Each round opens
// a stream, waits for its head and nothing else, broadcasts to it at once
// and expects the event; many rounds, so that a stream stored after its
// head was written would miss one. With and without a history (which
// holds back positioned events from a stream being stored and replays
// them), on both stream paths.
func TestBroadcastAfterHeadReachesStream(t *testing.T) {
	const rounds = 150
	for _, tc := range []struct {
		name string
		opts HubOptions
	}{
		{name: "plain"},
		{name: "history", opts: HubOptions{History: HistoryOptions{Size: 16}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bothPaths(t, func(t *testing.T, noHijack bool) {
				opts := tc.opts
				opts.NoHijack = noHijack
				hub, _ := newMemoryHub(t, opts)
				srv := testServer(t, hub, AppendElements("#m", "<p>initial</p>"))
				addr := srv.Listener.Addr().String()
				for i := range rounds {
					id := fmt.Sprintf("c%d", i)
					c := ssetest.Open(t, addr, ssetest.DatastarPost("/sse?id="+id, "{}"))
					c.WaitHead(waitLong)
					res, err := hub.Broadcast(lobbyKey(id).Pattern(), nil, numbered(i))
					if err != nil {
						t.Fatal(err)
					}
					if _, err := c.Seen(waitLong, ssetest.Containing(fmt.Sprintf("<p>%d</p>", i))); err != nil {
						t.Fatalf("round %d: broadcast after the head (result %+v): %v", i, res, err)
					}
					c.Close()
				}
			})
		})
	}
}
