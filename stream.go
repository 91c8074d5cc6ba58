package sfere

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// ErrStreamEnded is returned when a message is sent to a stream that has
// already ended.
var ErrStreamEnded = errors.New("sfere: stream ended")

// Stream is one live SSE response, held in a [Store] under its key.
// Senders put rendered messages in its bounded queue and never wait for
// the client; the stream's sink writes the queue to the client, one
// writer at a time.
//
// A stream's life has three phases, each reached once:
//
//	open --evict--> evicted --finish--> finished
//
// evict is the store's doing (see Evict): the stream left the store, its
// queue takes nothing more, and Done is closed. finish follows once the
// eviction callback returned: the goroutine serving the stream may then
// let go of it, and the functions given to AfterEnd run.
type Stream struct {
	key      Key
	opened   time.Time // when it was made (see Info)
	maxQueue int       // bytes; 0 means unbounded
	sink     sink      // how the queue reaches the client; set before the stream is stored (nil: nobody writes it)
	// compressed: the stream is written gzip (compress_stream.go); set
	// before it is stored.
	compressed bool

	mu        sync.Mutex
	queue     []*message
	queued    int   // bytes in queue
	isEvicted bool  // evict ran: the queue takes nothing more
	overflow  error // set when the queue would pass maxQueue; the writer ends the stream
	paused    bool  // the opening is not in place yet: take gives nothing (see open)
	recovery  Recovery
	afterEnd  []func()
	fired     bool     // finish ran
	eviction  Eviction // how it left its store; set by evict

	lastAppWrite atomic.Int64 // unix nanos: start of the last successful write of app traffic
	// admitting is set from the stream's storing until its opening is
	// decided (under the history's lock): events with a position skip it
	// meanwhile, and its opening brings them (see Hub.admit).
	admitting atomic.Bool

	done     chan struct{} // closed by evict
	finished chan struct{} // closed by finish
}

// sink is how a stream's queue reaches its client. There are two: a
// net/http response writer (sink_http.go) and a connection the hub took
// over from net/http (sink_conn.go). The stream never asks which.
type sink interface {
	// wake tells the sink's writer that the stream's queue has news. A
	// sink that schedules shared writers may add the stream to b (a
	// broadcast's batch, nil for a single send) instead of scheduling it
	// alone.
	wake(b *wakeBatch)
	// interrupt makes whatever serves the stream look at why it should
	// end: an eviction, the hub shutting down.
	interrupt()
}

// newStream returns an open stream under key, written by sink.
func newStream(key Key, maxQueue int, sink sink) *Stream {
	return &Stream{
		key:      key,
		opened:   time.Now(),
		maxQueue: maxQueue,
		sink:     sink,
		done:     make(chan struct{}),
		finished: make(chan struct{}),
	}
}

// Key returns the key the stream is stored under.
func (s *Stream) Key() Key { return s.key }

// Done is closed when the stream has been evicted from its store.
func (s *Stream) Done() <-chan struct{} { return s.done }

// enqueue queues m and wakes the stream's writer. It never blocks on the
// client: a stream whose queue would pass its limit is marked for closing
// instead (cause closed, [ErrSlowClient]).
func (s *Stream) enqueue(m *message, b *wakeBatch) error {
	err := s.put(m)
	if (err == nil || err == ErrSlowClient) && s.sink != nil {
		// An overflow wakes the writer too: it ends the stream.
		s.sink.wake(b)
	}
	return err
}

// put queues m, unless the stream was evicted or overflowed.
func (s *Stream) put(m *message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.isEvicted:
		return ErrStreamEnded
	case s.overflow != nil:
		return s.overflow
	case s.maxQueue > 0 && s.queued > 0 && s.queued+len(m.data) > s.maxQueue:
		s.overflow = ErrSlowClient
		return ErrSlowClient
	}
	s.queue = append(s.queue, m)
	s.queued += len(m.data)
	if m.track != nil {
		m.track.pending.Add(1)
	}
	return nil
}

// take swaps the queue for spare (emptied) and returns what was queued,
// with the overflow error if the stream must end. An evicted stream gives
// nothing and [ErrStreamEnded]: nothing queued is written after an
// eviction (see leftovers).
func (s *Stream) take(spare []*message) ([]*message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isEvicted {
		return nil, ErrStreamEnded
	}
	if s.paused {
		return spare[:0], nil
	}
	batch := s.queue
	s.queue = spare[:0]
	s.queued = 0
	return batch, s.overflow
}

// open puts the stream's opening ahead of whatever was queued to it live
// since it was stored, and lets its writer go: head (a retry field), then
// the initial effects unless the stream recovered, then the events of the
// history it was owed up to then (replay: all it missed if it recovered;
// for a stream that asked for nothing, what came since first was
// rendered), then the live ones.
func (s *Stream) open(head, replay []*message, first *message, recovered bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	queue := head
	if !recovered {
		queue = append(queue, first)
	}
	queue = append(append(queue, replay...), s.queue...)
	s.queue, s.queued = queue, 0
	for _, m := range queue {
		s.queued += len(m.data)
	}
	s.paused = false
}

// Recovery says what became of the position the stream's request
// carried; see [Hub.Serve].
func (s *Stream) Recovery() Recovery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recovery
}

// leftovers empties the queue and returns what it held.
func (s *Stream) leftovers() []*message {
	s.mu.Lock()
	defer s.mu.Unlock()
	batch := s.queue
	s.queue, s.queued = nil, 0
	return batch
}

// pending reports whether the writer has work: something queued, or an
// overflow to act on, and the opening in place.
func (s *Stream) pending() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.isEvicted && !s.paused && (len(s.queue) > 0 || s.overflow != nil)
}

// evict marks the stream evicted by ev; only Evict calls it.
func (s *Stream) evict(ev Eviction) {
	s.mu.Lock()
	if s.isEvicted {
		s.mu.Unlock()
		return
	}
	s.isEvicted = true
	s.eviction = ev
	s.mu.Unlock()
	close(s.done)
	if s.sink != nil {
		s.sink.interrupt()
	}
}

// evicted reports whether evict ran.
func (s *Stream) evicted() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// finish runs once the eviction callback returned: it releases the
// stream's server, then runs the functions given to AfterEnd.
func (s *Stream) finish() {
	s.mu.Lock()
	if s.fired {
		s.mu.Unlock()
		return
	}
	fns := s.afterEnd
	s.fired, s.afterEnd = true, nil
	s.mu.Unlock()
	close(s.finished)
	for _, f := range fns {
		f()
	}
}

// Eviction returns how the stream left its store (the [Eviction] given to
// the store's [EvictFunc]): what a function given to [Stream.AfterEnd]
// reads to learn why the stream ended. Before the stream left, it is the
// zero Eviction.
func (s *Stream) Eviction() Eviction {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.eviction
}

// AfterEnd arranges for f to run once the stream has left its store and
// its eviction callback has returned, on the goroutine that ended it; if
// that has already happened, f runs now. It is how code that opened a
// stream with [Hub.Detach] releases what it holds for the stream (say, a
// per-client slot). f must not block.
func (s *Stream) AfterEnd(f func()) {
	s.mu.Lock()
	if !s.fired {
		s.afterEnd = append(s.afterEnd, f)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	f()
}

// tracker counts the writes of one message across the streams it was
// queued to and reports once all of them have written it or failed.
type tracker struct {
	pending atomic.Int64 // 1 for the sender until it calls release, +1 per queued stream
	failed  atomic.Int64
	written atomic.Int64
	done    func(written, failed int64)
}

func newTracker(done func(written, failed int64)) *tracker {
	t := &tracker{done: done}
	t.pending.Store(1)
	return t
}

// settle records one stream's outcome.
func (t *tracker) settle(ok bool) {
	if ok {
		t.written.Add(1)
	} else {
		t.failed.Add(1)
	}
	t.release()
}

// release drops one hold; the last one reports.
func (t *tracker) release() {
	if t.pending.Add(-1) == 0 {
		t.done(t.written.Load(), t.failed.Load())
	}
}

// settleAll records the outcome of every tracked message in batch.
func settleAll(batch []*message, ok bool) {
	for _, m := range batch {
		if m.track != nil {
			m.track.settle(ok)
		}
	}
}
