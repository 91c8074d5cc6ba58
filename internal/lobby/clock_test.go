package lobby

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/presence"
)

// The lobby's timers under a fake clock (testing/synctest): the whole
// server, store, hub, heartbeat and HTTP included, runs in a bubble over
// in-memory connections, so every timer fires at its exact fake time. The
// real-time counterparts with generous bounds are TestTabCloseAnnouncesOneDeparture
// (grace), TestJoinWithoutStreamExpiresSilently (join timeout),
// TestHeartbeatIsAComment (heartbeat) and the root package's TTL tests.
func TestTimersFakeClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			grace       = 2 * time.Second
			heartbeat   = 10 * time.Second
			ttl         = 30 * time.Second
			joinTimeout = 15 * time.Second
		)
		pl := newPipeListener()
		defer swapListen(pl)()
		srv, err := Start(context.Background(), Options{Addr: "pipe", Grace: grace, Heartbeat: heartbeat, TTL: ttl,
			JoinTimeout: joinTimeout, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		tr := &http.Transport{DialContext: pl.dial}
		hc := &http.Client{Transport: tr}
		start := time.Now()
		since := func() time.Duration { return time.Since(start) }

		phil := pipeJoin(t, hc, "phil")
		ps := pipeStream(t, pl, phil)
		synctest.Wait() // phil's stream is open before brian comes
		brian := pipeJoin(t, hc, "brian")
		bs := pipeStream(t, pl, brian)
		synctest.Wait()
		// Brian's arrival came within a presence window of Phil's: it
		// goes out with the next batch, at the window's end.
		time.Sleep(presence.DefaultWindow)
		synctest.Wait()
		if !ps.has("brian joined the lobby") {
			t.Fatalf("phil did not see brian join:\n%s", ps.text())
		}

		// Heartbeat: one comment every interval, to the nanosecond; the
		// sliding TTL (30 s) never expires a stream the heartbeat writes to.
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if beats := ps.comments(); len(beats) != 30 {
			t.Errorf("%d heartbeats in 5 minutes at %v, want 30", len(beats), heartbeat)
		} else {
			for i, at := range beats {
				if want := time.Duration(i+1) * heartbeat; at != want {
					t.Errorf("heartbeat %d at %v, want %v", i+1, at, want)
					break
				}
			}
		}
		if ps.ended() || bs.ended() {
			t.Fatalf("a stream ended under the heartbeat: %v %v", ps.err(), bs.err())
		}

		// Grace: brian's tab closes; phil hears of it exactly grace later.
		bs.close()
		closedAt := since()
		synctest.Wait()
		time.Sleep(grace - time.Nanosecond)
		synctest.Wait()
		if ps.has("brian left the lobby") {
			t.Errorf("brian's departure announced before the grace period ended (%v)", since()-closedAt)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if at, ok := ps.at("brian left the lobby"); !ok || at-closedAt != grace {
			t.Errorf("brian's departure announced at +%v, want exactly +%v (seen %v)", at-closedAt, grace, ok)
		} else {
			t.Logf("fake clock: %d heartbeats at %v intervals over 5 min; tab closed at %v, left announced at +%v", len(ps.comments()), heartbeat, closedAt, at-closedAt)
		}

		// Reload within grace: nothing is announced.
		phil2 := pipeStream(t, pl, phil) // a second tab of phil's: silent
		synctest.Wait()
		carol := pipeJoin(t, hc, "carol")
		cs := pipeStream(t, pl, carol)
		synctest.Wait()
		cs.close()
		time.Sleep(grace - time.Millisecond)
		cs2 := pipeStream(t, pl, carol)
		synctest.Wait()
		time.Sleep(2 * grace)
		synctest.Wait()
		if phil2.has("carol left") || strings.Count(phil2.text(), "carol joined") != 1 {
			t.Errorf("a reload within grace was announced:\n%s", phil2.text())
		}
		cs2.close()

		// Join timeout: a name reserved without a stream is free again
		// exactly joinTimeout later, silently.
		pipeJoin(t, hc, "dave")
		reserved := since()
		time.Sleep(joinTimeout - time.Nanosecond)
		if status := pipePost(t, hc, "", "/join", `{"username":"dave"}`); status != http.StatusConflict {
			t.Errorf("dave's name at +%v: status %d, want 409", since()-reserved, status)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if status := pipePost(t, hc, "", "/join", `{"username":"dave"}`); status != http.StatusOK {
			t.Errorf("dave's name at +%v: status %d, want 200", since()-reserved, status)
		}
		if phil2.has("dave") {
			t.Errorf("an unused join was announced")
		}

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		for _, s := range []*pipeSSE{ps, phil2} {
			s.close()
		}
		tr.CloseIdleConnections()
	})
}

// swapListen makes Start listen on l; it returns the undo.
func swapListen(l net.Listener) func() {
	old := listen
	listen = func(context.Context, string, string, sfere.ListenOptions) (net.Listener, error) { return l, nil }
	return func() { listen = old }
}

// pipeListener is an in-memory listener of net.Pipe connections: inside a
// synctest bubble, goroutines blocked on it are durably blocked.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// pipePost posts a Datastar request and returns its status.
func pipePost(t *testing.T, hc *http.Client, sid, path, body string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://pipe"+path, strings.NewReader(body))
	req.Header.Set("Datastar-Request", "true")
	req.Header.Set("Content-Type", "application/json")
	if sid != "" {
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: sid})
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// pipeJoin joins name with a new session and returns the session id.
func pipeJoin(t *testing.T, hc *http.Client, name string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://pipe/join", strings.NewReader(fmt.Sprintf(`{"username":%q}`, name)))
	req.Header.Set("Datastar-Request", "true")
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			return c.Value
		}
	}
	t.Fatalf("join %s: status %d, no session", name, resp.StatusCode)
	return ""
}

// pipeSSE is one stream over its own in-memory connection, read by the
// test kit; its times are the (fake) time since the test's first stream
// opened.
type pipeSSE struct {
	*ssetest.Client
	start time.Time
}

var bubbleStart sync.Map // *testing.T -> time.Time

// pipeStream opens POST /sse for session sid.
func pipeStream(t *testing.T, pl *pipeListener, sid string) *pipeSSE {
	t.Helper()
	conn, err := pl.dial(context.Background(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	req := ssetest.DatastarPost("/sse", `{}`)
	req.Host = "pipe"
	req.Header.Set("Cookie", sessionCookie+"="+sid)
	c := ssetest.OpenConn(t, conn, req)
	start, _ := bubbleStart.LoadOrStore(t, time.Now())
	return &pipeSSE{Client: c, start: start.(time.Time)}
}

func (s *pipeSSE) has(text string) bool {
	_, ok := s.at(text)
	return ok
}

// at returns the time the first event holding text arrived.
func (s *pipeSSE) at(text string) (time.Duration, bool) {
	e, ok := s.Find(ssetest.Containing(text))
	return e.At.Sub(s.start), ok
}

// comments returns the arrival times of the heartbeats: comments, or
// visible beats (signal patches of the beat's signal).
func (s *pipeSSE) comments() []time.Duration {
	var out []time.Duration
	for _, e := range s.Events() {
		if ssetest.CommentIs("heartbeat").Test(e) || e.Type == "datastar-patch-signals" && strings.Contains(e.Text(), `"`+beatSignal+`"`) {
			out = append(out, e.At.Sub(s.start))
		}
	}
	return out
}

func (s *pipeSSE) text() string {
	var b strings.Builder
	for _, e := range s.Events() {
		fmt.Fprintf(&b, "%v %s\n", e.At.Sub(s.start), e)
	}
	return b.String()
}

func (s *pipeSSE) ended() bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}

func (s *pipeSSE) err() error { return s.Err() }

func (s *pipeSSE) close() { s.Close() }

// Two tabs of one person under the fake clock: closing one is never
// announced, however long the other stays; closing the last is announced
// once, exactly at grace, and never again. The real-time counterparts,
// over TCP, are TestTwoTabsOfOneSession and
// TestTabCloseAnnouncesOneDeparture; here "never" is minutes of fake time,
// exact and instant.
func TestTabsFakeClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			grace     = 2 * time.Second
			heartbeat = 10 * time.Second
		)
		pl := newPipeListener()
		defer swapListen(pl)()
		srv, err := Start(context.Background(), Options{Addr: "pipe", Grace: grace, Heartbeat: heartbeat,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		tr := &http.Transport{DialContext: pl.dial}
		hc := &http.Client{Transport: tr}

		ps := pipeStream(t, pl, pipeJoin(t, hc, "phil"))
		synctest.Wait()
		brian := pipeJoin(t, hc, "brian")
		tab1 := pipeStream(t, pl, brian)
		synctest.Wait()
		tab2 := pipeStream(t, pl, brian)
		synctest.Wait()
		time.Sleep(presence.DefaultWindow)
		synctest.Wait()
		if n := strings.Count(ps.text(), "brian joined the lobby"); n != 1 {
			t.Fatalf("phil saw brian join %d times with two tabs, want 1:\n%s", n, ps.text())
		}

		tab1.close()
		synctest.Wait()
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if ps.has("brian left the lobby") {
			t.Fatalf("closing one of two tabs was announced:\n%s", ps.text())
		}
		if tab2.ended() {
			t.Fatalf("the other tab's stream ended: %v", tab2.err())
		}

		tab2.close()
		closedAt := time.Since(ps.start)
		synctest.Wait()
		time.Sleep(grace - time.Nanosecond)
		synctest.Wait()
		if ps.has("brian left the lobby") {
			t.Fatalf("brian's departure announced before grace:\n%s", ps.text())
		}
		time.Sleep(presence.DefaultWindow + time.Nanosecond)
		synctest.Wait()
		if at, ok := ps.at("brian left the lobby"); !ok || at-closedAt != grace {
			t.Fatalf("brian's departure announced at +%v (seen %v), want exactly +%v:\n%s", at-closedAt, ok, grace, ps.text())
		}
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if n := strings.Count(ps.text(), "brian left the lobby"); n != 1 {
			t.Errorf("phil saw brian leave %d times, want 1:\n%s", n, ps.text())
		}

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		ps.close()
		tr.CloseIdleConnections()
	})
}
