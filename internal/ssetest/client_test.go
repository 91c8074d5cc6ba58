package ssetest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sseServer serves one SSE response per request with net/http (chunked):
// it writes whatever arrives on the returned channel, flushing each, and
// ends the response when the channel is closed.
func sseServer(t *testing.T) (*httptest.Server, chan<- string) {
	t.Helper()
	out := make(chan string, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("X-Test", r.Method+" "+r.URL.RequestURI())
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		for {
			select {
			case s, ok := <-out:
				if !ok {
					return
				}
				io.WriteString(w, s)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv, out
}

func TestParsesEveryField(t *testing.T) {
	srv, out := sseServer(t)
	c := Open(t, srv.Listener.Addr().String(), DatastarPost("/sse?id=brian", "{}"))
	head := c.WaitHead(5 * time.Second)
	if head.StatusCode != http.StatusOK || head.Header.Get("X-Test") != "POST /sse?id=brian" ||
		fmt.Sprint(head.TransferEncoding) != "[chunked]" {
		t.Fatalf("head: %d %v %v", head.StatusCode, head.Header, head.TransferEncoding)
	}
	out <- ": hello\n\n"
	out <- "event: datastar-patch-elements\r\nid: 7\r\nretry: 1500\r\ndata: selector #a\r\ndata: elements <p>\r\n\r\n"
	out <- "data\ndata:no space\n\n"
	out <- "id\nevent: x\nunknown: y\n\n"
	out <- "retry: soon\n\n" // only an invalid field: not an event
	out <- ":\n"
	out <- "data: half" // a line that never ends is not one

	first := c.Wait(5*time.Second, Any)
	if !first.IsComment || first.Comment != "hello" || first.Seq != 0 || first.String() != ": hello" {
		t.Fatalf("first = %+v", first)
	}
	patch := c.Wait(5*time.Second, OfType("datastar-patch-elements"))
	if !patch.HasID || patch.ID != "7" || !patch.HasRetry || patch.Retry != 1500*time.Millisecond ||
		patch.Text() != "selector #a\nelements <p>" || patch.Seq != 1 || patch.At.Before(first.At) {
		t.Fatalf("patch = %+v", patch)
	}
	if want := "event: datastar-patch-elements\nid: 7\nretry: 1500\ndata: selector #a\ndata: elements <p>"; patch.String() != want {
		t.Fatalf("String() = %q, want %q", patch.String(), want)
	}
	data := c.Wait(5*time.Second, Any)
	if data.Type != "" || fmt.Sprintf("%q", data.Data) != `["" "no space"]` {
		t.Fatalf("data event = %+v", data)
	}
	cleared := c.Wait(5*time.Second, Any)
	if cleared.Type != "x" || !cleared.HasID || cleared.ID != "" || len(cleared.Data) != 0 {
		t.Fatalf("id-clearing event = %+v", cleared)
	}
	if empty := c.Wait(5*time.Second, Any); !empty.IsComment || empty.Comment != "" {
		t.Fatalf("empty comment = %+v", empty)
	}
	close(out)
	c.WaitEnd(5 * time.Second)
	if n := len(c.Events()); n != 5 {
		t.Fatalf("%d events recorded, want 5: %v", n, c.Events())
	}
	if _, err := c.Next(time.Second, Any); !errors.Is(err, ErrEnded) {
		t.Fatalf("Next after the end: %v, want ErrEnded", err)
	}
}

// Waits move one cursor forward, so a sequence of them checks order; Find
// and Events see everything.
func TestWaitsKeepOrder(t *testing.T) {
	srv, out := sseServer(t)
	c := Open(t, srv.Listener.Addr().String(), Request{Target: "/"})
	for _, s := range []string{"a", "b", "c"} {
		out <- "data: " + s + "\n\n"
	}
	c.Wait(5*time.Second, Containing("data: c"))
	if _, err := c.Next(50*time.Millisecond, Containing("data: a")); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Next of an event before the cursor: %v, want ErrTimeout", err)
	}
	if e, ok := c.Find(Containing("data: a")); !ok || e.Seq != 0 {
		t.Fatalf("Find = %+v, %v", e, ok)
	}
	out <- ": later\n"
	if e := c.Wait(5*time.Second, CommentIs("later")); e.Seq != 3 {
		t.Fatalf("later = %+v", e)
	}
	var timeout error
	if _, timeout = c.Next(10*time.Millisecond, Where("never", func(Event) bool { return false })); !errors.Is(timeout, ErrTimeout) ||
		!strings.Contains(timeout.Error(), "never") || !strings.Contains(timeout.Error(), `": later"`) {
		t.Fatalf("timeout error %q: want it to name the match and the last events", timeout)
	}
}

// rawServer accepts one connection on loopback and hands it to serve.
func rawServer(t *testing.T, serve func(net.Conn, *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c, bufio.NewReader(c))
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

func TestCloseDelimitedBodyEndsCleanly(t *testing.T) {
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\nevent: a\ndata: 1\n\n")
	})
	c := Open(t, addr, Request{Proto: "HTTP/1.0"})
	if e := c.Wait(5*time.Second, OfType("a")); e.Text() != "1" {
		t.Fatalf("event = %+v", e)
	}
	c.WaitEnd(5 * time.Second)
	if head := c.WaitHead(time.Second); head.ProtoMajor != 1 || head.ProtoMinor != 0 || len(head.TransferEncoding) != 0 {
		t.Fatalf("head = %s %v", head.Proto, head.TransferEncoding)
	}
}

// A chunked body cut before its last chunk is broken, not ended.
func TestCutChunkedBodyIsBroken(t *testing.T) {
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n: hello\n\n\r\n")
	})
	c := Open(t, addr, Request{})
	c.Wait(5*time.Second, CommentIs("hello"))
	err := c.End(5 * time.Second)
	if err == nil || errors.Is(err, ErrTimeout) || !errors.Is(c.Err(), io.ErrUnexpectedEOF) {
		t.Fatalf("End = %v (Err %v), want a broken stream", err, c.Err())
	}
	if _, err := c.Next(time.Second, Any); !errors.Is(err, ErrEnded) {
		t.Fatalf("Next: %v, want ErrEnded", err)
	}
}

// The request goes out as given, with Host and Content-Length added.
func TestRequestIsWrittenAsGiven(t *testing.T) {
	got := make(chan *http.Request, 1)
	bodies := make(chan string, 1)
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			t.Error(err)
			return
		}
		body, _ := io.ReadAll(req.Body)
		got <- req
		bodies <- string(body)
		io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
	})
	req := DatastarPost("/sse?id=phil", `{"name":"phil"}`)
	req.Header.Add("Cookie", "session=1")
	c := Open(t, addr, req)
	r := <-got
	if r.Method != "POST" || r.RequestURI != "/sse?id=phil" || r.Host != addr || r.Header.Get("Datastar-Request") != "true" ||
		r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Cookie") != "session=1" || r.ContentLength != 15 {
		t.Fatalf("request = %s %s host %s %v (length %d)", r.Method, r.RequestURI, r.Host, r.Header, r.ContentLength)
	}
	if b := <-bodies; b != `{"name":"phil"}` {
		t.Fatalf("body %q", b)
	}
	if head := c.WaitHead(5 * time.Second); head.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d", head.StatusCode)
	}
	c.WaitEnd(5 * time.Second)
}

// Close sends a FIN, Reset a RST; either way the client stops reading.
func TestCloseAndReset(t *testing.T) {
	for _, tc := range []struct {
		name  string
		close func(*Client) error
		want  func(error) bool
	}{
		{"close", (*Client).Close, func(err error) bool { return errors.Is(err, io.EOF) }},
		{"reset", (*Client).Reset, func(err error) bool { return errors.Is(err, syscall.ECONNRESET) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := make(chan error, 1)
			addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n: hello\n\n\r\n")
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err := br.ReadByte()
				seen <- err
			})
			c := Open(t, addr, Request{})
			c.Wait(5*time.Second, CommentIs("hello"))
			if err := tc.close(c); err != nil {
				t.Fatal(err)
			}
			select {
			case <-c.Done():
			default:
				t.Fatal("still reading after closing")
			}
			if err := <-seen; !tc.want(err) {
				t.Fatalf("the server read %v", err)
			}
		})
	}
}

// A client that never reads, with a small receive buffer, stalls the
// server's writes; a slow reader still gets everything, in order.
func TestStalledAndSlowReaders(t *testing.T) {
	t.Run("stalled", func(t *testing.T) {
		blocked := make(chan error, 1)
		addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			c.SetWriteDeadline(time.Now().Add(time.Second))
			chunk := []byte(": " + strings.Repeat("x", 64<<10) + "\n")
			for range 256 { // 16 MiB: more than any loopback buffer
				if _, err := c.Write(chunk); err != nil {
					blocked <- err
					return
				}
			}
			blocked <- nil
		})
		c := Open(t, addr, Request{}, NoRead(), RecvBuffer(4096))
		if err := <-blocked; !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the server's writes ended with %v, want a timeout", err)
		}
		if len(c.Events()) != 0 {
			t.Fatal("a client that does not read recorded events")
		}
	})
	t.Run("slow", func(t *testing.T) {
		const n = 200
		addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			w := bufio.NewWriter(c)
			io.WriteString(w, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
			for i := range n {
				fmt.Fprintf(w, "data: %d %s\n\n", i, strings.Repeat("y", 1000))
			}
			w.Flush()
		})
		c := Open(t, addr, Request{}, SlowReads(512, 10*time.Microsecond))
		for i := range n {
			if e := c.Wait(10*time.Second, Any); !strings.HasPrefix(e.Text(), fmt.Sprint(i, " ")) {
				t.Fatalf("event %d is %.20q", i, e.Text())
			}
		}
		c.WaitEnd(5 * time.Second)
	})
}

// FromResponse reads a body the test got over HTTP/2.
func TestFromResponseOverHTTP2(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: a\ndata: over h2\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	c := FromResponse(t, resp)
	if e := c.Wait(5*time.Second, OfType("a")); e.Text() != "over h2" || c.WaitHead(time.Second).ProtoMajor != 2 {
		t.Fatalf("event %+v over %s", e, resp.Proto)
	}
	c.Close()
}

// Seen looks at the whole record and waits for what has not come yet,
// without touching the cursor.
func TestSeenLooksAtTheWholeRecord(t *testing.T) {
	srv, out := sseServer(t)
	c := Open(t, srv.Listener.Addr().String(), Request{})
	out <- "data: a\n\ndata: b\n\n"
	c.Wait(5*time.Second, Containing("data: b"))
	if e := c.WaitSeen(time.Second, Containing("data: a")); e.Seq != 0 {
		t.Fatalf("Seen(a) = %v", e)
	}
	go func() {
		time.Sleep(10 * time.Millisecond) // pacing: c comes while WaitSeen waits, usually
		out <- "data: c\n\n"
	}()
	if e := c.WaitSeen(5*time.Second, Containing("data: c")); e.Seq != 2 {
		t.Fatalf("Seen(c) = %v", e)
	}
	if e := c.Wait(time.Second, Any); e.Seq != 2 {
		t.Fatalf("after Seen, Next returned #%d, want #2: Seen moved the cursor", e.Seq)
	}
}

// KeepLines keeps the body's lines as they arrived, those the record of
// events drops included; without it Lines is empty.
func TestKeepLines(t *testing.T) {
	for _, keep := range []bool{true, false} {
		srv, out := sseServer(t)
		var opts []Option
		if keep {
			opts = append(opts, KeepLines())
		}
		c := Open(t, srv.Listener.Addr().String(), Request{}, opts...)
		out <- ": hi\nevent: x\r\nbogus line\nunknown: y\ndata: a\n\ndata: end\n\n"
		c.Wait(5*time.Second, Containing("data: end"))
		if e, ok := c.Find(OfType("x")); !ok || e.Text() != "a" || len(c.Events()) != 3 {
			t.Errorf("keep %v: the record is %v", keep, c.Events())
		}
		want := []string{": hi", "event: x\r", "bogus line", "unknown: y", "data: a", "", "data: end", ""}
		if !keep {
			want = nil
		}
		if got := c.Lines(); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
			t.Errorf("keep %v: Lines() = %q, want %q", keep, got, want)
		}
	}
}

// OpenConn reads over a connection the test made: here a pipe in a
// synctest bubble, where arrival times are the bubble's fake time.
func TestOpenConnOverPipeInASynctestBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, server := net.Pipe()
		go func() {
			defer server.Close()
			if _, err := http.ReadRequest(bufio.NewReader(server)); err != nil {
				t.Error(err)
				return
			}
			io.WriteString(server, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: now\n\n")
			time.Sleep(time.Hour) // fake clock: an hour of the bubble
			io.WriteString(server, "data: an hour later\n\n")
		}()
		c := OpenConn(t, client, DatastarPost("/sse", "{}"))
		first := c.Wait(2*time.Hour, Any)
		second := c.Wait(2*time.Hour, Any)
		if d := second.At.Sub(first.At); d != time.Hour || second.Text() != "an hour later" {
			t.Fatalf("second event %v arrived %v after the first, want an hour", second, d)
		}
		c.WaitEnd(time.Second)
	})
}

// A server that closes without answering: no head, and the client says so.
func TestNoResponse(t *testing.T) {
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) { http.ReadRequest(br) })
	c := Open(t, addr, Request{})
	if _, err := c.Head(5 * time.Second); err == nil || errors.Is(err, ErrTimeout) {
		t.Fatalf("Head = %v, want the error that there was no response", err)
	}
	if err := c.End(time.Second); err == nil || errors.Is(err, ErrTimeout) {
		t.Fatalf("End = %v, want a broken stream", err)
	}
}
