package lobby_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// soak reports whether the long runs were asked for (SFERE_SOAK=1); the
// normal suite runs reduced versions of them.
func soak() bool { return os.Getenv("SFERE_SOAK") != "" }

// lclient is a lobby client for load and fault tests: safe to use from any
// goroutine (it never calls t.Fatal), sharing one HTTP transport with its
// peers, with its session cookie held by hand instead of a jar.
type lclient struct {
	base   string // http://host:port
	hc     *http.Client
	cookie string // lobby_session value, once joined
	header http.Header
}

// newTransport returns a transport for many lclients.
func newTransport(t testing.TB) *http.Transport {
	tr := &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, IdleConnTimeout: 30 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

func newLClient(base string, tr *http.Transport) *lclient {
	return &lclient{base: base, hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// post sends a Datastar POST with signals as its JSON body.
func (c *lclient) post(path string, signals any) (int, string, error) {
	body, err := json.Marshal(signals)
	if err != nil {
		return 0, "", err
	}
	return c.postRaw(path, "application/json", body)
}

func (c *lclient) postRaw(path, contentType string, body []byte) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Datastar-Request", "true")
	for k, v := range c.header {
		req.Header[k] = v
	}
	if c.cookie != "" {
		// Set as is (AddCookie would drop bytes a cookie may not hold:
		// the hostile-input tests send them).
		req.Header.Set("Cookie", "lobby_session="+c.cookie)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	for _, ck := range resp.Cookies() {
		if ck.Name == "lobby_session" {
			c.cookie = ck.Value
		}
	}
	return resp.StatusCode, string(b), err
}

// join posts /join and requires 200.
func (c *lclient) join(name string) error {
	status, body, err := c.post("/join", map[string]any{"username": name})
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("join %q: status %d: %s", name, status, body)
	}
	return nil
}

// probe reads one SSE stream over a TCP connection of its own and keeps
// only what load tests need: every line is checked against the SSE grammar
// the lobby may send; chat lines "tick N" are timed by N; joined/left lines
// and removals are counted by name; a few flags say whether the stream was
// told to join again or to reconnect.
//
// It parses with the kit's parser (ssetest.ReadEvents) but is not the
// kit's Client, on purpose: the load tests hold thousands of probes for
// minutes, and a probe keeps only what it counts (tick times, counters by
// name, the last few events), where the Client keeps every event and,
// with KeepLines, every line for its life; and a light probe
// (dialOpts.light) stops parsing after the participant list and only
// drains the socket.
type probe struct {
	conn   net.Conn
	opened time.Time

	mu        sync.Mutex
	ticks     map[int]time.Time // tick number -> first arrival
	dupTicks  int
	order     []int // tick numbers in arrival order
	joined    map[string]int
	left      map[string]int
	removed   map[string]int
	events    int
	comments  int
	badLines  []string
	list      map[string]bool // the participant list as the page would show it (item ids)
	listDups  int             // items that were already on the list
	rejoin    bool            // got the join form ("join again")
	reconnect bool            // got the farewell's reconnect element
	last      []string
	err       error // why reading stopped: io.EOF for a clean end
	listed    chan struct{}
	done      chan struct{}
}

var (
	tickRE   = regexp.MustCompile(`<p class="chat-message"><strong>[^<]*</strong>: tick (\d+)</p>`)
	systemRE = regexp.MustCompile(`<p class="system-message">(.*?) (joined|left) the lobby</p>`)
)

// sseLineOK reports whether line is one the lobby's streams may carry: an
// event type, a data line of a known field, a comment or the blank line
// that ends an event. Any other line would be an injected one.
func sseLineOK(line string) bool {
	switch {
	case line == "", strings.HasPrefix(line, ": "),
		line == "event: datastar-patch-elements", line == "event: datastar-patch-signals":
		return true
	case strings.HasPrefix(line, "id: "):
		_, err := sfere.ParsePosition(line[len("id: "):])
		return err == nil
	case strings.HasPrefix(line, "retry: "):
		ms, err := strconv.Atoi(line[len("retry: "):])
		return err == nil && ms > 0
	case strings.HasPrefix(line, "data: "):
		field, _, _ := strings.Cut(line[len("data: "):], " ")
		switch field {
		case "elements", "selector", "mode", "signals", "onlyIfMissing", "useViewTransition", "namespace":
			return true
		}
	}
	return false
}

type dialOpts struct {
	rcvbuf int  // SO_RCVBUF of the client socket, 0 for the default
	light  bool // after the participant list, read and discard (many churners)
	// own, if set, is the probe's name: the probe is listed once its
	// arrival was announced to it (after the first list), or with reload
	// (a return within grace, never announced) once its list shows it.
	own    string
	reload bool
}

// listedNow reports whether a probe with these options is listed, given
// that it saw a list. p.mu is held.
func (o dialOpts) listedNow(p *probe) bool {
	switch {
	case o.own == "":
		return true
	case o.reload:
		return p.list[participantID(o.own)]
	}
	return p.joined[o.own] > 0
}

// openProbe opens POST /sse with c's session on a new TCP connection.
// With read false, nothing is read after the response headers (a
// stalled reader).
func (c *lclient) openProbe(read bool, o dialOpts) (*probe, error) {
	host := strings.TrimPrefix(c.base, "http://")
	// As generous as the waits for events: a loopback dial takes
	// microseconds, but a dropped SYN is sent again only after 1 s, then
	// 2 s more (a 5 s bound failed a CI run of the churn soak here).
	d := &net.Dialer{Timeout: 30 * time.Second}
	if o.rcvbuf > 0 {
		d.Control = func(network, address string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.rcvbuf)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	conn, err := d.Dial("tcp", host)
	if err != nil {
		return nil, err
	}
	body := `{"message":""}`
	req := "POST /sse HTTP/1.1\r\nHost: " + host + "\r\nDatastar-Request: true\r\nContent-Type: application/json\r\n" +
		"Accept: text/event-stream\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n"
	if c.cookie != "" {
		req += "Cookie: lobby_session=" + c.cookie + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"+body); err != nil {
		conn.Close()
		return nil, err
	}
	p := &probe{conn: conn, opened: time.Now(), ticks: map[int]time.Time{}, joined: map[string]int{}, left: map[string]int{},
		removed: map[string]int{}, list: map[string]bool{}, listed: make(chan struct{}), done: make(chan struct{})}
	if !read {
		close(p.done) // no reader
		return p, nil
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(conn, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetReadDeadline(time.Time{})
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		conn.Close()
		return nil, fmt.Errorf("open stream: status %d", resp.StatusCode)
	}
	go p.read(resp.Body, o)
	return p, nil
}

func (p *probe) read(body io.ReadCloser, o dialOpts) {
	defer close(p.done)
	defer body.Close()
	sawList, listed := false, false
	err := ssetest.ReadEvents(body, func(e ssetest.Event) error {
		p.mu.Lock()
		defer p.mu.Unlock()
		switch {
		case e.IsComment:
			p.comments++
		case len(e.Data) > 0:
			p.event(e.Text(), e.At)
			sawList = sawList || strings.Contains(e.Data[0], `<ul id="participant-list">`)
			if !listed && sawList && o.listedNow(p) {
				listed = true
				close(p.listed)
				if o.light {
					return errLightProbe
				}
			}
		}
		return nil
	}, func(line string) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !sseLineOK(line) && len(p.badLines) < 10 {
			p.badLines = append(p.badLines, line)
		}
	})
	if err == errLightProbe { // listed: only drain the socket now
		if _, err = io.Copy(io.Discard, body); err == nil {
			err = io.EOF
		}
	}
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
}

// errLightProbe stops a light probe's parsing once it is listed.
var errLightProbe = errors.New("light probe: listed")

// event records one event's data. p.mu is held.
func (p *probe) event(data string, at time.Time) {
	p.events++
	short := data
	if len(short) > 300 {
		short = short[:300] + "…"
	}
	p.last = append(p.last, short)
	if len(p.last) > 8 {
		p.last = p.last[1:]
	}
	if !strings.Contains(data, "</p>") {
		goto more
	}
	for _, m := range tickRE.FindAllStringSubmatch(data, -1) {
		n, _ := strconv.Atoi(m[1])
		if _, dup := p.ticks[n]; dup {
			p.dupTicks++
			continue
		}
		p.ticks[n] = at
		p.order = append(p.order, n)
	}
	for _, m := range systemRE.FindAllStringSubmatch(data, -1) {
		name := m[1]
		if strings.HasPrefix(name, "churn") {
			name = "churn*" // counted together: thousands of names
		}
		if m[2] == "joined" {
			p.joined[name]++
		} else {
			p.left[name]++
		}
	}
more:
	switch {
	case strings.Contains(data, `<ul id="participant-list">`):
		clear(p.list)
		fallthrough
	case strings.Contains(data, "selector #participant-list") && strings.Contains(data, "mode append"):
		for _, m := range itemIDRE.FindAllStringSubmatch(data, -1) {
			if p.list[m[1]] {
				p.listDups++
			}
			p.list[m[1]] = true
		}
	case strings.Contains(data, "mode remove"):
		for _, line := range strings.Split(data, "\n") {
			if id, ok := strings.CutPrefix(line, "selector #"); ok {
				delete(p.list, id)
			}
		}
	}
	if strings.Contains(data, "mode remove") {
		for _, line := range strings.Split(data, "\n") {
			if id, ok := strings.CutPrefix(line, "selector #participant-"); ok {
				if strings.HasPrefix(id, "636875726e") { // hex of "churn"
					id = "churn*"
				}
				p.removed[id]++
			}
		}
	}
	if strings.Contains(data, `<form id="join"`) {
		p.rejoin = true
	}
	if strings.Contains(data, `data-init__delay`) {
		p.reconnect = true
	}
}

// waitListed waits for the participant list (with dialOpts.own, for the
// probe's own arrival).
func (p *probe) waitListed(d time.Duration) error {
	select {
	case <-p.listed:
		return nil
	case <-p.done:
		return fmt.Errorf("stream ended (%v) before the participant list", p.readErr())
	case <-time.After(d):
		return fmt.Errorf("no participant list within %v", d)
	}
}

// waitEnd waits until reading stopped and returns why (io.EOF: a clean end).
func (p *probe) waitEnd(d time.Duration) (error, bool) {
	select {
	case <-p.done:
		return p.readErr(), true
	case <-time.After(d):
		return nil, false
	}
}

func (p *probe) readErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *probe) close() {
	p.conn.Close()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// ports returns the probe connection's local and server ports, as
// netfault.DropConn takes them.
func (p *probe) ports() (local, remote int) {
	return p.conn.LocalAddr().(*net.TCPAddr).Port, p.conn.RemoteAddr().(*net.TCPAddr).Port
}

// snapshot returns a copy of the counters under the lock.
func (p *probe) with(f func(p *probe)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

func (p *probe) dump() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("events %d, comments %d, err %v, last events:\n  %s", p.events, p.comments, p.err, strings.Join(p.last, "\n  "))
}

// logRecorder keeps the lobby's "left" log records (name and cause), so a
// test can tell why and when a participant was announced as gone.
type logRecorder struct {
	next slog.Handler
	mu   sync.Mutex
	left map[string]leftRecord
}

type leftRecord struct {
	cause string
	at    time.Time
	n     int
}

func newLogRecorder(next slog.Handler) *logRecorder {
	return &logRecorder{next: next, left: map[string]leftRecord{}}
}

func (h *logRecorder) Enabled(ctx context.Context, l slog.Level) bool { return true }

func (h *logRecorder) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "left" {
		// Churners' departures are counted together: they are thousands.
		var name, cause string
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "name":
				name = a.Value.String()
			case "cause":
				cause = a.Value.String()
			}
			return true
		})
		if strings.HasPrefix(name, "churn") {
			name = "churn*"
		}
		h.mu.Lock()
		lr := h.left[name]
		h.left[name] = leftRecord{cause: cause, at: r.Time, n: lr.n + 1}
		h.mu.Unlock()
	}
	if h.next != nil && h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *logRecorder) WithAttrs(as []slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler         { return h }

func (h *logRecorder) leftOf(name string) (leftRecord, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	lr, ok := h.left[name]
	return lr, ok
}

// percentile returns the q-quantile (0..1) of ds, which it sorts.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(q*float64(len(ds)-1) + 0.5)
	return ds[i]
}

// heapAndGoroutines returns the heap in use after a GC, and the goroutines.
func heapAndGoroutines() (uint64, int) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, runtime.NumGoroutine()
}

// metricValue reads one sample of /metrics, e.g. `lobby_participants`.
func metricValue(hc *http.Client, base, sample string) (float64, error) {
	resp, err := hc.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), sample+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, errors.New("no sample " + sample)
}

const mib = 1 << 20
