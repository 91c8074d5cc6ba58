package lobby_test

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// rawRequest writes req on a new TCP connection to srv and returns the
// connection and a reader of what comes back.
func rawConn(t *testing.T, srv *lobby.Server) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", srv.Addr().String(), waitLong)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// readStatus reads a response's status line and headers (within d).
func readStatus(t *testing.T, c net.Conn, br *bufio.Reader, d time.Duration) (*http.Response, error) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	return http.ReadResponse(br, nil)
}

// A name is an identity, so names follow a stricter policy than messages
// (see SECURITY.md): markup is escaped, selector metacharacters are plain
// text (the list item's id is hex), right-to-left letters are welcome, but
// invisible, formatting and direction-control characters are refused,
// spaces are collapsed and emoji variation selectors dropped, so that two
// names that look the same are the same name.
func TestHostileNames(t *testing.T) {
	srv := startServer(t, lobby.Options{Debug: true})
	phil := newBrowser(t, srv)
	ps := phil.enter("phil")

	accepted := []struct{ raw, name, shown string }{
		{`<img src=x onerror=alert(1)>`, `<img src=x onerror=alert(1)>`, `&lt;img src=x onerror=alert(1)&gt;`},
		{`</li><script>alert(1)</script>`, `</li><script>alert(1)</script>`, `&lt;/li&gt;&lt;script&gt;alert(1)&lt;/script&gt;`},
		{`x"], #messages, [id="`, `x"], #messages, [id="`, `x&#34;], #messages, [id=&#34;`},
		{`list`, `list`, `list`}, // its item is not #participant-list
		{`#participant-list`, `#participant-list`, `#participant-list`},
		{`*`, `*`, `*`},
		{`محمد`, `محمد`, `محمد`},                        // right-to-left letters
		{`Zoë  O'Neil`, `Zoë O'Neil`, `Zoë O&#39;Neil`}, // spaces collapse
		{"ana\u00a0maria", "ana maria", "ana maria"},    // so does a no-break space
		{"❤\ufe0f", "❤", "❤"},                           // the emoji selector is dropped
		{"e" + strings.Repeat("\u0301", 8), "e" + strings.Repeat("\u0301", 8), "e" + strings.Repeat("\u0301", 8)},
	}
	for _, a := range accepted {
		b := newBrowser(t, srv)
		r := b.post("/join", map[string]any{"username": a.raw})
		if r.status != http.StatusOK {
			t.Errorf("join as %q: status %d: %s", a.raw, r.status, r.body)
			continue
		}
		s := b.openStream()
		item := `<li id="` + participantID(a.name) + `">` + a.shown + `</li>`
		ps.waitFor(item)
		ps.waitFor(`<p class="system-message">` + a.shown + ` joined the lobby</p>`)
		s.waitFor(`id="participant-list"`)
	}
	// Same-looking names are one name.
	for _, raw := range []string{"ana maria", "ana \u2003 maria", "❤", "❤\ufe0e"} {
		if r := newBrowser(t, srv).post("/join", map[string]any{"username": raw}); r.status != http.StatusConflict {
			t.Errorf("join as %q: status %d, want 409 (same as an existing name)", raw, r.status)
		}
	}
	refused := map[string]string{
		"right-to-left override": "abc\u202Eevil", "left-to-right mark": "\u200Ephil", "first strong isolate": "a\u2068b",
		"zero-width space": "ph\u200Bil", "zero-width joiner": "ph\u200Dil", "zero-width non-joiner": "ph\u200Cil",
		"word joiner": "ph\u2060il", "BOM": "\uFEFFphil", "soft hyphen": "ph\u00ADil", "tag character": "phil\U000E0041",
		"Hangul filler": "\u3164", "combining grapheme joiner": "ph\u034Fil", "variation selector 1": "phil\uFE00",
		"line separator": "a\u2028b", "paragraph separator": "a\u2029b", "private use": "a\uE000b", "noncharacter": "a\uFFFEb",
		"braille blank only": "\u2800\u2800", "combining marks only": "\u0301\u0301", "nine stacked marks": "e" + strings.Repeat("\u0301", 9),
		"newline": "a\nb", "carriage return": "a\rb", "NUL": "a\x00b", "tab": "a\tb", "escape": "a\x1bb", "DEL": "a\x7fb", "NEL": "a\u0085b",
		"33 characters": strings.Repeat("x", 33), "empty": "", "spaces": " \u3000 ",
	}
	stranger := newBrowser(t, srv)
	for what, raw := range refused {
		if r := stranger.post("/join", map[string]any{"username": raw}); r.status != http.StatusBadRequest {
			t.Errorf("join with a %s (%q): status %d, want 400: %s", what, raw, r.status, r.body)
		}
	}

	// Every selector any stream got is one of the page's own.
	presenceBarrier(t, srv, "after the hostile joins", ps)
	removalRE := regexp.MustCompile(`(?m)^selector (.*)$`)
	for _, e := range ps.events() {
		for _, m := range removalRE.FindAllStringSubmatch(e.Text(), -1) {
			if !regexp.MustCompile(`^#(participant-list|messages|participant-[0-9a-f]+)$`).MatchString(m[1]) {
				t.Errorf("a stream got selector %q", m[1])
			}
		}
	}
	for _, a := range accepted {
		if got := participantID(a.name); got != "participant-"+hex.EncodeToString([]byte(a.name)) || got == "participant-list" {
			t.Errorf("id of %q = %q", a.name, got)
		}
	}
}

// A name cannot reach another element: when the name "list" (whose naive
// id would be #participant-list) and a name full of selector syntax leave,
// only their own list items are removed, and the list itself stays.
func TestNameCannotTargetAnotherElement(t *testing.T) {
	srv := startServer(t, lobby.Options{})
	phil := newBrowser(t, srv)
	ps := phil.enter("phil")
	names := []string{"list", `a, #participant-list, #messages`, `phil`[:2] + `"]`}
	for _, n := range names {
		b := newBrowser(t, srv)
		b.enter(n)
		ps.waitFor(joinedLine(templateEscape(n)))
		if r := b.post("/leave", nil); r.status != http.StatusOK {
			t.Fatalf("%s leaves: %d", n, r.status)
		}
		ps.waitFor(leftLine(templateEscape(n)))
	}
	want := map[string]bool{participantID("phil"): true}
	if got := listModel(ps); len(got) != 1 || !got[participantID("phil")] {
		t.Errorf("Phil's list after the tricky names left = %v, want %v", got, want)
	}
	for _, e := range ps.events() {
		if strings.Contains(e.Text(), "mode remove") && !regexp.MustCompile(`(?m)^selector #participant-[0-9a-f]+$`).MatchString(e.Text()) {
			t.Errorf("a removal that is not of one participant's item: %s", e.Text())
		}
	}
}

// templateEscape is what html/template makes of text.
func templateEscape(s string) string {
	return strings.NewReplacer(`&`, "&amp;", `<`, "&lt;", `>`, "&gt;", `"`, "&#34;", `'`, "&#39;", `+`, "&#43;").Replace(s)
}

// Messages may hold markup (escaped), right-to-left text with its marks and
// overrides, zero-width characters and line separators; never a control
// character (so never a line break: no input can start an SSE line) nor a
// tower of combining marks. Every line of every stream stays well-formed SSE.
func TestHostileMessages(t *testing.T) {
	srv := startServer(t, lobby.Options{Debug: true})
	brian, phil := newBrowser(t, srv), newBrowser(t, srv)
	bs := brian.enter("brian")
	ps := phil.enter("phil")
	bs.waitFor(joinedLine("phil"))
	raw := brian.openStream(ssetest.KeepLines()) // another stream of brian's session, keeping its lines as sent

	accepted := map[string]string{
		"markup":       `<script>alert("x")</script><style>#messages{display:none}</style>`,
		"selector":     `#participant-list, #messages`,
		"sse syntax":   "data: elements <b>x</b> event: datastar-patch-elements",
		"rtl":          "שלום עולם مرحبا",
		"rtl override": "\u202Eevil text",
		"marks":        "\u200Fשלום\u200E, \u2067isolated\u2069",
		"zero-width":   "zero\u200Bwidth joiner: 👩\u200D💻, non-joiner: می\u200Cخواهم",
		"separators":   "line\u2028separator\u2029paragraph",
		"eight marks":  "e" + strings.Repeat("\u0301", 8),
	}
	for what, text := range accepted {
		brian.say(text)
		ps.waitFor("<strong>brian</strong>: " + templateEscape(text) + "</p>")
		_ = what
	}
	refused := map[string]string{
		"newline": "a\nevent: datastar-patch-elements\ndata: elements <p>forged</p>", "carriage return": "a\rdata: elements x",
		"CRLF": "a\r\n\r\nevent: x", "NUL": "a\x00", "bell": "bell\x07", "escape": "\x1b[31mred", "NEL": "a\u0085b",
		"nine marks": "e" + strings.Repeat("\u0301", 9), "noncharacter": "a\uFFFF", "too long": strings.Repeat("x", 1001),
	}
	for what, text := range refused {
		if r := brian.post("/message", map[string]any{"message": text}); r.status != http.StatusBadRequest {
			t.Errorf("message with %s: status %d, want 400", what, r.status)
		}
	}
	brian.say("the end")
	ps.waitFor("<strong>brian</strong>: the end")
	raw.waitFor("the end")
	raw.close()
	for _, line := range raw.Lines() {
		if !sseLineOK(line) {
			t.Errorf("malformed SSE line %q", line)
		}
	}
	for _, s := range []*stream{ps, bs} {
		if n := s.count("<script") + s.count("<style") + s.count("forged"); n != 0 {
			t.Errorf("markup or forged events reached a stream:\n%s", s.dump())
		}
	}
}

// Bodies of 10 MB are refused without being read: with a Content-Length,
// at once (413); chunked, after the first 64 KiB. The server stays
// responsive and its streams unharmed.
func TestHugeBodiesRefused(t *testing.T) {
	srv := startServer(t, lobby.Options{})
	phil := newBrowser(t, srv)
	ps := phil.enter("phil")
	const size = 10 << 20
	chunk := strings.Repeat("a", 64<<10)
	for _, path := range []string{"/join", "/sse", "/message", "/leave"} {
		for _, chunked := range []bool{false, true} {
			c, br := rawConn(t, srv)
			hdr := "POST " + path + " HTTP/1.1\r\nHost: x\r\nDatastar-Request: true\r\nContent-Type: application/json\r\n"
			if chunked {
				hdr += "Transfer-Encoding: chunked\r\n\r\n"
			} else {
				hdr += fmt.Sprintf("Content-Length: %d\r\n\r\n", size)
			}
			start := time.Now()
			io.WriteString(c, hdr)
			sent := make(chan int, 1)
			go func() {
				n := 0
				for n < size {
					var err error
					if chunked {
						_, err = fmt.Fprintf(c, "%x\r\n%s\r\n", len(chunk), chunk)
					} else {
						_, err = io.WriteString(c, chunk)
					}
					if err != nil {
						break
					}
					n += len(chunk)
				}
				sent <- n
			}()
			resp, err := readStatus(t, c, br, waitLong)
			if err != nil {
				t.Fatalf("%s (chunked %v): %v", path, chunked, err)
			}
			took := time.Since(start)
			c.Close()
			n := <-sent
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("%s (chunked %v): status %d, want 413", path, chunked, resp.StatusCode)
			}
			t.Logf("%s, 10 MB (chunked %v): %d after %v; %d KiB sent before the server closed", path, chunked, resp.StatusCode, took.Round(time.Millisecond), n>>10)
		}
	}
	phil.say("still here")
	ps.waitFor("<strong>phil</strong>: still here")
}

// Slow-loris bodies: a POST whose body trickles in is answered 408 after
// the body timeout and its connection closed; the timeout is for the body
// only, so a stream outlives it many times over.
func TestSlowBodiesTimedOut(t *testing.T) {
	const bodyTimeout = 400 * time.Millisecond
	srv := startServer(t, lobby.Options{BodyTimeout: bodyTimeout, Heartbeat: 100 * time.Millisecond})
	phil := newBrowser(t, srv)
	ps := phil.enter("phil")
	for _, path := range []string{"/join", "/sse", "/message", "/leave"} {
		c, br := rawConn(t, srv)
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nDatastar-Request: true\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{", path)
		stop := make(chan struct{})
		go func() {
			t := time.NewTicker(50 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					if _, err := io.WriteString(c, " "); err != nil {
						return
					}
				}
			}
		}()
		start := time.Now()
		resp, err := readStatus(t, c, br, 5*bodyTimeout)
		took := time.Since(start)
		close(stop)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if resp.StatusCode != http.StatusRequestTimeout || took < bodyTimeout-50*time.Millisecond || took > 3*bodyTimeout {
			t.Errorf("%s: status %d after %v, want 408 after about %v", path, resp.StatusCode, took, bodyTimeout)
		}
		// The connection is closed after the answer.
		c.SetReadDeadline(time.Now().Add(waitLong))
		if _, err := io.Copy(io.Discard, br); err != nil && !errors.Is(err, io.EOF) {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("%s: connection still open after the 408", path)
			}
		}
	}
	// A body nobody reads (a GET, an unknown route, a refused POST) is
	// drained by net/http after the answer: under the same deadline.
	for _, req := range []string{"GET / HTTP/1.1", "GET /metrics HTTP/1.1", "GET /nope HTTP/1.1",
		"POST /join HTTP/1.1\r\nSec-Fetch-Site: cross-site"} {
		c, br := rawConn(t, srv)
		fmt.Fprintf(c, "%s\r\nHost: x\r\nDatastar-Request: true\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", req)
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if _, err := io.WriteString(c, " "); err != nil {
					return
				}
			}
		}()
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(10 * bodyTimeout))
		_, err := io.Copy(io.Discard, br) // the answer, then the close
		took := time.Since(start)
		close(stop)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || took > 4*bodyTimeout {
			t.Errorf("%q with a trickling body: connection open for %v (%v)", req, took, err)
		}
	}

	// A stream is not a slow body: it lives on.
	time.Sleep(4 * bodyTimeout) // negative check: a stream outlives four body timeouts
	phil.say("after the body timeout")
	ps.waitFor("<strong>phil</strong>: after the body timeout")
	if err := ps.Err(); err != nil {
		t.Errorf("Phil's stream ended: %v", err)
	}
}

// Slow-loris headers: a connection that sends its headers slowly, or
// nothing at all, is closed after the read-header timeout.
func TestSlowHeadersTimedOut(t *testing.T) {
	const headerTimeout = 400 * time.Millisecond
	srv := startServer(t, lobby.Options{ReadHeaderTimeout: headerTimeout})
	for _, trickle := range []bool{false, true} {
		c, br := rawConn(t, srv)
		start := time.Now()
		stop := make(chan struct{})
		if trickle {
			io.WriteString(c, "POST /join HTTP/1.1\r\nHost: x\r\n")
			go func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					if _, err := fmt.Fprintf(c, "X-Slow-%d: y\r\n", i); err != nil {
						return
					}
				}
			}()
		}
		c.SetReadDeadline(time.Now().Add(10 * headerTimeout))
		_, err := io.Copy(io.Discard, br)
		took := time.Since(start)
		close(stop)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("trickle %v: connection still open after %v", trickle, took)
		} else if took < headerTimeout-50*time.Millisecond || took > 4*headerTimeout {
			t.Errorf("trickle %v: closed after %v, want about %v", trickle, took, headerTimeout)
		}
		t.Logf("headers trickling %v: closed after %v (%v)", trickle, took.Round(time.Millisecond), err)
	}
}

// Signals must come as application/json: other content types are refused
// with 415 and change nothing; a body-less request may omit the type.
func TestWrongContentTypesRefused(t *testing.T) {
	srv := startServer(t, lobby.Options{})
	brian, phil := newBrowser(t, srv), newBrowser(t, srv)
	brian.enter("brian")
	ps := phil.enter("phil")
	ps.waitFor(`id="participant-list"`)
	ps.waitFor(joinedLine("phil")) // the last event of the stream's start
	before := ps.len()
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/html", "application/jsonp", "json", ";;", ""} {
		for path, body := range map[string]string{"/join": `{"username":"zed"}`, "/message": `{"message":"hi"}`, "/leave": `{}`, "/sse": `{}`} {
			c := &lclient{base: srv.URL(), hc: brian.client, cookie: sessionOf(brian)}
			status, rbody, err := c.postRaw(path, ct, []byte(body))
			if err != nil {
				t.Fatal(err)
			}
			if status != http.StatusUnsupportedMediaType || !strings.Contains(rbody, "application/json") {
				t.Errorf("%s as %q: status %d: %s", path, ct, status, rbody)
			}
		}
	}
	for _, ct := range []string{"application/json; charset=utf-8", "Application/JSON"} {
		if r := newBrowserCT(t, srv, ct).post("/join", map[string]any{"username": "ct" + fmt.Sprint(len(ct))}); r.status != http.StatusOK {
			t.Errorf("join as %q: status %d", ct, r.status)
		}
	}
	// curl -X POST -H 'Datastar-Request: true' with no body at all.
	c := &lclient{base: srv.URL(), hc: brian.client, cookie: sessionOf(brian)}
	if status, body, _ := c.postRaw("/leave", "", nil); status != http.StatusOK {
		t.Errorf("leave without a body or type: %d %s", status, body)
	}
	ps.waitFor(leftLine("brian"))
	if n := ps.len() - before; n != 2 {
		t.Errorf("refused requests reached Phil's stream: %d events", n-2)
	}
}

// newBrowserCT is a browser whose POSTs declare contentType.
func newBrowserCT(t *testing.T, srv *lobby.Server, contentType string) *browser {
	b := newBrowser(t, srv)
	b.client.Transport = ctTransport{contentType, b.client.Transport}
	return b
}

type ctTransport struct {
	ct   string
	next http.RoundTripper
}

func (c ctTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r.Header.Set("Content-Type", c.ct)
	return c.next.RoundTrip(r)
}
