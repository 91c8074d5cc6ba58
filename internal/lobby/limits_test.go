package lobby_test

import (
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"html"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// sessionOf returns a browser's session cookie value.
func sessionOf(b *browser) string {
	for _, c := range b.jar.Cookies(b.base) {
		if c.Name == "lobby_session" {
			return c.Value
		}
	}
	return ""
}

// asClient is an lclient with b's session and the given extra headers.
func asClient(b *browser, header http.Header) *lclient {
	return &lclient{base: b.base.String(), hc: b.client, cookie: sessionOf(b), header: header}
}

// State-changing requests a browser marks as cross-site are refused with a
// clear 403 and change nothing: by Sec-Fetch-Site (cross-site, and
// same-site too: a sibling subdomain is another origin), or, from browsers
// without it, by an Origin that is not this host. Same-origin requests,
// user-initiated ones (Sec-Fetch-Site: none) and requests with neither
// header (curl, other tools) pass. The page itself works from a real
// browser (TestBrowserTwoTabs), whose requests carry these headers.
func TestCrossSitePostsRefused(t *testing.T) {
	srv, brian, phil, _, ps, before := brianAndPhil(t)

	host := srv.Addr().String()
	bad := []http.Header{
		{"Sec-Fetch-Site": {"cross-site"}},
		{"Sec-Fetch-Site": {"same-site"}},
		{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"http://" + host}}, // Sec-Fetch-Site wins
		{"Origin": {"http://evil.example"}},
		{"Origin": {"null"}},
		{"Origin": {"http://" + host + ".evil.example"}},
	}
	for _, h := range bad {
		c := asClient(brian, h)
		for path, body := range map[string]string{"/join": `{"username":"mallory"}`, "/message": `{"message":"csrf"}`, "/leave": `{}`, "/sse": `{}`} {
			status, rbody, err := c.postRaw(path, "application/json", []byte(body))
			if err != nil {
				t.Fatal(err)
			}
			if status != http.StatusForbidden || !strings.Contains(rbody, "cross-site request refused") {
				t.Errorf("%s with %v: status %d: %s", path, h, status, rbody)
			}
		}
	}
	time.Sleep(testGrace + 100*time.Millisecond) // negative check: what the refused requests caused would have come by now
	if n := ps.len(); n != before {
		t.Errorf("cross-site requests reached Phil's stream:\n%s", ps.dump())
	}
	if keys := debugKeys(t, phil); len(keys) != 2 {
		t.Errorf("streams after cross-site requests: %q", keys)
	}

	good := []http.Header{
		{"Sec-Fetch-Site": {"same-origin"}},
		{"Sec-Fetch-Site": {"none"}},
		{"Origin": {"http://" + host}},
		{},
	}
	for i, h := range good {
		text := fmt.Sprintf("allowed %d", i)
		if status, body, err := asClient(brian, h).post("/message", map[string]any{"message": text}); err != nil || status != http.StatusOK {
			t.Errorf("message with %v: status %d, %v: %s", h, status, err, body)
		}
		ps.waitFor("<strong>brian</strong>: " + text)
	}
	if v, err := metricValue(phil.client, srv.URL(), `lobby_refused_requests_total{reason="cross_site"}`); err != nil || v != float64(4*len(bad)) {
		t.Errorf("refusals counted: %v (%v), want %d", v, err, 4*len(bad))
	}
}

// The session is the HttpOnly cookie, and only a well-formed id the lobby
// issued counts: no cookie, a malformed or forged one, or a session that
// left, can neither speak, nor leave, nor stream; joining with a forged
// cookie gets a fresh session id (no session fixation); a huge cookie
// header is refused by the header limit.
func TestMissingAndForgedCookies(t *testing.T) {
	srv, brian, _, _, ps, before := brianAndPhil(t)
	real := sessionOf(brian)
	hc := &http.Client{Transport: newTransport(t)}

	forged := map[string]string{
		"none":         "",
		"forged":       strings.Repeat("ab", 16),
		"short":        real[:31],
		"long":         real + "0",
		"upper case":   strings.ToUpper(real),
		"non-hex":      strings.Repeat("zz", 16),
		"with spaces":  real[:16] + " " + real[17:],
		"10 KiB":       strings.Repeat("a", 10<<10),
		"non-ASCII":    strings.Repeat("é", 16),
		"another name": "lobby_session2",
	}
	for what, cookie := range forged {
		c := &lclient{base: srv.URL(), hc: hc, cookie: cookie}
		if status, _, err := c.post("/message", map[string]any{"message": "as brian?"}); err != nil || status != http.StatusForbidden {
			t.Errorf("message with a %s cookie: status %d (%v), want 403", what, status, err)
		}
		if status, _, err := c.post("/leave", nil); err != nil || status != http.StatusForbidden {
			t.Errorf("leave with a %s cookie: status %d (%v), want 403", what, status, err)
		}
		p, err := c.openProbe(true, dialOpts{})
		if err != nil {
			t.Fatal(err)
		}
		if err, ok := p.waitEnd(waitLong); !ok || err == nil {
			t.Errorf("stream with a %s cookie was not ended", what)
		}
		p.with(func(p *probe) {
			if !p.rejoin {
				t.Errorf("stream with a %s cookie was not told to join: %s", what, p.last)
			}
		})
	}
	time.Sleep(testGrace + 100*time.Millisecond) // negative check: what the forged cookies caused would have come by now
	if n := ps.len(); n != before {
		t.Errorf("forged cookies reached Phil's stream:\n%s", ps.dump())
	}

	// Joining with a forged id gets a new one.
	c := &lclient{base: srv.URL(), hc: hc, cookie: strings.Repeat("cd", 16)}
	if err := c.join("carol"); err != nil {
		t.Fatal(err)
	}
	if c.cookie == strings.Repeat("cd", 16) || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(c.cookie) {
		t.Errorf("joining with a forged session id kept it or made a bad one: %q", c.cookie)
	}

	// (A quoted value, lobby_session="<id>", is the same cookie per RFC
	// 6265 and counts: whoever sends it holds the secret.)

	// Two lobby_session cookies: the first counts, and a forged first one
	// does not borrow the real second one.
	req, _ := http.NewRequest(http.MethodPost, srv.URL()+"/message", strings.NewReader(`{"message":"two cookies"}`))
	req.Header.Set("Datastar-Request", "true")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Cookie", "lobby_session="+strings.Repeat("ef", 16)+"; lobby_session="+real)
	if resp, err := hc.Do(req); err != nil {
		t.Error(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("two cookies, forged first: status %d, want 403", resp.StatusCode)
		}
	}

	// A cookie header past the header limit.
	req, _ = http.NewRequest(http.MethodPost, srv.URL()+"/message", strings.NewReader(`{"message":"huge"}`))
	req.Header.Set("Datastar-Request", "true")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Cookie", "lobby_session="+real+"; pad="+strings.Repeat("x", 70<<10))
	if resp, err := hc.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("70 KiB cookie header: status %d, want 431", resp.StatusCode)
		}
	}
	brian.say("still me")
	ps.waitFor("<strong>brian</strong>: still me")
}

// One client address may hold at most MaxStreamsPerIP streams; one more is
// refused with a clear 429 (and Retry-After) and makes no participant; the
// count goes down as streams end, so a closed tab frees its place.
func TestStreamCapPerAddress(t *testing.T) {
	srv := startServer(t, lobby.Options{MaxStreamsPerIP: 3, Debug: true})
	var streams []*stream
	for i := range 3 {
		streams = append(streams, newBrowser(t, srv).enter(fmt.Sprintf("user%d", i)))
	}
	dave := newBrowser(t, srv)
	dave.join("dave")
	c := asClient(dave, nil)
	status, body, err := c.postRaw("/sse", "application/json", []byte(`{}`))
	if err != nil || status != http.StatusTooManyRequests || !strings.Contains(body, "too many open streams") {
		t.Fatalf("fourth stream: status %d (%v): %s", status, err, body)
	}
	if keys := debugKeys(t, dave); len(keys) != 3 {
		t.Errorf("streams = %q, want 3", keys)
	}
	for _, s := range streams {
		if n := s.count("dave joined"); n != 0 {
			t.Errorf("a refused stream was announced")
		}
	}
	// A closed tab frees its place.
	streams[1].close()
	ssetest.Eventually(t, waitLong, "a place is free again", func() bool {
		status, _, err := c.postRaw("/join", "application/json", []byte(`{"username":"dave"}`))
		if err != nil || status != http.StatusOK {
			return false
		}
		p, err := c.openProbe(true, dialOpts{})
		if err != nil {
			return false
		}
		if p.waitListed(time.Second) != nil {
			p.close()
			return false
		}
		t.Cleanup(p.close)
		return true
	})
	if v, err := metricValue(dave.client, srv.URL(), `lobby_refused_requests_total{reason="too_many_streams"}`); err != nil || v < 1 {
		t.Errorf("refusals counted: %v (%v)", v, err)
	}
}

// A session may send MessageBurst messages at once and MessageRate a second
// after that; more are refused with 429 and reach nobody. Other sessions
// are not affected.
func TestMessageRateLimited(t *testing.T) {
	srv := startServer(t, lobby.Options{MessageRate: 2, MessageBurst: 3})
	brian, phil := newBrowser(t, srv), newBrowser(t, srv)
	bs := brian.enter("brian")
	ps := phil.enter("phil")
	bs.waitFor(joinedLine("phil"))
	ok, limited := 0, 0
	for i := range 10 {
		r := brian.post("/message", map[string]any{"message": fmt.Sprintf("spam %d", i)})
		switch r.status {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			limited++
			if !strings.Contains(r.body, "too fast") || r.header.Get("Retry-After") == "" {
				t.Errorf("429 without a clear message or Retry-After: %v %s", r.header, r.body)
			}
		default:
			t.Fatalf("message %d: status %d", i, r.status)
		}
	}
	if ok < 3 || ok > 4 || limited != 10-ok {
		t.Errorf("%d messages passed, %d were limited; want the burst of 3 (or 4) to pass", ok, limited)
	}
	phil.say("phil is not limited")
	ps.waitFor("phil is not limited")
	time.Sleep(600 * time.Millisecond) // pacing: the rate limiter refills with time
	brian.say("after a pause")
	ps.waitFor("after a pause")
	if n := ps.count("spam"); n != ok {
		t.Errorf("Phil got %d spam lines, want %d", n, ok)
	}
}

// GET /debug/connections does not exist by default; with Debug it lists
// stream keys (names, which every participant sees anyway) and never a
// session id, a cookie or a client address. /metrics leaks none of them
// either.
func TestDebugEndpointLeaksNothing(t *testing.T) {
	plain := startServer(t, lobby.Options{})
	pb := newBrowser(t, plain)
	pb.enter("brian")
	if r := pb.get("/debug/connections"); r.status != http.StatusNotFound {
		t.Errorf("debug endpoint without Debug: status %d, want 404", r.status)
	}

	srv := startServer(t, lobby.Options{Debug: true})
	var secrets []string
	var streams []*stream
	for _, name := range []string{"brian", "phil", "carol"} {
		b := newBrowser(t, srv)
		s := b.enter(name)
		streams = append(streams, s)
		secrets = append(secrets, sessionOf(b), s.Conn().LocalAddr().String(), fmt.Sprint(s.localPort()))
	}
	secrets = append(secrets, "127.0.0.1", "lobby_session")
	b := newBrowser(t, srv)
	for _, path := range []string{"/debug/connections", "/metrics"} {
		r := b.get(path)
		for _, s := range secrets {
			if s != "" && strings.Contains(r.body, s) && !(path == "/metrics" && regexp.MustCompile(`^\d+$`).MatchString(s)) {
				t.Errorf("%s shows %q", path, s)
			}
		}
	}
	keys := debugKeys(t, b)
	for _, k := range keys {
		if !streamKeyText.MatchString(k) {
			t.Errorf("debug key %q is not a stream key", k)
		}
	}
	if len(keys) != 3 {
		t.Errorf("debug keys = %q", keys)
	}
}

// The page forbids framing (a Leave button clickjacked from another site),
// sniffing and scripts from anywhere but the exact URL of the Datastar
// client, whose tag carries its integrity hash.
func TestPageSecurityHeaders(t *testing.T) {
	srv := startServer(t, lobby.Options{})
	r := newBrowser(t, srv).get("/")
	csp := r.header.Get("Content-Security-Policy")
	if !strings.Contains(html.UnescapeString(r.body), `src="`+lobby.DatastarCDN+`" integrity="`+lobby.DatastarCDNIntegrity+`"`) {
		t.Errorf("the script tag does not name the CDN's bundle with its integrity hash:\n%s", r.body)
	}
	for _, want := range []string{"default-src 'none'", "script-src " + lobby.DatastarCDN + " 'unsafe-eval';", "frame-ancestors 'none'", "connect-src 'self'", "base-uri 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	scriptSrc, _, _ := strings.Cut(strings.SplitN(csp, "script-src", 2)[1], ";")
	if strings.Contains(scriptSrc, "'unsafe-inline'") {
		t.Errorf("CSP allows inline scripts: %q", csp)
	}
	for h, want := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"} {
		if got := r.header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}

	// With a local client: this site's own script only, with the hash of
	// the file served.
	js := filepath.Join(t.TempDir(), "datastar.js")
	body := []byte("// a stand-in client\n")
	if err := os.WriteFile(js, body, 0o600); err != nil {
		t.Fatal(err)
	}
	local := startServer(t, lobby.Options{DatastarJS: js})
	r = newBrowser(t, local).get("/")
	sum := sha512.Sum384(body)
	if want := `src="/datastar.js" integrity="sha384-` + base64.StdEncoding.EncodeToString(sum[:]) + `"`; !strings.Contains(html.UnescapeString(r.body), want) {
		t.Errorf("the script tag lacks %s:\n%s", want, r.body)
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self' 'unsafe-eval';") {
		t.Errorf("CSP with a local client: %q", csp)
	}
}

// The integrity hash the page gives the CDN's script is that of the v1.0.2
// bundle of Datastar: with DATASTAR_JS naming a copy of it (first line
// "// Datastar v1.0.2"), the constant must be that file's sha384, or every
// browser would refuse the script the page loads by default. A file of
// another version, or none, says nothing about the constant: skipped.
func TestDatastarCDNIntegrityIsTheBundles(t *testing.T) {
	path := os.Getenv("DATASTAR_JS")
	if path == "" {
		t.Skip("DATASTAR_JS names no copy of the Datastar v1.0.2 bundle")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("DATASTAR_JS: %v", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	if strings.TrimRight(first, "\r") != "// Datastar v1.0.2" {
		t.Skipf("DATASTAR_JS (%s) is not the v1.0.2 bundle: its first line is %q", path, first)
	}
	if !strings.Contains(lobby.DatastarCDN, "@1.0.2/") {
		t.Errorf("DatastarCDN %s does not name v1.0.2, the version its integrity hash is checked against", lobby.DatastarCDN)
	}
	sum := sha512.Sum384(b)
	if want := "sha384-" + base64.StdEncoding.EncodeToString(sum[:]); lobby.DatastarCDNIntegrity != want {
		t.Errorf("DatastarCDNIntegrity = %s, but the v1.0.2 bundle at %s is %s", lobby.DatastarCDNIntegrity, path, want)
	}
}
