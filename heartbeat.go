package sfere

import (
	"context"
	"sync/atomic"
	"time"
)

// DefaultHeartbeatInterval is the interval [NewHeartbeat] uses for zero.
const DefaultHeartbeatInterval = 10 * time.Second

// Heartbeat writes an SSE comment to every stream matching a pattern on an
// interval. SSE is one-way, so a client that vanished is noticed only when
// the server writes: a heartbeat write that fails or times out ends that
// stream (cause closed), so its eviction callback fires. The comment is
// ignored by the Datastar client and never changes the page.
//
// A beat is queued to each stream like any message and written under the
// hub's write timeout, so one slow client never holds up a sweep of the
// others.
//
// On its interval (Run, Start) a stream that began a successful write of
// the app's own traffic (a broadcast or send) within the last half
// interval gets no beat: that write already proved the client, and
// beating busy streams would only queue work ahead of the app's next
// broadcast. Every stream still gets a write at least every 1.5 intervals.
// An explicit Beat reaches every stream.
type Heartbeat struct {
	hub      *Hub
	pattern  Pattern
	interval time.Duration
	payload  []byte

	sweeps    atomic.Uint64
	skipped   atomic.Uint64
	writes    atomic.Uint64
	failures  atomic.Uint64
	lastSweep atomic.Int64 // nanoseconds
	started   atomic.Bool
}

// HeartbeatStats are a heartbeat's counters since it was created.
type HeartbeatStats struct {
	// Sweeps counts completed sweeps: every stream wrote the beat or failed.
	Sweeps uint64
	// Skipped counts periodic beats not sent because the stream had
	// written app traffic within the last half interval.
	Skipped uint64
	// Writes counts heartbeat writes that reached a client's socket.
	Writes uint64
	// Failures counts streams that could not take or write a heartbeat
	// (each such stream is closed).
	Failures uint64
	// LastSweep is how long the last completed sweep took, from queuing
	// the beat to the last stream's write (or failure).
	LastSweep time.Duration
}

// NewHeartbeat returns a heartbeat over the streams of hub matching p,
// every interval (zero means [DefaultHeartbeatInterval]). Start it with
// [Heartbeat.Run] or [Heartbeat.Start].
func NewHeartbeat(hub *Hub, p Pattern, interval time.Duration) *Heartbeat {
	if interval <= 0 {
		interval = DefaultHeartbeatInterval
	}
	payload, err := Render(Comment("heartbeat"))
	if err != nil {
		panic("sfere: heartbeat payload: " + err.Error()) // a constant comment always renders
	}
	return &Heartbeat{hub: hub, pattern: p, interval: interval, payload: payload}
}

// Run beats every interval until ctx ends, then returns ctx's error.
func (b *Heartbeat) Run(ctx context.Context) error {
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			b.beat(time.Now().Add(-b.interval / 2).UnixNano())
		}
	}
}

// Start runs the heartbeat on a goroutine of its own and returns a function
// that stops it and waits for it to return. It panics if the heartbeat
// was already started.
func (b *Heartbeat) Start() (stop func()) {
	if !b.started.CompareAndSwap(false, true) {
		panic("sfere: heartbeat started twice")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = b.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// Beat queues one heartbeat to every matching stream now, without waiting
// for the writes, and returns how many streams took it.
func (b *Heartbeat) Beat() Result { return b.beat(0) }

// beat queues a heartbeat to the matching streams that have not begun a
// successful write of app traffic since wroteSince, in unix nanoseconds
// (zero: to all of them).
func (b *Heartbeat) beat(wroteSince int64) Result {
	start := time.Now()
	track := newTracker(func(written, failed int64) {
		b.writes.Add(uint64(written))
		b.failures.Add(uint64(failed))
		b.lastSweep.Store(int64(time.Since(start)))
		b.sweeps.Add(1)
	})
	res, skipped := b.hub.publish(b.pattern, nil, &message{data: b.payload, idAt: -1, heartbeat: true, track: track}, wroteSince)
	b.skipped.Add(uint64(skipped))
	b.failures.Add(uint64(res.Failed))
	track.release()
	return res
}

// Stats returns the heartbeat's counters.
func (b *Heartbeat) Stats() HeartbeatStats {
	return HeartbeatStats{
		Sweeps:    b.sweeps.Load(),
		Skipped:   b.skipped.Load(),
		Writes:    b.writes.Load(),
		Failures:  b.failures.Load(),
		LastSweep: time.Duration(b.lastSweep.Load()),
	}
}
