package sfere

import (
	"errors"
	"sync"
	"sync/atomic"
)

// ErrStreamEnded is returned when a message is sent to a stream that has
// already ended.
var ErrStreamEnded = errors.New("sfere: stream ended")

// Stream is one live SSE response, held in a [Store] under its key.
// Senders put rendered messages in its bounded queue and never wait for
// the client. One writer at a time drains the queue: the stream's
// [Hub.Serve] goroutine on net/http's path, or the hub's writers for a
// connection the hub took over (see held.go).
type Stream struct {
	key      Key
	maxQueue int // bytes; 0 means unbounded

	mu       sync.Mutex
	queue    []*message
	queued   int   // bytes in queue
	ended    bool  // set by end: the queue takes nothing more
	abortErr error // set when the queue overflowed; the writer ends the stream

	lastAppWrite atomic.Int64 // unix nanos: start of the last successful write of app traffic

	held *heldConn // the taken-over connection; nil on net/http's path

	afterEnd []func() // run by finish; guarded by mu
	fired    bool     // finish ran; guarded by mu

	wake     chan struct{} // buffered(1): the queue has news for Serve (net/http's path only)
	done     chan struct{} // closed by end: the stream was evicted
	finished chan struct{} // closed by finish: the eviction callback returned
	cause    Cause         // set by end, read after done
	err      error         // set by end, read after done
}

// newStream returns a stream for net/http's path: its Serve goroutine
// waits on wake.
func newStream(key Key, maxQueue int) *Stream {
	return &Stream{
		key:      key,
		maxQueue: maxQueue,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		finished: make(chan struct{}),
	}
}

// Key returns the key the stream is stored under.
func (s *Stream) Key() Key { return s.key }

// Done is closed when the stream has been evicted from its store.
func (s *Stream) Done() <-chan struct{} { return s.done }

// enqueue hands m to the stream's writer. It never blocks on the client:
// a stream whose queue would pass its limit is marked for closing instead
// (cause closed, [ErrSlowClient]).
func (s *Stream) enqueue(m *message) error {
	kick, err := s.put(m)
	if kick {
		s.kick()
	}
	return err
}

// put queues m and reports whether the writer must be kicked (see kick);
// [Hub.publish] gathers the kicks of a broadcast.
func (s *Stream) put(m *message) (kick bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.ended:
		return false, ErrStreamEnded
	case s.abortErr != nil:
		return false, s.abortErr
	case s.maxQueue > 0 && s.queued > 0 && s.queued+len(m.data) > s.maxQueue:
		// The writer ends the stream when it sees abortErr.
		s.abortErr = ErrSlowClient
		return s.claim(), ErrSlowClient
	}
	s.queue = append(s.queue, m)
	s.queued += len(m.data)
	if m.track != nil {
		m.track.add()
	}
	return s.claim(), nil
}

// claim reports whether the caller must kick the writer. A held stream is
// kicked only when it is not already on the writers' queue or being
// written; Serve's wake channel takes any number of signals. s.mu is held.
func (s *Stream) claim() bool {
	if s.held == nil {
		return true
	}
	if s.held.scheduled {
		return false
	}
	s.held.scheduled = true
	return true
}

// kick tells the stream's writer that its queue has news.
func (s *Stream) kick() {
	if s.held != nil {
		s.held.writers.schedule(s)
		return
	}
	s.signal()
}

// signal wakes Serve on net/http's path, or interrupts the read that
// holds a taken-over connection, so that it looks at why it should end.
func (s *Stream) signal() {
	if s.held != nil {
		s.held.interrupt()
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take swaps the queue for spare (emptied) and returns what was queued,
// with the overflow error if the stream must end.
func (s *Stream) take(spare []*message) ([]*message, error) {
	s.mu.Lock()
	batch := s.queue
	s.queue = spare[:0]
	s.queued = 0
	err := s.abortErr
	s.mu.Unlock()
	return batch, err
}

// end marks the stream evicted; only a store's deliver calls it.
func (s *Stream) end(cause Cause, err error) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.cause, s.err = cause, err
	s.mu.Unlock()
	close(s.done)
	s.signal() // Serve waits on wake alone; a held stream's reader is interrupted
}

// evicted reports whether end was called.
func (s *Stream) evicted() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// finish releases the stream's Serve once the eviction callback returned,
// then runs the functions given to AfterEnd.
func (s *Stream) finish() {
	s.mu.Lock()
	if s.fired {
		s.mu.Unlock()
		return
	}
	s.fired = true
	fns := s.afterEnd
	s.afterEnd = nil
	s.mu.Unlock()
	close(s.finished)
	for _, f := range fns {
		f()
	}
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

func (t *tracker) add() { t.pending.Add(1) }

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
