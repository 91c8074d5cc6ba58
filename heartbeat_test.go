package sfere

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/netfault"
)

func TestHeartbeatWritesCommentsAndStops(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, ev := newMemoryHub(t, HubOptions{NoHijack: noHijack})
		srv := testServer(t, hub)
		brian, phil := dial(t, srv, "brian", true), dial(t, srv, "phil", true)
		dial(t, srv, "carol", true)
		waitFor(t, time.Second, "streams", func() bool { return hub.Count(All) == 3 })
		hb := NewHeartbeat(hub, InCategory("lobby"), 20*time.Millisecond)
		stop := hb.Start()
		brian.waitLine(": heartbeat", time.Second)
		phil.waitLine(": heartbeat", time.Second)
		waitFor(t, 2*time.Second, "three sweeps", func() bool { return hb.Stats().Sweeps >= 3 })
		stop()
		st := hb.Stats()
		if st.Writes < 9 || st.Failures != 0 || st.LastSweep <= 0 {
			t.Fatalf("stats after 3+ sweeps of 3 streams = %+v", st)
		}
		// Stopped means stopped: no more sweeps.
		time.Sleep(60 * time.Millisecond)
		if hb.Stats().Sweeps != st.Sweeps {
			t.Fatal("heartbeat kept beating after stop")
		}
		ev.none(t, 50*time.Millisecond)
	})
}

func TestHeartbeatPatternSelectsStreams(t *testing.T) {
	hub, _ := newMemoryHub(t, HubOptions{})
	srv := testServer(t, hub)
	dial(t, srv, "brian", true)
	dial(t, srv, "phil", true)
	waitFor(t, time.Second, "streams", func() bool { return hub.Count(All) == 2 })
	hb := NewHeartbeat(hub, lobbyKey("brian").Pattern(), time.Hour)
	if res := hb.Beat(); res.Delivered != 1 {
		t.Fatalf("Beat to one key reached %+v", res)
	}
}

// A heartbeat write that cannot complete (the client stopped reading and
// its socket is full) fails on the write deadline and closes the stream.
func TestHeartbeatClosesStalledStream(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		// A write may run for WriteTimeout/2 to WriteTimeout (the deadline is
		// moved lazily): 4 s leaves the sends below at least 2 s to queue.
		hub, ev := newMemoryHub(t, HubOptions{NoHijack: noHijack, WriteTimeout: 4 * time.Second, MaxQueueBytes: -1})
		srv := testServer(t, hub)
		dial(t, srv, "stalled", false, withRecvBuffer(4096))
		waitFor(t, time.Second, "stream", func() bool { return hub.Count(All) == 1 })
		// Fill the socket so the next write blocks. Rendered once: the
		// beat must be queued well within the write timeout, even on a
		// busy machine under the race detector.
		big, err := render([]Effect{PatchElements(strings.Repeat("x", 1<<20))})
		if err != nil {
			t.Fatal(err)
		}
		s, _ := hub.Store().Get(lobbyKey("stalled"))
		for range 16 {
			s.enqueue(big, nil)
		}
		hb := NewHeartbeat(hub, All, time.Hour)
		if res := hb.Beat(); res.Delivered != 1 {
			t.Fatalf("Beat = %+v: the stream was gone before the heartbeat", res)
		}
		got := ev.next(t, 8*time.Second)
		if got.Cause != CauseClosed || !errors.Is(got.Err, ErrWrite) {
			t.Fatalf("eviction = %+v, want closed by a failed write", got)
		}
		waitFor(t, time.Second, "the failed beat counted", func() bool { return hb.Stats().Failures == 1 })
	})
}

// A client whose machine vanished (no FIN, packets dropped) is found by
// the heartbeat within interval + TCP user timeout + 2 s.
func TestHeartbeatFindsVanishedPeer(t *testing.T) {
	if err := netfault.Available(); err != nil {
		t.Skip(err)
	}
	bothPaths(t, func(t *testing.T, noHijack bool) {
		const interval, userTimeout = 500 * time.Millisecond, time.Second
		hub, ev := newMemoryHub(t, HubOptions{NoHijack: noHijack})
		ln, err := Listen(t.Context(), "tcp", "127.0.0.1:0", ListenOptions{UserTimeout: userTimeout})
		if err != nil {
			t.Fatal(err)
		}
		srv := testServerOn(t, ln, hub, Comment("hello"))

		brian, phil := dial(t, srv, "brian", true), dial(t, srv, "phil", true)
		brian.waitLine(": hello", time.Second)
		phil.waitLine(": hello", time.Second)
		stop := NewHeartbeat(hub, All, interval).Start()
		defer stop()

		netfault.DropPort(t, brian.localPort())
		vanished := time.Now()
		got := ev.next(t, interval+userTimeout+2*time.Second)
		took := time.Since(vanished)
		t.Logf("vanished peer evicted after %v (%v)", took, got.Err)
		if got.Key != lobbyKey("brian") || got.Cause != CauseClosed || !errors.Is(got.Err, ErrPeerVanished) {
			t.Fatalf("eviction = %+v, want brian closed, vanished", got)
		}
		// Phil's stream stays up.
		if _, err := hub.Send(lobbyKey("phil"), Comment("still here")); err != nil {
			t.Fatal(err)
		}
		phil.waitLine(": still here", time.Second)
	})
}

// On its interval the heartbeat leaves alone a stream whose app traffic
// was written since the last half interval (beat's idleSince), and still
// beats an idle one.
func TestHeartbeatSkipsBusyStreams(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, _ := newMemoryHub(t, HubOptions{NoHijack: noHijack})
		srv := testServer(t, hub)
		busy, idle := dial(t, srv, "busy", true), dial(t, srv, "idle", true)
		waitFor(t, time.Second, "streams", func() bool { return hub.Count(All) == 2 })
		s, _ := hub.Store().Get(lobbyKey("busy"))
		hb := NewHeartbeat(hub, All, time.Hour)
		for i := range 3 {
			since := time.Now()
			tick := fmt.Sprintf(`<div id="tick">%d</div>`, i)
			if _, err := hub.Send(lobbyKey("busy"), PatchElements(tick)); err != nil {
				t.Fatal(err)
			}
			busy.waitLine(tick, 2*time.Second)
			waitFor(t, 2*time.Second, "the write recorded", func() bool { return s.lastAppWrite.Load() >= since.UnixNano() })
			if res := hb.beat(since); res.Delivered != 1 {
				t.Fatalf("sweep %d reached %+v, want the idle stream only", i, res)
			}
			idle.waitLine(": heartbeat", 2*time.Second)
		}
		if st := hb.Stats(); st.Skipped != 3 {
			t.Fatalf("stats = %+v: want the busy stream skipped on every sweep", st)
		}
		// An explicit Beat reaches every stream.
		if res := hb.Beat(); res.Delivered != 2 {
			t.Fatalf("Beat reached %+v, want both streams", res)
		}
		busy.waitLine(": heartbeat", 2*time.Second)
	})
}
