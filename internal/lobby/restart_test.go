package lobby_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/netfault"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// Shutdown (what SIGTERM does) under load: streams, a chatter, churners,
// a client that stopped reading, one that vanished and one trickling a
// POST body. Shutdown returns within 5 s, every healthy stream ends
// cleanly within 5 s after being told to reconnect, the bad connections are
// closed, no participant is announced as gone, and no goroutine is left.
func TestShutdownUnderLoad(t *testing.T) {
	streams := 60
	if soak() {
		streams = 1000
	}
	ignore := goleak.IgnoreCurrent()
	srv, err := lobby.Start(t.Context(), lobby.Options{Addr: "127.0.0.1:0", Heartbeat: time.Second, UserTimeout: 2 * time.Second,
		MaxStreamsPerIP: -1, MessageRate: -1, JoinRate: -1, StreamRate: -1, AddressMessageRate: -1, NamesPerAddress: -1, Logger: ssetest.Logger(t, slog.LevelWarn)})
	if err != nil {
		t.Fatal(err)
	}
	base := srv.URL()
	tr := newTransport(t)
	healthy, chatter := openListed(t, base, tr, streams)
	bad := openBadClients(t, srv, tr)
	defer bad.slow.Close()
	stopLoad := chatAndChurn(base, tr, chatter)
	time.Sleep(500 * time.Millisecond) // pacing: the load runs a while before the shutdown

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(ctx)
	took := time.Since(start)
	stopLoad()
	if err != nil {
		t.Errorf("shutdown: %v", err)
	}
	last := checkToldToReconnect(t, healthy, start)
	t.Logf("%d streams + stalled + vanished + slow body + churn + chat: Shutdown returned after %v; last healthy stream ended after %v",
		streams, took.Round(time.Millisecond), last.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("shutdown took %v", took)
	}
	// The bad connections were closed by the server.
	for what, c := range map[string]net.Conn{"stalled reader": bad.stalled.conn, "slow body": bad.slow} {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: connection still open after shutdown", what)
		}
	}
	if bad.vanished != nil {
		bad.vanished.close()
	}
	for _, p := range healthy {
		p.close()
	}
	bad.stalled.close()
	bad.slow.Close()
	tr.CloseIdleConnections()
	goleak.VerifyNone(t, ignore)
}

// openListed joins n users (user0000…) and opens their streams, each
// listed before the next joins; the last user's client is returned too.
func openListed(t *testing.T, base string, tr *http.Transport, n int) ([]*probe, *lclient) {
	t.Helper()
	probes := make([]*probe, n)
	var last *lclient
	for i := range probes {
		c := newLClient(base, tr)
		if err := c.join(fmt.Sprintf("user%04d", i)); err != nil {
			t.Fatal(err)
		}
		p, err := c.openProbe(true, dialOpts{})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.waitListed(waitLong); err != nil {
			t.Fatal(err)
		}
		probes[i] = p
		last = c
	}
	return probes, last
}

// badClients are the clients a shutdown must not wait for: one that stops
// reading, one whose packets are dropped (nil where that is not
// possible), and one that sends a request body too slowly.
type badClients struct {
	stalled, vanished *probe
	slow              net.Conn
}

func openBadClients(t *testing.T, srv *lobby.Server, tr *http.Transport) badClients {
	t.Helper()
	var bad badClients
	base := srv.URL()
	sc := newLClient(base, tr)
	if err := sc.join("stalled"); err != nil {
		t.Fatal(err)
	}
	var err error
	if bad.stalled, err = sc.openProbe(false, dialOpts{rcvbuf: 2048}); err != nil {
		t.Fatal(err)
	}
	if netfault.Available() == nil {
		vc := newLClient(base, tr)
		if err := vc.join("vanished"); err != nil {
			t.Fatal(err)
		}
		if bad.vanished, err = vc.openProbe(true, dialOpts{}); err != nil {
			t.Fatal(err)
		}
		bad.vanished.waitListed(waitLong)
		local, remote := bad.vanished.ports()
		netfault.DropConn(t, local, remote)
	}
	if bad.slow, err = net.Dial("tcp", srv.Addr().String()); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(bad.slow, "POST /message HTTP/1.1\r\nHost: x\r\nDatastar-Request: true\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
	return bad
}

// chatAndChurn has chatter post a line every 20 ms and four workers join
// and open a stream in a loop, until the returned stop, which waits for
// them. Its sleeps pace the load.
func chatAndChurn(base string, tr *http.Transport, chatter *lclient) (stop func()) {
	loadCtx, stopLoad := context.WithCancel(context.Background())
	var load sync.WaitGroup
	load.Go(func() {
		for n := 0; loadCtx.Err() == nil; n++ {
			chatter.post("/message", map[string]any{"message": fmt.Sprintf("tick %d", n)})
			time.Sleep(20 * time.Millisecond) // pacing: the chat load
		}
	})
	for w := range 4 {
		load.Go(func() {
			for n := 0; loadCtx.Err() == nil; n++ {
				c := newLClient(base, tr)
				if c.join(fmt.Sprintf("churn%d-%d", w, n)) != nil {
					time.Sleep(20 * time.Millisecond) // pacing: the churn load
					continue
				}
				if p, err := c.openProbe(true, dialOpts{light: true}); err == nil {
					p.waitListed(time.Second)
					p.close()
				}
			}
		})
	}
	return func() {
		stopLoad()
		load.Wait()
	}
}

// checkToldToReconnect checks that every healthy stream ended cleanly
// within 5 s of start, told to reconnect and told of no departure but a
// churner's; it returns when the last one ended, after start.
func checkToldToReconnect(t *testing.T, healthy []*probe, start time.Time) (last time.Duration) {
	t.Helper()
	for i, p := range healthy {
		err, ended := p.waitEnd(5*time.Second - time.Since(start))
		if !ended || !errors.Is(err, io.EOF) {
			t.Errorf("user%04d: stream ended %v (%v) within 5 s", i, ended, err)
			continue
		}
		last = max(last, time.Since(start))
		p.with(func(p *probe) {
			if !p.reconnect {
				t.Errorf("user%04d was not told to reconnect", i)
			}
			for name, n := range p.left {
				if !strings.HasPrefix(name, "churn") && n > 0 {
					t.Errorf("user%04d was told that %s left", i, name)
				}
			}
		})
	}
	return last
}

// quietSlog is the test's logger, warnings only (the load is loud).
// A restart with clients that reconnect by themselves, as the Datastar
// client does: after a graceful shutdown (the farewell tells the page to
// reconnect) and after a crash (the connection breaks: the client retries
// with backoff). The restarted server does not know their sessions and
// tells each to join again; once they have, the lobby is consistent: every
// list shows every client once, no ghost, no duplicate, one stream each.
func TestRestartWithReconnectingClients(t *testing.T) {
	for _, how := range []string{"graceful", "crash"} {
		t.Run(how, func(t *testing.T) { testRestart(t, how) })
	}
}

func testRestart(t *testing.T, how string) {
	const n = 20
	opts := lobby.Options{Addr: "127.0.0.1:0", Heartbeat: 500 * time.Millisecond, Grace: testGrace, Debug: true,
		MaxStreamsPerIP: -1, MessageRate: -1, JoinRate: -1, StreamRate: -1, AddressMessageRate: -1, NamesPerAddress: -1, Logger: ssetest.Logger(t, slog.LevelWarn)}
	start := lobby.Start
	if how == "crash" {
		start = lobby.StartCrashable
	}
	a, err := start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	addr := a.Addr().String()
	tr := newTransport(t)
	clients := make([]*dsClient, n)
	for i := range clients {
		clients[i] = newDSClient(t, "http://"+addr, tr, fmt.Sprintf("user%02d", i))
	}
	for _, c := range clients {
		c.waitPresent(t, n)
	}

	down := time.Now()
	switch how {
	case "graceful":
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	case "crash":
		lobby.CrashForTest(a) // every connection breaks; nothing is said
		defer a.Shutdown(context.Background())
	}
	time.Sleep(300 * time.Millisecond) // pacing: the clients retry against a closed port

	opts.Addr = addr
	var b *lobby.Server
	for try := 0; ; try++ {
		if b, err = lobby.Start(t.Context(), opts); err == nil {
			break
		}
		if try > 50 {
			t.Fatalf("restart on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond) // pacing: retries until the old run frees the port
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b.Shutdown(ctx)
	}()
	for _, c := range clients {
		c.waitPresent(t, n)
	}
	t.Logf("%s restart: all %d clients back after %v", how, n, time.Since(down).Round(time.Millisecond))

	want := map[string]bool{}
	for _, c := range clients {
		want[participantID(c.name)] = true
	}
	time.Sleep(200 * time.Millisecond) // negative check: a second rejoin would come by now
	for _, c := range clients {
		c.mu.Lock()
		p, rejoins, reconnects := c.cur, c.rejoins, c.reconnects
		c.mu.Unlock()
		if rejoins != 1 {
			t.Errorf("%s was told to join again %d times, want 1", c.name, rejoins)
		}
		if how == "graceful" && reconnects < 1 {
			t.Errorf("%s was not told to reconnect", c.name)
		}
		p.with(func(p *probe) {
			if !maps.Equal(p.list, want) || p.listDups > 0 {
				t.Errorf("%s's list: %d items (%d duplicates), want the %d clients: %v", c.name, len(p.list), p.listDups, n,
					slices.Sorted(maps.Keys(p.list)))
			}
		})
	}
	db := newBrowser(t, b)
	if keys := debugKeys(t, db); len(keys) != n {
		t.Errorf("%d streams on the restarted server, want %d: %q", len(keys), n, keys)
	}
	if v, err := metricValue(db.client, b.URL(), "lobby_participants"); err != nil || v != n {
		t.Errorf("participants = %v (%v), want %d", v, err, n)
	}
	for _, c := range clients {
		c.stop()
	}
}

// dsClient behaves like a page with the Datastar client: it keeps its
// stream open; when the stream ends normally it reconnects only if told to
// (the farewell's reconnect element) and joins again if shown the join
// form (as its person would); when the connection breaks it retries with
// backoff (Datastar: 1 s, 2 s, 4 s... here 50 ms, 100 ms, 200 ms...).
type dsClient struct {
	name string
	c    *lclient

	mu         sync.Mutex
	cur        *probe
	present    bool
	rejoins    int
	reconnects int
	stopped    atomic.Bool
	done       chan struct{}
}

func newDSClient(t *testing.T, base string, tr *http.Transport, name string) *dsClient {
	d := &dsClient{name: name, c: newLClient(base, tr), done: make(chan struct{})}
	if err := d.c.join(name); err != nil {
		t.Fatal(err)
	}
	go d.run()
	t.Cleanup(d.stop)
	return d
}

func (d *dsClient) run() {
	defer close(d.done)
	backoff := 50 * time.Millisecond
	for !d.stopped.Load() {
		p, err := d.c.openProbe(true, dialOpts{})
		if err != nil { // connection refused: the server is down
			time.Sleep(backoff) // pacing: the client backs off as Datastar does
			backoff = min(2*backoff, time.Second)
			continue
		}
		d.mu.Lock()
		d.cur = p
		d.mu.Unlock()
		if p.waitListed(waitLong) == nil {
			backoff = 50 * time.Millisecond
			d.mu.Lock()
			d.present = true
			d.mu.Unlock()
		}
		<-p.done
		d.mu.Lock()
		d.present = false
		d.mu.Unlock()
		if d.stopped.Load() {
			return
		}
		var rejoin, reconnect bool
		p.with(func(p *probe) { rejoin, reconnect = p.rejoin, p.reconnect })
		switch err := p.readErr(); {
		case rejoin:
			d.mu.Lock()
			d.rejoins++
			d.mu.Unlock()
			for d.c.cookie = ""; d.c.join(d.name) != nil && !d.stopped.Load(); {
				time.Sleep(backoff) // pacing: the client backs off as Datastar does
			}
		case reconnect:
			d.mu.Lock()
			d.reconnects++
			d.mu.Unlock()
			time.Sleep(100 * time.Millisecond) // pacing: data-init__delay
		case errors.Is(err, io.EOF):
			return // a normal end: Datastar does not retry
		default: // a broken connection
			time.Sleep(backoff) // pacing: the client backs off as Datastar does
			backoff = min(2*backoff, time.Second)
		}
	}
}

// waitPresent waits until the client's stream lists n participants.
func (d *dsClient) waitPresent(t *testing.T, n int) {
	t.Helper()
	ssetest.Eventually(t, 10*time.Second, d.name+" is back with everyone listed", func() bool {
		d.mu.Lock()
		p, present := d.cur, d.present
		d.mu.Unlock()
		if !present {
			return false
		}
		size := 0
		p.with(func(p *probe) { size = len(p.list) })
		return size == n
	})
}

func (d *dsClient) stop() {
	if d.stopped.Swap(true) {
		return
	}
	d.mu.Lock()
	p := d.cur
	d.mu.Unlock()
	if p != nil {
		p.close()
	}
	<-d.done
}
