package lobby_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/natscluster"
)

// In a real browser with the Datastar v1 client: a line the cluster's log
// cannot take (NATS is down) is answered 503, shown nowhere, and the
// page says "Not sent, try again" with the text still in the input, so
// sending it again is one click. Needs DATASTAR_JS and chromium.
func TestBrowserLineNotSentKeepsTheText(t *testing.T) {
	js, chromium := browserPrerequisites(t)
	ns, err := natscluster.StartServer("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			ns.Shutdown()
		}
	})
	srv := startServer(t, lobby.Options{DatastarJS: js, NATS: ns.ClientURL(), NodeID: "a", Heartbeat: 2 * time.Second, TTL: 20 * time.Second,
		Grace: browserGrace, NATSPublishTimeout: 500 * time.Millisecond})

	browserCtx, stopBrowser := startChromium(t, chromium)
	defer stopBrowser()
	brian, closeBrian := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer closeBrian()
	joinLobby(t, brian, srv.URL(), "brian")
	say := func(text string) {
		t.Helper()
		if err := chromedp.Do(brian,
			chromedp.SendKeys(chromedp.CSS("#message"), text),
			chromedp.Click(chromedp.CSS("#message-form button")),
		); err != nil {
			t.Fatalf("say %q: %v", text, err)
		}
	}
	say("sent while NATS is up")
	waitPage(t, brian, "the line is shown and the input cleared",
		`document.getElementById('messages').textContent.includes('sent while NATS is up') && document.getElementById('message').value === ''`, waitLong)

	ns.Shutdown()
	stopped = true
	say("said while NATS is down")
	waitPage(t, brian, "the page says not sent and keeps the text",
		`document.getElementById('message-error').textContent.includes('Not sent, try again') && document.getElementById('message').value === 'said while NATS is down'`, 20*time.Second)
	shown, err := chromedp.Run(brian, chromedp.Evaluate[bool](`document.getElementById('messages').textContent.includes('said while NATS is down')`))
	if err != nil {
		t.Fatal(err)
	}
	if shown {
		t.Fatal("a line that was not sent is shown")
	}
}
