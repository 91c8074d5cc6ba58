package sfere

import (
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
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

// bareWriter hides every optional interface of the writer it wraps: it
// can neither flush nor be taken over, as a middleware's writer that
// does not unwrap.
type bareWriter struct{ w http.ResponseWriter }

func (b bareWriter) Header() http.Header         { return b.w.Header() }
func (b bareWriter) Write(p []byte) (int, error) { return b.w.Write(p) }
func (b bareWriter) WriteHeader(code int)        { b.w.WriteHeader(code) }

// A response that cannot stream is refused before anything is stored or
// written: Serve returns an error the handler can still answer with.
func TestServeRefusesAWriterThatCannotFlush(t *testing.T) {
	hub, _ := newMemoryHub(t, HubOptions{})
	var opened atomic.Int32
	hub.OnOpen(func(*Stream) { opened.Add(1) })
	srv := serveWith(t, nil, hub, func(w http.ResponseWriter, r *http.Request, key Key) error {
		err := hub.Serve(bareWriter{w}, r, key, numbered(1))
		if !errors.Is(err, http.ErrNotSupported) {
			t.Errorf("Serve on a writer that cannot flush: %v, want http.ErrNotSupported", err)
		}
		return err
	})
	c := ssetest.Open(t, srv.Listener.Addr().String(), ssetest.DatastarPost("/sse?id=brian", "{}"))
	if head := c.WaitHead(waitLong); head.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want the handler's 503", head.StatusCode)
	}
	if n := hub.Count(All); n != 0 || opened.Load() != 0 {
		t.Fatalf("%d streams stored, OnOpen called %d times; want none", n, opened.Load())
	}
}
