package main

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/sfere-go/sfere/bench/internal/history"
)

// Datastar's retry of a broken stream (v1.0.x, retry mode "auto"): after a
// network error it tries again after the base interval (1 s, or the
// server's retry: field), doubling up to 30 s, at most 10 times; an error
// status or a clean end is not retried. Each try carries the last event id
// received in the header Last-Event-ID.
const (
	defaultRetryBase = time.Second
	maxRetryWait     = 30 * time.Second
	maxRetries       = 10
	// reconnectDelay is the delay of the lobby's reconnect element
	// (data-init__delay.2s).
	reconnectDelay = 2 * time.Second
)

// errStuck says that a page's stream ended normally with nothing that
// reopens it: the page sits there (a person would reload it).
var errStuck = errors.New("stream ended without a reconnect")

// page is one page of a person's browser holding the lobby: its stream,
// retried and reopened as the Datastar client does, and its participant
// list as its DOM would show it. Its life ends when ctx ends (closed or
// reloaded by its person, who records why) or when the lobby ends it.
type page struct {
	b *browser
	n int

	mu     sync.Mutex
	list   []string
	abort  context.CancelFunc // ends the current stream attempt (a storm)
	alive  bool               // opened and not ended
	opened bool
}

func newPage(b *browser, n int, list []string) *page {
	return &page{b: b, n: n, list: slices.Clone(list)}
}

// finalList returns the page's participant list and whether the page is
// alive.
func (p *page) finalList() ([]string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.list), p.alive
}

// storm breaks the page's current stream, as a network blink does: the
// client retries it.
func (p *page) storm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.abort != nil {
		p.abort()
	}
}

func (p *page) record(rec history.Record) {
	rec.Client, rec.Page = p.b.name, p.n
	p.b.log.Add(rec)
}

// run keeps the page's stream from its first action (the data-init URL)
// until ctx ends or the lobby ends the page. It returns why the page ended
// by itself: history.EndTold, EndError, EndGaveUp, or errStuck (the page
// lives on but receives nothing); nil when ctx ended. A page with the
// watchdog ends by itself only when told to join again.
func (p *page) run(ctx context.Context, lp lobbyPage) (string, error) {
	if lp.watchdog {
		return p.runWatchdog(ctx, lp), nil
	}
	action := lp.url
	for {
		next, reason, err := p.action(ctx, action, "", nil)
		if ctx.Err() != nil {
			return "", nil
		}
		if reason != "" || err != nil {
			p.setAlive(false)
			return reason, err
		}
		select { // the reconnect element's delay
		case <-time.After(reconnectDelay):
		case <-ctx.Done():
			return "", nil
		}
		action = next
	}
}

// runWatchdog runs a page with the lobby's watchdog (internal/lobby,
// watchdog.html): the stream opens from the page's URL; every event
// (a beat, a position, anything) counts as a sign of life; after
// lp.silence without one, the watchdog opens the stream again (a new
// action, which aborts the one in flight) with the last position signal as
// Last-Event-ID, and waits retry·(0.5-1) before the next try. The lobby's
// reconnect element wakes it at once. It returns history.EndTold when the
// lobby sent the join form, "" when ctx ended.
func (p *page) runWatchdog(ctx context.Context, lp lobbyPage) string {
	var (
		mu   sync.Mutex
		seen = time.Now()
		pos  = lp.pos
	)
	told := make(chan struct{}, 1)
	cancel := context.CancelFunc(func() {})
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	start := func(lastID string) {
		cancel()
		actx, c := context.WithCancel(ctx)
		cancel = c
		wg.Go(func() {
			_, reason, _ := p.action(actx, lp.url, lastID, func(c content) {
				mu.Lock()
				defer mu.Unlock()
				seen = time.Now()
				if c.hasPos {
					pos = c.pos
				}
				if c.wake {
					seen = time.Time{}
				}
			})
			if reason == history.EndTold {
				select {
				case told <- struct{}{}:
				default:
				}
			}
		})
	}
	start("")
	tick := time.NewTicker(watchdogTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ""
		case <-told:
			p.setAlive(false)
			return history.EndTold
		case <-tick.C:
		}
		mu.Lock()
		now := time.Now()
		dead := now.Sub(seen) > lp.silence
		if dead {
			seen = now.Add(-lp.silence + time.Duration(float64(lp.retry)*(0.5+rand.Float64()/2)))
		}
		last := pos
		mu.Unlock()
		if dead {
			start(last)
		}
	}
}

// watchdogTick is how often the watchdog checks for silence (the page's
// data-on-interval__duration.250ms).
const watchdogTick = 250 * time.Millisecond

// markOpen starts the page's life at its first stream answered 200.
func (p *page) markOpen() {
	p.mu.Lock()
	first := !p.opened
	p.opened, p.alive = true, p.alive || first
	p.mu.Unlock()
	if first {
		p.record(history.Record{Kind: history.KindPageOpen})
	}
}

func (p *page) setAlive(v bool) {
	p.mu.Lock()
	p.alive = v
	p.mu.Unlock()
}

// action runs one Datastar action (@post of the stream) with its retries,
// the first try carrying lastID (if any) as Last-Event-ID. seen, if not
// nil, is called with every event. It returns the URL of the reconnect
// element that ends it normally, or the reason it ended the page.
func (p *page) action(ctx context.Context, url, lastID string, seen func(content)) (next, reason string, err error) {
	base, tries := defaultRetryBase, 0
	for {
		if tries > 0 {
			wait := min(base<<(tries-1), maxRetryWait)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return "", "", nil
			}
		}
		actx, abort := context.WithCancel(ctx)
		p.mu.Lock()
		p.abort = abort
		p.mu.Unlock()
		resp, err := p.open(actx, url, lastID)
		if err != nil {
			abort()
			if ctx.Err() != nil {
				return "", "", nil
			}
			if tries++; tries > maxRetries {
				return "", history.EndGaveUp, nil
			}
			continue
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			abort()
			return "", history.EndError, nil
		}
		p.markOpen()
		tries = 0
		var reconnect string
		told := false
		rerr := readSSE(resp.Body, func(ev sseEvent) error {
			if ev.retry > 0 {
				base = ev.retry
			}
			if ev.hasID {
				lastID = ev.id
			}
			c := parseContent(ev)
			if seen != nil {
				seen(c)
			}
			if c.empty() || c.wake && len(c.chat)+len(c.ann) == 0 {
				return nil
			}
			p.apply(c)
			p.record(history.Record{Kind: history.KindEvent, At: ev.at, ID: ev.id, Chat: c.chat, Ann: c.ann,
				List: c.list, IsList: c.isList, Add: c.add, Remove: c.remove, Notice: c.notice, JoinForm: c.joinForm})
			if c.reconnect != "" {
				reconnect = c.reconnect
			}
			if c.joinForm {
				told = true
				return errTold
			}
			return nil
		})
		resp.Body.Close()
		abort()
		end := history.Record{Kind: history.KindStreamEnd}
		if !errors.Is(rerr, io.EOF) {
			end.Err = rerr.Error()
		}
		p.record(end)
		switch {
		case ctx.Err() != nil:
			return "", "", nil
		case told:
			return "", history.EndTold, nil
		case errors.Is(rerr, io.EOF) && reconnect != "":
			return reconnect, "", nil
		case errors.Is(rerr, io.EOF):
			return "", "", errStuck
		}
		tries = 1 // a broken stream: retried after the base interval
	}
}

var errTold = errors.New("told to join again")

// open sends one try of the stream's action.
func (p *page) open(ctx context.Context, url, lastID string) (*http.Response, error) {
	rec := history.Record{Kind: history.KindStream, Route: "/sse", Query: url, LastEventID: lastID, Sent: time.Now()}
	req, err := p.b.newRequest(ctx, http.MethodPost, url, "{}")
	if err != nil {
		return nil, err
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := p.b.streams.Do(req)
	rec.At = time.Now()
	if err != nil {
		rec.Err = err.Error()
	} else {
		rec.Status, rec.Node = resp.StatusCode, resp.Header.Get("X-Upstream")
	}
	p.record(rec)
	return resp, err
}

// apply changes the page's list as the event changes its DOM.
func (p *page) apply(c content) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.isList {
		p.list = slices.Clone(c.list)
	}
	for _, n := range c.add {
		if !slices.Contains(p.list, n) {
			p.list = append(p.list, n)
		}
	}
	for _, n := range c.remove {
		p.list = slices.DeleteFunc(p.list, func(s string) bool { return s == n })
	}
}
