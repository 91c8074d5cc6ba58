package sfere

import (
	"errors"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// writers drain the queues of held streams (held.go). A stream with news
// is put on one FIFO queue (once: see Stream.claim); up to two goroutines
// per CPU take streams off it and write everything queued for each in
// one write that never waits. Two per CPU, because a write to a socket is
// a system call that the OS may suspend: another writer then keeps the
// CPU busy (measured at 10k streams on 2 CPUs: one broadcast 1.31x raw
// TCP with one writer per CPU, 1.16x and, in a second session, 1.23x
// with two). A socket whose buffer is full is handed to a goroutine of
// its own that waits, under the write timeout, until the client takes
// the rest: a slow client never holds up the others. The goroutines
// exist only while there is work: none is left idle.
type writers struct {
	hub *Hub
	max int

	mu      sync.Mutex
	queue   []*Stream
	next    int // index in queue of the next stream to write
	running int

	states sync.Pool // *writerState
}

// writerState is what one writer goroutine reuses from write to write.
type writerState struct {
	buf []byte // the chunk being written
	raw *rawWriter
}

func (w *writers) init(h *Hub) {
	w.hub = h
	w.max = 2 * max(1, runtime.GOMAXPROCS(0))
	w.states.New = func() any { return &writerState{raw: newRawWriter()} }
}

// schedule queues streams for writing and starts writers for them, up to
// the limit. Each stream must have been claimed (Stream.claim).
func (w *writers) schedule(ss ...*Stream) {
	w.mu.Lock()
	w.queue = append(w.queue, ss...)
	start := min(w.max-w.running, len(w.queue)-w.next)
	w.running += start
	w.mu.Unlock()
	for range start {
		go w.run()
	}
}

// pop takes the next stream off the queue. When it is empty the calling
// writer is counted out and pop returns nil: it must exit.
func (w *writers) pop() *Stream {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.next == len(w.queue) {
		w.queue, w.next = w.queue[:0], 0
		w.running--
		return nil
	}
	s := w.queue[w.next]
	w.queue[w.next] = nil
	w.next++
	// Under steady load the queue may never run empty: drop the taken
	// front now and then, so it does not grow for ever.
	if w.next >= 1024 && w.next*2 >= len(w.queue) {
		n := copy(w.queue, w.queue[w.next:])
		clear(w.queue[n:])
		w.queue, w.next = w.queue[:n], 0
	}
	return s
}

func (w *writers) run() {
	ws := w.states.Get().(*writerState)
	for s := w.pop(); s != nil; s = w.pop() {
		w.hub.drain(s, ws)
	}
	if cap(ws.buf) > 1<<20 {
		ws.buf = nil // one huge batch does not pin its buffer
	}
	w.states.Put(ws)
}

// drain writes what is queued for s in one write that does not wait. What
// the socket does not take now goes on in writeSlow.
func (h *Hub) drain(s *Stream, ws *writerState) {
	c := s.held
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		h.release(s) // its reader settles what is left
		return
	}
	// The spare slice becomes the queue, and the batch becomes the spare
	// once written (Hub.wrote): two slices take turns, so steady traffic
	// allocates nothing. Until then there is no spare.
	batch := s.queue
	s.queue, c.spare = c.spare[:0], nil
	s.queued = 0
	abort := s.abortErr
	s.mu.Unlock()
	if abort != nil || c.writeErr.Load() != nil {
		settleAll(batch, false)
		if abort != nil {
			h.store.PurgeStream(s, CauseClosed, abort)
		}
		h.release(s)
		return
	}
	data, n := join(ws.buf[:0], batch)
	ws.buf = data
	start := time.Now()
	k, err := ws.raw.try(c.raw, data)
	switch {
	case err != nil:
		settleAll(batch, false)
		h.failWrite(s, err)
	case k < len(data):
		if k > 0 {
			c.broken = true // until the rest is written
		}
		go h.writeSlow(s, append([]byte(nil), data[k:]...), batch, n, start)
	default:
		h.wrote(s, batch, n, start)
	}
}

// join appends the data of batch to dst as one HTTP chunk, up to and
// including a close-stream message, and returns it with the number of
// messages joined. Batches with no bytes give no chunk (an empty chunk
// would end the response).
func join(dst []byte, batch []*message) ([]byte, int) {
	n, size := len(batch), 0
	for i, m := range batch {
		size += len(m.data)
		if m.close {
			n = i + 1
			break
		}
	}
	if size == 0 {
		return dst, n
	}
	dst = strconv.AppendInt(dst, int64(size), 16)
	dst = append(dst, "\r\n"...)
	for _, m := range batch[:n] {
		dst = append(dst, m.data...)
	}
	return append(dst, "\r\n"...), n
}

// writeSlow writes the rest of a batch to a client whose socket buffer was
// full, waiting at most the write timeout, then goes back to the writers.
func (h *Hub) writeSlow(s *Stream, rest []byte, batch []*message, n int, start time.Time) {
	c := s.held
	s.mu.Lock()
	if c.closing { // the stream ended: its reader left the closing to us
		s.mu.Unlock()
		settleAll(batch, false)
		h.release(s)
		return
	}
	c.slow = true
	if h.writeTimeout > 0 {
		_ = c.nc.SetWriteDeadline(time.Now().Add(h.writeTimeout))
	}
	s.mu.Unlock()
	_, err := c.nc.Write(rest)
	s.mu.Lock()
	c.slow = false
	s.mu.Unlock()
	if err != nil {
		settleAll(batch, false)
		h.failWrite(s, err)
		return
	}
	c.broken = false
	// Back to writes that never wait: a deadline left in place would
	// fail them once it passed.
	_ = c.nc.SetWriteDeadline(time.Time{})
	h.wrote(s, batch, n, start)
}

// wrote records a written batch (n messages of it written; a close-stream
// message ends the stream) and hands the stream back to the writers if
// more was queued meanwhile.
func (h *Hub) wrote(s *Stream, batch []*message, n int, start time.Time) {
	c := s.held
	settleAll(batch[:n], true)
	settleAll(batch[n:], false)
	if carriesApp(batch[:n]) {
		s.lastAppWrite.Store(start.UnixNano())
	}
	h.store.Touch(s)
	if n > 0 && batch[n-1].close {
		h.store.PurgeStream(s, CauseClosed, ErrClosedByApp)
	} else {
		clear(batch)
		c.spare = batch[:0]
	}
	h.release(s)
}

// release is how the writer holding a stream (see heldConn.scheduled)
// lets go of it: it hands the stream back to the writers if more was
// queued meanwhile, closes the connection if the stream has ended and
// its reader left that to the writer, or marks the stream idle.
func (h *Hub) release(s *Stream) {
	c := s.held
	s.mu.Lock()
	again := !s.ended && c.writeErr.Load() == nil && (len(s.queue) > 0 || s.abortErr != nil)
	closing := c.closing
	c.scheduled = again || closing
	s.mu.Unlock()
	switch {
	case closing:
		c.close()
	case again:
		h.writers.schedule(s)
	}
}

// failWrite ends a held stream whose write failed. A write that finds the
// connection dead (EPIPE, ECONNRESET) leaves the verdict to the stream's
// reader, which wakes by itself on a dead connection and may learn more:
// once TCP gave up on a peer (the user timeout), the kernel reports
// ETIMEDOUT to one call only, often the read, and EPIPE to the others.
// The reader is interrupted anyway after a moment, in case it does not.
func (h *Hub) failWrite(s *Stream, err error) {
	c := s.held
	c.broken = true
	if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		if c.writeErr.CompareAndSwap(nil, &err) {
			time.AfterFunc(50*time.Millisecond, c.interrupt)
		}
	} else {
		h.store.PurgeStream(s, CauseClosed, writeError(err))
	}
	h.release(s)
}
