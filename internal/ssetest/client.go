package ssetest

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Errors of [Client.Next] and [Client.End], for errors.Is.
// dialTimeout bounds a dial: see Dial.
const dialTimeout = 30 * time.Second

var (
	// ErrTimeout: what was awaited did not happen within the ceiling.
	ErrTimeout = errors.New("ssetest: timed out")
	// ErrEnded: the stream ended before an event matched.
	ErrEnded = errors.New("ssetest: stream ended")
)

// Request is the HTTP request that opens a stream, written to the socket
// as given: nothing is added but Host and, when there is a body,
// Content-Length.
type Request struct {
	Method string      // "GET" if empty
	Target string      // the request target, e.g. "/sse?id=brian"; "/" if empty
	Proto  string      // "HTTP/1.1" if empty; "HTTP/1.0" gets a close-delimited body
	Host   string      // the Host header; the dialed address if empty
	Header http.Header // written in the order of sorted names
	Body   string      // sent with a Content-Length
}

// DatastarPost is the request a Datastar page's @post(target) sends:
// POST, the Datastar-Request header, and the signals as a JSON body.
func DatastarPost(target, signals string) Request {
	return Request{Method: http.MethodPost, Target: target, Body: signals, Header: http.Header{
		"Datastar-Request": {"true"},
		"Content-Type":     {"application/json"},
	}}
}

// Option configures a [Client] at [Dial].
type Option func(*config)

type config struct {
	recvBuffer int
	noRead     bool
	slowChunk  int
	slowPause  time.Duration
	keepLines  bool
	gunzip     bool
}

// RecvBuffer sets the client socket's receive buffer (SO_RCVBUF) before it
// connects, so a client that stops reading stalls the server sooner.
func RecvBuffer(bytes int) Option { return func(c *config) { c.recvBuffer = bytes } }

// NoRead makes a client that never reads its socket: a stalled client.
// Only the socket methods ([Client.Conn], [Client.Close], ...) are of use
// on it; it records nothing.
func NoRead() Option { return func(c *config) { c.noRead = true } }

// KeepLines makes the client also keep every line of the body as it
// arrived, for a test that checks the wire grammar itself (the record of
// events drops what a browser would ignore); [Client.Lines] returns them.
func KeepLines() Option { return func(c *config) { c.keepLines = true } }

// Gunzip makes the client decode a body whose response says
// Content-Encoding: gzip with the standard library's gzip reader, as a
// browser would, and record the events it decodes. A body that ends
// without a whole gzip trailer, or whose checksum is wrong, ends the
// stream with that reader's error ([Client.Err]). Without Gunzip such a
// body is read as it came, compressed.
func Gunzip() Option { return func(c *config) { c.gunzip = true } }

// SlowReads makes the client read at most chunk bytes at a time, pausing
// before each read: a slow reader.
func SlowReads(chunk int, pause time.Duration) Option {
	return func(c *config) { c.slowChunk, c.slowPause = chunk, pause }
}

// Client is one SSE stream read by a test. It records the response head
// and every event and comment, in order, with its arrival time; a test
// waits for the one it expects with [Client.Wait] (or [Client.Next] from
// a goroutine of its own) and reads the record with [Client.Events].
//
// Next and Wait share one cursor: each returns the first matching event
// after the one the previous call returned, skipping the rest, so a
// sequence of waits checks order. [Client.Seen], [Client.Find] and
// [Client.Events] see the whole record, wherever the cursor is.
type Client struct {
	t    testing.TB // set by Open, OpenConn and FromResponse; the Wait methods fail it
	conn net.Conn   // nil for FromResponse
	body io.Closer  // FromResponse's body

	headDone chan struct{} // closed once head or headErr is set
	done     chan struct{} // closed when reading stopped
	reading  bool

	mu      sync.Mutex
	head    *http.Response
	headErr error
	wire    *countingReader // bytes read from the socket; nil for FromResponse
	events  []Event
	lines   []string      // with KeepLines
	next    int           // the cursor of Next
	err     error         // why reading stopped, once done
	changed chan struct{} // closed and replaced on every change
}

// Dial connects to addr over TCP, sends req, and starts reading the
// response (unless [NoRead]). The caller closes the client. Tests use
// [Open]; Dial is for goroutines that must not fail the test, such as a
// client retrying a server that is down.
//
// The dial itself is bounded by dialTimeout.
func Dial(addr string, req Request, opts ...Option) (*Client, error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	// A loopback dial takes microseconds; the bound only ends a dial
	// that cannot succeed, so it is as generous as the waits for events
	// (a 5 s bound timed out once in CI, in a process starved long
	// enough for its NATS peers to count it lost).
	d := net.Dialer{Timeout: dialTimeout}
	if cfg.recvBuffer > 0 {
		d.Control = recvBufferControl(cfg.recvBuffer)
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ssetest: dial: %w", err)
	}
	if req.Host == "" {
		req.Host = addr
	}
	c, err := start(conn, req, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// OpenConn is [Open] over a connection the test made itself: one end of
// a net.Pipe (in a testing/synctest bubble, where event times are the
// bubble's), a TLS connection, a socket with options of its own. The
// client owns conn from then on. [RecvBuffer] does not apply.
func OpenConn(t testing.TB, conn net.Conn, req Request, opts ...Option) *Client {
	t.Helper()
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	if req.Host == "" {
		req.Host = "test"
	}
	c, err := start(conn, req, cfg)
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	c.t = t
	t.Cleanup(func() { c.Close() })
	return c
}

// start sends req on conn and starts reading the response.
func start(conn net.Conn, req Request, cfg config) (*Client, error) {
	if _, err := io.WriteString(conn, req.wire()); err != nil {
		return nil, fmt.Errorf("ssetest: send request: %w", err)
	}
	c := newClient(conn)
	if cfg.noRead {
		return c, nil
	}
	var r io.Reader = conn
	if cfg.slowChunk > 0 {
		r = slowReader{conn, cfg.slowChunk, cfg.slowPause}
	}
	c.wire = &countingReader{r: r}
	c.reading = true
	go c.read(bufio.NewReader(c.wire), req.Method, cfg.keepLines, cfg.gunzip)
	return c, nil
}

// Open is [Dial] for the test's own goroutine: it fails t if the client
// cannot connect, and closes the client when t ends.
func Open(t testing.TB, addr string, req Request, opts ...Option) *Client {
	t.Helper()
	c, err := Dial(addr, req, opts...)
	if err != nil {
		t.Fatal(err)
	}
	c.t = t
	t.Cleanup(func() { c.Close() })
	return c
}

// FromResponse reads the SSE body of a response a test got another way
// (over HTTP/2 or TLS, say), with the same record and waits. Closing the
// client closes the body; it is closed when t ends.
func FromResponse(t testing.TB, resp *http.Response) *Client {
	c := newClient(nil)
	c.t, c.body = t, resp.Body
	c.setHead(resp, nil)
	c.reading = true
	go func() {
		defer close(c.done)
		c.stop(parse(resp.Body, c.add, nil))
	}()
	t.Cleanup(func() { c.Close() })
	return c
}

func newClient(conn net.Conn) *Client {
	return &Client{conn: conn, headDone: make(chan struct{}), done: make(chan struct{}), changed: make(chan struct{})}
}

// wire is the request as written to the socket.
func (r Request) wire() string {
	method, target, proto := cmp(r.Method, http.MethodGet), cmp(r.Target, "/"), cmp(r.Proto, "HTTP/1.1")
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s\r\nHost: %s\r\n", method, target, proto, r.Host)
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for name := range r.Header {
			if !yield(name) {
				return
			}
		}
	}) {
		for _, v := range r.Header[name] {
			fmt.Fprintf(&b, "%s: %s\r\n", name, v)
		}
	}
	if r.Body != "" && r.Header.Get("Content-Length") == "" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(r.Body))
	}
	b.WriteString("\r\n")
	b.WriteString(r.Body)
	return b.String()
}

func cmp(s, otherwise string) string {
	if s == "" {
		return otherwise
	}
	return s
}

// read reads the response: its head, then its body as SSE.
func (c *Client) read(br *bufio.Reader, method string, keepLines, gunzip bool) {
	defer close(c.done)
	resp, err := http.ReadResponse(br, &http.Request{Method: cmp(method, http.MethodGet)})
	c.setHead(resp, err)
	if err != nil {
		c.stop(err)
		return
	}
	var line func(string)
	if keepLines {
		line = c.addLine
	}
	var body io.Reader = resp.Body
	if gunzip && resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			resp.Body.Close()
			c.stop(fmt.Errorf("ssetest: gzip header: %w", err))
			return
		}
		zr.Multistream(false)
		body = zr
	}
	err = parse(body, c.add, line)
	resp.Body.Close()
	c.stop(err)
}

func (c *Client) setHead(resp *http.Response, err error) {
	c.mu.Lock()
	c.head, c.headErr = resp, err
	c.mu.Unlock()
	close(c.headDone)
}

// add records one event.
func (c *Client) add(e Event) error {
	c.mu.Lock()
	e.Seq = len(c.events)
	c.events = append(c.events, e)
	c.changedLocked()
	c.mu.Unlock()
	return nil
}

// addLine records one line of the body.
func (c *Client) addLine(l string) {
	c.mu.Lock()
	c.lines = append(c.lines, l)
	c.mu.Unlock()
}

// stop records why reading stopped.
func (c *Client) stop(err error) {
	c.mu.Lock()
	c.err = err
	c.changedLocked()
	c.mu.Unlock()
}

func (c *Client) changedLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// WireBytes is how many bytes the client has read from its socket so
// far, the response head included: what came over the wire, compressed
// or not. It is 0 for [FromResponse] and [NoRead].
func (c *Client) WireBytes() int64 {
	if c.wire == nil {
		return 0
	}
	return c.wire.n.Load()
}

// Conn is the client's socket (nil for [FromResponse]): write to it, set
// its options, drop its packets.
func (c *Client) Conn() net.Conn { return c.conn }

// LocalPort is the client socket's local (ephemeral) port.
func (c *Client) LocalPort() int { return c.conn.LocalAddr().(*net.TCPAddr).Port }

// RemotePort returns the server's port of the stream's connection (with
// LocalPort, what netfault.DropConn takes).
func (c *Client) RemotePort() int { return c.conn.RemoteAddr().(*net.TCPAddr).Port }

// Close closes the connection as a closed tab does (FIN), and waits for
// the reading to stop.
func (c *Client) Close() error {
	var err error
	if c.conn != nil {
		err = c.conn.Close()
	} else {
		err = c.body.Close()
	}
	if c.reading {
		<-c.done
	}
	return err
}

// Reset closes the connection with a TCP reset (RST) instead of a FIN.
func (c *Client) Reset() error {
	if tc, ok := c.conn.(*net.TCPConn); ok {
		if err := tc.SetLinger(0); err != nil {
			return err
		}
	}
	return c.Close()
}

// Head waits up to within for the response head. Its Body is being read
// by the client: do not read it.
func (c *Client) Head(within time.Duration) (*http.Response, error) {
	select {
	case <-c.headDone:
	case <-time.After(within):
		return nil, fmt.Errorf("%w: no response head within %v", ErrTimeout, within)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.headErr != nil {
		return nil, fmt.Errorf("ssetest: response head: %w", c.headErr)
	}
	return c.head, nil
}

// WaitHead is [Client.Head] that fails the test.
func (c *Client) WaitHead(within time.Duration) *http.Response {
	c.tb().Helper()
	resp, err := c.Head(within)
	if err != nil {
		c.tb().Fatal(err)
	}
	return resp
}

// Events returns every event and comment recorded so far.
func (c *Client) Events() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events)
}

// Lines returns every line of the body received so far, as it arrived
// (without its LF; a CR before it is kept), blank lines included, for a
// client opened with [KeepLines]; nil for any other.
func (c *Client) Lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.lines)
}

// Find returns the first recorded event that m matches, wherever the
// cursor is.
func (c *Client) Find(m Match) (Event, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.events {
		if m.Test(e) {
			return e, true
		}
	}
	return Event{}, false
}

// Next returns the first event m matches after the cursor, waiting up to
// within for it, and moves the cursor past it (events skipped on the way
// are passed for good). It fails with [ErrTimeout], or [ErrEnded] if the
// stream ends first. It is safe to call from any goroutine.
func (c *Client) Next(within time.Duration, m Match) (Event, error) {
	return c.await(within, m, true)
}

// Seen returns the first event m matches in the whole record, waiting up
// to within for one to arrive; unlike Next it neither reads from nor
// moves the cursor. It fails as Next does.
func (c *Client) Seen(within time.Duration, m Match) (Event, error) {
	return c.await(within, m, false)
}

// await is Next (cursor true) and Seen.
func (c *Client) await(within time.Duration, m Match, cursor bool) (Event, error) {
	timer := time.NewTimer(within)
	defer timer.Stop()
	from := 0
	for {
		c.mu.Lock()
		if cursor {
			from = c.next
		}
		for ; from < len(c.events); from++ {
			if e := c.events[from]; m.Test(e) {
				if cursor {
					c.next = from + 1
				}
				c.mu.Unlock()
				return e, nil
			}
		}
		if cursor {
			c.next = from
		}
		changed, stopped, why := c.changed, c.stoppedLocked(), c.err
		c.mu.Unlock()
		if stopped {
			return Event{}, fmt.Errorf("%w (%v) before an event %s", ErrEnded, why, m.Desc)
		}
		select {
		case <-changed:
		case <-timer.C:
			return Event{}, fmt.Errorf("%w: no event %s within %v (%s)", ErrTimeout, m.Desc, within, c.recent())
		}
	}
}

// stoppedLocked reports whether reading has stopped; c.mu is held.
func (c *Client) stoppedLocked() bool {
	select {
	case <-c.done:
		return true
	default:
		// done closes after stop recorded err; err alone tells earlier.
		return c.err != nil
	}
}

// recent describes the last few events, for failure messages.
func (c *Client) recent() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.events) == 0 {
		return "nothing received"
	}
	from := max(0, len(c.events)-3)
	var parts []string
	for _, e := range c.events[from:] {
		s := e.String()
		if len(s) > 120 {
			s = s[:120] + "…"
		}
		parts = append(parts, fmt.Sprintf("#%d %q", e.Seq, s))
	}
	return fmt.Sprintf("%d received, the last: %s", len(c.events), strings.Join(parts, ", "))
}

// Wait is [Client.Next] that fails the test (from the test's goroutine).
func (c *Client) Wait(within time.Duration, m Match) Event {
	c.tb().Helper()
	e, err := c.Next(within, m)
	if err != nil {
		c.tb().Fatal(err)
	}
	return e
}

// WaitSeen is [Client.Seen] that fails the test.
func (c *Client) WaitSeen(within time.Duration, m Match) Event {
	c.tb().Helper()
	e, err := c.Seen(within, m)
	if err != nil {
		c.tb().Fatal(err)
	}
	return e
}

// Done is closed when the client has stopped reading: the response ended
// or broke, or the client was closed.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why the client stopped reading: io.EOF if the response ended
// properly (its last chunk, or the end of a close-delimited body), else
// the error that broke it. It is nil while the client reads.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// End waits up to within for the response to end, and returns nil if it
// ended properly, [ErrTimeout] if it is still open, or what broke it.
func (c *Client) End(within time.Duration) error {
	select {
	case <-c.done:
	case <-time.After(within):
		return fmt.Errorf("%w: the stream is still open after %v", ErrTimeout, within)
	}
	if err := c.Err(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("ssetest: the response did not end properly: %w", err)
	}
	return nil
}

// WaitEnd is [Client.End] that fails the test.
func (c *Client) WaitEnd(within time.Duration) {
	c.tb().Helper()
	if err := c.End(within); err != nil {
		c.tb().Fatal(err)
	}
}

func (c *Client) tb() testing.TB {
	if c.t == nil {
		panic("ssetest: the Wait methods need a client from Open, OpenConn or FromResponse; use Next, Seen, Head or End")
	}
	return c.t
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// slowReader reads at most chunk bytes at a time, pausing before each read.
type slowReader struct {
	r     io.Reader
	chunk int
	pause time.Duration
}

func (s slowReader) Read(p []byte) (int, error) {
	time.Sleep(s.pause)
	return s.r.Read(p[:min(len(p), s.chunk)])
}
