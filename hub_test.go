package sfere

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func lobbyKey(id string) Key { return NewKey(DefaultScope, "lobby", id) }

func newMemoryHub(t *testing.T, opts HubOptions) (*Hub, *evictions) {
	ev := newEvictions()
	return NewHub(NewMemoryStore(MemoryOptions{OnEvict: ev.record}), opts), ev
}

func TestServeWritesInitialEffectsThenBroadcasts(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, _ := newMemoryHub(t, HubOptions{NoHijack: noHijack})
		srv := testServer(t, hub, PatchElements(`<p id="hello">hello</p>`))
		brian, phil := dial(t, srv, "brian", true), dial(t, srv, "phil", true)
		brian.waitLine("event: datastar-patch-elements", time.Second)
		brian.waitLine(`elements <p id="hello">hello</p>`, time.Second)
		phil.waitLine(`elements <p id="hello">hello</p>`, time.Second)
		waitFor(t, time.Second, "two streams", func() bool { return hub.Count(InCategory("lobby")) == 2 })

		res, err := hub.Broadcast(InCategory("lobby"), lobbyKey("brian"), AppendElements("#messages", "<li>one</li>"))
		if err != nil || res != (Result{Delivered: 1}) {
			t.Fatalf("Broadcast = %+v, %v; want 1 delivered", res, err)
		}
		phil.waitLine("elements <li>one</li>", time.Second)
		// Brian was excluded: the next thing he sees is what is sent to him alone.
		if _, err := hub.Send(lobbyKey("brian"), AppendElements("#messages", "<li>two</li>")); err != nil {
			t.Fatal(err)
		}
		if line := brian.waitLine("elements <li>", time.Second); !strings.Contains(line, "two") {
			t.Fatalf("excluded stream got %q", line)
		}

		// All effects of one call arrive together and in order.
		res, err = hub.Broadcast(All, nil, PatchElements(`<p id="a">a</p>`), Comment("between"), PatchElements(`<p id="b">b</p>`))
		if err != nil || res.Delivered != 2 {
			t.Fatalf("Broadcast = %+v, %v", res, err)
		}
		phil.waitLine(`<p id="a">a</p>`, time.Second)
		phil.waitLine(": between", time.Second)
		phil.waitLine(`<p id="b">b</p>`, time.Second)
		keys := hub.List(InCategory("lobby"))
		sortKeys(keys)
		if fmt.Sprint(keys) != "[default/lobby/brian default/lobby/phil]" {
			t.Fatalf("List = %v", keys)
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
		brian, phil := dial(t, srv, "brian", true), dial(t, srv, "phil", true)
		waitFor(t, time.Second, "two streams", func() bool { return hub.Count(All) == 2 })

		closed := time.Now()
		brian.conn.Close()
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
		phil.waitLine(": still here", time.Second)
		ev.none(t, 100*time.Millisecond)
	})
}

func TestReplacedStreamIsClosed(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, ev := newMemoryHub(t, HubOptions{NoHijack: noHijack})
		srv := testServer(t, hub)
		first := dial(t, srv, "brian", true)
		waitFor(t, time.Second, "first stream", func() bool { return hub.Count(All) == 1 })
		old, _ := hub.Store().Get(lobbyKey("brian"))

		second := dial(t, srv, "brian", true)
		got := ev.next(t, time.Second)
		if got.Cause != CauseReplaced || got.Stream != old {
			t.Fatalf("eviction = %+v, want the first stream replaced", got)
		}
		first.waitEOF(time.Second) // really closed: its response ended
		if _, err := hub.Send(lobbyKey("brian"), Comment("to the new one")); err != nil {
			t.Fatal(err)
		}
		second.waitLine(": to the new one", time.Second)
		ev.none(t, 100*time.Millisecond)
	})
}

func TestPurgeClosesStream(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, ev := newMemoryHub(t, HubOptions{NoHijack: noHijack})
		srv := testServer(t, hub)
		c := dial(t, srv, "brian", true)
		waitFor(t, time.Second, "stream", func() bool { return hub.Count(All) == 1 })
		if !hub.Store().Purge(lobbyKey("brian")) {
			t.Fatal("Purge found nothing")
		}
		if got := ev.next(t, time.Second); got.Cause != CauseExplicit {
			t.Fatalf("eviction = %+v, want explicit", got)
		}
		c.waitEOF(time.Second)
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

		clients := map[Key]*sseClient{}
		for _, id := range []string{"a", "b", "c"} {
			clients[lobbyKey(id)] = dial(t, srv, id, true)
			clients[lobbyKey(id)].waitLine(": hello", time.Second) // connected and written to
		}
		store.cleanUp()
		got := ev.next(t, 2*time.Second)
		if got.Cause != CauseSize {
			t.Fatalf("eviction = %+v, want size", got)
		}
		clients[got.Key].waitEOF(time.Second)
		delete(clients, got.Key)

		clock.Advance(2 * time.Minute)
		store.cleanUp()
		for range 2 {
			got := ev.next(t, 2*time.Second)
			if got.Cause != CauseExpired {
				t.Fatalf("eviction = %+v, want expired", got)
			}
			clients[got.Key].waitEOF(time.Second)
		}
		ev.none(t, 100*time.Millisecond)
	})
}

func TestCloseStreamEffect(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, ev := newMemoryHub(t, HubOptions{NoHijack: noHijack})
		srv := testServer(t, hub)
		c := dial(t, srv, "brian", true)
		waitFor(t, time.Second, "stream", func() bool { return hub.Count(All) == 1 })
		if _, err := hub.Send(lobbyKey("brian"), PatchElements(`<p id="bye">bye</p>`), CloseStream()); err != nil {
			t.Fatal(err)
		}
		c.waitLine(`<p id="bye">bye</p>`, time.Second)
		c.waitEOF(time.Second)
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
		dial(t, srv, "stalled", false, withRecvBuffer(4096))
		waitFor(t, time.Second, "stream", func() bool { return hub.Count(All) == 1 })
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

// A client that never reads must not delay a broadcast to 100 healthy
// clients by more than a second; it is closed on its own.
func TestStalledClientDoesNotDelayOthers(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		const healthy = 100
		hub, ev := newMemoryHub(t, HubOptions{NoHijack: noHijack, WriteTimeout: 2 * time.Second})
		srv := testServer(t, hub)
		clients := make([]*sseClient, healthy)
		for i := range clients {
			clients[i] = dial(t, srv, fmt.Sprint("h", i), true)
		}
		dial(t, srv, "stalled", false, withRecvBuffer(4096))
		waitFor(t, 5*time.Second, "all streams", func() bool { return hub.Count(All) == healthy+1 })

		// Stall the bad client's writer: feed it until its queue overflows,
		// which happens only once its socket is full and its write is blocked.
		chunk := PatchElements(strings.Repeat("x", 64<<10))
		stalled := false
		for range 1024 {
			if _, err := hub.Send(lobbyKey("stalled"), chunk); errors.Is(err, ErrSlowClient) {
				stalled = true
				break
			}
			time.Sleep(time.Millisecond)
		}
		if !stalled {
			t.Fatal("the stalled client's queue never filled")
		}

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
					if _, err := c.nextLine(fmt.Sprintf("round %d", round), 5*time.Second); err != nil {
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
		var clients []*sseClient
		for i := range 5 {
			clients = append(clients, dial(t, srv, fmt.Sprint(i), true))
		}
		waitFor(t, time.Second, "streams", func() bool { return hub.Count(All) == 5 })
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hub.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		for _, c := range clients {
			c.waitEOF(time.Second)
		}
		for range 5 {
			if got := ev.next(t, time.Second); got.Cause != CauseClosed || !errors.Is(got.Err, ErrHubClosed) {
				t.Fatalf("eviction = %+v, want closed (hub closed)", got)
			}
		}
		if n := hub.Count(All); n != 0 {
			t.Fatalf("%d streams left after shutdown", n)
		}
		late := dial(t, srv, "late", true)
		late.waitLine("status 503", time.Second)
	})
}

// Many goroutines open, close, purge and broadcast at once: every stream
// is evicted exactly once, and nothing is left behind.
func TestConcurrentServeBroadcastPurge(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, ev := newMemoryHub(t, HubOptions{NoHijack: noHijack})
		srv := testServer(t, hub, Comment("hello"))
		const workers, rounds = 6, 20
		var wg sync.WaitGroup
		stop := make(chan struct{})
		var bg sync.WaitGroup
		bg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				hub.Broadcast(InCategory("lobby"), nil, Comment("tick"))
				hub.Store().Purge(lobbyKey(fmt.Sprint("w0-", time.Now().UnixNano()%rounds)))
				time.Sleep(time.Millisecond)
			}
		})
		for w := range workers {
			wg.Go(func() {
				for i := range rounds {
					c := dial(t, srv, fmt.Sprintf("w%d-%d", w%3, i), true)
					// The first line, or the end of a stream that a purge or
					// a newer stream under the same key closed first.
					select {
					case <-c.lines:
					case <-time.After(2 * time.Second):
						t.Error("stream neither wrote nor ended")
					}
					c.conn.Close()
				}
			})
		}
		wg.Wait()
		close(stop)
		bg.Wait()
		waitFor(t, 2*time.Second, "every stream gone", func() bool { return hub.Count(All) == 0 })
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
		dial(t, srv, "brian", true).waitLine(": hello", time.Second)
		dial(t, srv, "phil", true).waitLine(": hello", time.Second)
		mu.Lock()
		defer mu.Unlock()
		sortKeys(opened)
		if fmt.Sprint(opened) != "[default/lobby/brian default/lobby/phil]" {
			t.Fatalf("opened = %v", opened)
		}
	})
}
