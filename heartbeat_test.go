package sfere

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/netfault"
	"github.com/sfere-go/sfere/internal/ssetest"
)

func TestHeartbeatWritesCommentsAndStops(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, ev := newMemoryHub(t, HubOptions{NoHijack: noHijack})
		srv := testServer(t, hub)
		brian, phil := dial(t, srv, "brian"), dial(t, srv, "phil")
		dial(t, srv, "carol")
		ssetest.Eventually(t, waitLong, "streams", func() bool { return hub.Count(All) == 3 })
		hb := NewHeartbeat(hub, InCategory("lobby"), 20*time.Millisecond)
		stop := hb.Start()
		brian.Wait(waitLong, ssetest.Containing(": heartbeat"))
		phil.Wait(waitLong, ssetest.Containing(": heartbeat"))
		ssetest.Eventually(t, 2*time.Second, "three sweeps", func() bool { return hb.Stats().Sweeps >= 3 })
		stop()
		st := hb.Stats()
		if st.Writes < 9 || st.Failures != 0 || st.LastSweep <= 0 {
			t.Fatalf("stats after 3+ sweeps of 3 streams = %+v", st)
		}
		// That no sweep follows stop is checked exactly, on a fake clock
		// (TestHeartbeatFakeClock).
		ev.none(t, 50*time.Millisecond)
	})
}

func TestHeartbeatPatternSelectsStreams(t *testing.T) {
	hub, _ := newMemoryHub(t, HubOptions{})
	srv := testServer(t, hub)
	dial(t, srv, "brian")
	dial(t, srv, "phil")
	ssetest.Eventually(t, waitLong, "streams", func() bool { return hub.Count(All) == 2 })
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
		// They take milliseconds: small socket buffers on both ends fill
		// with 1 MiB (rendering 16 MiB took 2 s under -race, and the
		// stream was gone before the heartbeat on a busy machine).
		hub, ev := newMemoryHub(t, HubOptions{NoHijack: noHijack, WriteTimeout: 4 * time.Second, MaxQueueBytes: -1})
		srv := testServerOn(t, listenSmallSendBuffer(t), hub)
		dial(t, srv, "stalled", ssetest.NoRead(), ssetest.RecvBuffer(4096))
		ssetest.Eventually(t, waitLong, "stream", func() bool { return hub.Count(All) == 1 })
		// Fill the socket so the next write blocks.
		big := PatchElements(strings.Repeat("x", 64<<10))
		for range 16 {
			hub.Send(lobbyKey("stalled"), big)
		}
		hb := NewHeartbeat(hub, All, time.Hour)
		if res := hb.Beat(); res.Delivered != 1 {
			t.Fatalf("Beat = %+v: the stream was gone before the heartbeat", res)
		}
		got := ev.next(t, 8*time.Second)
		if got.Cause != CauseClosed || !errors.Is(got.Err, ErrWrite) {
			t.Fatalf("eviction = %+v, want closed by a failed write", got)
		}
		ssetest.Eventually(t, waitLong, "the failed beat counted", func() bool { return hb.Stats().Failures == 1 })
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

		brian, phil := dial(t, srv, "brian"), dial(t, srv, "phil")
		brian.Wait(waitLong, ssetest.Containing(": hello"))
		phil.Wait(waitLong, ssetest.Containing(": hello"))
		stop := NewHeartbeat(hub, All, interval).Start()
		defer stop()

		netfault.DropConn(t, brian.LocalPort(), brian.RemotePort())
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
		phil.Wait(waitLong, ssetest.Containing(": still here"))
	})
}

// On its interval the heartbeat leaves alone a stream whose app traffic
// was written since the last half interval (beat's idleSince), and still
// beats an idle one.
func TestHeartbeatSkipsBusyStreams(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, _ := newMemoryHub(t, HubOptions{NoHijack: noHijack})
		srv := testServer(t, hub)
		busy, idle := dial(t, srv, "busy"), dial(t, srv, "idle")
		ssetest.Eventually(t, waitLong, "streams", func() bool { return hub.Count(All) == 2 })
		s, _ := hub.Store().Get(lobbyKey("busy"))
		hb := NewHeartbeat(hub, All, time.Hour)
		for i := range 3 {
			since := time.Now()
			tick := fmt.Sprintf(`<div id="tick">%d</div>`, i)
			if _, err := hub.Send(lobbyKey("busy"), PatchElements(tick)); err != nil {
				t.Fatal(err)
			}
			busy.Wait(waitLong, ssetest.Containing(tick))
			ssetest.Eventually(t, waitLong, "the write recorded", func() bool { return s.lastAppWrite.Load() >= since.UnixNano() })
			if res := hb.beat(since.UnixNano()); res.Delivered != 1 {
				t.Fatalf("sweep %d reached %+v, want the idle stream only", i, res)
			}
			idle.Wait(waitLong, ssetest.CommentIs("heartbeat"))
		}
		if st := hb.Stats(); st.Skipped != 3 {
			t.Fatalf("stats = %+v: want the busy stream skipped on every sweep", st)
		}
		// An explicit Beat reaches every stream; the busy one had none before.
		if res := hb.Beat(); res.Delivered != 2 {
			t.Fatalf("Beat reached %+v, want both streams", res)
		}
		busy.Wait(waitLong, ssetest.CommentIs("heartbeat"))
		n := 0
		for _, e := range busy.Events() {
			if e.IsComment && e.Comment == "heartbeat" {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("busy stream got %d heartbeats, want only the explicit one", n)
		}
	})
}
