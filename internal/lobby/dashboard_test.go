package lobby_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// dashboardStream loads the dashboard's page from srv and opens its
// stream, as the page's data-init does.
func dashboardStream(t *testing.T, srv *lobby.Server) (reply, *ssetest.Client) {
	t.Helper()
	page := newBrowser(t, srv).get("/debug/dashboard")
	m := regexp.MustCompile(`&#34;conn&#34;:&#34;([0-9a-f]{32})&#34;`).FindStringSubmatch(page.body)
	if m == nil {
		t.Fatalf("no conn signal in the dashboard page (status %d):\n%s", page.status, page.body)
	}
	sig := fmt.Sprintf(`{"conn":%q,"search":""}`, m[1])
	return page, ssetest.Open(t, srv.Addr().String(), ssetest.Request{
		Target: "/debug/dashboard/stream?datastar=" + url.QueryEscape(sig),
		Header: http.Header{"Datastar-Request": {"true"}},
	})
}

// On a cluster node, the dashboard's Cluster pane shows the node, its
// peer and its NATS connection, and its People pane the person who
// joined through the other node.
func TestDashboardOnAClusterNode(t *testing.T) {
	node := newCluster(t, lobby.Options{Dashboard: true})
	a, b := node("a"), node("b")
	newBrowser(t, b).enter("brian")
	_, c := dashboardStream(t, a)
	ev := c.Wait(waitLong, ssetest.Where("the peer b and brian, who joined through b", func(e ssetest.Event) bool {
		return strings.Contains(e.Text(), "peers: <code>b</code>") && strings.Contains(e.Text(), "1 present")
	}))
	for _, want := range []string{"Node <code>a</code>", "<td>status</td><td>CONNECTED</td>", `id="dash-streams-now">0<`} {
		if !strings.Contains(ev.Text(), want) {
			t.Errorf("the dashboard of node a lacks %q:\n%s", want, ev.Text())
		}
	}
}

// The dashboard is mounted only with Dashboard (Debug alone does not
// mount it). There, its stream shows the lobby's people and streams (its
// own apart) and never a line said, a session id, a cookie or a client
// address; the lobby's own figures ignore it; its page has the lobby
// page's CSP.
func TestDashboardOnlyWithTheOptionAndLeaksNothing(t *testing.T) {
	plain := startServer(t, lobby.Options{Debug: true})
	if r := newBrowser(t, plain).get("/debug/dashboard"); r.status != http.StatusNotFound {
		t.Errorf("dashboard without the option: status %d, want 404", r.status)
	}

	srv := startServer(t, lobby.Options{Debug: true, Dashboard: true})
	var secrets []string
	var speaker *browser
	for _, name := range []string{"brian", "phil", "carol"} {
		b := newBrowser(t, srv)
		s := b.enter(name)
		secrets = append(secrets, sessionOf(b), s.Conn().LocalAddr().String())
		speaker = b
	}
	const line = "a line only its readers may see"
	secrets = append(secrets, "lobby_session", line)
	page, c := dashboardStream(t, srv)
	lobbyPage := newBrowser(t, srv).get("/")
	if csp := page.header.Get("Content-Security-Policy"); csp == "" || csp != lobbyPage.header.Get("Content-Security-Policy") {
		t.Errorf("dashboard CSP %q, want the lobby page's %q", csp, lobbyPage.header.Get("Content-Security-Policy"))
	}
	// The rates are between two samples: the line is said once the
	// sampler took its first (the opening's update, then the first tick's).
	c.Wait(waitLong, ssetest.Containing(`id="dash-overview"`))
	c.Wait(waitLong, ssetest.Containing(`id="dash-overview"`))
	speaker.say(line)
	b := newBrowser(t, srv)
	sentRate := regexp.MustCompile(`broadcasts \+ sends / s<b>[1-9]`)
	ev := c.Wait(waitLong, ssetest.Where("an update with the 3 people and their 3 streams, after the line", func(e ssetest.Event) bool {
		text := e.Text()
		return strings.Contains(text, "3 present") && strings.Contains(text, `id="dash-streams-now">3<`) &&
			strings.Contains(text, "+ 1 dashboard") && sentRate.MatchString(text)
	}))
	for _, text := range []string{page.body, ev.Text()} {
		for _, s := range secrets {
			if s != "" && strings.Contains(text, s) {
				t.Errorf("the dashboard shows %q", s)
			}
		}
	}
	if keys := debugKeys(t, b); len(keys) != 4 {
		t.Errorf("debug keys with a dashboard open = %q, want the 3 people's and the dashboard's", keys)
	}
	if r := b.get("/metrics"); !strings.Contains(r.body, "lobby_streams_open 3\n") {
		t.Errorf("the dashboard's stream counted as a lobby stream:\n%s", r.body)
	}
}

// Without a token the dashboard is open to loopback clients only: a
// client a trusted proxy forwards from elsewhere is refused, page and
// stream alike.
func TestDashboardLoopbackOnlyByDefault(t *testing.T) {
	srv := startServer(t, lobby.Options{Dashboard: true, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	b := newBrowser(t, srv)
	if r := b.get("/debug/dashboard"); r.status != http.StatusOK {
		t.Fatalf("dashboard from loopback: status %d", r.status)
	}
	for _, path := range []string{"/debug/dashboard", "/debug/dashboard/stream"} {
		req, err := http.NewRequest(http.MethodGet, srv.URL()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Forwarded-For", "203.0.113.9")
		if r := b.do(req); r.status != http.StatusForbidden || strings.Contains(r.body, "sfere dashboard") {
			t.Errorf("%s from 203.0.113.9 through the proxy: status %d, want 403", path, r.status)
		}
	}
	if r := b.get("/metrics"); !strings.Contains(r.body, `lobby_refused_requests_total{reason="dashboard"} 2`) {
		t.Errorf("refusals not counted as dashboard:\n%s", r.body)
	}
}

// With a token the dashboard is open to whoever carries it, from any
// address: once in the page's query, then as a cookie (HttpOnly,
// SameSite=Strict, the dashboard's path only) that the page and its stream
// carry. Without it, or with a wrong one, it is refused, loopback or not.
func TestDashboardWithAToken(t *testing.T) {
	const token = "a token of 16 bytes or more"
	if _, err := lobby.Start(t.Context(), lobby.Options{Addr: "127.0.0.1:0", Dashboard: true, DashboardToken: "short"}); !errors.Is(err, lobby.ErrDashboardToken) {
		t.Fatalf("a short token: %v, want ErrDashboardToken", err)
	}
	srv := startServer(t, lobby.Options{Dashboard: true, DashboardToken: token})
	b := newBrowser(t, srv)
	get := func(target string) reply {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL()+target, nil)
		if err != nil {
			t.Fatal(err)
		}
		return b.do(req)
	}
	for _, target := range []string{"/debug/dashboard", "/debug/dashboard?token=wrong+token+of+many+bytes", "/debug/dashboard/stream"} {
		if r := get(target); r.status != http.StatusForbidden {
			t.Errorf("%s without the token: status %d, want 403", target, r.status)
		}
	}
	page := get("/debug/dashboard?token=" + url.QueryEscape(token)) // follows the redirect, with the cookie
	if page.status != http.StatusOK || !strings.Contains(page.body, "sfere dashboard") {
		t.Fatalf("the page with the token: status %d", page.status)
	}
	u, _ := url.Parse(srv.URL() + "/debug/dashboard")
	var cookie *http.Cookie
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == "lobby_dashboard" {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatal("no dashboard cookie after the token was given")
	}
	if r := b.get("/debug/dashboard"); r.status != http.StatusOK {
		t.Errorf("the page with the cookie: status %d", r.status)
	}
	m := regexp.MustCompile(`&#34;conn&#34;:&#34;([0-9a-f]{32})&#34;`).FindStringSubmatch(page.body)
	if m == nil {
		t.Fatalf("no conn signal in the page:\n%s", page.body)
	}
	sig := url.QueryEscape(fmt.Sprintf(`{"conn":%q,"search":""}`, m[1]))
	c := ssetest.Open(t, srv.Addr().String(), ssetest.Request{
		Target: "/debug/dashboard/stream?datastar=" + sig,
		Header: http.Header{"Datastar-Request": {"true"}, "Cookie": {"lobby_dashboard=" + cookie.Value}},
	})
	c.Wait(waitLong, ssetest.Containing(`id="dash-streams-now">0<`))
}
