package sfere

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
)

// detachServer serves streams with Detach; each handler's return is
// counted in returned, and the stream it detached is handed to opened.
func detachServer(t *testing.T, hub *Hub, opened func(*Stream), initial ...Effect) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var returned atomic.Int64
	srv := serveWith(t, nil, hub, func(w http.ResponseWriter, r *http.Request, key Key) error {
		defer returned.Add(1)
		s, err := hub.Detach(w, r, key, initial...)
		if err == nil && opened != nil {
			opened(s)
		}
		return err
	})
	return srv, &returned
}

// A detached stream outlives its handler: the handler returns at once,
// the stream goes on receiving, a closed tab still ends it, and AfterEnd
// runs once, after the eviction callback.
func TestDetachOutlivesHandler(t *testing.T) {
	hub, ev := newMemoryHub(t, HubOptions{})
	var ended atomic.Int64
	srv, returned := detachServer(t, hub, func(s *Stream) {
		s.AfterEnd(func() {
			if _, ok := hub.Store().Get(s.Key()); ok {
				t.Error("AfterEnd ran while the stream was stored")
			}
			ended.Add(1)
		})
	}, Comment("hello"))
	brian, phil := dial(t, srv, "brian"), dial(t, srv, "phil")
	brian.Wait(waitLong, ssetest.Containing(": hello"))
	phil.Wait(waitLong, ssetest.Containing(": hello"))
	ssetest.Eventually(t, waitLong, "both handlers returned", func() bool { return returned.Load() == 2 })

	if res, err := hub.Broadcast(All, nil, PatchElements(`<p id="after">after</p>`)); err != nil || res.Delivered != 2 {
		t.Fatalf("Broadcast = %+v, %v", res, err)
	}
	brian.Wait(waitLong, ssetest.Containing(`<p id="after">after</p>`))
	phil.Wait(waitLong, ssetest.Containing(`<p id="after">after</p>`))

	brian.Close()
	got := ev.next(t, time.Second)
	if got.Key != lobbyKey("brian") || got.Cause != CauseClosed || !errors.Is(got.Err, ErrClientGone) {
		t.Fatalf("eviction = %+v, want brian closed (client gone)", got)
	}
	ssetest.Eventually(t, waitLong, "AfterEnd", func() bool { return ended.Load() == 1 })
	// AfterEnd on a stream that has ended runs at once.
	var late atomic.Bool
	got.Stream.AfterEnd(func() { late.Store(true) })
	if !late.Load() {
		t.Fatal("AfterEnd on an ended stream did not run at once")
	}
	if _, err := hub.Send(lobbyKey("phil"), Comment("still here")); err != nil {
		t.Fatal(err)
	}
	phil.Wait(waitLong, ssetest.Containing(": still here"))
	ev.none(t, 50*time.Millisecond)
	if ended.Load() != 1 {
		t.Fatalf("AfterEnd ran %d times", ended.Load())
	}
}

// An idle detached stream costs one goroutine (its reader); Serve's costs
// net/http's two.
func TestDetachedStreamHoldsOneGoroutine(t *testing.T) {
	const n = 100
	hub, _ := newMemoryHub(t, HubOptions{})
	srv, returned := detachServer(t, hub, nil, Comment("hello"))
	before := runtime.NumGoroutine()
	for i := range n {
		dial(t, srv, fmt.Sprint(i)).Wait(waitLong, ssetest.Containing(": hello"))
	}
	ssetest.Eventually(t, waitLong, "handlers returned", func() bool { return returned.Load() == n })
	// Each test client has a reading goroutine of its own.
	var extra int
	ssetest.Eventually(t, 2*time.Second, "idle goroutines", func() bool {
		extra = runtime.NumGoroutine() - before - n
		return extra <= n+5
	})
	t.Logf("%d idle detached streams: %d server goroutines", n, extra)
}

// Over a taken-over connection the head carries the headers the handler
// set, says the connection closes, and replaces framing headers with
// chunking, as net/http does; a middleware's content coding keeps the
// stream on net/http. Either way a stream the server ends ends its
// response properly (the client sees a clean end, not a broken stream).
func TestHeldResponseHead(t *testing.T) {
	hub, _ := newMemoryHub(t, HubOptions{})
	srv := serveWith(t, nil, hub, func(w http.ResponseWriter, r *http.Request, key Key) error {
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Content-Length", "5")
		if r.URL.Query().Get("coding") != "" {
			w.Header().Set("Content-Encoding", "identity")
			w.Header().Del("Content-Length")
		}
		return hub.Serve(w, r, key, Comment("hello"))
	})
	for _, tc := range []struct {
		query string
		held  bool
	}{{"", true}, {"&coding=1", false}} {
		c := ssetest.Open(t, srv.Listener.Addr().String(), ssetest.Request{Target: "/sse?id=brian" + tc.query})
		if e := c.Wait(waitLong, ssetest.Any); e.String() != ": hello" {
			t.Fatalf("first event %q, want the initial comment", e)
		}
		resp := c.WaitHead(waitLong)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Frame-Options") != "DENY" ||
			resp.Header.Get("Content-Type") != "text/event-stream" || resp.ContentLength != -1 ||
			resp.Close != tc.held || fmt.Sprint(resp.TransferEncoding) != "[chunked]" {
			t.Fatalf("%q: status %d, close %v, transfer %v, headers %v", tc.query, resp.StatusCode, resp.Close, resp.TransferEncoding, resp.Header)
		}
		if _, err := hub.Send(lobbyKey("brian"), Comment("bye"), CloseStream()); err != nil {
			t.Fatal(err)
		}
		c.Wait(waitLong, ssetest.CommentIs("bye"))
		c.WaitEnd(waitLong) // a clean end: the last chunk, not a broken stream
		c.Close()
		ssetest.Eventually(t, waitLong, "stream gone", func() bool { return hub.Count(All) == 0 })
	}
}

// Bytes a client sends after its request (a body nobody read, or
// nonsense) are dropped and the stream goes on, up to MaxClientData; a
// client that keeps sending is closed.
func TestHeldStreamIgnoresClientBytes(t *testing.T) {
	hub, ev := newMemoryHub(t, HubOptions{})
	srv := testServer(t, hub, Comment("hello"))
	c := dial(t, srv, "brian")
	c.Wait(waitLong, ssetest.Containing(": hello"))
	junk := []byte(strings.Repeat("GET / HTTP/1.1\r\n\r\n", 100))
	if _, err := c.Conn().Write(junk); err != nil {
		t.Fatal(err)
	}
	ev.none(t, 100*time.Millisecond)
	if _, err := hub.Send(lobbyKey("brian"), Comment("still here")); err != nil {
		t.Fatal(err)
	}
	c.Wait(waitLong, ssetest.Containing(": still here"))

	for sent := len(junk); sent <= MaxClientData; sent += len(junk) {
		if _, err := c.Conn().Write(junk); err != nil {
			t.Fatal(err)
		}
	}
	got := ev.next(t, 2*time.Second)
	if got.Cause != CauseClosed || !errors.Is(got.Err, ErrClientData) {
		t.Fatalf("eviction = %+v, want closed for sending data", got)
	}
}

// A client that reads slowly through a small socket buffer makes writes
// go the slow way and back many times; it still gets every message, once
// and in order.
func TestSlowReaderGetsEverythingInOrder(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		const messages = 150
		hub, ev := newMemoryHub(t, HubOptions{NoHijack: noHijack, MaxQueueBytes: -1})
		srv := testServerOn(t, listenSmallSendBuffer(t), hub)
		c := dial(t, srv, "slow", ssetest.RecvBuffer(4096), ssetest.SlowReads(1<<10, 100*time.Microsecond))
		ssetest.Eventually(t, waitLong, "stream", func() bool { return hub.Count(All) == 1 })
		// Half at once, half while the client reads.
		pad := strings.Repeat("x", 8<<10)
		send := func(i int) {
			if _, err := hub.Send(lobbyKey("slow"), PatchElements(fmt.Sprintf(`<p id="m">%d %s</p>`, i, pad))); err != nil {
				t.Error(err)
			}
		}
		for i := range messages / 2 {
			send(i)
		}
		go func() {
			for i := messages / 2; i < messages; i++ {
				send(i)
				time.Sleep(time.Millisecond) // pacing: sends spread over the client's reads
			}
		}()
		for want := range messages {
			e := c.Wait(10*time.Second, ssetest.Containing(`elements <p id="m">`))
			var got int
			if _, err := fmt.Sscanf(e.Text(), `elements <p id="m">%d `, &got); err != nil {
				t.Fatalf("message %d: %v in %.60q", want, err, e.Text())
			}
			if got != want {
				t.Fatalf("message %d arrived where %d was due", got, want)
			}
		}
		ev.none(t, 10*time.Millisecond)
	})
}

// listenSmallSendBuffer listens on loopback with a 4 KiB send buffer,
// which accepted sockets inherit: a client that stops reading fills it
// (and blocks the server's writes) after a few KiB, not megabytes.
func listenSmallSendBuffer(t *testing.T) net.Listener {
	t.Helper()
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// detachedOverH2 says what Detach returned over HTTP/2.
type detachedOverH2 struct {
	s     *Stream
	ended bool // the stream had ended when Detach returned
}

// serveDetachedH2 serves Brian's stream with Detach over HTTP/2 (TLS),
// and opens it with a client whose request ends with ctx. What Detach
// returns arrives on the channel.
func serveDetachedH2(t *testing.T, ctx context.Context, hub *Hub) (*ssetest.Client, <-chan detachedOverH2) {
	t.Helper()
	got := make(chan detachedOverH2, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := hub.Detach(w, r, lobbyKey("brian"), Comment("hello"))
		if err != nil {
			t.Error(err)
			return
		}
		select {
		case <-s.Done():
			got <- detachedOverH2{s, true}
		default:
			got <- detachedOverH2{s, false}
		}
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	t.Cleanup(func() { hub.Shutdown(context.Background()) })
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/sse", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 {
		t.Fatalf("served over %s, want HTTP/2", resp.Proto)
	}
	return ssetest.FromResponse(t, resp), got
}

// Over HTTP/2 (TLS) the connection cannot be taken over: Detach serves
// the stream on net/http to its end before it returns, and the stream
// works as any other.
func TestDetachOverHTTP2ServesUntilEnd(t *testing.T) {
	hub, ev := newMemoryHub(t, HubOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, got := serveDetachedH2(t, ctx, hub)
	if e := c.Wait(waitLong, ssetest.Any); e.String() != ": hello" {
		t.Fatalf("first event %q, want the initial comment", e)
	}
	if _, err := hub.Send(lobbyKey("brian"), Comment("more")); err != nil {
		t.Fatal(err)
	}
	c.Wait(waitLong, ssetest.CommentIs("more"))
	select {
	case <-got:
		t.Fatal("Detach returned while its HTTP/2 stream was live")
	default:
	}
	cancel()
	if e := ev.next(t, time.Second); e.Cause != CauseClosed || !errors.Is(e.Err, ErrClientGone) {
		t.Fatalf("eviction = %+v, want closed (client gone)", e)
	}
	select {
	case d := <-got:
		if !d.ended {
			t.Fatal("Detach returned a live stream over HTTP/2")
		}
	case <-time.After(time.Second):
		t.Fatal("Detach did not return after its stream ended")
	}
}

// A client that resets its connection while the server is writing to it
// ends its stream once, closed, and not as a vanished peer.
func TestResetUnderWritesEndsOnce(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, ev := newMemoryHub(t, HubOptions{NoHijack: noHijack})
		srv := testServer(t, hub, Comment("hello"))
		c := dial(t, srv, "brian")
		c.Wait(waitLong, ssetest.Containing(": hello"))
		defer keepSending(hub, lobbyKey("brian"), Comment(strings.Repeat("busy", 256)), 50*time.Microsecond)()
		// Once the writes are flowing, close with RST.
		c.Wait(waitLong, ssetest.Containing(": busybusy"))
		if err := c.Reset(); err != nil {
			t.Fatal(err)
		}
		got := ev.next(t, 2*time.Second)
		t.Logf("ended with: %v", got.Err)
		if got.Cause != CauseClosed || errors.Is(got.Err, ErrPeerVanished) || !(errors.Is(got.Err, ErrWrite) || errors.Is(got.Err, ErrClientGone)) {
			t.Fatalf("eviction = %+v, want closed by the client or a failed write", got)
		}
		ev.none(t, 100*time.Millisecond)
	})
}

// Only plain HTTP/1.1 is taken over: over TLS the stream stays on
// net/http (which keeps TLS connections alive), and works the same.
func TestTLSStreamStaysOnNetHTTP(t *testing.T) {
	hub, _ := newMemoryHub(t, HubOptions{})
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hub.Serve(w, r, lobbyKey(r.URL.Query().Get("id")), Comment("hello"))
	}))
	defer tlsSrv.Close()
	defer hub.Shutdown(context.Background())

	resp, err := tlsSrv.Client().Get(tlsSrv.URL + "/sse?id=tls")
	if err != nil {
		t.Fatal(err)
	}
	c := ssetest.FromResponse(t, resp)
	if e := c.Wait(waitLong, ssetest.Any); e.String() != ": hello" {
		t.Fatalf("TLS: first event %q, want the initial comment", e)
	}
	if resp.ProtoMajor != 1 || resp.Close {
		t.Fatalf("TLS: %s, close %v: want HTTP/1.1 on net/http (kept alive)", resp.Proto, resp.Close)
	}
	if _, err := hub.Send(lobbyKey("tls"), Comment("to a TLS client")); err != nil {
		t.Fatal(err)
	}
	c.Wait(waitLong, ssetest.CommentIs("to a TLS client"))
}

// An HTTP/1.0 client's stream stays on net/http too (which does not chunk
// for HTTP/1.0: the body ends with the connection), and works the same.
func TestHTTP10StreamStaysOnNetHTTP(t *testing.T) {
	hub, _ := newMemoryHub(t, HubOptions{})
	srv := testServer(t, hub)
	old := ssetest.Open(t, srv.Listener.Addr().String(), ssetest.Request{Target: "/sse?id=old", Proto: "HTTP/1.0", Host: "test"})
	if head := old.WaitHead(waitLong); head.ProtoMinor != 0 || len(head.TransferEncoding) != 0 {
		t.Fatalf("HTTP/1.0: %s, transfer encoding %v, want none (net/http's path)", head.Proto, head.TransferEncoding)
	}
	ssetest.Eventually(t, waitLong, "the stream", func() bool { return hub.Count(All) == 1 })
	if _, err := hub.Send(lobbyKey("old"), Comment("to an old client")); err != nil {
		t.Fatal(err)
	}
	old.Wait(waitLong, ssetest.CommentIs("to an old client"))
}

// A stream cut for falling behind ends without its last chunk: its client
// sees a broken response, not an ended one, and reconnects (a Datastar
// client retries only a broken stream), resuming where it was.
func TestOverflowEndsBroken(t *testing.T) {
	hub, ev := newMemoryHub(t, HubOptions{MaxQueueBytes: 1 << 10})
	srv := testServer(t, hub, Comment("hello"))
	c := dial(t, srv, "brian")
	c.Wait(waitLong, ssetest.CommentIs("hello"))
	big := PatchElements(strings.Repeat("x", 4<<10))
	for i := 0; ; i++ {
		if _, err := hub.Send(lobbyKey("brian"), big); errors.Is(err, ErrSlowClient) {
			break
		} else if i == 100_000 {
			t.Fatalf("the queue never overflowed: %v", err)
		}
	}
	if got := ev.next(t, waitLong); got.Cause != CauseClosed || !errors.Is(got.Err, ErrSlowClient) {
		t.Fatalf("eviction = %v (%v), want closed, slow client", got.Cause, got.Err)
	}
	select {
	case <-c.Done():
	case <-time.After(waitLong):
		t.Fatal("the stream is still open")
	}
	if err := c.Err(); errors.Is(err, io.EOF) || err == nil {
		t.Fatalf("the response ended with %v, want a broken one (no last chunk)", err)
	}
}
