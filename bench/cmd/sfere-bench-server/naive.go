package main

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/starfederation/datastar-go/datastar"

	"github.com/sfere-go/sfere/bench/internal/wire"
)

// naiveMode is what a user would write with datastar-go alone: a
// mutex-guarded map of generators, and a broadcast that loops over it with
// one synchronous write (and flush) per stream. With gzip, each generator
// compresses its own stream (datastar.WithCompression, gzip level 5).
type naiveMode struct {
	mu   sync.Mutex
	gens map[*datastar.ServerSentEventGenerator]struct{}
	srv  *http.Server
}

func newNaiveMode(gzip bool) *naiveMode {
	m := &naiveMode{gens: make(map[*datastar.ServerSentEventGenerator]struct{})}
	var opts []datastar.SSEOption
	if gzip {
		opts = append(opts, datastar.WithCompression(datastar.WithGzip(datastar.WithGzipLevel(5))))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sse", func(w http.ResponseWriter, r *http.Request) {
		sse := datastar.NewSSE(w, r, opts...)
		m.mu.Lock()
		m.gens[sse] = struct{}{}
		m.mu.Unlock()
		<-r.Context().Done()
		m.mu.Lock()
		delete(m.gens, sse)
		m.mu.Unlock()
	})
	m.srv = newHTTPServer(mux)
	return m
}

func (m *naiveMode) serve(ln net.Listener) error { return m.srv.Serve(ln) }

func (m *naiveMode) streams() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.gens)
}

func (m *naiveMode) broadcast(selector, html string) (delivered, failed int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for sse := range m.gens {
		if err := sse.PatchElements(html, datastar.WithSelector(selector), datastar.WithModeAppend()); err != nil {
			failed++
		} else {
			delivered++
		}
	}
	return delivered, failed
}

// sweep is the naive heartbeat: an empty signal patch to each stream, in a loop.
func (m *naiveMode) sweep() (wire.SweepResult, error) {
	start := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	res := wire.SweepResult{Streams: len(m.gens)}
	for sse := range m.gens {
		if err := sse.PatchSignals([]byte("{}")); err != nil {
			res.Failures++
		}
	}
	res.SweepNS = int64(time.Since(start))
	return res, nil
}

func (m *naiveMode) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = m.srv.Shutdown(ctx)
	_ = m.srv.Close()
}

func (m *naiveMode) ended() map[string]int64 { return nil }
