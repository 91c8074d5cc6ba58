package lobby_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/netfault"
	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/internal/testport"
)

// The page's watchdog in Chromium with the real Datastar client: Brian's
// network goes silent (every packet between his browser and the lobby
// dropped, both ways, nothing closed) for 8 s while Phil, whose traffic
// comes from another loopback address, says two lines. The server lets
// Brian's stream go (its TCP user timeout). Brian's page notices the
// silence by itself, says "reconnecting…", and once the network is back
// reopens its stream from its position: every line once, in order, no
// join form, and the notice goes away.
//
// nftables, not a proxy: a proxy that stops forwarding still acknowledges
// what the server writes, so the server would never lose Brian, and the
// browser's connection attempts during the silence would be answered;
// dropped packets are what a lid or a tunnel does to both ends. Needs
// DATASTAR_JS, chromium and root (nftables).
func TestBrowserWatchdogBlackhole(t *testing.T) {
	blackhole(t, blackholeCase{heartbeat: 2 * time.Second, userTimeout: 2 * time.Second, grace: time.Second, silence: 8 * time.Second,
		serverLetsGo: true, target: func(lost, back time.Time) time.Time { return back.Add(3 * time.Second) }})
}

// The same with the lobby's defaults (heartbeat 10 s, user timeout 5 s,
// grace 2 s): the page is live again within 25 s of the loss or 3 s of
// the return, whichever is later.
func TestBrowserWatchdogDefaultHeartbeat(t *testing.T) {
	d := lobby.DefaultOptions
	blackhole(t, blackholeCase{heartbeat: d.Heartbeat, userTimeout: d.UserTimeout, grace: d.Grace, silence: 8 * time.Second,
		target: func(lost, back time.Time) time.Time {
			if t := lost.Add(25 * time.Second); t.After(back.Add(3 * time.Second)) {
				return t
			}
			return back.Add(3 * time.Second)
		}})
}

type blackholeCase struct {
	heartbeat, userTimeout, grace time.Duration
	silence                       time.Duration // how long the network drops everything
	// serverLetsGo: the silence outlasts the server's detection (user
	// timeout) and grace, so Brian is announced gone, then back.
	serverLetsGo bool
	// target is when the page must be live again at the latest, for a
	// loss and a return at these times (measured and logged, not
	// asserted: see blackhole).
	target func(lost, back time.Time) time.Time
}

// blackhole runs one silence and reports what the page did when.
// The bounds it asserts are generous (a busy two-core machine runs
// Chromium beside other work); the figures it logs are what it measured.
func blackhole(t *testing.T, bc blackholeCase) {
	js, chromium := browserPrerequisites(t)
	if err := netfault.Available(); err != nil {
		t.Skip(err)
	}
	// A port below the ephemeral range: DropFrom drops every packet of
	// 127.0.0.1 to and from it, which must not catch another test's
	// client that happens to use the same number as its source port.
	srv := startServer(t, lobby.Options{Addr: testport.Addr(t), DatastarJS: js, Heartbeat: bc.heartbeat, UserTimeout: bc.userTimeout,
		Grace: bc.grace, Resume: time.Minute, TTL: 4 * bc.heartbeat})
	port := srv.Addr().(*net.TCPAddr).Port
	// Phil speaks from 127.0.0.2: the silence is Brian's (127.0.0.1) only.
	phil := newBrowserFrom(t, srv.URL(), &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)})
	ps := phil.enter("phil")

	browserCtx, stopBrowser := startChromium(t, chromium)
	defer stopBrowser()
	brian, closeBrian := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer closeBrian()
	joinLobby(t, brian, srv.URL(), "brian")
	ps.waitFor(joinedLine("brian"))
	phil.say("before the silence")
	waitPage(t, brian, "brian sees the first line", `document.getElementById('messages').textContent.includes('before the silence')`, waitLong)

	// An idle page does not grow with the visible beats.
	nodes := func() int {
		t.Helper()
		n, err := chromedp.Run(brian, chromedp.Evaluate[int](`document.getElementsByTagName('*').length`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before, beats := nodes(), heartbeatWrites(t, srv)
	waitPage(t, brian, "brian's page shows it is live", `document.getElementById('reconnecting').textContent === ''`, waitLong)
	ssetest.Eventually(t, 4*bc.heartbeat+waitLong, "three visible beats", func() bool {
		return heartbeatWrites(t, srv) >= beats+3
	})
	if after := nodes(); after != before {
		t.Errorf("the idle page grew from %d to %d elements over three visible beats", before, after)
	}

	// The page records when the notice first shows.
	if _, err := chromedp.Run(brian, chromedp.Evaluate[bool](`(() => {
  const n = document.getElementById('reconnecting');
  window.noticeAt = 0;
  new MutationObserver(() => { if (!window.noticeAt && n.textContent === 'reconnecting…' && n.style.display !== 'none') window.noticeAt = Date.now() })
    .observe(n, {childList: true, characterData: true, subtree: true, attributes: true});
  return true;
})()`)); err != nil {
		t.Fatal(err)
	}

	// The silence, for exactly bc.silence.
	restore := netfault.DropFrom(t, netip.MustParseAddr("127.0.0.1"), port)
	lost := time.Now()
	returned := make(chan time.Time, 1)
	timer := time.AfterFunc(bc.silence, func() {
		restore()
		returned <- time.Now()
	})
	defer timer.Stop()
	phil.say("said in the silence")
	if bc.serverLetsGo {
		ps.waitForWithin(leftLine("brian"), bc.silence) // the server let him go (its user timeout)
	}
	phil.say("said while brian was gone")
	back := <-returned

	lines := []string{"before the silence", "said in the silence", "said while brian was gone"}
	check := fmt.Sprintf(`(() => {
  const texts = [...document.querySelectorAll('#messages .chat-message')].map(p => p.textContent);
  const want = %s;
  const at = want.map(w => texts.filter(t => t.endsWith(': ' + w)).length === 1 ? texts.findIndex(t => t.endsWith(': ' + w)) : -1);
  return at.every((i, k) => i >= 0 && (k === 0 || i > at[k-1])) && document.getElementById('reconnecting').textContent === '' &&
    document.getElementById('join') === null;
})()`, jsonText(t, lines))
	// Generous ceiling; the target (3 s after the return, or 25 s after the
	// loss, whichever is later) is measured and logged.
	waitPage(t, brian, "brian's page is live again with every line once, in order, and no join form", check,
		max(time.Until(bc.target(lost, time.Now())), 0)+20*time.Second)
	live := time.Now()
	noticeAt, err := chromedp.Run(brian, chromedp.Evaluate[int64](`window.noticeAt`))
	if err != nil {
		t.Fatal(err)
	}
	noticed := time.Duration(-1)
	if noticeAt > 0 {
		noticed = time.UnixMilli(noticeAt).Sub(lost)
	}
	if bc.serverLetsGo {
		ps.waitFor(backLine("brian"))
		if noticeAt == 0 {
			t.Error("the page came back without ever saying \"reconnecting…\"")
		}
	}
	phil.say("said after the return")
	waitPage(t, brian, "brian's stream is live", `document.getElementById('messages').textContent.includes('said after the return')`, waitLong)
	target := bc.target(lost, back)
	t.Logf("heartbeat %v, silence %v: notice %v after the loss (target %v); live again %v after the return, %v after the loss (target: %v after the loss; met: %v)",
		bc.heartbeat, bc.silence, noticed.Round(time.Millisecond), time.Duration(2.5*float64(bc.heartbeat)),
		live.Sub(back).Round(time.Millisecond), live.Sub(lost).Round(time.Millisecond), target.Sub(lost).Round(time.Millisecond), !live.After(target))
	if f := os.Getenv("WATCHDOG_FIGURES"); f != "" { // for the repeated runs in bench/BENCHMARKS.md
		appendFigure(t, f, fmt.Sprintf("%v %s %s %s", bc.heartbeat, ms(noticed), ms(live.Sub(back)), ms(live.Sub(lost))))
	}
	// Once each if the server let Brian go (it may not have, with a long
	// heartbeat: then his stream came back by TCP's retransmission, or the
	// watchdog replaced it within the grace period).
	time.Sleep(bc.grace) // negative check: an unmatched departure would come within a grace
	if l, b := ps.count(leftLine("brian")), ps.count(backLine("brian")); l != b || l > 1 || bc.serverLetsGo && l != 1 {
		t.Errorf("Phil saw %d \"left\" and %d \"back\" lines, want as many, at most 1 (1 if the server let Brian go)", l, b)
	}
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// appendFigure appends one line to the file named f.
func appendFigure(t *testing.T, f, line string) {
	file, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Error(err)
		return
	}
	defer file.Close()
	fmt.Fprintln(file, line)
}
