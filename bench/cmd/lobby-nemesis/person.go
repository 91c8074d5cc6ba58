package main

import (
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sfere-go/sfere/bench/internal/history"
)

// behaviour is how often a person does each thing, per line said.
type behaviour struct {
	// every is the interval between a person's lines.
	every time.Duration
	// Chances, per tick, of: reloading the first tab, opening a second tab
	// (if it has none), closing the second tab, leaving and coming back.
	reload, openTab, closeTab, leave float64
}

var defaultBehaviour = behaviour{every: time.Second, reload: 0.01, openTab: 0.015, closeTab: 0.02, leave: 0.005}

// person is one participant: a browser with one or two tabs on the lobby,
// saying numbered lines ("name-seq") at a steady rate, now and then
// reloading, opening and closing a second tab, leaving and coming back
// (with its session cookie). When the lobby tells a tab to join again, or
// a tab breaks for good, the person joins again or reloads, as a person
// would.
type person struct {
	name string
	ip   net.IP // the browser's source address
	b    *browser
	rng  *rand.Rand
	how  behaviour

	seq    int
	pageNo int

	mu     sync.Mutex
	joined bool
	tabs   []*tab // tabs[0] is the first tab; a second one opens only beside a single one
}

// tab is a browser tab holding one page at a time.
type tab struct {
	page   *page
	cancel context.CancelFunc
	done   chan struct{} // closed when the page's goroutine returned
	// Set before done is closed: why the page ended by itself ("" when
	// its person ended it), or stuck (it lives, receiving nothing).
	reason string
	stuck  bool
}

// endedByItself reports whether the tab's page ended (or got stuck) by
// itself.
func (t *tab) endedByItself() bool {
	select {
	case <-t.done:
		return t.reason != "" || t.stuck
	default:
		return false
	}
}

func newPerson(name string, ip net.IP, b *browser, seed uint64, how behaviour) *person {
	return &person{name: name, ip: ip, b: b, rng: rand.New(rand.NewPCG(seed, 0x6e656d)), how: how}
}

// join posts /join until the lobby accepts (a name reserved after a fault
// is refused for a while), or until the deadline if it is not zero, and
// opens a tab on the lobby it answers with.
func (p *person) join(ctx context.Context, deadline time.Time) bool {
	for ctx.Err() == nil && (deadline.IsZero() || time.Now().Before(deadline)) {
		a := p.b.do(ctx, http.MethodPost, "/join", `{"username":`+jsonString(p.name)+`}`, history.Record{Name: p.name})
		if a.err == nil && a.status == http.StatusOK {
			if lp, ok := lobbyInit(a.body); ok {
				p.mu.Lock()
				p.joined = true
				p.mu.Unlock()
				p.openTab(ctx, lp, nil)
				return true
			}
		}
		sleep(ctx, time.Second+time.Duration(p.rng.Int64N(int64(time.Second))))
	}
	return false
}

// openTab opens a new tab (or replaces the first one's page, for a reload)
// on a lobby page, with the list the page rendered.
func (p *person) openTab(ctx context.Context, lp lobbyPage, list []string) *tab {
	p.pageNo++
	pg := newPage(p.b, p.pageNo, list)
	tctx, cancel := context.WithCancel(ctx)
	t := &tab{page: pg, cancel: cancel, done: make(chan struct{})}
	p.mu.Lock()
	p.tabs = append(p.tabs, t)
	p.mu.Unlock()
	go func() {
		defer close(t.done)
		reason, err := pg.run(tctx, lp)
		if tctx.Err() != nil {
			return
		}
		t.reason, t.stuck = reason, err != nil
		if reason != "" {
			pg.record(history.Record{Kind: history.KindPageEnd, Reason: reason})
		}
	}()
	return t
}

// closeTab ends a tab's page for reason (closed, reload, left).
func (p *person) closeTab(t *tab, reason string) {
	p.mu.Lock()
	for i, x := range p.tabs {
		if x == t {
			p.tabs = append(p.tabs[:i], p.tabs[i+1:]...)
			break
		}
	}
	p.mu.Unlock()
	at := time.Now()
	t.cancel()
	<-t.done
	if t.reason == "" {
		t.page.record(history.Record{Kind: history.KindPageEnd, At: at, Reason: reason})
	}
}

// reload loads the page again (GET /): the lobby renders the list and the
// position to open the stream from, or the join form (then the person
// joins again).
func (p *person) reload(ctx context.Context, old *tab) {
	if old != nil {
		p.closeTab(old, history.EndReload)
	}
	a := p.b.do(ctx, http.MethodGet, "/", "", history.Record{})
	if a.err != nil || a.status != http.StatusOK {
		return // the person tries again on the next tick
	}
	if lp, ok := lobbyInit(a.body); ok {
		p.openTab(ctx, lp, listItems(a.body))
		return
	}
	p.mu.Lock()
	p.joined = false
	p.mu.Unlock()
}

// say posts the person's next line.
func (p *person) say(ctx context.Context) {
	p.seq++
	text := p.name + "-" + strconv.Itoa(p.seq)
	p.b.do(ctx, http.MethodPost, "/message", `{"message":`+jsonString(text)+`}`, history.Record{Text: text, Seq: p.seq})
}

// leave posts /leave, waits a moment and joins again (with its session
// cookie: the same browser).
func (p *person) leave(ctx context.Context) {
	p.mu.Lock()
	tabs := append([]*tab(nil), p.tabs...)
	p.mu.Unlock()
	for _, t := range tabs {
		p.closeTab(t, history.EndLeft)
	}
	p.b.do(ctx, http.MethodPost, "/leave", "{}", history.Record{})
	p.mu.Lock()
	p.joined = false
	p.mu.Unlock()
	sleep(ctx, 2*time.Second+time.Duration(p.rng.Int64N(int64(2*time.Second))))
}

// live runs the person until ctx ends: lines at a steady rate and, while
// active is set, the random actions. quiet makes it stop saying lines and
// acting, but still mend its tabs.
func (p *person) live(ctx context.Context, quiet <-chan struct{}) {
	tick := time.NewTicker(p.how.every)
	defer tick.Stop()
	calm := false
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-quiet:
			calm, quiet = true, nil
			continue
		case <-tick.C:
		}
		if p.mendTabs(ctx) {
			continue
		}
		p.mu.Lock()
		joined, n := p.joined, len(p.tabs)
		p.mu.Unlock()
		if !joined {
			p.join(ctx, time.Time{})
			continue
		}
		if n == 0 {
			p.reload(ctx, nil)
			continue
		}
		if calm {
			continue
		}
		p.say(ctx)
		switch x := p.rng.Float64(); {
		case x < p.how.leave:
			p.leave(ctx)
		case x < p.how.leave+p.how.reload:
			p.reload(ctx, p.firstTab())
		case x < p.how.leave+p.how.reload+p.how.openTab && n == 1:
			p.reload(ctx, nil)
		case x < p.how.leave+p.how.reload+p.how.openTab+p.how.closeTab && n == 2:
			p.closeTab(p.lastTab(), history.EndClosed)
		}
	}
}

// mendTabs reacts to the first tab whose page ended by itself, if any,
// and reports whether there was one: told to join again, the person joins
// again; broken, or stuck, the person reloads it after a moment.
func (p *person) mendTabs(ctx context.Context) bool {
	p.mu.Lock()
	var t *tab
	for _, x := range p.tabs {
		if x.endedByItself() {
			t = x
			break
		}
	}
	p.mu.Unlock()
	if t == nil {
		return false
	}
	if t.reason == history.EndTold {
		p.closeTab(t, history.EndTold) // recorded already
		p.mu.Lock()
		p.joined = false
		p.mu.Unlock()
		return true
	}
	sleep(ctx, time.Second+time.Duration(p.rng.Int64N(int64(2*time.Second))))
	p.reload(ctx, t)
	return true
}

func (p *person) firstTab() *tab {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.tabs) == 0 {
		return nil
	}
	return p.tabs[0]
}

func (p *person) lastTab() *tab {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tabs[len(p.tabs)-1]
}

// storm breaks every tab's stream at once.
func (p *person) storm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.tabs {
		t.page.storm()
	}
}

// finish records each live page's final list and closes every tab; it
// reports whether the person is in the lobby with a live page.
func (p *person) finish() bool {
	p.mu.Lock()
	tabs := append([]*tab(nil), p.tabs...)
	joined := p.joined
	p.mu.Unlock()
	here := false
	for _, t := range tabs {
		list, alive := t.page.finalList()
		if alive {
			here = true
			t.page.record(history.Record{Kind: history.KindFinal, Names: list})
		}
	}
	return joined && here
}

// close ends every tab (at the very end: their ends are not recorded).
func (p *person) close() {
	p.mu.Lock()
	tabs := append([]*tab(nil), p.tabs...)
	p.tabs = nil
	p.mu.Unlock()
	for _, t := range tabs {
		t.cancel()
		<-t.done
	}
	p.b.closeIdle()
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}
