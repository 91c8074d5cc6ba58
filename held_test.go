package sfere

import (
	"bufio"
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
	brian, phil := dial(t, srv, "brian", true), dial(t, srv, "phil", true)
	brian.waitLine(": hello", time.Second)
	phil.waitLine(": hello", time.Second)
	waitFor(t, time.Second, "both handlers returned", func() bool { return returned.Load() == 2 })

	if res, err := hub.Broadcast(All, nil, PatchElements(`<p id="after">after</p>`)); err != nil || res.Delivered != 2 {
		t.Fatalf("Broadcast = %+v, %v", res, err)
	}
	brian.waitLine(`<p id="after">after</p>`, time.Second)
	phil.waitLine(`<p id="after">after</p>`, time.Second)

	brian.conn.Close()
	got := ev.next(t, time.Second)
	if got.Key != lobbyKey("brian") || got.Cause != CauseClosed || !errors.Is(got.Err, ErrClientGone) {
		t.Fatalf("eviction = %+v, want brian closed (client gone)", got)
	}
	waitFor(t, time.Second, "AfterEnd", func() bool { return ended.Load() == 1 })
	// AfterEnd on a stream that has ended runs at once.
	var late atomic.Bool
	got.Stream.AfterEnd(func() { late.Store(true) })
	if !late.Load() {
		t.Fatal("AfterEnd on an ended stream did not run at once")
	}
	if _, err := hub.Send(lobbyKey("phil"), Comment("still here")); err != nil {
		t.Fatal(err)
	}
	phil.waitLine(": still here", time.Second)
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
		dial(t, srv, fmt.Sprint(i), true).waitLine(": hello", time.Second)
	}
	waitFor(t, time.Second, "handlers returned", func() bool { return returned.Load() == n })
	// Each test client has a reading goroutine of its own.
	var extra int
	waitFor(t, 2*time.Second, "idle goroutines", func() bool {
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
		resp, err := http.Get(srv.URL + "/sse?id=brian" + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(resp.Body)
		line, err := br.ReadString('\n')
		if err != nil || line != ": hello\n" {
			t.Fatalf("first line %q, %v", line, err)
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Frame-Options") != "DENY" ||
			resp.Header.Get("Content-Type") != "text/event-stream" || resp.ContentLength != -1 ||
			resp.Close != tc.held || fmt.Sprint(resp.TransferEncoding) != "[chunked]" {
			t.Fatalf("%q: status %d, close %v, transfer %v, headers %v", tc.query, resp.StatusCode, resp.Close, resp.TransferEncoding, resp.Header)
		}
		if _, err := hub.Send(lobbyKey("brian"), Comment("bye"), CloseStream()); err != nil {
			t.Fatal(err)
		}
		if rest, err := io.ReadAll(br); err != nil || !strings.Contains(string(rest), ": bye") {
			t.Fatalf("%q: after close-stream read %q, %v; want the last line and a clean end", tc.query, rest, err)
		}
		resp.Body.Close()
		waitFor(t, time.Second, "stream gone", func() bool { return hub.Count(All) == 0 })
	}
}

// Bytes a client sends after its request (a body nobody read, or
// nonsense) are dropped and the stream goes on, up to MaxClientData; a
// client that keeps sending is closed.
func TestHeldStreamIgnoresClientBytes(t *testing.T) {
	hub, ev := newMemoryHub(t, HubOptions{})
	srv := testServer(t, hub, Comment("hello"))
	c := dial(t, srv, "brian", true)
	c.waitLine(": hello", time.Second)
	junk := []byte(strings.Repeat("GET / HTTP/1.1\r\n\r\n", 100))
	if _, err := c.conn.Write(junk); err != nil {
		t.Fatal(err)
	}
	ev.none(t, 100*time.Millisecond)
	if _, err := hub.Send(lobbyKey("brian"), Comment("still here")); err != nil {
		t.Fatal(err)
	}
	c.waitLine(": still here", time.Second)

	for sent := len(junk); sent <= MaxClientData; sent += len(junk) {
		if _, err := c.conn.Write(junk); err != nil {
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
		lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
			return setBuffer(c, syscall.SO_SNDBUF, 4096) // accepted sockets inherit it
		}}
		ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := testServerOn(t, ln, hub)
		c := dial(t, srv, "slow", false, withRecvBuffer(4096))
		waitFor(t, time.Second, "stream", func() bool { return hub.Count(All) == 1 })
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
				time.Sleep(time.Millisecond)
			}
		}()
		resp, err := http.ReadResponse(bufio.NewReader(slowReader{c.conn}), nil)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<16), 1<<16)
		for want := 0; want < messages; {
			if !sc.Scan() {
				t.Fatalf("stream ended before message %d: %v", want, sc.Err())
			}
			var got int
			if _, err := fmt.Sscanf(sc.Text(), `data: elements <p id="m">%d `, &got); err != nil {
				continue
			}
			if got != want {
				t.Fatalf("message %d arrived where %d was due", got, want)
			}
			want++
		}
		ev.none(t, 10*time.Millisecond)
	})
}

// slowReader reads at most 1 KiB at a time with a pause before each read.
type slowReader struct{ r io.Reader }

func (s slowReader) Read(p []byte) (int, error) {
	time.Sleep(100 * time.Microsecond)
	return s.r.Read(p[:min(len(p), 1<<10)])
}

// Over HTTP/2 (TLS) the connection cannot be taken over: Detach serves
// the stream on net/http to its end before it returns, and the stream
// works as any other.
func TestDetachOverHTTP2ServesUntilEnd(t *testing.T) {
	hub, ev := newMemoryHub(t, HubOptions{})
	type detached struct {
		s     *Stream
		ended bool // the stream had ended when Detach returned
	}
	got := make(chan detached, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := hub.Detach(w, r, lobbyKey("brian"), Comment("hello"))
		if err != nil {
			t.Error(err)
			return
		}
		got <- detached{s, s.evicted()}
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	defer hub.Shutdown(context.Background())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/sse", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("served over %s, want HTTP/2", resp.Proto)
	}
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || line != ": hello\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	if _, err := hub.Send(lobbyKey("brian"), Comment("more")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, br, ": more\n")
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
		c := dial(t, srv, "brian", true)
		c.waitLine(": hello", time.Second)
		defer keepSending(hub, lobbyKey("brian"), Comment(strings.Repeat("busy", 256)), 50*time.Microsecond)()
		time.Sleep(20 * time.Millisecond)
		_ = c.conn.(*net.TCPConn).SetLinger(0) // close with RST
		c.conn.Close()
		got := ev.next(t, 2*time.Second)
		t.Logf("ended with: %v", got.Err)
		if got.Cause != CauseClosed || errors.Is(got.Err, ErrPeerVanished) || !(errors.Is(got.Err, ErrWrite) || errors.Is(got.Err, ErrClientGone)) {
			t.Fatalf("eviction = %+v, want closed by the client or a failed write", got)
		}
		ev.none(t, 100*time.Millisecond)
	})
}

// Only plain HTTP/1.1 is taken over: over TLS and for HTTP/1.0 clients
// the stream stays on net/http (which keeps TLS connections alive and
// does not chunk for HTTP/1.0), and works the same.
func TestTakeOverOnlyPlainHTTP11(t *testing.T) {
	hub, _ := newMemoryHub(t, HubOptions{})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hub.Serve(w, r, lobbyKey(r.URL.Query().Get("id")), Comment("hello"))
	})
	tlsSrv := httptest.NewTLSServer(handler)
	defer tlsSrv.Close()
	defer hub.Shutdown(context.Background())

	resp, err := tlsSrv.Client().Get(tlsSrv.URL + "/sse?id=tls")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if line, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || line != ": hello\n" {
		t.Fatalf("TLS: first line %q, %v", line, err)
	}
	if resp.ProtoMajor != 1 || resp.Close {
		t.Fatalf("TLS: %s, close %v: want HTTP/1.1 on net/http (kept alive)", resp.Proto, resp.Close)
	}

	srv := testServer(t, hub)
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /sse?id=old HTTP/1.0\r\nHost: test\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	old, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(old.TransferEncoding) != 0 {
		t.Fatalf("HTTP/1.0: transfer encoding %v, want none (net/http's path)", old.TransferEncoding)
	}
	waitFor(t, time.Second, "both streams", func() bool { return hub.Count(All) == 2 })
	if _, err := hub.Send(lobbyKey("old"), Comment("to an old client")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, br, ": to an old client\n")
}

// readUntil reads lines from br until one is want.
func readUntil(t *testing.T, br *bufio.Reader, want string) {
	t.Helper()
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("no line %q: %v", want, err)
		}
		if line == want {
			return
		}
	}
}
