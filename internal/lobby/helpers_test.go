package lobby_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// Timings of the acceptance tests: short, so the suite is fast, but with
// margins for -race on two cores.
const (
	testGrace = 200 * time.Millisecond
	waitLong  = 5 * time.Second // bound for things that should happen "soon"
)

// startServer runs a real lobby server on a loopback port and stops it when
// the test ends.
func startServer(t testing.TB, opts lobby.Options) *lobby.Server {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Grace == 0 {
		opts.Grace = testGrace
	}
	if opts.Heartbeat == 0 {
		opts.Heartbeat = time.Second
	}
	if opts.Resume == 0 {
		// Most tests pin what a departure does; the resume tests ask
		// for the window.
		opts.Resume = -1
	}
	// Every test client comes from 127.0.0.1: the per-address budgets
	// are off unless a test asks for them (budget_test.go does).
	if opts.JoinRate == 0 {
		opts.JoinRate = -1
	}
	if opts.StreamRate == 0 {
		opts.StreamRate = -1
	}
	if opts.AddressMessageRate == 0 {
		opts.AddressMessageRate = -1
	}
	if opts.NamesPerAddress == 0 {
		opts.NamesPerAddress = -1
	}
	if opts.Logger == nil {
		opts.Logger = ssetest.Logger(t, slog.LevelDebug)
	}
	srv, err := lobby.Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("start lobby: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return srv
}

// participantID is the element id the page gives a name's list item.
func participantID(name string) string { return "participant-" + hex.EncodeToString([]byte(name)) }

// browser is one browser's view of the server: a cookie jar and an HTTP
// client that sends Datastar-shaped requests.
type browser struct {
	t      testing.TB
	base   *url.URL
	jar    *cookiejar.Jar
	client *http.Client
	local  *net.TCPAddr // the address its connections come from; nil: any
}

func newBrowser(t testing.TB, srv *lobby.Server) *browser {
	t.Helper()
	return newBrowserAt(t, srv.URL())
}

func newBrowserAt(t testing.TB, base string) *browser {
	t.Helper()
	return newBrowserFrom(t, base, nil)
}

// newBrowserFrom is newBrowserAt with every connection made from the
// local address local (nil: any), e.g. 127.0.0.2, so that a test can
// silence another address's traffic to the server and not this one's.
func newBrowserFrom(t testing.TB, base string, local *net.TCPAddr) *browser {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	if local != nil {
		tr.DialContext = (&net.Dialer{LocalAddr: local}).DialContext
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &browser{t: t, base: u, jar: jar, client: &http.Client{Jar: jar, Transport: tr, Timeout: waitLong}, local: local}
}

// reply is a finished HTTP response.
type reply struct {
	status int
	header http.Header
	body   string
}

// post sends a Datastar request: POST with header Datastar-Request: true and
// the signals as a JSON body.
func (b *browser) post(path string, signals any) reply {
	b.t.Helper()
	body, err := json.Marshal(signals)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.postRaw(path, body, true)
}

// postRaw sends body as is, with or without the Datastar header.
func (b *browser) postRaw(path string, body []byte, datastar bool) reply {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.base.JoinPath(path).String(), bytes.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream, text/html, application/json")
	if datastar {
		req.Header.Set("Datastar-Request", "true")
	}
	return b.do(req)
}

func (b *browser) get(path string) reply {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.base.JoinPath(path).String(), nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

func (b *browser) do(req *http.Request) reply {
	b.t.Helper()
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatalf("%s %s: read body: %v", req.Method, req.URL.Path, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// join posts /join and requires success.
func (b *browser) join(name string) reply {
	b.t.Helper()
	r := b.post("/join", map[string]any{"username": name})
	if r.status != http.StatusOK {
		b.t.Fatalf("join %q: status %d: %s", name, r.status, r.body)
	}
	if !strings.Contains(r.body, `@post('/sse`) {
		b.t.Fatalf("join %q: the answer does not open the stream:\n%s", name, r.body)
	}
	return r
}

// say posts a chat message and requires success.
func (b *browser) say(text string) {
	b.t.Helper()
	r := b.post("/message", map[string]any{"message": text})
	if r.status != http.StatusOK {
		b.t.Fatalf("message %q: status %d: %s", text, r.status, r.body)
	}
	if !strings.Contains(r.body, `"message":""`) {
		b.t.Fatalf("message %q: the answer does not clear the input: %s", text, r.body)
	}
}

// enter joins under name and opens the stream, waiting for the list.
func (b *browser) enter(name string) *stream {
	b.t.Helper()
	b.join(name)
	s := b.openStream()
	s.waitFor(`id="participant-list"`)
	return s
}

// openStream opens POST /sse on a TCP connection of its own, as the
// browser's data-init does, so the test can close that connection (a
// closed tab) or drop its packets (a vanished machine).
func (b *browser) openStream(opts ...ssetest.Option) *stream {
	b.t.Helper()
	return b.openStreamFrom("", opts...)
}

// openStreamFrom is openStream with a Last-Event-ID header (if lastID is
// not empty), as a reconnecting client sends it.
func (b *browser) openStreamFrom(lastID string, opts ...ssetest.Option) *stream {
	b.t.Helper()
	return b.openStreamAt("/sse", lastID, opts...)
}

// openPageStream opens the stream as a page's data-init does: from the
// position the page was rendered at, in the query.
func (b *browser) openPageStream(pos string) *stream {
	b.t.Helper()
	return b.openStreamAt("/sse?lastEventID="+url.QueryEscape(pos), "")
}

func (b *browser) openStreamAt(target, lastID string, opts ...ssetest.Option) *stream {
	b.t.Helper()
	s, resp := b.tryStreamAt(target, lastID, opts...)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b.t.Fatalf("open stream: status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return s
}

// tryStreamAt is openStreamAt for a stream that may be refused: it
// returns the stream and its response head, whatever the status.
func (b *browser) tryStreamAt(target, lastID string, opts ...ssetest.Option) (*stream, *http.Response) {
	b.t.Helper()
	req := ssetest.DatastarPost(target, `{"username":"","message":""}`)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	u, err := url.Parse(b.base.JoinPath("/sse").String()) // JoinPath leaves the path without its leading slash
	if err != nil {
		b.t.Fatal(err)
	}
	cookies := &http.Request{Header: http.Header{}}
	for _, c := range b.jar.Cookies(u) {
		cookies.AddCookie(c)
	}
	if c := cookies.Header.Get("Cookie"); c != "" {
		req.Header.Set("Cookie", c)
	}
	opened := time.Now()
	var c *ssetest.Client
	if b.local != nil {
		conn, err := (&net.Dialer{LocalAddr: b.local, Timeout: waitLong}).Dial("tcp", b.base.Host)
		if err != nil {
			b.t.Fatal(err)
		}
		req.Host = b.base.Host
		c = ssetest.OpenConn(b.t, conn, req, opts...)
	} else {
		c = ssetest.Open(b.t, b.base.Host, req, opts...)
	}
	resp := c.WaitHead(waitLong)
	b.jar.SetCookies(u, resp.Cookies()) // the member cookie comes with the stream
	return &stream{t: b.t, Client: c, opened: opened}, resp
}

// stream is one lobby stream read by the test kit. Its helpers look at
// events' data (a comment is a heartbeat) and search the whole record.
type stream struct {
	t testing.TB
	*ssetest.Client
	opened time.Time
}

// withData matches an event whose data (its lines joined with "\n")
// contains text.
func withData(text string) ssetest.Match {
	return ssetest.Where(fmt.Sprintf("with data containing %q", text), func(e ssetest.Event) bool {
		return !e.IsComment && strings.Contains(e.Text(), text)
	})
}

// waitFor waits for an event containing text and returns the first one,
// wherever it is in the stream.
func (s *stream) waitFor(text string) ssetest.Event {
	s.t.Helper()
	return s.waitForWithin(text, waitLong)
}

func (s *stream) waitForWithin(text string, d time.Duration) ssetest.Event {
	s.t.Helper()
	return s.WaitSeen(d, withData(text))
}

// idAfter waits for the event containing text and for the id that
// follows it (a kept event's id comes with the position patch written
// after it, which may arrive in a later read), and returns the last id
// the stream has, as a browser that saw text would send back.
func (s *stream) idAfter(text string) string {
	s.t.Helper()
	s.waitFor(text)
	id := ""
	ssetest.Eventually(s.t, waitLong, fmt.Sprintf("an id at or after %q", text), func() bool {
		seen := false
		for _, e := range s.Events() {
			seen = seen || (!e.IsComment && strings.Contains(e.Text(), text))
			if seen && e.HasID {
				id = e.ID
			}
		}
		return id != ""
	})
	return id
}

// lastID is the id of the last event that carried one, as a browser
// keeps it to send back when it reconnects.
func (s *stream) lastID() string {
	id := ""
	for _, e := range s.Events() {
		if e.HasID {
			id = e.ID
		}
	}
	return id
}

// renderedPosition is the position a page or /join answer renders for its
// stream to open from (see the lobby template's data-init).
func renderedPosition(t testing.TB, body string) string {
	t.Helper()
	m := renderedPositionRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no position in the stream's data-init:\n%s", body)
	}
	return m[1]
}

var renderedPositionRE = regexp.MustCompile(`data-init="[^"]*@post\('/sse\?lastEventID=([^']+)'\)"`)

// events returns the events received so far, without the comments and
// the signal patches of the page's watchdog (visible beats, positions).
func (s *stream) events() []ssetest.Event {
	var out []ssetest.Event
	for _, e := range s.Events() {
		if !e.IsComment && !isWatchdogPatch(e) {
			out = append(out, e)
		}
	}
	return out
}

// watchdogPatchRE matches the data of a signal patch that sets only the
// watchdog's signals: a visible beat, or a position.
var watchdogPatchRE = regexp.MustCompile(`^signals \{("_streamBeat":\d+,?)?("_streamPos":"[^"]*")?\}$`)

// isWatchdogPatch reports whether e is a signal patch for the page's
// watchdog only.
func isWatchdogPatch(e ssetest.Event) bool {
	return e.Type == "datastar-patch-signals" && watchdogPatchRE.MatchString(e.Text())
}

// isBeat reports whether e is a heartbeat: a comment, or a visible beat.
func isBeat(e ssetest.Event) bool {
	return e.IsComment || isWatchdogPatch(e) && strings.Contains(e.Text(), `"_streamBeat"`)
}

// count returns how many events contain text.
func (s *stream) count(text string) int {
	n := 0
	for _, e := range s.events() {
		if strings.Contains(e.Text(), text) {
			n++
		}
	}
	return n
}

// len returns how many events arrived so far.
func (s *stream) len() int { return len(s.events()) }

// heartbeats returns how many heartbeats (comments or visible beats)
// arrived so far.
func (s *stream) heartbeats() int {
	n := 0
	for _, e := range s.Events() {
		if isBeat(e) {
			n++
		}
	}
	return n
}

// waitEnd waits until the server ends the stream and returns how reading
// stopped (io.EOF for a clean end of the response).
func (s *stream) waitEnd(d time.Duration) error {
	s.t.Helper()
	select {
	case <-s.Done():
	case <-time.After(d):
		s.t.Fatalf("stream still open after %v; got:\n%s", d, s.dump())
	}
	return s.Err()
}

// close closes the stream's TCP connection, as a closed tab does.
func (s *stream) close() { s.Close() }

func (s *stream) localPort() int { return s.LocalPort() }

func (s *stream) dump() string {
	var b strings.Builder
	for _, e := range s.events() {
		fmt.Fprintf(&b, "  +%v %q\n", e.At.Sub(s.opened).Round(time.Millisecond), e.String())
	}
	fmt.Fprintf(&b, "  (%d heartbeat comments)", s.heartbeats())
	return b.String()
}

// leftLine and joinedLine are the system lines of a name.
func leftLine(name string) string {
	return `<p class="system-message">` + name + ` left the lobby</p>`
}

func joinedLine(name string) string {
	return `<p class="system-message">` + name + ` joined the lobby</p>`
}

// removal is the text of the event that removes a name's list item (an
// event with "mode remove" and this selector).
func removal(name string) string { return "selector #" + participantID(name) }

// debugKeys reads GET /debug/connections.
func debugKeys(t testing.TB, b *browser) []string {
	t.Helper()
	r := b.get("/debug/connections")
	if r.status != http.StatusOK {
		t.Fatalf("debug connections: status %d: %s", r.status, r.body)
	}
	var keys []string
	if err := json.Unmarshal([]byte(r.body), &keys); err != nil {
		t.Fatalf("debug connections: %v: %s", err, r.body)
	}
	return keys
}

// streamKeyText is the text of a lobby stream key: the person (the name,
// percent-encoded), the room, and the connection's own id.
var streamKeyText = regexp.MustCompile(`^([A-Za-z0-9_~%-]*)/lobby/[0-9a-f]{16}$`)

// debugPeople reads GET /debug/connections and returns the person of each
// stream, sorted (a person with two tabs is there twice). It fails the
// test on a key that is not a lobby stream key.
func debugPeople(t testing.TB, b *browser) []string {
	t.Helper()
	var people []string
	for _, k := range debugKeys(t, b) {
		m := streamKeyText.FindStringSubmatch(k)
		if m == nil {
			t.Fatalf("debug key %q is not a lobby stream key", k)
		}
		name, err := url.PathUnescape(m[1])
		if err != nil {
			t.Fatalf("debug key %q: %v", k, err)
		}
		people = append(people, name)
	}
	slices.Sort(people)
	return people
}

// presenceBarrier has a newcomer named name enter srv's lobby and waits
// until each of streams shows its arrival. The lobby's presence sends its
// batches to a stream in order, so whatever it had queued for those
// streams before (a doubled arrival, say) has reached them by then: a
// check that something was announced once waits for this, not for a time.
func presenceBarrier(t *testing.T, srv *lobby.Server, name string, streams ...*stream) {
	t.Helper()
	newBrowser(t, srv).enter(name)
	for _, s := range streams {
		s.waitFor(joinedLine(name))
	}
}

// brianAndPhil starts a server (debug on) with Brian and Phil in the lobby
// and quiet, and returns how many events Phil's stream holds by then, so a
// test can check that what it does next changes nothing.
func brianAndPhil(t *testing.T) (srv *lobby.Server, brian, phil *browser, bs, ps *stream, before int) {
	t.Helper()
	srv = startServer(t, lobby.Options{Debug: true})
	brian, phil = newBrowser(t, srv), newBrowser(t, srv)
	bs = brian.enter("brian")
	ps = phil.enter("phil")
	bs.waitFor(joinedLine("phil"))
	// Phil's own arrival is in his snapshot or in a diff after it: quiet
	// once his list shows both.
	want := map[string]bool{participantID("brian"): true, participantID("phil"): true}
	ssetest.Eventually(t, waitLong, "phil's list shows brian and phil", func() bool { return maps.Equal(listModel(ps), want) })
	// A diff is written as two events (the list item, then the line), and
	// the client may have parsed only the first: when Phil's arrival came
	// as a diff, its line follows.
	if _, asDiff := ps.Find(withData("mode append\nelements <li id=\"" + participantID("phil"))); asDiff {
		ps.waitFor(joinedLine("phil"))
	}
	return srv, brian, phil, bs, ps, ps.len()
}
