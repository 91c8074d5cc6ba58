package lobby_test

import (
	"fmt"
	"net/http"
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
	node := newCluster(t, lobby.Options{Debug: true})
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

// The dashboard is mounted only with Debug. There, its stream shows the
// lobby's people and streams (its own apart) and never a session id, a
// cookie or a client address; the lobby's own figures ignore it.
func TestDashboardOnlyWithDebugAndLeaksNothing(t *testing.T) {
	plain := startServer(t, lobby.Options{})
	if r := newBrowser(t, plain).get("/debug/dashboard"); r.status != http.StatusNotFound {
		t.Errorf("dashboard without Debug: status %d, want 404", r.status)
	}

	srv := startServer(t, lobby.Options{Debug: true})
	var secrets []string
	for _, name := range []string{"brian", "phil", "carol"} {
		b := newBrowser(t, srv)
		s := b.enter(name)
		secrets = append(secrets, sessionOf(b), s.Conn().LocalAddr().String())
	}
	secrets = append(secrets, "lobby_session")
	page, c := dashboardStream(t, srv)
	if csp := page.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("dashboard CSP %q", csp)
	}
	b := newBrowser(t, srv)
	ev := c.Wait(waitLong, ssetest.Where("an update with the 3 people and their 3 streams", func(e ssetest.Event) bool {
		text := e.Text()
		return strings.Contains(text, "3 present") && strings.Contains(text, `id="dash-streams-now">3<`) &&
			strings.Contains(text, "+ 1 dashboard")
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
