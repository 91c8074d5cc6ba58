package sfere

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testServer serves hub streams at /sse?id=ID over real loopback TCP. Its
// cleanup shuts the hub down first, so no Serve is left blocking Close.
func testServer(t *testing.T, hub *Hub, initial ...Effect) *httptest.Server {
	t.Helper()
	return testServerOn(t, nil, hub, initial...)
}

// testServerOn is testServer on the given listener (nil: httptest's own).
func testServerOn(t *testing.T, ln net.Listener, hub *Hub, initial ...Effect) *httptest.Server {
	t.Helper()
	return serveWith(t, ln, hub, func(w http.ResponseWriter, r *http.Request, key Key) error {
		return hub.Serve(w, r, key, initial...)
	})
}

// serveWith serves streams at /sse?id=ID with open (Serve, Detach, ...)
// on ln (nil: httptest's own); its cleanup shuts the hub down first.
func serveWith(t *testing.T, ln net.Listener, hub *Hub, open func(w http.ResponseWriter, r *http.Request, key Key) error) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := NewKey(DefaultScope, "lobby", r.URL.Query().Get("id"))
		if err := open(w, r, key); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	}))
	if ln != nil {
		srv.Listener.Close()
		srv.Listener = ln
	}
	srv.Config.ConnContext = ConnContext
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hub.Shutdown(ctx); err != nil {
			t.Errorf("hub shutdown: %v", err)
		}
	})
	return srv
}

// sseClient is one raw TCP client of a test server, so tests control the
// socket: close it like a tab, stop reading, or drop its packets.
type sseClient struct {
	t     testing.TB
	conn  net.Conn
	lines chan string // every line of the body; closed at EOF or error
}

type dialOpt func(*net.Dialer)

// withRecvBuffer shrinks the client's socket receive buffer, so a client
// that stops reading stalls the server's writes sooner.
func withRecvBuffer(n int) dialOpt {
	return func(d *net.Dialer) {
		d.Control = func(network, address string, c syscall.RawConn) error {
			return setBuffer(c, syscall.SO_RCVBUF, n)
		}
	}
}

// setBuffer sets a socket buffer size option (SO_RCVBUF, SO_SNDBUF).
func setBuffer(c syscall.RawConn, opt, n int) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, n)
	}); err != nil {
		return err
	}
	return serr
}

// dial opens /sse?id=id on srv. With read false nothing is ever read from
// the socket (a stalled client).
func dial(t testing.TB, srv *httptest.Server, id string, read bool, opts ...dialOpt) *sseClient {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	for _, o := range opts {
		o(d)
	}
	conn, err := d.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req := fmt.Sprintf("POST /sse?id=%s HTTP/1.1\r\nHost: test\r\nDatastar-Request: true\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", id)
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	c := &sseClient{t: t, conn: conn, lines: make(chan string, 4096)}
	if read {
		go c.readLoop()
	}
	return c
}

func (c *sseClient) readLoop() {
	defer close(c.lines)
	br := bufio.NewReader(c.conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.lines <- fmt.Sprintf("status %d", resp.StatusCode)
		return
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<22)
	for sc.Scan() {
		c.lines <- sc.Text()
	}
	if err := sc.Err(); err != nil {
		c.lines <- brokenPrefix + err.Error()
	}
}

// brokenPrefix starts the last line of a client whose response did not
// end properly (no last chunk: the connection broke).
const brokenPrefix = "\x00broken: "

// waitLine waits for a line containing want and returns it.
func (c *sseClient) waitLine(want string, within time.Duration) string {
	c.t.Helper()
	line, err := c.nextLine(want, within)
	if err != nil {
		c.t.Fatal(err)
	}
	return line
}

// nextLine is waitLine for goroutines other than the test's own.
func (c *sseClient) nextLine(want string, within time.Duration) (string, error) {
	deadline := time.After(within)
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				return "", fmt.Errorf("stream ended before a line with %q", want)
			}
			if strings.Contains(line, want) {
				return line, nil
			}
		case <-deadline:
			return "", fmt.Errorf("no line with %q within %v", want, within)
		}
	}
}

// waitEOF waits for the server to end the response properly.
func (c *sseClient) waitEOF(within time.Duration) {
	c.t.Helper()
	deadline := time.After(within)
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				return
			}
			if strings.HasPrefix(line, brokenPrefix) {
				c.t.Fatalf("the response did not end properly: %s", line[len(brokenPrefix):])
			}
		case <-deadline:
			c.t.Fatalf("stream still open after %v", within)
		}
	}
}

// localPort is the client's ephemeral port.
func (c *sseClient) localPort() int { return c.conn.LocalAddr().(*net.TCPAddr).Port }

// waitFor polls cond until it holds.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
