package sfere

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// httpSink writes a stream through net/http's response writer: over
// HTTP/2, HTTP/1.0 and TLS, behind a middleware that encodes the body,
// and with [HubOptions.NoHijack]. The stream's [Hub.Serve] goroutine is
// its only writer and waits on wakeup for news.
type httpSink struct {
	wakeup chan struct{} // buffered(1)
}

func (k *httpSink) wake(*wakeBatch) { k.interrupt() }

func (k *httpSink) interrupt() {
	select {
	case k.wakeup <- struct{}{}:
	default:
	}
}

// serveHTTP is a stream's life on net/http's response writer: store it,
// write what is queued whenever woken, end when something says so.
func (h *Hub) serveHTTP(w http.ResponseWriter, r *http.Request, key Key, first *message, gz bool) (*Stream, error) {
	if !canFlush(w) {
		return nil, fmt.Errorf("sfere: response cannot stream: %w", http.ErrNotSupported)
	}
	rc := http.NewResponseController(w)
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "keep-alive")
	}
	// net/http holds the head until the first flush, which comes once the
	// stream is stored: a client that has the head is sent every event
	// queued after it.
	w.WriteHeader(http.StatusOK)

	k := &httpSink{wakeup: make(chan struct{}, 1)}
	s := newStream(key, h.opts.MaxQueueBytes, k)
	var z *httpZip
	if gz {
		z = &httpZip{}
		s.compressed = true
	}
	h.admit(s, r, first)

	var (
		ctx      = r.Context()
		failed   bool // a write failed: the body ends broken
		spare    []*message
		deadline time.Time // the write deadline in force; see writeHTTP
		why      error     // why the stream ends itself; nil if it was evicted
	)
	if h.opts.WriteTimeout > 0 {
		deadline = time.Now().Add(h.opts.WriteTimeout)
		_ = rc.SetWriteDeadline(deadline)
	}
	if err := rc.Flush(); err != nil {
		failed, why = true, h.vanishedWrite(ctx, writeError(err))
	}
	// Everything that can end the stream also wakes it, so the loop waits
	// on one channel: the request context (here), an eviction (its sink's
	// interrupt) and Shutdown (which interrupts every stored stream).
	stopWake := context.AfterFunc(ctx, k.interrupt)
	defer stopWake()
	for why == nil {
		if why = h.stopReason(ctx); why != nil || s.evicted() {
			break
		}
		batch, err := s.take(spare)
		if err != nil {
			settleAll(batch, false)
			if !errors.Is(err, ErrStreamEnded) {
				why = err
			}
			break
		}
		if len(batch) > 0 {
			start := time.Now()
			n, err := h.writeHTTP(w, rc, batch, &deadline, start, z)
			failed = err != nil
			if why = h.afterWrite(s, batch, n, start, err); why != nil {
				if err != nil {
					why = h.vanishedWrite(ctx, why)
				}
				break
			}
		}
		// The written batch becomes the spare the queue fills next; the
		// queue's slice comes back as the next batch. Two slices take
		// turns, so steady traffic allocates nothing.
		clear(batch)
		spare = batch[:0]
		if len(batch) == 0 {
			<-k.wakeup
		}
	}
	h.retire(s, why)
	if z != nil && !failed && z.gz.started {
		// The gzip member ends (compress_stream.go) before net/http ends
		// the response: ten bytes, under the write timeout.
		if h.opts.WriteTimeout > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(h.opts.WriteTimeout))
		}
		if _, err := w.Write(z.gz.appendTrailer(nil)); err == nil {
			_ = rc.Flush()
		}
	}
	return s, nil
}

// canFlush reports whether w, or a writer it wraps (Unwrap, as
// [http.ResponseController] follows), can flush.
func canFlush(w http.ResponseWriter) bool {
	for {
		switch t := w.(type) {
		case interface{ FlushError() error }, http.Flusher:
			return true
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return false
		}
	}
}

// httpZip is a compressed stream's state on net/http's response writer.
type httpZip struct {
	gz  gzipStream
	buf []byte // the batch's bytes, reused
}

// writeHTTP writes a batch (up to a close-stream message) under one
// deadline and one flush, and returns how many messages it wrote.
//
// Moving a deadline costs a timer update, so it is moved only once less
// than half the write timeout is left on it: a write may run for at least
// WriteTimeout/2 and at most WriteTimeout.
func (h *Hub) writeHTTP(w http.ResponseWriter, rc *http.ResponseController, batch []*message, deadline *time.Time, now time.Time, z *httpZip) (int, error) {
	if h.opts.WriteTimeout > 0 && deadline.Sub(now) < h.opts.WriteTimeout/2 {
		*deadline = now.Add(h.opts.WriteTimeout)
		// An error means the writer has no deadlines (not a real
		// connection); writes then go on without one.
		_ = rc.SetWriteDeadline(*deadline)
	}
	n := upToClose(batch)
	if z == nil {
		for _, m := range batch[:n] {
			if _, err := w.Write(m.data); err != nil {
				return 0, err
			}
		}
	} else {
		z.buf = z.gz.appendMessages(z.buf[:0], batch[:n])
		_, err := w.Write(z.buf)
		if cap(z.buf) > 1<<20 {
			z.buf = nil // one huge batch does not pin its buffer
		}
		if err != nil {
			return 0, err
		}
	}
	if err := rc.Flush(); err != nil {
		return 0, err
	}
	return n, nil
}

// vanishedWrite adds [ErrPeerVanished] to a failed write's error (see
// readerVerdictWait) when net/http's background read learnt that TCP gave
// up on the peer: it waits for the request's context, which that read
// cancels right after recording the error, at most readerVerdictWait.
func (h *Hub) vanishedWrite(ctx context.Context, err error) error {
	if c, _ := ctx.Value(connKey{}).(*conn); c != nil && c.vanished.Load() == nil && awaitsReader(err) {
		awaitVerdict(ctx.Done(), h.verdictWait)
	}
	return markVanished(ctx, err)
}
