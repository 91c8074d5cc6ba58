package lobby_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// streamEncodings records the Content-Encoding of every stream response
// (POST /sse) a tab gets, as the browser saw it.
type streamEncodings struct {
	mu  sync.Mutex
	all []string
}

func watchStreams(t *testing.T, tab context.Context) *streamEncodings {
	t.Helper()
	se := &streamEncodings{}
	err := chromedp.Listen(tab, func(ev any) {
		e, ok := ev.(*network.EventResponseReceived)
		if !ok || !isStreamURL(e.Response.URL) {
			return
		}
		enc := ""
		for name, v := range e.Response.Headers {
			if strings.EqualFold(name, "Content-Encoding") {
				enc = fmt.Sprint(v)
			}
		}
		se.mu.Lock()
		se.all = append(se.all, enc)
		se.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(tab, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	return se
}

// isStreamURL reports whether a URL is the lobby's stream (POST /sse,
// with or without a query).
func isStreamURL(u string) bool {
	u, _, _ = strings.Cut(u, "?")
	return strings.HasSuffix(u, "/sse")
}

func (se *streamEncodings) snapshot() []string {
	se.mu.Lock()
	defer se.mu.Unlock()
	return append([]string(nil), se.all...)
}

// sayIn sends a chat line from tab's page.
func sayIn(t *testing.T, tab context.Context, text string) {
	t.Helper()
	if err := chromedp.Do(tab,
		chromedp.SendKeys(chromedp.CSS("#message"), text),
		chromedp.Click(chromedp.CSS("#message-form button")),
	); err != nil {
		t.Fatal(err)
	}
}

// In a real browser with the Datastar v1 client, the lobby's streams are
// gzipped (its default): every stream response Chromium gets says
// Content-Encoding: gzip, and the page stays right through joins, chat, a
// reload, a network blink that the stream resumes from (the missed lines
// replayed, each once, in order) and a restart of the server. Needs
// DATASTAR_JS and chromium.
func TestBrowserCompressedStreams(t *testing.T) {
	js, chromium := browserPrerequisites(t)
	opts := lobby.Options{Addr: "127.0.0.1:0", DatastarJS: js, Heartbeat: 300 * time.Millisecond, Grace: browserGrace, Resume: time.Minute,
		SessionKey: []byte("a key that outlives one run......"), Logger: ssetest.Logger(t, slog.LevelInfo)}
	a, err := lobby.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	netw := startCutProxy(t, a.Addr().String())

	browserCtx, stopBrowser := startChromium(t, chromium)
	defer stopBrowser()
	brian, closeBrian := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer closeBrian()
	phil, closePhil := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer closePhil()
	brianStreams, philStreams := watchStreams(t, brian), watchStreams(t, phil)

	joinLobby(t, brian, "http://"+netw.addr(), "brian")
	joinLobby(t, phil, a.URL(), "phil")
	both := fmt.Sprintf(`document.getElementById(%q) !== null && document.getElementById(%q) !== null && document.querySelectorAll('#participant-list li').length === 2`,
		participantID("brian"), participantID("phil"))
	waitPage(t, brian, "brian sees phil", both, waitLong)
	waitPage(t, phil, "phil sees brian", both, waitLong)

	// lines is every line phil says; brian's page must show each once, in
	// order.
	var lines []string
	say := func(text string) {
		t.Helper()
		sayIn(t, phil, text)
		lines = append(lines, text)
		waitPage(t, phil, "phil's line is on his page", fmt.Sprintf(`document.getElementById('messages').textContent.includes(%q)`, "phil: "+text), waitLong)
	}
	brianHasAll := func(what string, within time.Duration) {
		t.Helper()
		waitPage(t, brian, what, fmt.Sprintf(`(() => {
  const texts = [...document.querySelectorAll('#messages .chat-message')].map(p => p.textContent);
  const want = %s;
  const at = want.map(w => texts.filter(t => t === 'phil: ' + w).length === 1 ? texts.indexOf('phil: ' + w) : -1);
  return at.every((i, k) => i >= 0 && (k === 0 || i > at[k-1]));
})()`, jsonText(t, lines)), within)
	}
	for i := range 5 {
		say(fmt.Sprintf("line %d before anything happens <b>bold</b>", i))
	}
	brianHasAll("brian gets phil's lines", waitLong)

	// A reload: a new stream, its page rendered anew (the lobby's page
	// starts with no chat lines).
	if err := chromedp.Do(brian, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	waitPage(t, brian, "brian's reloaded page lists both", both, waitLong)
	lines = nil
	say("after the reload")
	brianHasAll("brian's reloaded page has every line", waitLong)

	// A network blink: the stream resumes, replaying what brian missed.
	netw.cut()
	for _, text := range []string{"missed one", "missed two", "missed three"} {
		say(text)
	}
	netw.restore()
	say("after the blink")
	brianHasAll("brian's page shows every missed line once, in order", 40*time.Second)

	// A restart on the same address: both pages carry on.
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	opts.Addr = a.Addr().String()
	b, err := lobby.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())
	for _, tab := range []context.Context{brian, phil} {
		waitPage(t, tab, "the page carries on after the restart",
			both+` && document.getElementById('messages').textContent.includes('could not be recovered')`, 20*time.Second)
	}
	say("after the restart")
	brianHasAll("brian gets the line said after the restart", waitLong)

	// Every stream either tab opened was gzipped: brian's first, after
	// the reload, after the blink and after the restart; phil's first and
	// after the restart.
	for _, tc := range []struct {
		name string
		se   *streamEncodings
		min  int
	}{{"brian", brianStreams, 4}, {"phil", philStreams, 2}} {
		got := tc.se.snapshot()
		if len(got) < tc.min {
			t.Errorf("%s's tab saw %d stream responses (%q), want at least %d", tc.name, len(got), got, tc.min)
		}
		for i, enc := range got {
			if enc != "gzip" {
				t.Errorf("%s's stream response %d says Content-Encoding %q, want gzip", tc.name, i, enc)
			}
		}
		t.Logf("%s's stream responses: %q", tc.name, got)
	}
}
