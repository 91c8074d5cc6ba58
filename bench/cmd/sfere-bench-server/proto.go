package main

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sfere-go/sfere"

	"github.com/sfere-go/sfere/bench/internal/wire"
)

// protoMode is a prototype of a change proposed for sfere, not part of the
// library: after net/http has parsed the request, the stream leaves
// net/http (Hijack; the handler returns, so its goroutine, its background
// reader and its three bufio buffers are freed). What is left per stream is
// the socket, a queue, and one small goroutine blocked in a one-byte Read
// that notices the client closing. A few writer goroutines (one per CPU)
// drain the queues of streams that have news, coalescing everything queued
// for a socket into one write that never blocks; a socket whose buffer is
// full is handed to a goroutine of its own that writes under a deadline
// until its queue is empty. The response is identity-coded and ends when
// the connection closes (valid HTTP/1.1; no chunk framing).
type protoMode struct {
	mu       sync.RWMutex
	set      map[*pstream]struct{}
	writeErr map[string]int64 // guarded by mu
	run      chan *pstream    // streams with news, for the writers
	srv      *http.Server
	slow     atomic.Int64 // writes handed to the slow path
}

type pstream struct {
	c  net.Conn
	rc syscall.RawConn

	mu        sync.Mutex
	queue     [][]byte
	queued    int
	scheduled bool // on the run queue, or being written
	dead      bool
}

const protoMaxQueue = 1 << 20

var protoHeader = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\n")

func newProtoMode() *protoMode {
	m := &protoMode{set: make(map[*pstream]struct{}), run: make(chan *pstream, 1<<16), writeErr: make(map[string]int64)}
	for range runtime.GOMAXPROCS(0) {
		go m.writer()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sse", func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, "cannot hijack", http.StatusInternalServerError)
			return
		}
		m.open(c, brw)
	})
	m.srv = newHTTPServer(mux)
	return m
}

func (m *protoMode) open(c net.Conn, brw *bufio.ReadWriter) {
	tc, ok := c.(*net.TCPConn)
	if !ok || brw.Reader.Buffered() > 0 {
		_ = c.Close() // pipelined requests: not a stream client
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		_ = c.Close()
		return
	}
	_ = c.SetWriteDeadline(time.Now().Add(sfere.DefaultWriteTimeout))
	if _, err := c.Write(protoHeader); err != nil {
		_ = c.Close()
		return
	}
	_ = c.SetWriteDeadline(time.Time{}) // writers never wait; a deadline left here would fail them later
	s := &pstream{c: c, rc: rc}
	m.mu.Lock()
	m.set[s] = struct{}{}
	m.mu.Unlock()
	go m.watch(s)
}

// watch is the stream's only goroutine while it idles: a one-byte read
// that returns when the client closes (or sends bytes it should not).
func (m *protoMode) watch(s *pstream) {
	var b [1]byte
	_, _ = s.c.Read(b[:])
	m.drop(s)
}

func (m *protoMode) drop(s *pstream) {
	s.mu.Lock()
	already := s.dead
	s.dead = true
	s.queue, s.queued = nil, 0
	s.mu.Unlock()
	if already {
		return
	}
	m.mu.Lock()
	delete(m.set, s)
	m.mu.Unlock()
	_ = s.c.Close()
}

func (m *protoMode) serve(ln net.Listener) error { return m.srv.Serve(ln) }

func (m *protoMode) streams() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.set)
}

func (m *protoMode) broadcast(html string) (delivered, failed int) {
	data, err := sfere.Render(sfere.AppendElements(wire.Selector, html))
	if err != nil {
		return 0, m.streams()
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	for s := range m.set {
		s.mu.Lock()
		switch {
		case s.dead:
			failed++
		case s.queued+len(data) > protoMaxQueue:
			failed++
			go m.drop(s)
		default:
			s.queue = append(s.queue, data)
			s.queued += len(data)
			delivered++
			if !s.scheduled {
				s.scheduled = true
				m.run <- s
			}
		}
		s.mu.Unlock()
	}
	return delivered, failed
}

// writer drains streams with news: everything queued goes out in one
// non-blocking write.
func (m *protoMode) writer() {
	var buf []byte
	for s := range m.run {
		s.mu.Lock()
		buf = buf[:0]
		for _, d := range s.queue {
			buf = append(buf, d...)
		}
		clear(s.queue)
		s.queue, s.queued = s.queue[:0], 0
		s.mu.Unlock()
		n, err := tryWrite(s.rc, buf)
		if err != nil {
			m.mu.Lock()
			m.writeErr[err.Error()]++
			m.mu.Unlock()
			m.drop(s)
			continue
		}
		if n < len(buf) {
			m.slow.Add(1)
			rest := append([]byte(nil), buf[n:]...)
			go m.slowWrite(s, rest)
			continue
		}
		m.reschedule(s)
	}
}

// reschedule puts s back on the run queue if news arrived while it was
// written, else marks it idle.
func (m *protoMode) reschedule(s *pstream) {
	s.mu.Lock()
	again := len(s.queue) > 0 && !s.dead
	s.scheduled = again
	s.mu.Unlock()
	if again {
		m.run <- s
	}
}

// slowWrite writes to a client whose socket buffer was full, blocking
// under a deadline, until its queue is empty.
func (m *protoMode) slowWrite(s *pstream, data []byte) {
	for len(data) > 0 {
		_ = s.c.SetWriteDeadline(time.Now().Add(sfere.DefaultWriteTimeout))
		if _, err := s.c.Write(data); err != nil {
			m.drop(s)
			return
		}
		_ = s.c.SetWriteDeadline(time.Time{})
		s.mu.Lock()
		data = data[:0]
		for _, d := range s.queue {
			data = append(data, d...)
		}
		clear(s.queue)
		s.queue, s.queued = s.queue[:0], 0
		s.mu.Unlock()
	}
	m.reschedule(s)
}

// tryWrite writes what the socket takes now, without waiting.
func tryWrite(rc syscall.RawConn, p []byte) (int, error) {
	var n int
	var werr error
	err := rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			k, err := syscall.Write(int(fd), p[n:])
			if k > 0 {
				n += k
			}
			if err == syscall.EINTR {
				continue
			}
			if err == syscall.EAGAIN {
				return true
			}
			if err != nil {
				werr = err
				return true
			}
			if k == 0 {
				werr = errors.New("short write")
				return true
			}
		}
		return true
	})
	if err != nil {
		return n, err
	}
	return n, werr
}

func (m *protoMode) sweep() (wire.SweepResult, error) { return wire.SweepResult{}, errNoSweep }

func (m *protoMode) close() {
	_ = m.srv.Close()
	m.mu.RLock()
	var all []*pstream
	for s := range m.set {
		all = append(all, s)
	}
	m.mu.RUnlock()
	for _, s := range all {
		m.drop(s)
	}
}

func (m *protoMode) ended() map[string]int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := map[string]int64{"slow-path writes": m.slow.Load()}
	for k, v := range m.writeErr {
		out["write error: "+k] = v
	}
	return out
}
