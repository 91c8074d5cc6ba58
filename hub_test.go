package sfere

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
)

func lobbyKey(id string) Key { return NewKey(DefaultScope, "lobby", id) }

func newMemoryHub(t *testing.T, opts HubOptions) (*Hub, *evictions) {
	ev := newEvictions()
	return NewHub(NewMemoryStore(MemoryOptions{OnEvict: ev.record}), opts), ev
}

// servePair serves Brian and Phil a stream each, opened with initial.
func servePair(t *testing.T, noHijack bool, initial ...Effect) (hub *Hub, brian, phil *ssetest.Client) {
	t.Helper()
	hub, _ = newMemoryHub(t, HubOptions{NoHijack: noHijack})
	srv := testServer(t, hub, initial...)
	brian, phil = dial(t, srv, "brian"), dial(t, srv, "phil")
	ssetest.Eventually(t, waitLong, "two streams", func() bool { return hub.Count(InCategory("lobby")) == 2 })
	return hub, brian, phil
}

func TestServeWritesInitialEffects(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, brian, phil := servePair(t, noHijack, PatchElements(`<p id="hello">hello</p>`))
		for _, c := range []*ssetest.Client{brian, phil} {
			e := c.Wait(waitLong, ssetest.Containing(`elements <p id="hello">hello</p>`))
			if e.Type != "datastar-patch-elements" || e.Seq != 0 {
				t.Fatalf("first event = %v, want the initial patch", e)
			}
		}
		keys := hub.List(InCategory("lobby"))
		sortKeys(keys)
		if fmt.Sprint(keys) != "[default/lobby/brian default/lobby/phil]" {
			t.Fatalf("List = %v", keys)
		}
	})
}

func TestBroadcastSkipsExcludedStream(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, brian, phil := servePair(t, noHijack)
		res, err := hub.Broadcast(InCategory("lobby"), lobbyKey("brian"), AppendElements("#messages", "<li>one</li>"))
		if err != nil || res != (Result{Delivered: 1}) {
			t.Fatalf("Broadcast = %+v, %v; want 1 delivered", res, err)
		}
		phil.Wait(waitLong, ssetest.Containing("elements <li>one</li>"))
		// Brian was excluded: the next thing he sees is what is sent to him alone.
		if _, err := hub.Send(lobbyKey("brian"), AppendElements("#messages", "<li>two</li>")); err != nil {
			t.Fatal(err)
		}
		if e := brian.Wait(waitLong, ssetest.Containing("elements <li>")); !strings.Contains(e.String(), "two") {
			t.Fatalf("excluded stream got %q", e)
		}
	})
}

func TestEffectsOfOneCallArriveTogetherInOrder(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, brian, phil := servePair(t, noHijack)
		res, err := hub.Broadcast(All, nil, PatchElements(`<p id="a">a</p>`), Comment("between"), PatchElements(`<p id="b">b</p>`))
		if err != nil || res.Delivered != 2 {
			t.Fatalf("Broadcast = %+v, %v", res, err)
		}
		for _, c := range []*ssetest.Client{brian, phil} {
			a := c.Wait(waitLong, ssetest.Containing(`<p id="a">a</p>`))
			between := c.Wait(waitLong, ssetest.Containing(": between"))
			b := c.Wait(waitLong, ssetest.Containing(`<p id="b">b</p>`))
			if between.Seq != a.Seq+1 || b.Seq != a.Seq+2 {
				t.Fatalf("events #%d, #%d, #%d: want three in a row", a.Seq, between.Seq, b.Seq)
			}
		}
	})
}

func TestClosedTabEvictsWithinASecond(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, ev := newMemoryHub(t, HubOptions{NoHijack: noHijack})
		ln, err := Listen(t.Context(), "tcp", "127.0.0.1:0", ListenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		srv := testServerOn(t, ln, hub)
		brian, phil := dial(t, srv, "brian"), dial(t, srv, "phil")
		ssetest.Eventually(t, waitLong, "two streams", func() bool { return hub.Count(All) == 2 })

		closed := time.Now()
		brian.Close()
		got := ev.next(t, time.Second)
		t.Logf("closed tab evicted after %v", time.Since(closed))
		if got.Key != lobbyKey("brian") || got.Cause != CauseClosed || !errors.Is(got.Err, ErrClientGone) || errors.Is(got.Err, ErrPeerVanished) {
			t.Fatalf("eviction = %+v, want brian closed (client gone, not vanished)", got)
		}
		if hub.Count(All) != 1 {
			t.Fatal("brian still stored")
		}
		// Phil's stream is untouched.
		if _, err := hub.Send(lobbyKey("phil"), Comment("still here")); err != nil {
			t.Fatal(err)
		}
		phil.Wait(waitLong, ssetest.Containing(": still here"))
		ev.none(t, 100*time.Millisecond)
	})
}

func TestReplacedStreamIsClosed(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, ev := newMemoryHub(t, HubOptions{NoHijack: noHijack})
		srv := testServer(t, hub)
		first := dial(t, srv, "brian")
		ssetest.Eventually(t, waitLong, "first stream", func() bool { return hub.Count(All) == 1 })
		old, _ := hub.Store().Get(lobbyKey("brian"))

		second := dial(t, srv, "brian")
		got := ev.next(t, time.Second)
		if got.Cause != CauseReplaced || got.Stream != old {
			t.Fatalf("eviction = %+v, want the first stream replaced", got)
		}
		first.WaitEnd(waitLong) // really closed: its response ended
		if _, err := hub.Send(lobbyKey("brian"), Comment("to the new one")); err != nil {
			t.Fatal(err)
		}
		second.Wait(waitLong, ssetest.Containing(": to the new one"))
		ev.none(t, 100*time.Millisecond)
	})
}

func TestPurgeClosesStream(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, ev := newMemoryHub(t, HubOptions{NoHijack: noHijack})
		srv := testServer(t, hub)
		c := dial(t, srv, "brian")
		ssetest.Eventually(t, waitLong, "stream", func() bool { return hub.Count(All) == 1 })
		if !hub.Store().Purge(lobbyKey("brian")) {
			t.Fatal("Purge found nothing")
		}
		if got := ev.next(t, time.Second); got.Cause != CauseExplicit {
			t.Fatalf("eviction = %+v, want explicit", got)
		}
		c.WaitEnd(waitLong)
		ev.none(t, 100*time.Millisecond)
	})
}

func TestTTLEvictionsCloseStreams(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		clock := newFakeClock()
		ev := newEvictions()
		store, err := NewTTLStore(TTLOptions{Duration: time.Minute, MaxSize: 2, Clock: clock, OnEvict: ev.record})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		hub := NewHub(store, HubOptions{NoHijack: noHijack})
		srv := testServer(t, hub, Comment("hello"))

		clients := map[Key]*ssetest.Client{}
		for _, id := range []string{"a", "b", "c"} {
			clients[lobbyKey(id)] = dial(t, srv, id)
			clients[lobbyKey(id)].Wait(waitLong, ssetest.Containing(": hello")) // connected and written to
		}
		store.cleanUp()
		got := ev.next(t, 2*time.Second)
		if got.Cause != CauseSize {
			t.Fatalf("eviction = %+v, want size", got)
		}
		clients[got.Key].WaitEnd(waitLong)
		delete(clients, got.Key)

		clock.Advance(2 * time.Minute)
		store.cleanUp()
		for range 2 {
			got := ev.next(t, 2*time.Second)
			if got.Cause != CauseExpired {
				t.Fatalf("eviction = %+v, want expired", got)
			}
			clients[got.Key].WaitEnd(waitLong)
		}
		ev.none(t, 100*time.Millisecond)
	})
}

func TestCloseStreamEffect(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, ev := newMemoryHub(t, HubOptions{NoHijack: noHijack})
		srv := testServer(t, hub)
		c := dial(t, srv, "brian")
		ssetest.Eventually(t, waitLong, "stream", func() bool { return hub.Count(All) == 1 })
		if _, err := hub.Send(lobbyKey("brian"), PatchElements(`<p id="bye">bye</p>`), CloseStream()); err != nil {
			t.Fatal(err)
		}
		c.Wait(waitLong, ssetest.Containing(`<p id="bye">bye</p>`))
		c.WaitEnd(waitLong)
		if got := ev.next(t, time.Second); got.Cause != CauseClosed || !errors.Is(got.Err, ErrClosedByApp) {
			t.Fatalf("eviction = %+v, want closed by app", got)
		}
	})
}

func TestSendToMissingKey(t *testing.T) {
	hub, _ := newMemoryHub(t, HubOptions{})
	_, err := hub.Send(lobbyKey("nobody"), Comment("hello?"))
	if !errors.Is(err, ErrNoStream) {
		t.Fatalf("Send to a missing key: %v, want ErrNoStream", err)
	}
	if _, err := hub.Broadcast(All, nil, Effect{Kind: "nonsense"}); !errors.Is(err, ErrBadEffect) {
		t.Fatalf("Broadcast of a bad effect: %v, want ErrBadEffect", err)
	}
}

func TestFailedWriteEvictsClosed(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, ev := newMemoryHub(t, HubOptions{NoHijack: noHijack, WriteTimeout: 300 * time.Millisecond, MaxQueueBytes: -1})
		srv := testServer(t, hub)
		dial(t, srv, "stalled", ssetest.NoRead(), ssetest.RecvBuffer(4096))
		ssetest.Eventually(t, waitLong, "stream", func() bool { return hub.Count(All) == 1 })
		chunk := PatchElements(strings.Repeat("x", 64<<10))
		// More than the loopback socket buffers can hold: a write must block
		// until the deadline fails it.
		for range 256 {
			if _, err := hub.Send(lobbyKey("stalled"), chunk); err != nil {
				break
			}
		}
		got := ev.next(t, 5*time.Second)
		if got.Cause != CauseClosed || !errors.Is(got.Err, ErrWrite) || !errors.Is(got.Err, os.ErrDeadlineExceeded) {
			t.Fatalf("eviction = %+v (err %v), want closed by a timed-out write", got, got.Err)
		}
	})
}

// stall feeds key's stream until its queue overflows, which happens only
// once its client's socket is full and the stream's write is blocked.
func stall(t *testing.T, hub *Hub, key Key) {
	t.Helper()
	chunk := PatchElements(strings.Repeat("x", 64<<10))
	for range 1024 {
		if _, err := hub.Send(key, chunk); errors.Is(err, ErrSlowClient) {
			return
		}
		time.Sleep(time.Millisecond) // pacing: the writer blocks on the full socket meanwhile
	}
	t.Fatalf("the queue of %v never filled", key)
}

// A client that never reads must not delay a broadcast to 100 healthy
// clients by more than a second; it is closed on its own.
func TestStalledClientDoesNotDelayOthers(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		const healthy = 100
		hub, ev := newMemoryHub(t, HubOptions{NoHijack: noHijack, WriteTimeout: 2 * time.Second})
		srv := testServer(t, hub)
		clients := make([]*ssetest.Client, healthy)
		for i := range clients {
			clients[i] = dial(t, srv, fmt.Sprint("h", i))
		}
		dial(t, srv, "stalled", ssetest.NoRead(), ssetest.RecvBuffer(4096))
		ssetest.Eventually(t, 5*time.Second, "all streams", func() bool { return hub.Count(All) == healthy+1 })
		stall(t, hub, lobbyKey("stalled"))

		// Broadcasts now reach every healthy client promptly, while the
		// stalled one is still blocked in its write.
		for round := range 5 {
			start := time.Now()
			res, err := hub.Broadcast(All, nil, PatchElements(fmt.Sprintf(`<p id="r">round %d</p>`, round)))
			if err != nil {
				t.Fatal(err)
			}
			if res.Delivered < healthy {
				t.Fatalf("round %d: %+v", round, res)
			}
			var wg sync.WaitGroup
			for _, c := range clients {
				wg.Go(func() {
					if _, err := c.Next(5*time.Second, ssetest.Containing(fmt.Sprintf("round %d", round))); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if d := time.Since(start); d > time.Second {
				t.Fatalf("round %d reached the healthy clients after %v", round, d)
			} else {
				t.Logf("round %d reached %d healthy clients in %v", round, healthy, d)
			}
		}
		got := ev.next(t, 5*time.Second)
		if got.Key != lobbyKey("stalled") || got.Cause != CauseClosed {
			t.Fatalf("eviction = %+v, want the stalled client closed", got)
		}
		t.Logf("stalled client closed with: %v", got.Err)
		if n := hub.Count(All); n != healthy {
			t.Fatalf("%d streams left, want %d", n, healthy)
		}
	})
}

func TestShutdownEndsEveryStream(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, ev := newMemoryHub(t, HubOptions{NoHijack: noHijack})
		srv := testServer(t, hub)
		var clients []*ssetest.Client
		for i := range 5 {
			clients = append(clients, dial(t, srv, fmt.Sprint(i)))
		}
		ssetest.Eventually(t, waitLong, "streams", func() bool { return hub.Count(All) == 5 })
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hub.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		for _, c := range clients {
			c.WaitEnd(waitLong)
		}
		for range 5 {
			if got := ev.next(t, time.Second); got.Cause != CauseClosed || !errors.Is(got.Err, ErrHubClosed) {
				t.Fatalf("eviction = %+v, want closed (hub closed)", got)
			}
		}
		if n := hub.Count(All); n != 0 {
			t.Fatalf("%d streams left after shutdown", n)
		}
		if head := dial(t, srv, "late").WaitHead(waitLong); head.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("a stream opened after shutdown: status %d, want 503", head.StatusCode)
		}
	})
}

// churn broadcasts to the lobby and purges one of the keys w0-0 ..
// w0-(keys-1) every millisecond until stop is called; stop waits for it.
func churn(hub *Hub, keys int) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			default:
			}
			hub.Broadcast(InCategory("lobby"), nil, Comment("tick"))
			hub.Store().Purge(lobbyKey(fmt.Sprint("w0-", time.Now().UnixNano()%int64(keys))))
			time.Sleep(time.Millisecond) // pacing: churn, not a busy loop
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// Many goroutines open, close, purge and broadcast at once: every stream
// is evicted exactly once, and nothing is left behind.
func TestConcurrentServeBroadcastPurge(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, ev := newMemoryHub(t, HubOptions{NoHijack: noHijack})
		srv := testServer(t, hub, Comment("hello"))
		const workers, rounds = 6, 20
		stop := churn(hub, rounds)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := range rounds {
					c := dial(t, srv, fmt.Sprintf("w%d-%d", w%3, i))
					// The first event, or the end of a stream that a purge or
					// a newer stream under the same key closed first.
					if _, err := c.Next(2*time.Second, ssetest.Any); errors.Is(err, ssetest.ErrTimeout) {
						t.Error("stream neither wrote nor ended")
					}
					c.Close()
				}
			})
		}
		wg.Wait()
		stop()
		ssetest.Eventually(t, 2*time.Second, "every stream gone", func() bool { return hub.Count(All) == 0 })
		seen := map[*Stream]int{}
		for _, e := range ev.snapshot() {
			seen[e.Stream]++
			if seen[e.Stream] > 1 {
				t.Fatalf("stream %v evicted twice", e.Key)
			}
		}
		if len(seen) != workers*rounds {
			t.Fatalf("%d streams evicted, want one per stream served (%d)", len(seen), workers*rounds)
		}
	})
}

func TestOnOpenRunsOncePerStreamAfterPut(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		var mu sync.Mutex
		var opened []Key
		var hub *Hub
		hub = NewHub(NewMemoryStore(MemoryOptions{}), HubOptions{NoHijack: noHijack, OnOpen: func(s *Stream) {
			if got, ok := hub.Store().Get(s.Key()); !ok || got != s {
				t.Errorf("OnOpen before the stream was stored")
			}
			mu.Lock()
			opened = append(opened, s.Key())
			mu.Unlock()
		}})
		srv := testServer(t, hub, Comment("hello"))
		dial(t, srv, "brian").Wait(waitLong, ssetest.Containing(": hello"))
		dial(t, srv, "phil").Wait(waitLong, ssetest.Containing(": hello"))
		mu.Lock()
		defer mu.Unlock()
		sortKeys(opened)
		if fmt.Sprint(opened) != "[default/lobby/brian default/lobby/phil]" {
			t.Fatalf("opened = %v", opened)
		}
	})
}

// Hooks added with Hub.OnOpen run for every stream stored afterwards, after
// HubOptions.OnOpen, with the stream stored; a function given to AfterEnd
// then reads why the stream ended from Stream.Eviction.
func TestOnOpenAddedAfterConstruction(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		var mu sync.Mutex
		var calls []string
		ended := make(chan Eviction, 1)
		hub := NewHub(NewMemoryStore(MemoryOptions{}), HubOptions{NoHijack: noHijack, OnOpen: func(*Stream) {
			mu.Lock()
			calls = append(calls, "options")
			mu.Unlock()
		}})
		hub.OnOpen(func(s *Stream) {
			if got, ok := hub.Store().Get(s.Key()); !ok || got != s {
				t.Errorf("an added OnOpen ran before the stream was stored")
			}
			if ev := s.Eviction(); ev.Cause != 0 {
				t.Errorf("Eviction of a live stream = %+v, want the zero one", ev)
			}
			mu.Lock()
			calls = append(calls, "added")
			mu.Unlock()
			s.AfterEnd(func() { ended <- s.Eviction() })
		})
		srv := testServer(t, hub, Comment("hello"))
		c := dial(t, srv, "brian")
		c.Wait(waitLong, ssetest.Containing(": hello"))
		mu.Lock()
		if fmt.Sprint(calls) != "[options added]" {
			t.Errorf("hooks ran as %v, want [options added]", calls)
		}
		mu.Unlock()
		c.Close()
		select {
		case ev := <-ended:
			if ev.Cause != CauseClosed || !errors.Is(ev.Err, ErrClientGone) || ev.Key != NewKey("default", "lobby", "brian") {
				t.Errorf("the stream's Eviction = %+v, want closed by ErrClientGone", ev)
			}
		case <-time.After(waitLong):
			t.Fatal("the stream did not end")
		}
	})
}

// The store's eviction callback runs on the goroutine of the stream that
// ends (a taken-over connection's reader), never on the writers every
// stream shares: more streams than there are writers, closed by the app
// and blocked in their callbacks all at once, hold up no other stream.
func TestBlockedEvictionCallbacksDelayNoWrite(t *testing.T) {
	var blocked atomic.Int32
	release := make(chan struct{})
	hub := NewHub(NewMemoryStore(MemoryOptions{OnEvict: func(ev Eviction) {
		if ev.Key != lobbyKey("phil") {
			blocked.Add(1)
			<-release
		}
	}}), HubOptions{})
	srv := testServer(t, hub)
	t.Cleanup(func() { close(release) }) // before the server's cleanups
	n := hub.writers.max + 1
	for i := range n {
		dial(t, srv, fmt.Sprint("c", i))
	}
	phil := dial(t, srv, "phil")
	ssetest.Eventually(t, waitLong, "every stream", func() bool { return hub.Count(All) == n+1 })
	for i := range n {
		if _, err := hub.Send(lobbyKey(fmt.Sprint("c", i)), CloseStream()); err != nil {
			t.Fatal(err)
		}
	}
	ssetest.Eventually(t, waitLong, fmt.Sprint(n, " callbacks blocked at once"), func() bool { return blocked.Load() == int32(n) })
	if _, err := hub.Send(lobbyKey("phil"), AppendElements("#m", "<p>still here</p>")); err != nil {
		t.Fatal(err)
	}
	phil.Wait(waitLong, ssetest.Containing("<p>still here</p>"))
}
