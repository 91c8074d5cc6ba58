package sfere

import (
	"context"
	"strconv"
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
//
// A visible heartbeat ([NewVisibleHeartbeat]) writes a signal patch the
// page can see instead of the comment, so that a page can tell a live
// stream from a silent one and reopen it by itself.
type Heartbeat struct {
	hub      *Hub
	pattern  Pattern
	interval time.Duration
	payload  []byte // the comment; nil for a visible heartbeat
	signal   string // a visible heartbeat's signal

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

// NewVisibleHeartbeat is [NewHeartbeat] with a beat the page can see: each
// beat is a Datastar signal patch that sets signal to the time of the beat
// (unix milliseconds) and, if the hub's history names a position signal
// ([HistoryOptions.PositionSignal]), sets that one to the history's
// newest position, from which every stream the beat reaches can resume.
// Like the comment, the beat is kept in no history, carries no id and
// changes no element: a page that watches for it grows nothing. A page
// that has seen no event for about 2.5 intervals (a stream gets a beat or
// app traffic at least every 1.5 intervals) knows its stream is dead and
// can reopen it from the position signal; see docs/heartbeat.md's watchdog. It
// returns an error wrapping [ErrBadSignalName] for a bad signal name.
func NewVisibleHeartbeat(hub *Hub, p Pattern, interval time.Duration, signal string) (*Heartbeat, error) {
	if err := checkSignalName(signal); err != nil {
		return nil, err
	}
	b := NewHeartbeat(hub, p, interval)
	b.payload, b.signal = nil, signal
	return b, nil
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
func (b *Heartbeat) beat(wroteSince int64) Result { return b.beatThen(wroteSince, nil) }

// beatThen is beat; done, if set, runs once every stream has written the
// beat or failed.
func (b *Heartbeat) beatThen(wroteSince int64, done func()) Result {
	start := time.Now()
	track := newTracker(func(written, failed int64) {
		b.writes.Add(uint64(written))
		b.failures.Add(uint64(failed))
		b.lastSweep.Store(int64(time.Since(start)))
		b.sweeps.Add(1)
		if done != nil {
			done()
		}
	})
	m := &message{data: b.payload, idAt: -1, heartbeat: true, track: track}
	var res Result
	var skipped int
	if h := b.hub.hist; b.signal != "" && h != nil && h.signal != "" {
		// The position and the queuing under the history's lock, as for
		// an event: every event up to the position is queued ahead of
		// the beat, on every stream it reaches.
		h.atTop(func(top Position) {
			m.data, m.positioned = b.visible(start, h.signal, top.String()), true
			res, skipped = b.hub.deliver(b.pattern, nil, m, wroteSince)
		})
	} else {
		if b.signal != "" {
			m.data = b.visible(start, "", "")
		}
		res, skipped = b.hub.publish(b.pattern, nil, m, wroteSince)
	}
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

// visible renders a visible beat at now: the heartbeat's signal set to
// now in unix milliseconds, and posSignal (if set) to pos.
func (b *Heartbeat) visible(now time.Time, posSignal, pos string) []byte {
	data := make([]byte, 0, len(patchSignalsHead)+len(b.signal)+len(posSignal)+len(pos)+32)
	data = append(data, patchSignalsHead...)
	data = strconv.AppendQuote(data, b.signal) // checked: letters, digits, _
	data = append(data, ':')
	data = strconv.AppendInt(data, now.UnixMilli(), 10)
	if posSignal != "" {
		data = append(data, ',')
		data = strconv.AppendQuote(data, posSignal)
		data = append(data, ':')
		data = appendJSONString(data, pos)
	}
	return append(data, "}\n\n"...)
}
