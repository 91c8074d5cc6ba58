package lobby_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/sfere-go/sfere/internal/lobby"
)

// Eight tabs of one browser on one lobby over HTTP/2 (TLS): all eight
// streams are live at once. Over HTTP/1.1 a browser shares 6 connections
// per origin across its tabs, so a 7th tab's stream would wait; HTTP/2
// multiplexes them on one connection. The tabs share the browser's
// cookies, so they are one person with eight streams.
func TestBrowserEightTabsOverHTTP2(t *testing.T) {
	js, chromium := browserPrerequisites(t)
	cert, key, _ := selfSigned(t)
	srv := startServer(t, lobby.Options{DatastarJS: js, Grace: testGrace, TLSCert: cert, TLSKey: key})

	browserCtx, stopBrowser := startChromium(t, chromium, chromedp.IgnoreCertErrors)
	defer stopBrowser()
	poll := func(tab context.Context, what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(tab, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(waitLong))); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// Brian joins in the first tab; seven more tabs of the same browser
	// (same cookies) open the lobby as him.
	tabs := make([]context.Context, 8)
	for i := range tabs {
		tab, cancel := chromedp.NewContext(browserCtx) // a tab of the same browser context
		defer cancel()
		if err := chromedp.Do(tab); err != nil { // opens the tab, bound to tab's context
			t.Fatal(err)
		}
		tabs[i] = tab
		actions := []chromedp.Action[chromedp.Void]{chromedp.Navigate(srv.URL())}
		if i == 0 {
			actions = append(actions,
				chromedp.WaitVisible(chromedp.CSS("#username")),
				chromedp.SendKeys(chromedp.CSS("#username"), "brian"),
				chromedp.Click(chromedp.CSS("#join button")))
		}
		actions = append(actions, chromedp.WaitVisible(chromedp.CSS("#participant-list")))
		// Bounded: over HTTP/1.1 a 7th tab would wait for a connection for ever.
		load, cancelLoad := context.WithTimeout(tab, waitLong)
		err := chromedp.Do(load, actions...)
		cancelLoad()
		if err != nil {
			t.Fatalf("tab %d: %v", i+1, err)
		}
		poll(tab, fmt.Sprintf("tab %d over HTTP/2", i+1), `performance.getEntriesByType('navigation')[0].nextHopProtocol === 'h2'`)
	}
	// Phil, in a browser context of his own, joins and speaks: every one
	// of Brian's tabs shows both.
	phil, cancelPhil := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer cancelPhil()
	if err := chromedp.Do(phil,
		chromedp.Navigate(srv.URL()),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), "phil"),
		chromedp.Click(chromedp.CSS("#join button")),
		chromedp.WaitVisible(chromedp.CSS("#message")),
	); err != nil {
		t.Fatalf("phil joins: %v", err)
	}
	poll(phil, "phil's stream shows him", fmt.Sprintf(`document.getElementById(%q) !== null`, participantID("phil")))
	if err := chromedp.Do(phil,
		chromedp.SendKeys(chromedp.CSS("#message"), "hello eight tabs"),
		chromedp.Click(chromedp.CSS("#message-form button")),
	); err != nil {
		t.Fatal(err)
	}
	for i, tab := range tabs {
		poll(tab, fmt.Sprintf("tab %d is live", i+1),
			fmt.Sprintf(`document.getElementById(%q) !== null && document.getElementById('messages').textContent.includes('phil: hello eight tabs')`, participantID("phil")))
	}
	// Brian is one person: Phil's list shows him once.
	poll(phil, "brian listed once", fmt.Sprintf(`document.querySelectorAll('#participant-list li').length === 2 && document.getElementById(%q) !== null`, participantID("brian")))
}
