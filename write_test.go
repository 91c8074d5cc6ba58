package sfere

import (
	"fmt"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
)

// The opening batch (the initial effects) is app traffic like any other
// write, on both sinks: a periodic heartbeat sweep right after skips the
// stream. A stream opened without initial effects, and heartbeats, are
// not app traffic.
func TestOpeningBatchCountsAsAppTraffic(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		for _, tc := range []struct {
			name    string
			initial []Effect
			skipped bool
		}{
			{"with initial effects", []Effect{PatchElements(`<p id="hello">hello</p>`)}, true},
			{"without", nil, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				hub, _ := newMemoryHub(t, HubOptions{NoHijack: noHijack})
				srv := testServer(t, hub, tc.initial...)
				c := dial(t, srv, "brian")
				ssetest.Eventually(t, waitLong, "stream", func() bool { return hub.Count(All) == 1 })
				s, _ := hub.Store().Get(lobbyKey("brian"))
				// An explicit beat queues behind the opening batch: once its
				// sweep is complete (the beat written), the opening batch's
				// write is recorded. The client having the beat is no such
				// sign: it can read the bytes before the writer records the
				// write (this test once failed under load that way).
				hb := NewHeartbeat(hub, All, time.Hour)
				hb.Beat()
				ssetest.Eventually(t, waitLong, "the beat's sweep", func() bool { return hb.Stats().Sweeps == 1 })
				c.Wait(waitLong, ssetest.CommentIs("heartbeat"))
				if got := s.lastAppWrite.Load() != 0; got != tc.skipped {
					t.Fatalf("app write recorded = %v, want %v", got, tc.skipped)
				}
				res := hb.beat(time.Now().Add(-time.Minute).UnixNano())
				if skipped := hb.Stats().Skipped == 1 && res.Delivered == 0; skipped != tc.skipped {
					t.Fatalf("periodic beat: %+v, stats %+v; want skipped %v", res, hb.Stats(), tc.skipped)
				}
			})
		}
	})
}

// Every transition of a taken-over connection, against the diagram on
// connState.
func TestConnStateMachine(t *testing.T) {
	for _, tc := range []struct {
		from connState
		ev   connEvent
		to   connState
		do   connAction
	}{
		{connIdle, evWake, connBusy, doSchedule},
		{connBusy, evWake, connBusy, doNothing},
		{connWaiting, evWake, connWaiting, doNothing},
		{connEnding, evWake, connEnding, doNothing},
		{connClosed, evWake, connClosed, doNothing},

		{connBusy, evFull, connWaiting, doWait},
		{connEnding, evFull, connEnding, doDrop},

		{connBusy, evDone, connIdle, doNothing},
		{connWaiting, evDone, connIdle, doNothing},
		{connEnding, evDone, connClosed, doClose},

		{connIdle, evEnd, connClosed, doClose},
		{connBusy, evEnd, connEnding, doNothing},
		{connWaiting, evEnd, connEnding, doCut},
		{connEnding, evEnd, connEnding, doNothing},
		{connClosed, evEnd, connClosed, doNothing},
	} {
		t.Run(fmt.Sprintf("%d+%d", tc.from, tc.ev), func(t *testing.T) {
			c := &connSink{state: tc.from}
			if do := c.step(tc.ev); do != tc.do || c.state != tc.to {
				t.Fatalf("step(%d) from %d = %d to %d, want %d to %d", tc.ev, tc.from, do, c.state, tc.do, tc.to)
			}
		})
	}
}
