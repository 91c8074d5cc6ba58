package sfere

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// A held stream is one whose connection the hub took over from net/http
// after the request was parsed (HTTP/1.1 without TLS). net/http's
// per-connection goroutines and buffers are then gone: what is left is
// the socket, the stream's queue, and one goroutine blocked in a read
// that notices the client closing (hold). The hub's writers (writers.go)
// drain the queues of streams with news, each queue in one write.
//
// The response is chunked, as net/http would send it, so that a client
// can tell a stream the server ended (the last chunk arrives) from a
// broken connection (it does not): the Datastar client reconnects after
// the latter only. The connection closes when the stream ends.

// heldConn is the taken-over connection of a held stream.
type heldConn struct {
	nc      net.Conn        // the connection, unwrapped from Listen's
	raw     syscall.RawConn // for writes that never wait; nil: every write goes slow
	writers *writers

	// scheduled is set while the stream is on the writers' queue or being
	// written, so it has one writer at a time; slow while that writer
	// waits for the client (Hub.writeSlow). closing is set once the
	// stream has ended: whoever then holds scheduled closes the
	// connection (Hub.release). Guarded by Stream.mu.
	scheduled, slow, closing bool
	// broken is set when a write failed or the socket took part of a
	// chunk: the response cannot end with its last chunk. Only the
	// goroutine holding scheduled touches it.
	broken bool
	// spare is the writer's second batch slice (see Hub.drain); only the
	// goroutine that holds scheduled touches it.
	spare []*message
	// writeErr is a write's error left for the reader to report, when the
	// connection is dead and the read may know more (see Hub.failWrite).
	writeErr atomic.Pointer[error]
}

// MaxClientData is how many bytes the client of a held stream may send
// after its request (a body the handler did not read, say) before the
// stream is closed with [ErrClientData]; they are read and dropped.
const MaxClientData = 64 << 10

// aLongTimeAgo is a deadline in the past: setting it interrupts a read.
var aLongTimeAgo = time.Unix(1, 0)

// interrupt wakes the stream's reader so that it looks at why to end.
func (c *heldConn) interrupt() { _ = c.nc.SetReadDeadline(aLongTimeAgo) }

// canHold reports whether the hub may take the response's connection
// over. It may only over HTTP/1.1 (HTTP/1.0 has no chunking; HTTP/2
// cannot be hijacked) without TLS, and not when a middleware has set a
// content coding (its writer would have encoded the body) or the writer
// cannot be hijacked.
func (h *Hub) canHold(w http.ResponseWriter, r *http.Request) (http.Hijacker, bool) {
	if h.noHijack || r.ProtoMajor != 1 || r.ProtoMinor < 1 || r.TLS != nil || w.Header().Get("Content-Encoding") != "" {
		return nil, false
	}
	hj, ok := w.(http.Hijacker)
	return hj, ok
}

// takeOver hijacks the connection and writes the response head (status,
// the headers set on w, Connection: close) under the write timeout. On
// error the connection is closed.
func (h *Hub) takeOver(hj http.Hijacker, w http.ResponseWriter) (*heldConn, error) {
	nc, _, err := hj.Hijack()
	if err != nil {
		return nil, fmt.Errorf("sfere: response cannot stream: %w", err)
	}
	// Bytes net/http read ahead (a pipelined request) are dropped with its
	// reader: the response ends the connection.
	if c, ok := nc.(*conn); ok {
		nc = c.Conn
	}
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\nDate: ")
	head.WriteString(time.Now().UTC().Format(http.TimeFormat))
	head.WriteString("\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n")
	hdr := w.Header()
	_ = hdr.WriteSubset(&head, map[string]bool{"Connection": true, "Content-Length": true, "Transfer-Encoding": true, "Date": true})
	head.WriteString("\r\n")
	if h.writeTimeout > 0 {
		_ = nc.SetWriteDeadline(time.Now().Add(h.writeTimeout))
	}
	if _, err := nc.Write(head.Bytes()); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("sfere: response cannot stream: %w", writeError(err))
	}
	// The writers' writes never wait, and a deadline left here would fail
	// them once it passed.
	_ = nc.SetWriteDeadline(time.Time{})
	c := &heldConn{nc: nc, writers: &h.writers}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil && canTryWrite {
			c.raw = raw
		}
	}
	return c, nil
}

// newHeldStream returns a stream over c whose first batch is first,
// already scheduled: the caller hands it to the writers once it is stored.
func newHeldStream(key Key, maxQueue int, c *heldConn, first *message) *Stream {
	c.scheduled = true
	return &Stream{
		key:      key,
		maxQueue: maxQueue,
		held:     c,
		queue:    []*message{first},
		queued:   len(first.data),
		done:     make(chan struct{}),
		finished: make(chan struct{}),
	}
}

// hold is a held stream's life after it was stored: it reads the
// connection until the client closes it or something interrupts the read
// (an eviction, Shutdown, the request's context if ctx is not nil, a
// failed write), ends the stream if it was not evicted, waits for the
// eviction callback, and closes the connection. Whatever was still queued
// is never written.
func (h *Hub) hold(ctx context.Context, s *Stream) {
	defer h.active.Done()
	c := s.held
	var (
		buf  [64]byte
		sent int   // bytes the client sent after its request
		why  error // why the stream ends itself; nil if it was evicted
	)
	for {
		if s.evicted() {
			break
		}
		if why = h.heldEnded(ctx, c); why != nil {
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
			why = readEnded(c, err)
		}
		if why != nil {
			break
		}
	}
	h.endStream(s, why)
	// Close the connection, or have its writer close it once its write
	// returns; a writer waiting for a slow client is cut short.
	s.mu.Lock()
	c.closing = true
	mine := !c.scheduled
	c.scheduled = true
	if c.slow {
		_ = c.nc.SetWriteDeadline(aLongTimeAgo)
	}
	s.mu.Unlock()
	if mine {
		c.close()
	}
}

// lastChunk ends a chunked response.
var lastChunk = []byte("0\r\n\r\n")

// close ends the response with its last chunk, if the socket takes it now
// and the chunks before it were whole, and closes the connection. Only
// the goroutine holding scheduled calls it, once.
func (c *heldConn) close() {
	switch {
	case c.broken:
	case c.raw != nil:
		_, _ = newRawWriter().try(c.raw, lastChunk)
	default:
		_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
		_, _ = c.nc.Write(lastChunk)
	}
	_ = c.nc.Close()
}

// heldEnded says why a held stream must stop for a reason other than its
// reader's, if it must: the hub shuts down, the request's context ended
// (Serve), or a write failed.
func (h *Hub) heldEnded(ctx context.Context, c *heldConn) error {
	if err := h.ended(ctx); err != nil {
		return err
	}
	if werr := c.writeErr.Load(); werr != nil {
		return writeError(*werr)
	}
	return nil
}

// readEnded says why the client's side of a held connection ended: TCP
// gave up on the peer (ETIMEDOUT: the user timeout), or the client closed
// it. A write that failed meanwhile is reported with it.
func readEnded(c *heldConn, err error) error {
	vanished := errors.Is(err, syscall.ETIMEDOUT)
	switch werr := c.writeErr.Load(); {
	case werr != nil && vanished:
		return peerVanished(writeError(*werr), err)
	case werr != nil:
		return writeError(*werr)
	case vanished:
		return peerVanished(ErrClientGone, err)
	default:
		return ErrClientGone
	}
}
