package lobby_test

import (
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/sfere-go/sfere/internal/lobby"
)

// In a real browser: the page keeps only the last PageLines lines of
// #messages, and a join refused by the per-address join budget shows a
// readable message on the page.
func TestBrowserPageLinesAndRefusals(t *testing.T) {
	js, chromium := browserPrerequisites(t)
	const pageLines = 5
	// One join from this address, then none for a long while.
	srv := startServer(t, lobby.Options{DatastarJS: js, Grace: browserGrace, PageLines: pageLines,
		JoinRate: 0.001, JoinBurst: 1, MessageRate: -1})

	browserCtx, stopBrowser := startChromium(t, chromium)
	defer stopBrowser()
	tab, closeTab := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer closeTab()
	joinLobby(t, tab, srv.URL(), "brian")
	waitPage(t, tab, "Brian's stream shows him", `document.getElementById('messages').textContent.includes('brian joined the lobby')`, waitLong)

	for i := 1; i <= 3*pageLines; i++ {
		if err := chromedp.Do(tab,
			chromedp.SendKeys(chromedp.CSS("#message"), fmt.Sprintf("line %d", i)),
			chromedp.Click(chromedp.CSS("#message-form button")),
		); err != nil {
			t.Fatalf("say line %d: %v", i, err)
		}
		waitPage(t, tab, "the line is sent", fmt.Sprintf(`document.getElementById('messages').textContent.includes('brian: line %d')`, i), waitLong)
	}
	last := fmt.Sprintf("brian: line %d", 3*pageLines)
	waitPage(t, tab, "the page keeps the last lines only",
		fmt.Sprintf(`(() => { const m = document.getElementById('messages'); return m.children.length === %d && m.lastElementChild.textContent === %q })()`, pageLines, last),
		waitLong)

	// A second person from the same address: the join budget is spent.
	other, closeOther := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer closeOther()
	if err := chromedp.Do(other,
		chromedp.Navigate(srv.URL()),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), "phil"),
		chromedp.Click(chromedp.CSS("#join button")),
	); err != nil {
		t.Fatal(err)
	}
	waitPage(t, other, "the refused join says why", `document.getElementById('join-error').textContent.includes('Too many joins')`, waitLong)
}

// In a real browser: a stream refused by the per-address stream cap says
// why on the page.
func TestBrowserStreamRefusalShown(t *testing.T) {
	js, chromium := browserPrerequisites(t)
	srv := startServer(t, lobby.Options{DatastarJS: js, Grace: browserGrace, MaxStreamsPerIP: 1})
	browserCtx, stopBrowser := startChromium(t, chromium)
	defer stopBrowser()
	first, closeFirst := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer closeFirst()
	joinLobby(t, first, srv.URL(), "brian")
	waitPage(t, first, "Brian's stream is open", `document.getElementById('messages').textContent.includes('brian joined the lobby')`, waitLong)

	second, closeSecond := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer closeSecond()
	joinLobby(t, second, srv.URL(), "phil")
	waitPage(t, second, "the refused stream says why", `document.getElementById('message-error').textContent.includes('Too many lobby tabs')`, waitLong)
}
