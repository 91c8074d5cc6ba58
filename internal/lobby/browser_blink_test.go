package lobby_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sfere-go/sfere/internal/lobby"
)

// In a real browser with the Datastar v1 client: Brian's network blinks
// (every connection to the lobby is reset, and new ones are refused for a
// while) while Phil chats. The page retries by itself, as Datastar does
// after a network error, sending the id of the last event it got; Brian
// is announced back once, and his page shows every line he missed exactly
// once, in order. Needs DATASTAR_JS and chromium.
func TestBrowserNetworkBlinkResumes(t *testing.T) {
	js, chromium := browserPrerequisites(t)
	srv := startServer(t, lobby.Options{DatastarJS: js, Heartbeat: 300 * time.Millisecond, Grace: browserGrace, Resume: time.Minute})
	net := startCutProxy(t, srv.Addr().String())
	phil := newBrowser(t, srv)
	ps := phil.enter("phil")

	browserCtx, stopBrowser := startChromium(t, chromium)
	defer stopBrowser()
	brian, closeBrian := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer closeBrian()
	joinLobby(t, brian, "http://"+net.addr(), "brian")
	ps.waitFor(joinedLine("brian"))
	phil.say("before the blink")
	waitPage(t, brian, "brian sees the first line", `document.getElementById('messages').textContent.includes('before the blink')`, waitLong)

	net.cut()
	missed := []string{"missed one", "missed two", "missed three"}
	for _, text := range missed {
		phil.say(text)
	}
	ps.waitFor(leftLine("brian")) // the blink outlasts the grace period
	cutAt := time.Now()
	net.restore()
	phil.say("said after the network came back")
	lines := append(missed, "said after the network came back")
	// Each line once, in order, after the line before the blink (once too).
	check := fmt.Sprintf(`(() => {
  const texts = [...document.querySelectorAll('#messages .chat-message')].map(p => p.textContent);
  const want = %s;
  const at = want.map(w => texts.filter(t => t.endsWith(': ' + w)).length === 1 ? texts.findIndex(t => t.endsWith(': ' + w)) : -1);
  return at.every((i, k) => i >= 0 && (k === 0 || i > at[k-1])) && texts.filter(t => t.endsWith(': before the blink')).length === 1;
})()`, jsonText(t, append([]string{"before the blink"}, lines...)))
	waitPage(t, brian, "brian's page shows every missed line once, in order", check, 40*time.Second)
	t.Logf("network blink: brian's page caught up %v after the network came back", time.Since(cutAt).Round(time.Millisecond))
	ps.waitFor(backLine("brian"))
	if l, b := ps.count(leftLine("brian")), ps.count(backLine("brian")); l != 1 || b != 1 {
		t.Errorf("Phil saw %d \"left\" and %d \"back\" lines, want 1 and 1", l, b)
	}
	waitPage(t, brian, "no recovery notice, and brian's own arrival shown once",
		`!document.getElementById('messages').textContent.includes('could not be recovered') && `+
			`[...document.querySelectorAll('#messages .system-message')].filter(p => p.textContent === 'brian joined the lobby').length === 1`, time.Second)
}

// jsonText is v as JSON, to put in a script.
func jsonText(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// cutProxy forwards TCP connections to a target; cut resets every
// connection and every new one until restore, as a network that drops out
// does to a browser.
type cutProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	var wg sync.WaitGroup
	wg.Go(func() { p.serve(&wg) })
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		wg.Wait()
	})
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) serve(wg *sync.WaitGroup) {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			reset(c)
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			reset(c)
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			reset(dst)
			reset(src)
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		wg.Go(func() { pipe(up, c) })
		wg.Go(func() { pipe(c, up) })
	}
}

// cut resets every connection, and new ones until restore.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		reset(c)
	}
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// reset closes c with an RST, as a broken network path ends up doing.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
