package lobby_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// In a real browser with the Datastar v1 client and the page's Content
// Security Policy: hostile names render as text and leave only their own
// list item; nothing violates the CSP; and when the server restarts
// gracefully, the page is told, reconnects by itself once the new server
// is up, and shows the join form for its unknown session. Needs DATASTAR_JS
// and chromium, like TestBrowserTwoTabs.
func TestBrowserHostileNamesAndRestart(t *testing.T) {
	js, chromium := browserPrerequisites(t)
	opts := lobby.Options{Addr: "127.0.0.1:0", DatastarJS: js, Heartbeat: 300 * time.Millisecond, Grace: testGrace, Logger: ssetest.Logger(t, slog.LevelDebug)}
	a, err := lobby.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())

	browserCtx, stopBrowser := startChromium(t, chromium)
	defer stopBrowser()
	// Every tab records CSP violations and dialogs (an alert would mean a
	// script ran) from before its first script.
	const watch = `window.__violations = []; window.alert = (m) => window.__violations.push('alert ' + m);
document.addEventListener('securitypolicyviolation', e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));`
	newTab := func() (context.Context, context.CancelFunc) {
		tab, cancel := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
		if err := chromedp.Do(tab, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: watch})
			return err
		})); err != nil {
			t.Fatal(err)
		}
		return tab, cancel
	}
	violations := func(tab context.Context) []string {
		v, err := chromedp.Run(tab, chromedp.Evaluate[[]string](`window.__violations || []`))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	brian, closeBrian := newTab()
	defer closeBrian()
	joinLobby(t, brian, a.URL(), "brian")
	evilNames := []string{`<img src=x onerror=alert(1)>`, "list", `x"], #messages, [id="`}
	for _, name := range evilNames {
		tab, closeTab := newTab()
		joinLobby(t, tab, a.URL(), name)
		waitPage(t, brian, "the hostile name shows as text", fmt.Sprintf(`[...document.querySelectorAll('#participant-list li')].some(li => li.textContent === %q)`, name), waitLong)
		if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS("#leave"))); err != nil {
			t.Fatal(err)
		}
		waitPage(t, brian, "only its own item goes", fmt.Sprintf(`document.getElementById('participant-list') !== null && `+
			`document.getElementById('messages') !== null && document.getElementById(%q) === null && `+
			`document.getElementById(%q) !== null`, participantID(name), participantID("brian")), waitLong)
		if v := violations(tab); len(v) > 0 {
			t.Errorf("%q's tab: %q", name, v)
		}
		closeTab()
	}
	waitPage(t, brian, "no markup from names", `document.querySelector('#app img') === null`, time.Second)

	// A graceful restart on the same address.
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	waitPage(t, brian, "the page is told the server restarts", `document.getElementById('messages').textContent.includes('restarting')`, waitLong)
	time.Sleep(time.Second) // pacing: the server stays down a second, as a restart takes
	opts.Addr = a.Addr().String()
	b, err := lobby.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	waitPage(t, brian, "the page reconnects by itself and is asked to join again",
		`document.getElementById('join') !== null && document.getElementById('join-notice') !== null && document.getElementById('join-notice').textContent.includes('join again')`, 20*time.Second)
	t.Logf("graceful restart: the page showed the join form %v after the shutdown", time.Since(down).Round(time.Millisecond))
	// The form keeps the name (the username signal survives): one click.
	waitPage(t, brian, "the join form still holds the name", `document.getElementById('username').value === 'brian'`, time.Second)
	if err := chromedp.Do(brian,
		chromedp.Click(chromedp.CSS("#join button")),
		chromedp.WaitVisible(chromedp.CSS("#participant-list")),
	); err != nil {
		t.Fatal(err)
	}
	waitPage(t, brian, "brian is back, once", fmt.Sprintf(`document.querySelectorAll('#participant-list li').length === 1 && document.getElementById(%q) !== null`, participantID("brian")), waitLong)
	if v := violations(brian); len(v) > 0 {
		t.Errorf("CSP violations or dialogs: %q", v)
	}
}

// In a real browser: when the server restarts (same address, same session
// key), each page carries on by itself, under the same name, without a
// new join: it reconnects, is told that what was said meanwhile is lost,
// and both chat again. Needs DATASTAR_JS and chromium.
func TestBrowserRestartCarriesOn(t *testing.T) {
	js, chromium := browserPrerequisites(t)
	opts := lobby.Options{Addr: "127.0.0.1:0", DatastarJS: js, Heartbeat: 300 * time.Millisecond, Grace: browserGrace,
		SessionKey: []byte("a key that outlives one run......"), Logger: ssetest.Logger(t, slog.LevelDebug)}
	a, err := lobby.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	browserCtx, stopBrowser := startChromium(t, chromium)
	defer stopBrowser()
	brian, closeBrian := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer closeBrian()
	phil, closePhil := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer closePhil()
	joinLobby(t, brian, a.URL(), "brian")
	joinLobby(t, phil, a.URL(), "phil")
	both := fmt.Sprintf(`document.getElementById(%q) !== null && document.getElementById(%q) !== null && document.querySelectorAll('#participant-list li').length === 2`,
		participantID("brian"), participantID("phil"))
	waitPage(t, brian, "brian sees phil", both, waitLong)

	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	opts.Addr = a.Addr().String()
	b, err := lobby.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	for _, tab := range []struct {
		ctx  context.Context
		name string
	}{{brian, "brian"}, {phil, "phil"}} {
		waitPage(t, tab.ctx, tab.name+"'s page carries on, same name, both listed",
			both+` && document.querySelector('.whoami strong').textContent === '`+tab.name+`' && document.getElementById('join') === null && `+
				`document.getElementById('messages').textContent.includes('could not be recovered')`, 20*time.Second)
	}
	t.Logf("graceful restart: both pages carried on %v after the shutdown", time.Since(down).Round(time.Millisecond))
	if err := chromedp.Do(phil,
		chromedp.SendKeys(chromedp.CSS("#message"), "hello after the restart"),
		chromedp.Click(chromedp.CSS("#message-form button")),
	); err != nil {
		t.Fatal(err)
	}
	waitPage(t, brian, "brian sees phil's line", `document.getElementById('messages').textContent.includes('phil: hello after the restart')`, waitLong)
}
