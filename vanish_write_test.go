package sfere

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/netfault"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// A vanished peer found while the server keeps writing to it (a busy
// stream, not an idle one) is still reported as vanished: after TCP's user
// timeout aborts the connection, the kernel says ETIMEDOUT once, usually
// to net/http's background read, and EPIPE to every write after, so the
// write error alone does not tell.
func TestVanishedPeerUnderWritesIsVanished(t *testing.T) {
	if err := netfault.Available(); err != nil {
		t.Skip(err)
	}
	bothPaths(t, func(t *testing.T, noHijack bool) {
		const userTimeout = time.Second
		hub, ev := newMemoryHub(t, HubOptions{NoHijack: noHijack})
		ln, err := Listen(t.Context(), "tcp", "127.0.0.1:0", ListenOptions{UserTimeout: userTimeout})
		if err != nil {
			t.Fatal(err)
		}
		srv := testServerOn(t, ln, hub, Comment("hello"))
		brian := dial(t, srv, "brian")
		brian.Wait(waitLong, ssetest.Containing(": hello"))
		defer keepSending(hub, lobbyKey("brian"), Comment("busy"), time.Millisecond)()
		netfault.DropConn(t, brian.LocalPort(), brian.RemotePort())
		got := ev.next(t, userTimeout+3*time.Second)
		if got.Cause != CauseClosed || !errors.Is(got.Err, ErrPeerVanished) {
			t.Fatalf("eviction = %v (%v), want closed, vanished", got.Cause, got.Err)
		}
	})
}

// The reader of a taken-over connection that meets its end (EOF) while a
// writer holds the connection waits for that writer's verdict: the write
// may have taken the ETIMEDOUT that tells a vanished peer (the kernel tells
// one call only), and the stream then ends as vanished, not as a closed
// tab. The test plays the writer, and answers once the reader waits.
func TestVanishedPeerSeenByWriterWhileReaderMeetsEOF(t *testing.T) {
	hub, ev := newMemoryHub(t, HubOptions{})
	hub.verdictWait = time.Minute // the verdict comes when the reader waits, however busy the machine
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := &connSink{nc: nc, writers: &hub.writers}
	c.s = newStream(lobbyKey("brian"), 0, c)
	hub.store.Put(c.s)
	if do := c.step(evWake); do != doSchedule { // held by the test, not by the writers
		t.Fatalf("wake = %d, want doSchedule", do)
	}
	hub.active.Add(1)
	go hub.watch(nil, c)
	client.Close()
	ssetest.Eventually(t, waitLong, "the reader waits for the writer", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.verdict != nil
	})
	timedOut := &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.ETIMEDOUT)}
	hub.wrote(c, nil, 0, time.Now(), timedOut)
	got := ev.next(t, waitLong)
	if got.Cause != CauseClosed || !errors.Is(got.Err, ErrWrite) || !errors.Is(got.Err, ErrPeerVanished) {
		t.Fatalf("eviction = %v (%v), want closed, write failed, vanished", got.Cause, got.Err)
	}
	if err := hub.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// timedOutConn is a connection TCP gave up on, whose next write was told
// so (ETIMEDOUT).
type timedOutConn struct{ net.Conn }

func (timedOutConn) Write([]byte) (int, error) {
	return 0, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.ETIMEDOUT)}
}

// A Listen connection remembers a vanished peer that a write found, not
// only a read: over HTTP/2 net/http's own goroutine writes the frames, and
// a stream whose request context then ends reports the peer vanished.
func TestListenConnRecordsVanishedWrite(t *testing.T) {
	c := &conn{Conn: timedOutConn{}}
	ctx := ConnContext(t.Context(), c)
	if _, err := c.Write([]byte("data")); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Fatalf("write error %v, want ETIMEDOUT", err)
	}
	if err := markVanished(ctx, ErrClientGone); !errors.Is(err, ErrPeerVanished) || !errors.Is(err, ErrClientGone) {
		t.Fatalf("stream ends with %v, want client gone, vanished", err)
	}
}

// The same over HTTP/2, where net/http's own goroutines read and write
// the connection: whichever of them TCP's ETIMEDOUT goes to, the stream
// ends as vanished.
func TestVanishedPeerUnderWritesOverHTTP2IsVanished(t *testing.T) {
	if err := netfault.Available(); err != nil {
		t.Skip(err)
	}
	const userTimeout = time.Second
	hub, ev := newMemoryHub(t, HubOptions{})
	ln, err := Listen(t.Context(), "tcp", "127.0.0.1:0", ListenOptions{UserTimeout: userTimeout})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hub.Serve(w, r, lobbyKey("brian"), Comment("hello"))
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Config.ConnContext = ConnContext
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	t.Cleanup(func() { hub.Shutdown(context.Background()) })
	client := srv.Client()
	ports := make(chan [2]int, 1)
	client.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			ports <- [2]int{c.LocalAddr().(*net.TCPAddr).Port, c.RemoteAddr().(*net.TCPAddr).Port}
		}
		return c, err
	}
	resp, err := client.Get(srv.URL + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 {
		t.Fatalf("served over %s, want HTTP/2", resp.Proto)
	}
	ssetest.FromResponse(t, resp).Wait(waitLong, ssetest.Containing(": hello"))
	defer keepSending(hub, lobbyKey("brian"), Comment("busy"), time.Millisecond)()
	p := <-ports
	netfault.DropConn(t, p[0], p[1])
	got := ev.next(t, userTimeout+3*time.Second)
	if got.Cause != CauseClosed || !errors.Is(got.Err, ErrPeerVanished) {
		t.Fatalf("eviction = %v (%v), want closed, vanished", got.Cause, got.Err)
	}
}
