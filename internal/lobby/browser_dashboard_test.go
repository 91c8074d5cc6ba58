package lobby_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sfere-go/sfere/internal/lobby"
)

// The dashboard in a real browser with the Datastar client: opened before
// anyone joins, it shows a person arriving (a stream, a person in the
// room, a plot that draws the change) and leaving, without a reload; its
// search narrows the Streams pane.
func TestBrowserDashboard(t *testing.T) {
	js, chromium := browserPrerequisites(t)
	srv := startServer(t, lobby.Options{DatastarJS: js, Grace: browserGrace, Dashboard: true})
	browserCtx, stopBrowser := startChromium(t, chromium)
	defer stopBrowser()
	dash, closeDash := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer closeDash()
	person, closePerson := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer closePerson()

	if err := chromedp.Do(dash, chromedp.Navigate(srv.URL()+"/debug/dashboard")); err != nil {
		t.Fatal(err)
	}
	const streamsNow = `document.getElementById('dash-streams-now').textContent`
	waitPage(t, dash, "the dashboard's stream counts itself apart",
		`document.getElementById('dash-overview').textContent.includes('+ 1 dashboard') && `+streamsNow+` === '0'`, waitLong)
	waitPage(t, dash, "the streams plot draws a line", `document.querySelector('svg[aria-label="streams"] polyline') !== null`, waitLong)

	joinLobby(t, person, srv.URL(), "brian")
	waitPage(t, dash, "brian's stream, person and arrival shown", streamsNow+` === '1' && `+
		`document.getElementById('dash-people').textContent.includes('arrived') && `+
		`document.getElementById('dash-people').textContent.includes('1 present') && `+
		`document.getElementById('dash-people').textContent.includes('brian')`, waitLong)
	waitPage(t, dash, "the streams plot rises to 1", `document.querySelector('svg[aria-label="streams"]').parentElement.textContent.includes('streams: 1')`, waitLong)

	// The search: a pattern that matches nothing.
	if err := chromedp.Do(dash,
		chromedp.SendKeys(chromedp.CSS("#dash-search"), "nobody/*/*"),
		chromedp.Click(chromedp.CSS("#dash-search + button")),
	); err != nil {
		t.Fatal(err)
	}
	waitPage(t, dash, "the search found no stream", `document.getElementById('dash-streams-total') !== null && document.getElementById('dash-streams-total').textContent === '0'`, waitLong)
	waitPage(t, dash, "the search holds over updates", `document.getElementById('dash-streams').textContent.includes('match nobody/*/*')`, waitLong)

	closePerson()
	waitPage(t, dash, "brian's departure shown, with its reason", streamsNow+` === '0' && `+
		`document.getElementById('dash-people').textContent.includes('0 present') && `+
		`document.getElementById('dash-people').textContent.includes('left: closed')`, waitLong)
}

// The dashboard stays live under load: while people join, stream and
// leave in a loop (churn) and one of them chats, the open page shows the
// streams counted, churners arriving and leaving, and its streams plot
// changing, all without a reload.
func TestBrowserDashboardUnderChurn(t *testing.T) {
	js, chromium := browserPrerequisites(t)
	srv := startServer(t, lobby.Options{DatastarJS: js, Grace: browserGrace, Dashboard: true})
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() }) // before the server stops (cleanups run last first)
	tr := newTransport(t)
	for i := range 6 {
		wg.Go(func() { churn(ctx, t, newLClient(srv.URL(), tr), fmt.Sprintf("churner%d", i)) })
	}
	browserCtx, stopBrowser := startChromium(t, chromium)
	defer stopBrowser()
	dash, closeDash := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer closeDash()
	if err := chromedp.Do(dash, chromedp.Navigate(srv.URL()+"/debug/dashboard")); err != nil {
		t.Fatal(err)
	}
	waitPage(t, dash, "the page is up", `document.getElementById('dash-streams-now') !== null`, waitLong)
	if _, err := chromedp.Run(dash, chromedp.Evaluate[bool](`window.sameLoad = true`)); err != nil {
		t.Fatal(err)
	}
	const people = `document.getElementById('dash-people').textContent`
	waitPage(t, dash, "churners' streams counted", `Number(document.getElementById('dash-streams-now').textContent) > 0`, 3*waitLong)
	waitPage(t, dash, "a churner arriving and one leaving", people+`.includes('churner') && `+people+`.includes('arrived') && `+people+`.includes('left: ')`, 3*waitLong)
	const points = `(document.querySelector('svg[aria-label="streams"] polyline') || {getAttribute: () => ''}).getAttribute('points')`
	before, err := chromedp.Run(dash, chromedp.Evaluate[string](points))
	if err != nil {
		t.Fatal(err)
	}
	waitPage(t, dash, "the streams plot changes", points+` !== `+strconv.Quote(before), 3*waitLong)
	waitPage(t, dash, "the same page, never reloaded", `window.sameLoad === true`, waitLong)
}

// churn joins as a new person named after name, opens a stream, keeps it
// open a while, closes it and leaves, again and again until ctx ends.
func churn(ctx context.Context, t *testing.T, c *lclient, name string) {
	for k := 0; ctx.Err() == nil; k++ {
		if err := c.join(fmt.Sprintf("%s-%d", name, k)); err != nil {
			if ctx.Err() == nil {
				t.Errorf("churn: %v", err)
			}
			return
		}
		if p, err := c.openProbe(true, dialOpts{light: true}); err == nil {
			select { // pacing: each churner holds its stream this long
			case <-ctx.Done():
			case <-time.After(300 * time.Millisecond):
			}
			p.close()
		}
		if _, _, err := c.post("/leave", nil); err != nil && ctx.Err() == nil {
			t.Errorf("churn: leave: %v", err)
			return
		}
	}
}
