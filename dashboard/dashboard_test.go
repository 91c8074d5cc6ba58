package dashboard_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/dashboard"
	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/presence"
)

const wait = 10 * time.Second

// app is a hub with a dashboard and app streams, served over loopback TCP:
// app streams at POST /sse?id=ID (category "lobby"), people at POST
// /people?owner=O (room "room"), the dashboard at /debug/dashboard.
type app struct {
	hub     *sfere.Hub
	tracker *presence.Tracker
	dash    *dashboard.Dashboard
	srv     *httptest.Server
}

func newApp(t *testing.T, opts dashboard.Options) *app {
	t.Helper()
	return newAppWith(t, opts, sfere.HubOptions{})
}

// newAppWith is newApp with a hub made with hubOpts.
func newAppWith(t *testing.T, opts dashboard.Options, hubOpts sfere.HubOptions) *app {
	t.Helper()
	return newAppResume(t, opts, hubOpts, 0)
}

// newAppResume is newAppWith with a tracker whose resume window is resume.
func newAppResume(t *testing.T, opts dashboard.Options, hubOpts sfere.HubOptions, resume time.Duration) *app {
	t.Helper()
	hub := sfere.NewHub(sfere.NewMemoryStore(sfere.MemoryOptions{}), hubOpts)
	tracker, err := presence.New(hub, presence.Options{Room: "room", Grace: -1, Resume: resume,
		Snapshot: func([]presence.Member) []sfere.Effect { return []sfere.Effect{sfere.Comment("snapshot")} },
		Diff:     func(presence.Diff) []sfere.Effect { return []sfere.Effect{sfere.Comment("diff")} },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tracker.Close)
	opts.Trackers = append(opts.Trackers, tracker)
	if opts.Interval == 0 {
		opts.Interval = 100 * time.Millisecond
	}
	d, err := dashboard.New(hub, opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /sse", func(w http.ResponseWriter, r *http.Request) {
		key := sfere.NewKey(sfere.DefaultScope, r.URL.Query().Get("cat"), r.URL.Query().Get("id"))
		if key.Category == "" {
			key.Category = "lobby"
		}
		if err := hub.Serve(w, r, key); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("POST /people", func(w http.ResponseWriter, r *http.Request) {
		if err := tracker.Serve(w, r, r.URL.Query().Get("owner")); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
		}
	})
	mux.Handle("/debug/dashboard", d)
	mux.Handle("/debug/dashboard/", d)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ConnContext = sfere.ConnContext
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hub.Shutdown(ctx); err != nil {
			t.Errorf("hub shutdown: %v", err)
		}
	})
	return &app{hub: hub, tracker: tracker, dash: d, srv: srv}
}

func (a *app) addr() string { return a.srv.Listener.Addr().String() }

// chat broadcasts a line to the "lobby" category every 2 ms until the
// returned stop is called (it returns once the last broadcast is done).
func (a *app) chat() (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(2 * time.Millisecond): // paces the app's traffic
				_, _ = a.hub.Broadcast(sfere.InCategory("lobby"), nil, sfere.PatchElements(`<p id="p">hello</p>`))
			}
		}
	}()
	return func() { close(quit); <-done }
}

// stream opens an app stream under (default, category, id) and waits
// until the hub stored it.
func (a *app) stream(t *testing.T, category, id string) *ssetest.Client {
	t.Helper()
	c := ssetest.Open(t, a.addr(), ssetest.DatastarPost("/sse?cat="+url.QueryEscape(category)+"&id="+url.QueryEscape(id), "{}"))
	c.WaitHead(wait)
	key := sfere.NewKey(sfere.DefaultScope, category, id)
	ssetest.Eventually(t, wait, "the stream "+key.String()+" stored", func() bool { return a.hub.Count(key.Pattern()) == 1 })
	return c
}

// page loads the dashboard's page and returns its HTML and the conn id
// its stream takes.
func (a *app) page(t *testing.T) (string, string) {
	t.Helper()
	resp, err := http.Get(a.srv.URL + "/debug/dashboard")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("page: %s: %s", resp.Status, body)
	}
	html := string(body)
	_, rest, ok := strings.Cut(html, "&#34;conn&#34;:&#34;")
	conn, _, ok2 := strings.Cut(rest, "&#34;")
	if !ok || !ok2 || len(conn) != 32 {
		t.Fatalf("no conn signal in the page:\n%s", html)
	}
	return html, conn
}

// open opens the dashboard stream of the page whose conn id is conn, as
// the Datastar client does (GET, signals in the datastar parameter).
func (a *app) open(t *testing.T, conn, search string) *ssetest.Client {
	t.Helper()
	sig := `{"conn":"` + conn + `","search":"` + search + `"}`
	c := ssetest.Open(t, a.addr(), ssetest.Request{
		Target: "/debug/dashboard/stream?datastar=" + url.QueryEscape(sig),
		Header: http.Header{"Datastar-Request": {"true"}},
	})
	if resp := c.WaitHead(wait); resp.StatusCode != http.StatusOK {
		t.Fatalf("dashboard stream: %s", resp.Status)
	}
	return c
}

// streamsNow matches an update whose overview shows n app streams.
func streamsNow(n string) ssetest.Match {
	return ssetest.Containing(`id="dash-streams-now">` + n + `<`)
}

func TestPageLoadsWithTheClientAndItsStream(t *testing.T) {
	a := newApp(t, dashboard.Options{Script: "/datastar.js", Integrity: "sha384-abc"})
	resp, err := http.Get(a.srv.URL + "/debug/dashboard")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	html := string(body)
	for _, want := range []string{
		`<script type="module" src="/datastar.js" integrity="sha384-abc" crossorigin="anonymous"></script>`,
		`data-init="@get('/debug/dashboard/stream')"`,
		`id="dash-overview"`, `id="dash-streams"`, `id="dash-people"`, `Room room: 0 present`,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self' 'unsafe-eval'") {
		t.Errorf("CSP %q", csp)
	}
	if got := resp.Header.Get("Content-Type"); got != "text/html; charset=utf-8" {
		t.Errorf("content type %q", got)
	}
	for path, want := range map[string]int{
		"/debug/dashboard/nothing": http.StatusNotFound,
		"/debug/dashboard/stream":  http.StatusBadRequest, // no conn signal
	} {
		resp, err := http.Get(a.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %s, want %d", path, resp.Status, want)
		}
	}
}

func TestStreamUpdatesWhileOpenAndNothingRunsWhenClosed(t *testing.T) {
	a := newApp(t, dashboard.Options{})
	a.stream(t, "lobby", "x")
	_, conn := a.page(t)
	if got := a.dash.Renders(); got != 0 {
		t.Fatalf("renders before any stream opened: %d", got)
	}
	if dashboard.SamplerRunning(a.dash) {
		t.Fatal("a sampler runs with no page's stream open")
	}
	c := a.open(t, conn, "")
	c.Wait(wait, streamsNow("1"))
	// Updates keep coming: the overview's clock moves on.
	first := c.Wait(wait, ssetest.Containing(`id="dash-overview"`))
	c.Wait(wait, ssetest.Where("a later overview", func(e ssetest.Event) bool {
		return strings.Contains(e.Text(), `id="dash-overview"`) && e.Text() != first.Text()
	}))
	ssetest.Eventually(t, wait, "renders counted", func() bool { return a.dash.Renders() >= 2 })

	c.Close()
	ssetest.Eventually(t, wait, "the sampler stopped once the last page closed", func() bool {
		return !dashboard.SamplerRunning(a.dash)
	})
	// No goroutine is left to render: the count stays where it was.
	renders, samples := a.dash.Renders(), dashboard.SampleCount(a.dash)
	a.stream(t, "lobby", "y")
	if _, err := a.hub.Broadcast(sfere.All, nil, sfere.PatchElements(`<p id="p">hi</p>`)); err != nil {
		t.Fatal(err)
	}
	a.page(t) // a page load renders for itself only
	if got := a.dash.Renders(); got != renders {
		t.Fatalf("renders went from %d to %d with no stream open", renders, got)
	}
	if got := dashboard.SampleCount(a.dash); got != samples {
		t.Fatalf("samples went from %d to %d with no stream open", samples, got)
	}
	if dashboard.SamplerRunning(a.dash) {
		t.Fatal("a sampler runs with no page's stream open")
	}
}

func TestFiguresMatchTheHub(t *testing.T) {
	a := newApp(t, dashboard.Options{})
	_, conn := a.page(t)
	c := a.open(t, conn, "")
	c.Wait(wait, streamsNow("0"))
	s1, s2 := a.stream(t, "lobby", "a"), a.stream(t, "lobby", "b")
	a.stream(t, "chat", "c")
	c.Wait(wait, streamsNow("3"))
	if got := a.hub.Count(sfere.All); got != 4 { // 3 + the dashboard's own
		t.Fatalf("hub counts %d streams", got)
	}
	ev := c.Wait(wait, ssetest.Containing(`id="dash-streams-total">4<`))
	for _, want := range []string{`<td>lobby</td><td class="n">2</td>`, `<td>chat</td><td class="n">1</td>`, `+ 1 dashboard`, `<td>taken over</td>`} {
		if !strings.Contains(ev.Text(), want) {
			t.Errorf("update lacks %s:\n%s", want, ev.Text())
		}
	}
	s1.Close()
	s2.Close()
	c.Wait(wait, streamsNow("1"))
	ev = c.Wait(wait, ssetest.Containing(`<td>closed</td><td class="n">2</td>`))
	if !strings.Contains(ev.Text(), `>2 in all</span>`) {
		t.Errorf("ends in all: want 2:\n%s", ev.Text())
	}
}

func TestKeysAndNamesAreEscaped(t *testing.T) {
	a := newApp(t, dashboard.Options{})
	const evil = `<script>alert(1)</script>`
	a.stream(t, evil, evil)
	if _, err := a.tracker.Claim(context.Background(), presence.Claim{Person: "<b>id</b>", Owner: "owner", Meta: evil}); err != nil {
		t.Fatal(err)
	}
	p := ssetest.Open(t, a.addr(), ssetest.DatastarPost("/people?owner=owner", "{}"))
	p.WaitHead(wait)
	ssetest.Eventually(t, wait, "the person present", func() bool { return a.tracker.Count() == 1 })
	html, conn := a.page(t)
	c := a.open(t, conn, "")
	ev := c.Wait(wait, ssetest.Containing(`&lt;b&gt;id&lt;/b&gt;`))
	for name, text := range map[string]string{"page": html, "update": ev.Text()} {
		if strings.Contains(text, "<script>alert") || strings.Contains(text, "<b>id") {
			t.Errorf("%s holds the raw HTML of a key or name", name)
		}
		if !strings.Contains(text, `&lt;script&gt;alert(1)&lt;/script&gt;`) {
			t.Errorf("%s lacks the escaped key and name", name)
		}
	}
	if !strings.Contains(ev.Text(), `<td class="n">1</td></tr>`) {
		t.Errorf("the person's tab count is not 1:\n%s", ev.Text())
	}
}

func TestSearchByPattern(t *testing.T) {
	a := newApp(t, dashboard.Options{})
	a.stream(t, "lobby", "a")
	a.stream(t, "chat", "b")
	_, conn := a.page(t)
	c := a.open(t, conn, "")
	c.Wait(wait, streamsNow("2"))

	search := func(text string) string {
		t.Helper()
		body := `{"conn":"` + conn + `","search":"` + text + `"}`
		req, err := http.NewRequest(http.MethodPost, a.srv.URL+"/debug/dashboard/search", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Datastar-Request", "true")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("search %q: %s", text, resp.Status)
		}
		return string(out)
	}
	got := search("*/chat/*")
	if !strings.Contains(got, `id="dash-streams-total">1<`) || !strings.Contains(got, "<td>b</td>") || strings.Contains(got, "<td>a</td>") {
		t.Fatalf("search */chat/*:\n%s", got)
	}
	// The page's stream keeps the search.
	c.Wait(wait, ssetest.Where("an update searched */chat/*", func(e ssetest.Event) bool {
		return strings.Contains(e.Text(), "match <code>*/chat/*</code>") && strings.Contains(e.Text(), `id="dash-streams-now">2<`)
	}))
	if got := search("lobby"); !strings.Contains(got, `class="error"`) || !strings.Contains(got, "scope/category/id") {
		t.Fatalf("a bad pattern:\n%s", got)
	}
	if got := search("<i>/*/*"); strings.Contains(got, "<i>") {
		t.Fatalf("the search echoed raw HTML:\n%s", got)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	hub := sfere.NewHub(sfere.NewMemoryStore(sfere.MemoryOptions{}), sfere.HubOptions{})
	for _, path := range []string{"debug", "/a b", `/x"`, "/<script>"} {
		if _, err := dashboard.New(hub, dashboard.Options{Path: path}); err == nil {
			t.Errorf("path %q accepted", path)
		}
	}
	if _, err := dashboard.New(nil, dashboard.Options{}); err == nil {
		t.Error("a nil hub accepted")
	}
}

// A client that stops reading shows in the Streams pane: its queued bytes
// and its bucket of the queue-depth histogram.
func TestStalledStreamShowsItsQueue(t *testing.T) {
	// No write deadline and no queue bound: the stalled stream stays.
	a := newAppWith(t, dashboard.Options{}, sfere.HubOptions{WriteTimeout: -1, MaxQueueBytes: -1})
	ssetest.Open(t, a.addr(), ssetest.DatastarPost("/sse?cat=lobby&id=stalled", "{}"), ssetest.NoRead(), ssetest.RecvBuffer(4<<10))
	key := sfere.NewKey(sfere.DefaultScope, "lobby", "stalled")
	ssetest.Eventually(t, wait, "the stalled client's stream stored", func() bool { return a.hub.Count(key.Pattern()) == 1 })
	chunk := `<p id="p">` + strings.Repeat("x", 64<<10) + `</p>`
	// Send until the socket's buffers are full: the writer is stuck, and
	// the queue holds more than 16 KiB (at most 16 + 64 KiB) and keeps it.
	deadline := time.Now().Add(wait)
	queued := func() int {
		s, ok := a.hub.Store().Get(key)
		if !ok {
			t.Fatal("the stalled stream ended")
		}
		return s.Info().Queued
	}
	for {
		if _, err := a.hub.Send(key, sfere.PatchElements(chunk)); err != nil {
			t.Fatal(err)
		}
		if queued() > 16<<10 {
			time.Sleep(20 * time.Millisecond) // time for a writer that is not stuck to take the queue
			if queued() > 16<<10 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing queued for a client that reads nothing")
		}
		time.Sleep(time.Millisecond) // paces the sends: the writer takes each into the socket
	}
	_, conn := a.page(t)
	c := a.open(t, conn, "*/lobby/*")
	ev := c.Wait(wait, ssetest.Containing(`<td>stalled</td>`))
	text := ev.Text()
	for _, want := range []string{"≤ 256 KiB 1", "taken over"} {
		if !strings.Contains(text, want) {
			t.Errorf("the Streams pane lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, `<td class="n">0 B</td>`) {
		t.Errorf("the stalled stream shows nothing queued:\n%s", text)
	}
}

// Streams that resume from a position are counted while a page watches:
// one replayed what it missed, one asked for a position the history
// never had.
func TestRecoveriesCountedWhileWatched(t *testing.T) {
	a := newAppWith(t, dashboard.Options{}, sfere.HubOptions{History: sfere.HistoryOptions{Size: 100}})
	_, conn := a.page(t)
	c := a.open(t, conn, "")
	c.Wait(wait, ssetest.Containing(`id="dash-history"`))
	from := a.hub.Position().String()
	for i := range 3 {
		if _, err := a.hub.Broadcast(sfere.InCategory("lobby"), nil, sfere.PatchElements(fmt.Sprintf(`<p id="p">%d</p>`, i))); err != nil {
			t.Fatal(err)
		}
	}
	resume := func(id, pos string) {
		req := ssetest.DatastarPost("/sse?cat=lobby&id="+id, "{}")
		req.Header.Set("Last-Event-ID", pos)
		ssetest.Open(t, a.addr(), req).WaitHead(wait)
	}
	resume("back", from)
	resume("lost", "nonsense")
	ev := c.Wait(wait, ssetest.Containing(`id="dash-recovered">1<`))
	for _, want := range []string{`id="dash-unrecovered">1<`, "3 events replayed", "Newest position: <code>"} {
		if !strings.Contains(ev.Text(), want) {
			t.Errorf("the History pane lacks %q:\n%s", want, ev.Text())
		}
	}
}

// While a page watches, the People pane lists a room's recent arrivals and
// departures, with why the person left.
func TestRecentArrivalsAndDepartures(t *testing.T) {
	a := newApp(t, dashboard.Options{})
	_, conn := a.page(t)
	c := a.open(t, conn, "")
	c.Wait(wait, ssetest.Containing("None while a dashboard was open."))
	if _, err := a.tracker.Claim(context.Background(), presence.Claim{Person: "brian", Owner: "owner", Meta: "Brian <3"}); err != nil {
		t.Fatal(err)
	}
	p := ssetest.Open(t, a.addr(), ssetest.DatastarPost("/people?owner=owner", "{}"))
	p.WaitHead(wait)
	c.Wait(wait, ssetest.Containing("<td>Brian &lt;3</td><td>arrived</td>"))
	p.Close()
	ev := c.Wait(wait, ssetest.Containing("<td>left: closed (closed)</td>"))
	if !strings.Contains(ev.Text(), "0 present") {
		t.Errorf("brian still present after leaving:\n%s", ev.Text())
	}
}

// What a dashboard holds is bounded: its plots keep one window of points
// however long a page stays open, and it forgets pages once they close.
func TestHoldsOneWindowAndForgetsClosedPages(t *testing.T) {
	const interval, window = 10 * time.Millisecond, 100 * time.Millisecond
	a := newApp(t, dashboard.Options{Interval: interval, Window: window})
	var pages []*ssetest.Client
	for range 3 {
		_, conn := a.page(t)
		pages = append(pages, a.open(t, conn, ""))
	}
	ssetest.Eventually(t, wait, "40 updates (4 windows)", func() bool { return a.dash.Renders() >= 40 })
	if points, conns := dashboard.Held(a.dash); points > int(window/interval)+1 || conns != 3 {
		t.Fatalf("holds %d points (window: %d) and %d pages (3 open)", points, int(window/interval)+1, conns)
	}
	for _, p := range pages {
		p.Close()
	}
	ssetest.Eventually(t, wait, "the closed pages forgotten, the sampler stopped", func() bool {
		_, conns := dashboard.Held(a.dash)
		return conns == 0 && !dashboard.SamplerRunning(a.dash)
	})
}

// The Streams pane lists the first 100 streams in key order, and counts
// the rest.
func TestStreamsPaneListsTheFirstKeysInOrder(t *testing.T) {
	a := newApp(t, dashboard.Options{})
	const n = 105
	for _, i := range rand.Perm(n) {
		a.stream(t, "lobby", fmt.Sprintf("%03d", i))
	}
	_, conn := a.page(t)
	c := a.open(t, conn, "*/lobby/*")
	ev := c.Wait(wait, ssetest.Containing("and 5 more"))
	ids := regexp.MustCompile(`<td>default</td><td>lobby</td><td>(\d+)</td>`).FindAllStringSubmatch(ev.Text(), -1)
	if len(ids) != 100 {
		t.Fatalf("%d rows, want 100", len(ids))
	}
	for i, m := range ids {
		if want := fmt.Sprintf("%03d", i); m[1] != want {
			t.Fatalf("row %d is %s, want %s", i, m[1], want)
		}
	}
}

// The rates leave the dashboard's own traffic out: with the app sending,
// its deliveries show; once it stops, the deliveries fall to 0 and the
// bytes out to less than a KiB a second, though the dashboard itself
// still sends each page several KiB per update.
func TestRatesLeaveTheDashboardsOwnTrafficOut(t *testing.T) {
	a := newApp(t, dashboard.Options{})
	a.stream(t, "lobby", "a")
	_, conn := a.page(t)
	c := a.open(t, conn, "")
	stop := a.chat()
	busy := regexp.MustCompile(`(?s)broadcasts \+ sends / s<b>[1-9].*deliveries / s<b>[1-9]`)
	c.Wait(wait, ssetest.Where("the app's deliveries per second", func(e ssetest.Event) bool { return busy.MatchString(e.Text()) }))
	stop()
	idle := regexp.MustCompile(`deliveries / s<b>0</b>`)
	quiet := regexp.MustCompile(`bytes out<b>\d+ B/s</b>`)
	ev := c.Wait(wait, ssetest.Where("no app deliveries and under a KiB/s out", func(e ssetest.Event) bool {
		return idle.MatchString(e.Text()) && quiet.MatchString(e.Text()) && strings.Contains(e.Text(), "broadcasts + sends / s<b>0</b>")
	}))
	if n := len(ev.Text()); n < 2<<10 {
		t.Fatalf("an update of %d bytes: the test needs the dashboard's own traffic to be KiBs a second", n)
	}
}

// The overview shows the delivery latency of the last interval, from the
// hub's histogram, and plots it: figures while events go out.
func TestLatencyPercentilesShown(t *testing.T) {
	a := newApp(t, dashboard.Options{})
	a.stream(t, "lobby", "a")
	_, conn := a.page(t)
	c := a.open(t, conn, "")
	defer a.chat()()
	d := `[0-9.]+(ns|µs|ms|s|m[0-9.]+s)`
	figures := regexp.MustCompile(`id="dash-latency">` + d + ` / ` + d + ` / ` + d + `</b><span class="muted">of [1-9][0-9]* deliveries`)
	plotted := regexp.MustCompile(`aria-label="delivery latency p50 / p99"><polyline class="a" points="[^"]+"/><polyline class="b" points="[^"]+"/>`)
	c.Wait(wait, ssetest.Where("latency figures and their plot", func(e ssetest.Event) bool {
		return figures.MatchString(e.Text()) && plotted.MatchString(e.Text())
	}))
	if l := a.hub.Stats().Latency; l.Count() == 0 || l.Quantile(0.99) < l.Quantile(0.5) {
		t.Fatalf("the hub's histogram: %d deliveries, p50 %v, p99 %v", l.Count(), l.Quantile(0.5), l.Quantile(0.99))
	}
}

// The People pane lists the people away within their resume window, with
// how long each has left, until they come back.
func TestAwayPeopleWithTheirWindow(t *testing.T) {
	a := newAppResume(t, dashboard.Options{}, sfere.HubOptions{}, time.Minute)
	_, conn := a.page(t)
	c := a.open(t, conn, "")
	if _, err := a.tracker.Claim(context.Background(), presence.Claim{Person: "brian", Owner: "owner", Meta: "Brian <3"}); err != nil {
		t.Fatal(err)
	}
	p := ssetest.Open(t, a.addr(), ssetest.DatastarPost("/people?owner=owner", "{}"))
	p.WaitHead(wait)
	c.Wait(wait, ssetest.Containing("<td>Brian &lt;3</td><td>arrived</td>"))
	p.Close()
	left := regexp.MustCompile(`<tr><td>brian</td><td>Brian &lt;3</td><td>(\d+(\.\d+)?)s</td></tr>`)
	ev := c.Wait(wait, ssetest.Where("brian away with his window", func(e ssetest.Event) bool {
		return strings.Contains(e.Text(), "Away, may come back") && left.MatchString(e.Text())
	}))
	if secs, _ := strconv.ParseFloat(left.FindStringSubmatch(ev.Text())[1], 64); secs <= 0 || secs > 60 {
		t.Errorf("brian has %vs left of a minute's window", secs)
	}
	if !strings.Contains(ev.Text(), "<td>left: closed (closed), may resume</td>") {
		t.Errorf("the departure is not shown resumable:\n%s", ev.Text())
	}
	p = ssetest.Open(t, a.addr(), ssetest.DatastarPost("/people?owner=owner", "{}"))
	p.WaitHead(wait)
	c.Wait(wait, ssetest.Where("brian back, present, no longer away", func(e ssetest.Event) bool {
		return strings.Contains(e.Text(), "<td>came back</td>") && strings.Contains(e.Text(), "1 present") &&
			!strings.Contains(e.Text(), "Away, may come back")
	}))
}
