package lobby

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"

	"github.com/sfere-go/sfere"
)

// The fuzzers post arbitrary bodies and content types to each route of a
// real lobby, in process, as a participant of their own, while an observer
// participant holds a stream. Whatever the input, every answer and every
// byte the observer receives must be well-formed Datastar SSE: only known
// event types and data fields (no input can start a line or an event),
// only the page's own selectors, and only the templates' own tags and
// attributes (user text is always escaped). Run one with, e.g.,
//
//	go test -run '^$' -fuzz '^FuzzMessageSignals$' -fuzztime 30s ./internal/lobby
//
// The seed corpus lives in testdata/fuzz/<name>/.

func FuzzJoinSignals(f *testing.F)    { fuzzRoute(f, "/join") }
func FuzzMessageSignals(f *testing.F) { fuzzRoute(f, "/message") }
func FuzzLeaveSignals(f *testing.F)   { fuzzRoute(f, "/leave") }
func FuzzSSESignals(f *testing.F)     { fuzzRoute(f, "/sse") }

// statuses are the answers each route may give a Datastar request.
var statuses = map[string][]int{
	"/join":    {200, 400, 409, 413, 415},
	"/message": {200, 400, 403, 413, 415, 429},
	"/leave":   {200, 400, 403, 413, 415},
	"/sse":     {200, 400, 413, 415, 429},
}

func fuzzRoute(f *testing.F, path string) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), "application/json")
	}
	f.Add([]byte(`{"username":"x","message":"y"}`), "text/plain")
	f.Add([]byte(`{"username":"x","message":"y"}`), "application/json; charset=utf-8")
	f.Add([]byte(``), "")
	rig := newFuzzRig(f)
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		rig.run(t, path, body, contentType)
	})
}

// fuzzSeeds are bodies for every route (each reads the signal it needs).
var fuzzSeeds = []string{
	`{"username":"brian","message":"hello"}`,
	`{"username":"<script>alert(1)</script>","message":"<img src=x onerror=alert(1)>"}`,
	`{"username":"x\"], #messages, [id=\"","message":"#participant-list"}`,
	`{"username":"a\nb","message":"a\nevent: datastar-patch-elements\ndata: elements <p>forged</p>"}`,
	`{"username":"a\rb","message":"a\r\rdata: x"}`,
	`{"username":"a\u2028b","message":"a\u2028\u2029b"}`,
	`{"username":"\u202eevil","message":"\u202eevil \u200b \u200d"}`,
	`{"username":"e\u0301\u0301\u0301\u0301\u0301\u0301\u0301\u0301\u0301","message":"z\u0300\u0300\u0300\u0300\u0300\u0300\u0300\u0300\u0300"}`,
	"{\"username\":\"\xff\xfe\",\"message\":\"\xc3\x28\"}",
	`{"username":"\ud800","message":"\udfff"}`,
	`{"username":"","message":""}`,
	`{"username":42,"message":[1]}`,
	`{"username":"a","username":"b","message":"c","message":"d"}`,
	`null`, `[]`, `"x"`, `{`, `{"username":`, `{"message":"` + strings.Repeat("x", 1001) + `"}`,
	`{"username":"` + strings.Repeat("é", 32) + `","message":"` + strings.Repeat("ß", 1000) + `"}`,
	`{"_joinError":"x","username":"ok"}`,
	"{\"username\":\"a\\u0000b\",\"message\":\"\\u0007\"}",
}

// fuzzRig is one lobby server for a fuzz target, driven in process through
// its handler, with an observer stream recording every byte it is sent.
type fuzzRig struct {
	srv      *Server
	h        http.Handler
	observer *streamRecorder
	mu       sync.Mutex
	seq      int
	seen     int // observer bytes already checked
}

func newFuzzRig(f *testing.F) *fuzzRig {
	srv, err := Start(context.Background(), Options{
		Addr: "127.0.0.1:0", Grace: time.Millisecond, JoinTimeout: time.Second, Heartbeat: time.Hour, TTL: 2 * time.Hour,
		MaxStreamsPerIP: -1, MessageRate: -1, JoinRate: -1, StreamRate: -1, AddressMessageRate: -1, NamesPerAddress: -1, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		f.Fatal(err)
	}
	r := &fuzzRig{srv: srv, h: srv.Handler()}
	sid, status := r.join("observer", "")
	if status != http.StatusOK {
		f.Fatalf("observer join: %d", status)
	}
	obs, stop := r.openStream(sid)
	if obs == nil {
		f.Fatal("observer stream did not open")
	}
	r.observer = obs
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		stop()
	})
	return r
}

// post sends a Datastar POST to the handler and returns the recorder.
func (r *fuzzRig) post(path string, body []byte, contentType, sid string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.RemoteAddr = "192.0.2.1:1234"
	req.Header.Set("Datastar-Request", "true")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if sid != "" {
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: sid})
	}
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, req)
	return w
}

// join joins name with session sid ("" for a new one) and returns the
// session and the status.
func (r *fuzzRig) join(name, sid string) (string, int) {
	w := r.post("/join", fmt.Appendf(nil, `{"username":%q}`, name), "application/json", sid)
	for _, c := range w.Result().Cookies() {
		if c.Name == sessionCookie {
			sid = c.Value
		}
	}
	return sid, w.Code
}

// openStream serves POST /sse for sid on a goroutine and returns its
// recorder once the stream has started (nil if the answer ended at once),
// and a function that ends the stream and waits for its handler.
func (r *fuzzRig) openStream(sid string) (*streamRecorder, func()) {
	return r.serveStream([]byte(`{}`), "application/json", sid)
}

func (r *fuzzRig) serveStream(body []byte, contentType, sid string) (*streamRecorder, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/sse", bytes.NewReader(body))
	req.RemoteAddr = "192.0.2.1:1234"
	req.Header.Set("Datastar-Request", "true")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if sid != "" {
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: sid})
	}
	w := newStreamRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.h.ServeHTTP(w, req)
	}()
	stop := func() {
		cancel()
		<-done
	}
	select {
	case <-w.listed: // a stream: its participant list came
		return w, stop
	case <-done:
		return w, stop
	case <-time.After(5 * time.Second):
		stop()
		return w, stop
	}
}

func (r *fuzzRig) run(t *testing.T, path string, body []byte, contentType string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	// A participant of its own, with an open stream: /message broadcasts,
	// /leave leaves, /sse replaces its stream, /join renames it.
	sid, status := r.join(fmt.Sprintf("fuzzer%d", r.seq), "")
	if status != http.StatusOK {
		t.Fatalf("fuzzer join: %d", status)
	}
	own, stopOwn := r.openStream(sid)
	defer stopOwn()

	var got *streamRecorder
	if path == "/sse" {
		var stop func()
		got, stop = r.serveStream(body, contentType, sid)
		stop()
	} else {
		w := r.post(path, body, contentType, sid)
		got = &streamRecorder{header: w.Header(), code: w.Code}
		got.buf.Write(w.Body.Bytes())
	}
	if code := got.status(); !slices.Contains(statuses[path], code) {
		t.Fatalf("%s %q (%q): status %d: %s", path, body, contentType, code, got.bytes())
	}
	checkSSE(t, "answer", got.bytes())
	checkSSE(t, "own stream", own.bytes())

	// Leave, then wait until the observer has everything this input caused.
	r.post("/leave", nil, "", sid)
	mark := fmt.Sprintf("sync %d", r.seq)
	if _, err := r.srv.hub.Broadcast(everyone, nil, sfere.Comment(mark)); err != nil {
		t.Fatal(err)
	}
	if !r.observer.waitFor(": "+mark+"\n", 5*time.Second) {
		t.Fatalf("the observer's stream stalled or ended:\n%s", r.observer.bytes())
	}
	all := r.observer.bytes()
	checkSSE(t, "observer", all[r.seen:])
	r.seen = len(all)
}

// streamRecorder is an http.ResponseWriter that records a stream, safe to
// read while the handler writes.
//
// It is not internal/ssetest's Client, on purpose: the fuzzers call the
// handler in process, with no socket, so that each of thousands of
// executions costs microseconds, and the kit is a client of a connection;
// and sseProblem checks the bytes themselves (valid UTF-8, no CR anywhere,
// from an offset already checked), which the kit's record of parsed
// events does not keep.
type streamRecorder struct {
	mu     sync.Mutex
	header http.Header
	code   int
	buf    bytes.Buffer
	listed chan struct{}
	once   sync.Once
	news   chan struct{}
}

func newStreamRecorder() *streamRecorder {
	return &streamRecorder{header: http.Header{}, listed: make(chan struct{}), news: make(chan struct{}, 1)}
}

func (s *streamRecorder) Header() http.Header { return s.header }

func (s *streamRecorder) WriteHeader(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.code == 0 {
		s.code = code
	}
}

func (s *streamRecorder) Write(p []byte) (int, error) {
	s.mu.Lock()
	if s.code == 0 {
		s.code = http.StatusOK
	}
	s.buf.Write(p)
	listed := bytes.Contains(s.buf.Bytes(), []byte(`<ul id="participant-list">`))
	s.mu.Unlock()
	if listed && s.listed != nil {
		s.once.Do(func() { close(s.listed) })
	}
	select {
	case s.news <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (s *streamRecorder) Flush() {}

func (s *streamRecorder) status() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.code
}

func (s *streamRecorder) bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.buf.Bytes())
}

func (s *streamRecorder) waitFor(text string, d time.Duration) bool {
	deadline := time.After(d)
	for {
		if bytes.Contains(s.bytes(), []byte(text)) {
			return true
		}
		select {
		case <-s.news:
		case <-deadline:
			return false
		}
	}
}

var (
	selectorRE = regexp.MustCompile(`^#(messages|participant-list|participant-[0-9a-f]+|lobby|app|join-error|message-error)$`)
	tagRE      = regexp.MustCompile(`<(/?)([a-zA-Z][a-zA-Z0-9]*)([^<>]*)>`)
	attrRE     = regexp.MustCompile(`^(\s+[a-zA-Z_:][a-zA-Z0-9_:.-]*(="[^"]*")?)*\s*$`)
	attrNameRE = regexp.MustCompile(`\s([a-zA-Z_:][a-zA-Z0-9_:.-]*)`)
	allowedTag = map[string]bool{"div": true, "p": true, "strong": true, "li": true, "ul": true, "section": true, "span": true,
		"button": true, "aside": true, "h2": true, "form": true, "input": true}
	allowedAttr = map[string]bool{"id": true, "class": true, "hidden": true, "placeholder": true, "maxlength": true,
		"autocomplete": true, "autofocus": true, "required": true, "name": true, "type": true, "role": true, "aria-live": true}
)

// checkSSE fails t unless data is well-formed lobby SSE (see the fuzzers).
func checkSSE(t *testing.T, what string, data []byte) {
	t.Helper()
	if err := sseProblem(data); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// sseProblem says what is wrong with data as lobby SSE, or nil.
func sseProblem(data []byte) error {
	if !utf8.Valid(data) {
		return fmt.Errorf("invalid UTF-8 in %q", data)
	}
	if bytes.ContainsRune(data, '\r') {
		return fmt.Errorf("CR in %q", data)
	}
	var elements strings.Builder
	check := func() error {
		html := elements.String()
		elements.Reset()
		if strings.Contains(strings.ToLower(html), "<script") || strings.Contains(strings.ToLower(html), "<style") {
			return fmt.Errorf("script or style element in %q", html)
		}
		// Outside tags, no markup character but the entities' '&'.
		if rest := tagRE.ReplaceAllString(html, ""); strings.ContainsAny(rest, `<>"`) {
			return fmt.Errorf("unescaped markup %q in %q", rest, html)
		}
		for _, m := range tagRE.FindAllStringSubmatch(html, -1) {
			if !allowedTag[m[2]] {
				return fmt.Errorf("tag <%s> in %q", m[2], html)
			}
			if m[1] == "/" {
				continue
			}
			if !attrRE.MatchString(m[3]) {
				return fmt.Errorf("attributes %q of <%s> in %q", m[3], m[2], html)
			}
			for _, a := range attrNameRE.FindAllStringSubmatch(stripValues(m[3]), -1) {
				if name := a[1]; !allowedAttr[name] && !strings.HasPrefix(name, "data-") {
					return fmt.Errorf("attribute %s of <%s> in %q", name, m[2], html)
				}
			}
		}
		return nil
	}
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case line == "":
			if err := check(); err != nil {
				return err
			}
		case strings.HasPrefix(line, ": "), line == "event: datastar-patch-elements", line == "event: datastar-patch-signals":
		case strings.HasPrefix(line, "id: "):
			if _, err := sfere.ParsePosition(line[len("id: "):]); err != nil {
				return fmt.Errorf("id line %q: %w", line, err)
			}
		case strings.HasPrefix(line, "retry: "):
			if ms, err := strconv.Atoi(line[len("retry: "):]); err != nil || ms <= 0 {
				return fmt.Errorf("retry line %q", line)
			}
		case strings.HasPrefix(line, "data: "):
			field, value, _ := strings.Cut(line[len("data: "):], " ")
			switch field {
			case "elements":
				elements.WriteString(value)
				elements.WriteByte('\n')
			case "selector":
				if !selectorRE.MatchString(value) {
					return fmt.Errorf("selector %q", value)
				}
			case "mode":
				if !slices.Contains([]string{"outer", "inner", "replace", "prepend", "append", "before", "after", "remove"}, value) {
					return fmt.Errorf("mode %q", value)
				}
			case "signals":
				// The cleared input, or the empty patch a stream opens
				// with (it carries the stream's position as its id), or the watchdog's signals.
				if value != `{"message":""}` && value != `{}` && !watchdogSignalsRE.MatchString(value) {
					return fmt.Errorf("signals %q", value)
				}
			default:
				return fmt.Errorf("data field %q in line %q", field, line)
			}
		default:
			return fmt.Errorf("line %q is not SSE the lobby sends", line)
		}
	}
	return check()
}

// watchdogSignalsRE matches the signals of a visible beat or a position
// patch: the time in milliseconds, a position (epoch-offset, or
// epoch-offset.part inside a message of several events).
var watchdogSignalsRE = regexp.MustCompile(`^\{("_streamBeat":\d+,?)?("_streamPos":"[0-9a-zA-Z_.]*-\d+(\.\d+)?")?\}$`)

// The checker the fuzzers rely on catches what it must.
func TestSSECheckerCatchesInjections(t *testing.T) {
	good := "event: datastar-patch-elements\ndata: selector #messages\ndata: mode append\n" +
		"data: elements <p class=\"chat-message\"><strong>a&lt;b</strong>: x &amp; y</p>\n\n: heartbeat\n\n"
	if err := sseProblem([]byte(good)); err != nil {
		t.Fatalf("good SSE refused: %v", err)
	}
	for what, bad := range map[string]string{
		"forged event":   "event: datastar-patch-elements\ndata: elements <p>x</p>\nevent: datastar-execute-script\n\n",
		"forged field":   "event: datastar-patch-elements\ndata: script alert(1)\n\n",
		"bare line":      "event: datastar-patch-elements\ndata: elements <p>x\ny</p>\n\n",
		"CR":             "event: datastar-patch-elements\ndata: elements <p>x\ry</p>\n\n",
		"script":         "event: datastar-patch-elements\ndata: elements <p><script>x</script></p>\n\n",
		"img":            "event: datastar-patch-elements\ndata: elements <p><img src=x></p>\n\n",
		"handler":        "event: datastar-patch-elements\ndata: elements <p onclick=\"x\">y</p>\n\n",
		"unquoted attr":  "event: datastar-patch-elements\ndata: elements <p id=x>y</p>\n\n",
		"style attr":     "event: datastar-patch-elements\ndata: elements <p style=\"x\">y</p>\n\n",
		"stray quote":    "event: datastar-patch-elements\ndata: elements <p>a\"b</p>\n\n",
		"selector":       "event: datastar-patch-elements\ndata: selector #participant-list, #messages\n\n",
		"other selector": "event: datastar-patch-elements\ndata: selector body\n\n",
		"signals":        "event: datastar-patch-signals\ndata: signals {\"username\":\"x\"}\n\n",
	} {
		if sseProblem([]byte(bad)) == nil {
			t.Errorf("%s not caught: %q", what, bad)
		}
	}
}

// stripValues blanks quoted attribute values, so names are found only
// outside them.
func stripValues(attrs string) string {
	return regexp.MustCompile(`="[^"]*"`).ReplaceAllString(attrs, `=""`)
}

// Any accepted name obeys the name policy, is stable (cleaning it again
// changes nothing), has a stable PRECIS identity and gets an id of hex
// only.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"brian", "  phil  ", "Zoë  O'Neil", "ana\u00a0maria", "❤\ufe0f", "محمد", "a\u202eb", "ph\u200bil",
		"\u3164", "\u2800", "e\u0301\u0301", strings.Repeat("x", 33), "a\nb", "\xff", "<script>", `x"], #messages`,
		"PHIL", "ｐｈｉｌ", "ℌ𝔢𝔩𝔩𝔬", "ﷺ", "a\u0378b", "\u1100\u1161"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		name, err := cleanName(raw)
		if err != nil {
			return
		}
		if n := utf8.RuneCountInString(name); n < 1 || n > MaxNameRunes || !utf8.ValidString(name) {
			t.Fatalf("%q -> %q: %d runes", raw, name, n)
		}
		if again, err := cleanName(name); err != nil || again != name {
			t.Fatalf("%q -> %q -> %q, %v", raw, name, again, err)
		}
		key, err := precis.Nickname.CompareKey(name)
		if err != nil || nameIdentity(name) != key || nameIdentity(key) != key {
			t.Fatalf("%q -> %q: identity %q (%v), of itself %q", raw, name, nameIdentity(name), err, nameIdentity(key))
		}
		if strings.TrimSpace(name) != name || strings.Contains(name, "  ") {
			t.Fatalf("%q -> %q: untrimmed or double space", raw, name)
		}
		visible := false
		for _, r := range name {
			if unicode.IsControl(r) || invisibleInName(r) || r == '\ufe0e' || r == '\ufe0f' || unicode.IsSpace(r) && r != ' ' {
				t.Fatalf("%q -> %q holds %U", raw, name, r)
			}
			visible = visible || unicode.In(r, unicode.L, unicode.N, unicode.P, unicode.S)
		}
		if !visible {
			t.Fatalf("%q -> %q has nothing visible", raw, name)
		}
		if id := participantID(name); !regexp.MustCompile(`^participant-[0-9a-f]+$`).MatchString(id) {
			t.Fatalf("id %q", id)
		}
	})
}

// Any accepted message has no control character (so no line break) and
// is stable.
func FuzzCleanMessage(f *testing.F) {
	for _, s := range []string{"hello", " hi ", "a\nb", "a\rb", "\u202eevil", "👩\u200d💻", "a\u2028b", "\x00", "\xff", strings.Repeat("x", 1001)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		text, err := cleanMessage(raw)
		if err != nil {
			return
		}
		if n := utf8.RuneCountInString(text); n < 1 || n > MaxMessageRunes || !utf8.ValidString(text) {
			t.Fatalf("%q -> %q: %d runes", raw, text, n)
		}
		if strings.ContainsFunc(text, unicode.IsControl) {
			t.Fatalf("%q -> %q holds a control character", raw, text)
		}
		if again, err := cleanMessage(text); err != nil || again != text {
			t.Fatalf("%q -> %q -> %q, %v", raw, text, again, err)
		}
	})
}

// The cached participant list is byte for byte what the "list" template
// renders.
func TestCachedListMatchesTemplate(t *testing.T) {
	v, err := newViews(DatastarCDN, DatastarCDNIntegrity, 0)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"brian", "<script>", `a"b'c&d+e`, "محمد", "x\u2028y", "", "phil"}
	var want strings.Builder
	items := make([]participantData, len(names))
	for i, n := range names {
		items[i] = participantData{ID: participantID(n), Name: n}
	}
	if err := v.t.ExecuteTemplate(&want, "list", items); err != nil {
		t.Fatal(err)
	}
	for range 2 { // cold, then cached
		got, err := v.participantList(names)
		if err != nil || got != want.String() {
			t.Fatalf("participantList = %q, %v\nwant %q", got, err, want.String())
		}
	}
}
