package lobby_test

import (
	"testing"

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
