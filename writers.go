package sfere

import (
	"errors"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// writers drain the queues of streams on taken-over connections
// (sink_conn.go). A connection with news is put on one FIFO queue (once:
// see connSink.step); up to two goroutines per CPU take connections off
// it and write everything queued for each in one write that never waits.
// Two per CPU, because a write to a socket is a system call that the OS
// may suspend: another writer then keeps the CPU busy (see
// bench/BENCHMARKS.md). A socket whose buffer is full is handed to a
// goroutine of its own that waits, under the write timeout, until the
// client takes the rest: a slow client never holds up the others. The
// goroutines exist only while there is work: none is left idle.
type writers struct {
	hub *Hub
	max int

	mu      sync.Mutex
	queue   []*connSink
	next    int // index in queue of the next connection to write
	running int

	states sync.Pool // *writerState
}

// wakeBatch gathers the connections a broadcast wakes and hands them to
// the writers a few at a time: one lock of the writers' queue per chunk,
// and the first writes start early.
type wakeBatch struct {
	w *writers
	n int
	c [64]*connSink
}

func (b *wakeBatch) add(c *connSink) {
	b.c[b.n] = c
	b.n++
	if b.n == len(b.c) {
		b.flush()
	}
}

// flush schedules what was gathered.
func (b *wakeBatch) flush() {
	if b.n > 0 {
		b.w.schedule(b.c[:b.n]...)
		clear(b.c[:b.n])
		b.n = 0
	}
}

type writerState struct {
	buf []byte // the chunk being written
	zip []byte // a compressed stream's bytes, before they are framed as a chunk
	raw *rawWriter
}

func (w *writers) init(h *Hub) {
	w.hub = h
	w.max = 2 * max(1, runtime.GOMAXPROCS(0))
	w.states.New = func() any { return &writerState{raw: newRawWriter()} }
}

// schedule queues connections for writing and starts writers for them,
// up to the limit. Each must have been woken (connSink.step said
// doSchedule).
func (w *writers) schedule(cs ...*connSink) {
	w.mu.Lock()
	w.queue = append(w.queue, cs...)
	start := min(w.max-w.running, len(w.queue)-w.next)
	w.running += start
	w.mu.Unlock()
	for range start {
		go w.run()
	}
}

// pop takes the next connection off the queue. When it is empty the
// calling writer is counted out and pop returns nil: it must exit.
func (w *writers) pop() *connSink {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.next == len(w.queue) {
		w.queue, w.next = w.queue[:0], 0
		w.running--
		return nil
	}
	c := w.queue[w.next]
	w.queue[w.next] = nil
	w.next++
	// Under steady load the queue may never run empty: drop the taken
	// front now and then, so it does not grow for ever.
	if w.next >= 1024 && w.next*2 >= len(w.queue) {
		n := copy(w.queue, w.queue[w.next:])
		clear(w.queue[n:])
		w.queue, w.next = w.queue[:n], 0
	}
	return c
}

func (w *writers) run() {
	ws := w.states.Get().(*writerState)
	for c := w.pop(); c != nil; c = w.pop() {
		w.hub.drain(c, ws)
	}
	if cap(ws.buf) > 1<<20 {
		ws.buf = nil // one huge batch does not pin its buffer
	}
	if cap(ws.zip) > 1<<20 {
		ws.zip = nil
	}
	w.states.Put(ws)
}

// drain writes what is queued for c's stream in one write that does not
// wait. What the socket does not take now goes on in writeSlow.
func (h *Hub) drain(c *connSink, ws *writerState) {
	// The spare slice becomes the queue, and the batch becomes the spare
	// once written (Hub.wrote): two slices take turns, so steady traffic
	// allocates nothing. Until then there is no spare.
	batch, err := c.s.take(c.spare)
	c.spare = nil
	if err != nil || c.writeErr.Load() != nil {
		// The reader ends an evicted stream (ErrStreamEnded) and one whose
		// write failed; an overflow ends here, without the last chunk: the
		// client takes it for a broken connection and reconnects (with a
		// history, from where it was).
		settleAll(batch, false)
		if err != nil && !errors.Is(err, ErrStreamEnded) && c.writeErr.Load() == nil {
			c.broken = true
			c.endWith(err)
		}
		h.letGo(c)
		return
	}
	var data []byte
	var n int
	if c.gz != nil {
		n = upToClose(batch)
		ws.zip = c.gz.appendMessages(ws.zip[:0], batch[:n])
		data = appendChunk(ws.buf[:0], ws.zip)
	} else {
		data, n = join(ws.buf[:0], batch)
	}
	ws.buf = data
	start := time.Now()
	k, err := ws.raw.try(c.raw, data)
	switch {
	case err == nil && k < len(data):
		if k > 0 {
			c.broken = true // until the rest is written
		}
		go h.writeSlow(c, append([]byte(nil), data[k:]...), batch, n, start)
	case err != nil:
		h.wrote(c, batch, 0, start, err)
	default:
		h.wrote(c, batch, n, start, nil)
	}
}

// join appends the data of batch up to a close-stream message to dst as
// one HTTP chunk, and returns it with the number of messages joined.
// Batches with no bytes give no chunk (an empty chunk would end the
// response).
func join(dst []byte, batch []*message) ([]byte, int) {
	n, size := upToClose(batch), 0
	for _, m := range batch[:n] {
		size += len(m.data)
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

// appendChunk appends data to dst as one HTTP chunk (none if data is
// empty: an empty chunk would end the response).
func appendChunk(dst, data []byte) []byte {
	if len(data) == 0 {
		return dst
	}
	dst = strconv.AppendInt(dst, int64(len(data)), 16)
	dst = append(dst, "\r\n"...)
	dst = append(dst, data...)
	return append(dst, "\r\n"...)
}

// writeSlow writes the rest of a batch to a client whose socket buffer was
// full, waiting at most the write timeout, then goes back to the writers.
func (h *Hub) writeSlow(c *connSink, rest []byte, batch []*message, n int, start time.Time) {
	// The deadline is set before the state says waiting, so that an end
	// that cuts the write short (doCut) is never overwritten.
	if h.opts.WriteTimeout > 0 {
		_ = c.nc.SetWriteDeadline(time.Now().Add(h.opts.WriteTimeout))
	}
	if c.step(evFull) == doDrop {
		settleAll(batch, false)
		h.letGo(c)
		return
	}
	if _, err := c.nc.Write(rest); err != nil {
		h.wrote(c, batch, 0, start, err)
		return
	}
	c.broken = false
	// Back to writes that never wait: a deadline left in place would
	// fail them once it passed.
	_ = c.nc.SetWriteDeadline(time.Time{})
	h.wrote(c, batch, n, start, nil)
}

// wrote finishes a write of batch (n messages of it written, or err):
// the rule every write follows (Hub.afterWrite), then the connection's
// part, and the writer lets go. A failed write leaves its error to the
// reader, which ends the stream: at once, or after readerVerdictWait if
// the reader may know more. Its verdict is in place before the writer
// lets go, for a reader that waits for it (connSink.readFailure). A
// stream that must end after a good write (a close-stream written) is
// ended by its reader too: no writer ever ends a stream itself, so the
// store's eviction callback never runs on the shared writers.
func (h *Hub) wrote(c *connSink, batch []*message, n int, start time.Time, err error) {
	why := h.afterWrite(c.s, batch, n, start, err)
	switch {
	case err != nil:
		c.broken = true
		// Its own variable: only a failed write allocates, once (the
		// writers write no more to the connection after it).
		werr := why
		c.writeErr.Store(&werr)
		if awaitsReader(err) {
			time.AfterFunc(h.verdictWait, c.interrupt)
		} else {
			c.interrupt()
		}
	case why != nil:
		c.endWith(why)
	default:
		clear(batch)
		c.spare = batch[:0]
	}
	h.letGo(c)
}

// letGo is how the writer holding c lets go of it: it closes the
// connection if the stream ended meanwhile, and wakes it again if more
// was queued.
func (h *Hub) letGo(c *connSink) {
	if c.step(evDone) == doClose {
		c.close()
		return
	}
	if c.writeErr.Load() == nil && c.s.pending() {
		c.wake(nil)
	}
}
