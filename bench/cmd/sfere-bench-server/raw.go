package main

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sfere-go/sfere"

	"github.com/sfere-go/sfere/bench/internal/wire"
)

// rawMode is the physical ceiling: no HTTP, no SSE layer, no queue per
// stream. Accepted sockets are dealt round-robin to a fixed set of writer
// goroutines; each broadcast is handed to every writer, which writes the
// frame to each of its sockets with one plain write. The frame is the very
// bytes sfere renders for the same broadcast.
type rawMode struct {
	shards []*rawShard
	next   atomic.Uint64 // round-robin over shards for new sockets
	count  atomic.Int64
	ln     net.Listener
}

type rawShard struct {
	mu    sync.Mutex
	conns []net.Conn // nil entries are dead sockets
	work  chan rawFrame
	done  chan struct{}
}

type rawFrame struct {
	data   []byte
	wg     *sync.WaitGroup // nil unless someone waits for the pass
	failed *atomic.Int64
}

func newRawMode(writers int) *rawMode {
	if writers < 1 {
		writers = 1
	}
	m := &rawMode{}
	for range writers {
		s := &rawShard{work: make(chan rawFrame, 1024), done: make(chan struct{})}
		m.shards = append(m.shards, s)
		go s.run(&m.count)
	}
	return m
}

func (s *rawShard) run(count *atomic.Int64) {
	for {
		select {
		case f := <-s.work:
			s.mu.Lock()
			for i, c := range s.conns {
				if c == nil {
					continue
				}
				if _, err := c.Write(f.data); err != nil {
					_ = c.Close()
					s.conns[i] = nil
					count.Add(-1)
					if f.failed != nil {
						f.failed.Add(1)
					}
				}
			}
			s.mu.Unlock()
			if f.wg != nil {
				f.wg.Done()
			}
		case <-s.done:
			return
		}
	}
}

func (m *rawMode) serve(ln net.Listener) error {
	m.ln = ln
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors (or another passing error): the
			// client's connection waits in the backlog; try again, as
			// net/http does.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s := m.shards[m.next.Add(1)%uint64(len(m.shards))]
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		m.count.Add(1)
	}
}

func (m *rawMode) streams() int { return int(m.count.Load()) }

// broadcast renders the frame as sfere would and hands it to every writer;
// it does not wait for the writes (like sfere's queueing broadcast).
func (m *rawMode) broadcast(selector, html string) (int, int) {
	data, err := sfere.Render(sfere.AppendElements(selector, html))
	if err != nil {
		return 0, m.streams()
	}
	n := m.streams()
	for _, s := range m.shards {
		s.work <- rawFrame{data: data}
	}
	return n, 0
}

// sweep writes sfere's heartbeat comment to every socket and waits for the pass.
func (m *rawMode) sweep() (wire.SweepResult, error) {
	data, err := sfere.Render(sfere.Comment("heartbeat"))
	if err != nil {
		return wire.SweepResult{}, err
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	n := m.streams()
	start := time.Now()
	wg.Add(len(m.shards))
	for _, s := range m.shards {
		s.work <- rawFrame{data: data, wg: &wg, failed: &failed}
	}
	wg.Wait()
	return wire.SweepResult{Streams: n, Failures: failed.Load(), SweepNS: int64(time.Since(start))}, nil
}

func (m *rawMode) close() {
	for _, s := range m.shards {
		close(s.done)
		s.mu.Lock()
		for _, c := range s.conns {
			if c != nil {
				_ = c.Close()
			}
		}
		s.mu.Unlock()
	}
}

func (m *rawMode) ended() map[string]int64 { return nil }
