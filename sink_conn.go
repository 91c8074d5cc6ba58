package sfere

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A taken-over connection is one the hub took from net/http once the
// request was parsed (HTTP/1.1 without TLS; net/http calls this
// hijacking). net/http's per-connection goroutines and buffers are then
// gone: what is left is the socket, the stream's queue, and one goroutine
// blocked in a read that notices the client closing (Hub.watch); the
// hub's writers (writers.go) write the queue.
//
// The response is chunked, as net/http would send it, so that a client
// can tell a stream the server ended (the last chunk arrives) from a
// broken connection (it does not): the Datastar client reconnects after
// the latter only.

// connState is where a taken-over connection is in its life: who may
// write to the socket, and who closes it. Every change goes through
// [connSink.step].
//
//	        wake                   the socket is full
//	idle ---------> busy -------------------------------> waiting
//	 ^               |                                       |
//	 +---- done -----+<------------------ done --------------+
//
//	end, from idle:            -> closed   (the one who ended closes the socket)
//	end, from busy or waiting: -> ending   (a waiting write is cut short)
//	done, from ending:         -> closed   (the writer closes the socket)
//	full socket, from ending:  the writer drops its batch, then done
//
// One writer at a time holds a busy or waiting connection; after done the
// writer looks at the queue again and wakes the connection if more came.
// closed is final. A connection starts busy, held by the goroutine serving
// the stream until the response head is written (Hub.writeHead), so that
// the stream can be stored first and no writer writes before the head.
type connState uint8

const (
	connIdle    connState = iota // no writer holds it
	connBusy                     // on the writers' queue, or a writer writes without waiting
	connWaiting                  // a writer waits for the client to take the rest (Hub.writeSlow)
	connEnding                   // the stream ended while a writer held it; that writer closes
	connClosed                   // the socket is closed
)

// connEvent is what happens to a taken-over connection.
type connEvent uint8

const (
	evWake connEvent = iota // the queue has news
	evFull                  // the writer's write must wait for the socket
	evDone                  // the writer lets go: its batch is written or failed
	evEnd                   // the stream is over: close once no writer holds the socket
)

// connAction is what the caller of [connSink.step] must do next.
type connAction uint8

const (
	doNothing  connAction = iota
	doSchedule            // hand the connection to the writers
	doWait                // wait for the socket (the write deadline is set)
	doDrop                // the stream ended: fail the batch, then done
	doCut                 // cut the waiting write short
	doClose               // close the socket: the caller is its last user
)

// connSink writes a stream over a taken-over connection.
type connSink struct {
	s       *Stream
	nc      net.Conn        // the connection, unwrapped from Listen's
	raw     syscall.RawConn // for writes that never wait; nil: every write waits (writeSlow)
	writers *writers

	mu    sync.Mutex
	state connState

	// Owned by the writer that holds the connection, then by whoever
	// closes it (the state machine hands it over under mu).
	broken bool        // a write failed or left part of a chunk: no last chunk
	spare  []*message  // the writer's second batch slice (see Hub.drain)
	gz     *gzipStream // the stream's gzip state; nil: not compressed

	// writeErr is why a writer found the stream must end (a failed
	// write's error, an overflow, a close-stream written), left for the
	// reader, which ends the stream with it (see Hub.wrote): the store's
	// eviction callback then runs on the reader's goroutine, never on a
	// writer shared by every stream. Set once: nothing is written after
	// it.
	writeErr atomic.Pointer[error]
	// verdict, if not nil, is closed when the writer holding the
	// connection lets go, for a reader waiting on it (readFailure).
	// Guarded by mu.
	verdict chan struct{}
}

// step applies ev to the connection's state and says what the caller
// must do. It is the only place the state changes.
func (c *connSink) step(ev connEvent) connAction {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ev == evDone && c.verdict != nil {
		close(c.verdict)
		c.verdict = nil
	}
	switch st := c.state; {
	case ev == evWake && st == connIdle:
		c.state = connBusy
		return doSchedule
	case ev == evFull && st == connBusy:
		c.state = connWaiting
		return doWait
	case ev == evFull && st == connEnding:
		return doDrop
	case ev == evDone && (st == connBusy || st == connWaiting):
		c.state = connIdle
		return doNothing
	case ev == evDone && st == connEnding:
		c.state = connClosed
		return doClose
	case ev == evEnd && st == connIdle:
		c.state = connClosed
		return doClose
	case ev == evEnd && st == connBusy:
		c.state = connEnding
		return doNothing
	case ev == evEnd && st == connWaiting:
		c.state = connEnding
		return doCut
	}
	return doNothing // a wake while held or closed
}

func (c *connSink) wake(b *wakeBatch) {
	if c.step(evWake) != doSchedule {
		return
	}
	if b != nil {
		b.add(c)
		return
	}
	c.writers.schedule(c)
}

// endWith has the stream's reader end it with why (see writeErr); a
// writer calls it at most once, for the connection it holds.
func (c *connSink) endWith(why error) {
	c.writeErr.Store(&why)
	c.interrupt()
}

// aLongTimeAgo is a deadline in the past: setting it interrupts a read
// or a write.
var aLongTimeAgo = time.Unix(1, 0)

// interrupt wakes the stream's reader so that it looks at why to end.
func (c *connSink) interrupt() { _ = c.nc.SetReadDeadline(aLongTimeAgo) }

// MaxClientData is how many bytes the client of a stream on a taken-over
// connection may send after its request (a body the handler did not read,
// say) before the stream is closed with [ErrClientData]; they are read
// and dropped.
const MaxClientData = 64 << 10

// canTakeOver reports whether the hub may take the response's connection
// over (see Hub.Serve): HTTP/1.0 has no chunking, HTTP/2 cannot be
// hijacked, and a middleware that set a content coding encodes the body.
func (h *Hub) canTakeOver(w http.ResponseWriter, r *http.Request) (http.Hijacker, bool) {
	if h.opts.NoHijack || r.ProtoMajor != 1 || r.ProtoMinor < 1 || r.TLS != nil || w.Header().Get("Content-Encoding") != "" {
		return nil, false
	}
	hj, ok := w.(http.Hijacker)
	return hj, ok
}

// takeOver hijacks the connection and renders the response head (status,
// the headers set on w, Connection: close) for [Hub.writeHead]. The
// connection starts held by the caller (connBusy): no writer writes to it
// before its head, which the caller writes once the stream is stored. On
// error the connection is closed.
func (h *Hub) takeOver(hj http.Hijacker, w http.ResponseWriter) (c *connSink, head []byte, err error) {
	nc, _, err := hj.Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("sfere: response cannot stream: %w", err)
	}
	// Bytes net/http read ahead (a pipelined request) are dropped with its
	// reader: the response ends the connection.
	if c, ok := nc.(*conn); ok {
		nc = c.Conn
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "HTTP/1.1 200 OK\r\nDate: %s\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n", time.Now().UTC().Format(http.TimeFormat))
	_ = w.Header().WriteSubset(&buf, map[string]bool{"Connection": true, "Content-Length": true, "Transfer-Encoding": true, "Date": true})
	buf.WriteString("\r\n")
	c = &connSink{nc: nc, writers: &h.writers, state: connBusy}
	if sc, ok := nc.(syscall.Conn); ok && canTryWrite {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	return c, buf.Bytes(), nil
}

// writeHead writes the response head of a stream already stored, under
// the write timeout, and lets the writers have the connection (held since
// takeOver): whatever was queued meanwhile follows the head. A client
// that has the head is thus sent every event queued after it. If the head
// cannot be written, the stream's reader ends the stream with why
// (Hub.watch), without a last chunk.
func (h *Hub) writeHead(c *connSink, head []byte) {
	if h.opts.WriteTimeout > 0 {
		_ = c.nc.SetWriteDeadline(time.Now().Add(h.opts.WriteTimeout))
	}
	_, err := c.nc.Write(head)
	// The writers' writes never wait, and a deadline left here would fail
	// them once it passed.
	_ = c.nc.SetWriteDeadline(time.Time{})
	if err != nil {
		c.broken = true
		c.endWith(writeError(err))
	}
	c.step(evDone) // busy to idle: nothing else can have changed it yet
	if err == nil {
		c.wake(nil)
	}
}

// watch is a taken-over stream's life after it was stored: it reads the
// connection until the client closes it or something interrupts the read
// (an eviction, Shutdown, the request's context if ctx is not nil, a
// failed write), ends the stream if it was not evicted, and closes the
// connection or leaves that to the writer holding it.
func (h *Hub) watch(ctx context.Context, c *connSink) {
	defer h.active.Done()
	var (
		buf  [64]byte
		sent int   // bytes the client sent after its request
		why  error // why the stream ends itself; nil if it was evicted
	)
	for why == nil && !c.s.evicted() {
		if why = h.stopReason(ctx); why != nil {
			break
		}
		if werr := c.writeErr.Load(); werr != nil {
			why = *werr
			break
		}
		k, err := c.nc.Read(buf[:])
		sent += k
		switch {
		case err == nil && sent > MaxClientData:
			why = fmt.Errorf("%w: more than %d bytes", ErrClientData, MaxClientData)
		case err == nil:
			// A client of a stream has nothing to say; what it sends
			// anyway (a request body nobody read) is dropped.
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Interrupted: the checks above say why.
		default:
			why = c.readFailure(err, h.verdictWait)
		}
	}
	h.retire(c.s, why)
	switch c.step(evEnd) {
	case doClose:
		c.close()
	case doCut:
		_ = c.nc.SetWriteDeadline(aLongTimeAgo)
	}
}

// readFailure says why the client's side of the connection ended: TCP
// gave up on the peer (ETIMEDOUT: the user timeout), or the client closed
// it. A failed write's error is reported with it; a writer that holds the
// connection is waited for first, at most wait (see readerVerdictWait).
func (c *connSink) readFailure(err error, wait time.Duration) error {
	c.mu.Lock()
	if c.state == connBusy || c.state == connWaiting {
		c.verdict = make(chan struct{})
	}
	verdict := c.verdict
	c.mu.Unlock()
	if verdict != nil {
		awaitVerdict(verdict, wait)
	}
	vanished := errors.Is(err, syscall.ETIMEDOUT)
	switch werr := c.writeErr.Load(); {
	case werr != nil && vanished:
		return peerVanished(*werr, err)
	case werr != nil:
		return *werr
	case vanished:
		return peerVanished(ErrClientGone, err)
	default:
		return ErrClientGone
	}
}

// lastChunk ends a chunked response.
var lastChunk = []byte("0\r\n\r\n")

// close ends the response with its last chunk, if the chunks before it
// were whole and the socket takes it now, and closes the connection. Only
// the caller that [connSink.step] told to (doClose) calls it.
func (c *connSink) close() {
	end := lastChunk
	if c.gz != nil && c.gz.started {
		// A compressed stream's gzip member ends first (compress_stream.go).
		end = append(appendChunk(nil, c.gz.appendTrailer(nil)), lastChunk...)
	}
	switch {
	case c.broken:
	case c.raw != nil:
		_, _ = newRawWriter().try(c.raw, end)
	default:
		_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
		_, _ = c.nc.Write(end)
	}
	_ = c.nc.Close()
}
