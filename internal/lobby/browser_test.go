package lobby_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// The page in a real browser with the Datastar v1 client: two isolated
// browser contexts (two people) join, chat, one tab closes and the other
// shows the departure; heartbeats do not grow the page; a taken name shows
// its message on the page.
//
// It needs the Datastar client bundle from the file named by DATASTAR_JS
// (no registry here ships it, and it is never committed) and Debian's
// chromium; without either it skips.
// browserGrace is the browser tests' reload grace: a real browser's reload
// (page, script, new stream) on a busy machine can take longer than
// testGrace, and a reload must stay silent.
const browserGrace = 1500 * time.Millisecond

func TestBrowserTwoTabs(t *testing.T) {
	js, chromium := browserPrerequisites(t)

	const heartbeat = 300 * time.Millisecond
	srv := startServer(t, lobby.Options{DatastarJS: js, Heartbeat: heartbeat, Grace: browserGrace, Debug: true})

	browserCtx, stopBrowser := startChromium(t, chromium)
	defer stopBrowser()
	newTab := func() (context.Context, context.CancelFunc) {
		return chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext()) // its own cookies
	}
	brianTab, closeBrian := newTab()
	defer closeBrian()
	philTab, closePhil := newTab()
	defer closePhil()

	item := func(name string) string {
		return fmt.Sprintf(`document.getElementById(%q)`, participantID(name))
	}
	messagesHave := func(text string) string {
		return fmt.Sprintf(`document.getElementById('messages').textContent.includes(%q)`, text)
	}

	joinLobby(t, brianTab, srv.URL(), "brian")
	waitPage(t, brianTab, "Brian's stream shows him", item("brian")+` !== null && `+messagesHave("brian joined the lobby"), waitLong)
	joinLobby(t, philTab, srv.URL(), "phil")
	waitPage(t, philTab, "Phil sees Brian and himself", item("brian")+` !== null && `+item("phil")+` !== null`, waitLong)
	waitPage(t, brianTab, "Brian sees Phil join", item("phil")+` !== null && `+messagesHave("phil joined the lobby"), waitLong)

	// Chat: Phil's line reaches Brian and Phil's input is cleared.
	if err := chromedp.Do(philTab,
		chromedp.SendKeys(chromedp.CSS("#message"), "hello <b>brian</b>"),
		chromedp.Click(chromedp.CSS("#message-form button")),
	); err != nil {
		t.Fatal(err)
	}
	waitPage(t, brianTab, "Brian gets Phil's message as text",
		`[...document.querySelectorAll('#messages .chat-message')].some(p => p.textContent === 'phil: hello <b>brian</b>' && p.querySelector('b') === null)`, waitLong)
	waitPage(t, philTab, "Phil's input is cleared", `document.getElementById('message').value === ''`, waitLong)

	// Heartbeats arrive but do not grow the page.
	countNodes := func(tab context.Context) int {
		t.Helper()
		n, err := chromedp.Run(tab, chromedp.Evaluate[int](`document.body.getElementsByTagName('*').length`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	beforeNodes, beforeWrites := countNodes(philTab), heartbeatWrites(t, srv)
	ssetest.Eventually(t, 6*heartbeat+waitLong, "four heartbeat writes", func() bool {
		return heartbeatWrites(t, srv)-beforeWrites >= 4
	})
	afterNodes, afterWrites := countNodes(philTab), heartbeatWrites(t, srv)
	if afterNodes != beforeNodes {
		t.Errorf("page grew from %d to %d elements over %d heartbeats", beforeNodes, afterNodes, afterWrites-beforeWrites)
	}
	t.Logf("%d heartbeat writes; page stayed at %d elements", afterWrites-beforeWrites, afterNodes)

	// A taken name is refused with its message on the page.
	carolTab, closeCarol := newTab()
	defer closeCarol()
	if err := chromedp.Do(carolTab,
		chromedp.Navigate(srv.URL()),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), "phil"),
		chromedp.Click(chromedp.CSS("#join button")),
	); err != nil {
		t.Fatal(err)
	}
	waitPage(t, carolTab, "the taken name's message is shown",
		`document.getElementById('join-error').textContent.includes('already taken')`, waitLong)
	shoot(t, carolTab, "/tmp/lobby-taken-name.png")
	closeCarol()

	shoot(t, philTab, "/tmp/lobby-before-close.png")

	// Brian reloads: the page comes back as the lobby and reopens the
	// stream within grace; Phil hears nothing of it.
	if err := chromedp.Do(brianTab, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	waitPage(t, brianTab, "Brian's reloaded page is the lobby with both listed", item("brian")+` !== null && `+item("phil")+` !== null`, waitLong)
	time.Sleep(browserGrace + 3*heartbeat) // negative check: a departure for the reload would come at grace
	waitPage(t, philTab, "a reload is not announced", `!document.getElementById('messages').textContent.includes('brian left') && `+
		`[...document.querySelectorAll('#messages .system-message')].filter(p => p.textContent === 'brian joined the lobby').length === 0 && `+item("brian")+` !== null`, time.Second)

	// Brian's tab closes: Phil sees him leave, once.
	closed := time.Now()
	closeBrian()
	waitPage(t, philTab, "Phil sees Brian leave", item("brian")+` === null && `+messagesHave("brian left the lobby"), browserGrace+2*time.Second)
	t.Logf("browser tab closed -> Phil's page shows the departure after %v", time.Since(closed).Round(time.Millisecond))
	time.Sleep(browserGrace + 3*heartbeat) // negative check: a second departure (grace or heartbeat) would come by now
	n, err := chromedp.Run(philTab, chromedp.Evaluate[int](
		`[...document.querySelectorAll('#messages .system-message')].filter(p => p.textContent === 'brian left the lobby').length`))
	if err != nil || n != 1 {
		t.Errorf("Phil's page shows %d \"brian left\" lines (err %v), want 1", n, err)
	}

	// Phil's stream stays up, and Leave puts the join form back.
	if err := chromedp.Do(philTab,
		chromedp.SendKeys(chromedp.CSS("#message"), "still here"),
		chromedp.Click(chromedp.CSS("#message-form button")),
	); err != nil {
		t.Fatal(err)
	}
	waitPage(t, philTab, "Phil's message after Brian left", messagesHave("phil: still here"), waitLong)
	shoot(t, philTab, "/tmp/lobby-after-close.png")
	if err := chromedp.Do(philTab, chromedp.Click(chromedp.CSS("#leave"))); err != nil {
		t.Fatal(err)
	}
	waitPage(t, philTab, "Leave shows the join form", `document.getElementById('join') !== null && document.getElementById('lobby') === null`, waitLong)
	ssetest.Eventually(t, waitLong, "no streams left", func() bool { return len(debugKeys(t, newBrowser(t, srv))) == 0 })
}

// findChromium returns the path of Debian's chromium (or another Chrome) or "".
func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// shoot saves a screenshot of the tab.
func shoot(t *testing.T, tab context.Context, path string) {
	t.Helper()
	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot: %v", err)
		return
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Errorf("screenshot: %v", err)
		return
	}
	t.Logf("screenshot: %s", path)
}

var heartbeatWritesRE = regexp.MustCompile(`(?m)^lobby_heartbeat_writes_total (\d+)`)

func heartbeatWrites(t *testing.T, srv *lobby.Server) int {
	t.Helper()
	m := heartbeatWritesRE.FindStringSubmatch(newBrowser(t, srv).get("/metrics").body)
	if m == nil {
		t.Fatal("no lobby_heartbeat_writes_total in /metrics")
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// joinLobby opens the lobby at url in tab and joins as name, waiting for
// the participant list.
func joinLobby(t *testing.T, tab context.Context, url, name string) {
	t.Helper()
	if err := chromedp.Do(tab,
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), name),
		chromedp.Click(chromedp.CSS("#join button")),
		chromedp.WaitVisible(chromedp.CSS("#participant-list")),
	); err != nil {
		t.Fatalf("%s joins: %v", name, err)
	}
}

// waitPage polls expr in tab until it is true, failing the test with
// what and the page's #app (or body) after d.
func waitPage(t *testing.T, tab context.Context, what, expr string, d time.Duration) {
	t.Helper()
	_, err := chromedp.Run(tab, chromedp.Poll[bool](expr,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(d)))
	if err != nil {
		html, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.querySelector('#app') ? document.querySelector('#app').outerHTML : document.body.outerHTML`))
		t.Fatalf("%s: %v\npage:\n%s", what, err, html)
	}
}

// startChromium starts a headless chromium as the browser tests run it
// (opts add to the common flags) and returns the browser's context and
// the function that closes the browser.
func startChromium(t *testing.T, chromium string, opts ...chromedp.ExecAllocatorOption) (context.Context, func()) {
	t.Helper()
	all := append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1000, 760),
	}, opts...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), all...)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	stop := func() {
		cancelBrowser()
		cancelAlloc()
	}
	if err := chromedp.Do(browserCtx); err != nil { // starts the browser
		stop()
		t.Fatalf("start chromium: %v", err)
	}
	return browserCtx, stop
}

// browserPrerequisites returns the Datastar client bundle named by
// DATASTAR_JS and the chromium binary, or skips the test saying which is
// missing.
func browserPrerequisites(t *testing.T) (js, chromium string) {
	t.Helper()
	js = os.Getenv("DATASTAR_JS")
	if js == "" {
		t.Skip("DATASTAR_JS is not set: set it to a local copy of the Datastar v1 client bundle (datastar.js, v1.0.2 or newer) to run the browser test")
	}
	if _, err := os.Stat(js); err != nil {
		t.Skipf("DATASTAR_JS=%s: %v", js, err)
	}
	if chromium = findChromium(); chromium == "" {
		t.Skip("no chromium on PATH (apt-get install -y chromium) to run the browser test")
	}
	return js, chromium
}
