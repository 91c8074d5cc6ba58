package lobby_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// One person, two tabs, in a real browser: Brian opens the lobby in two
// tabs of one browser (one session cookie) and Phil in another browser
// context. Both of Brian's tabs receive everything; closing one says
// nothing to Phil; closing the last says "brian left the lobby" once; Phil's
// list shows Brian once throughout.
//
// Like TestBrowserTwoTabs it needs DATASTAR_JS and chromium, or it skips.
func TestBrowserOneSessionTwoTabs(t *testing.T) {
	js, chromium := browserPrerequisites(t)

	const heartbeat = 300 * time.Millisecond
	srv := startServer(t, lobby.Options{DatastarJS: js, Heartbeat: heartbeat, Grace: browserGrace, Debug: true})

	browserCtx, stopBrowser := startChromium(t, chromium)
	defer stopBrowser()
	// Brian's browser context (his cookies) is held by a blank tab, so
	// that closing either lobby tab closes only that tab; both lobby tabs
	// are tabs of that context (one session).
	brianBrowser, closeBrianBrowser := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer closeBrianBrowser()
	if err := chromedp.Do(brianBrowser); err != nil {
		t.Fatal(err)
	}
	brian1, closeBrian1 := chromedp.NewContext(brianBrowser)
	defer closeBrian1()
	philTab, closePhil := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer closePhil()

	say := func(tab context.Context, text string) {
		t.Helper()
		if err := chromedp.Do(tab,
			chromedp.SendKeys(chromedp.CSS("#message"), text),
			chromedp.Click(chromedp.CSS("#message-form button")),
		); err != nil {
			t.Fatal(err)
		}
	}
	listedOnce := func(name string) string {
		return fmt.Sprintf(`document.querySelectorAll('#participant-list #%s').length === 1`, participantID(name))
	}
	messagesHave := func(text string) string {
		return fmt.Sprintf(`document.getElementById('messages').textContent.includes(%q)`, text)
	}
	lines := func(tab context.Context, text string) int {
		t.Helper()
		n, err := chromedp.Run(tab, chromedp.Evaluate[int](fmt.Sprintf(
			`[...document.querySelectorAll('#messages .system-message')].filter(p => p.textContent === %q).length`, text)))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	joinLobby(t, brian1, srv.URL(), "brian")
	waitPage(t, brian1, "Brian's first tab shows him", listedOnce("brian"), waitLong)
	joinLobby(t, philTab, srv.URL(), "phil")
	waitPage(t, brian1, "Brian's first tab sees Phil join", listedOnce("phil")+` && `+messagesHave("phil joined the lobby"), waitLong)

	// The second tab: same browser context, so the same session. The
	// page is the lobby at once and opens a stream of its own.
	brian2, closeBrian2 := chromedp.NewContext(brianBrowser)
	defer closeBrian2()
	if err := chromedp.Do(brian2, chromedp.Navigate(srv.URL()), chromedp.WaitVisible(chromedp.CSS("#participant-list"))); err != nil {
		t.Fatalf("Brian's second tab: %v", err)
	}
	waitPage(t, brian2, "Brian's second tab lists both once", listedOnce("brian")+` && `+listedOnce("phil"), waitLong)
	ssetest.Eventually(t, waitLong, "Brian has two streams", func() bool {
		n := 0
		for _, p := range debugPeople(t, newBrowser(t, srv)) {
			if p == "brian" {
				n++
			}
		}
		return n == 2
	})

	// Both tabs receive everything; Phil's list shows Brian once.
	say(philTab, "hello both tabs")
	for i, tab := range []context.Context{brian1, brian2} {
		waitPage(t, tab, fmt.Sprintf("Brian's tab %d gets Phil's line", i+1), messagesHave("phil: hello both tabs"), waitLong)
	}
	say(brian2, "from the second tab")
	waitPage(t, philTab, "Phil gets the second tab's line", messagesHave("brian: from the second tab"), waitLong)
	waitPage(t, philTab, "Phil lists Brian once", listedOnce("brian"), time.Second)
	if n := lines(philTab, "brian joined the lobby"); n != 0 {
		t.Errorf("Phil saw %d \"brian joined\" lines (Brian was there before him)", n)
	}

	// Brian closes his first tab: nothing is announced, the second tab
	// still receives.
	closeBrian1()
	time.Sleep(browserGrace + 3*heartbeat) // negative check: a departure would come at grace, a heartbeat-found one soon after
	if n := lines(philTab, "brian left the lobby"); n != 0 {
		t.Fatalf("closing one of Brian's two tabs announced %d departures", n)
	}
	waitPage(t, philTab, "Brian still listed", listedOnce("brian"), time.Second)
	say(philTab, "still with you")
	waitPage(t, brian2, "Brian's second tab still receives", messagesHave("phil: still with you"), waitLong)

	// Brian closes his last tab: one departure.
	closed := time.Now()
	closeBrian2()
	waitPage(t, philTab, "Phil sees Brian leave", `document.querySelector('#participant-list #`+participantID("brian")+`') === null && `+
		messagesHave("brian left the lobby"), browserGrace+2*time.Second)
	t.Logf("last tab closed -> Phil's page shows the departure after %v", time.Since(closed).Round(time.Millisecond))
	time.Sleep(browserGrace + 3*heartbeat) // negative check: a second departure (grace or heartbeat) would come by now
	if n := lines(philTab, "brian left the lobby"); n != 1 {
		t.Errorf("Phil's page shows %d \"brian left\" lines, want 1", n)
	}
}
