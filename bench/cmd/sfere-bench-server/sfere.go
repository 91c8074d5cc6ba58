package main

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sfere-go/sfere"

	"github.com/sfere-go/sfere/bench/internal/wire"
)

// sfereMode serves every stream with Hub.Serve, keyed default/bench/<id>;
// a broadcast is one Hub.Broadcast to the category.
type sfereMode struct {
	store *sfere.MemoryStore
	hub   *sfere.Hub
	beat  *sfere.Heartbeat // beaten on request only (POST /heartbeat)
	srv   *http.Server

	mu      sync.Mutex
	endedBy map[string]int64
}

func (m *sfereMode) ended() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.endedBy)
}

const sfereCategory = "bench"

func newSfereMode() *sfereMode {
	m := &sfereMode{endedBy: make(map[string]int64)}
	m.store = sfere.NewMemoryStore(sfere.MemoryOptions{OnEvict: func(ev sfere.Eviction) {
		why := ev.Cause.String()
		if ev.Err != nil {
			why += ": " + ev.Err.Error()
		}
		m.mu.Lock()
		m.endedBy[why]++
		m.mu.Unlock()
	}})
	m.hub = sfere.NewHub(m.store, sfere.HubOptions{})
	m.beat = sfere.NewHeartbeat(m.hub, sfere.InCategory(sfereCategory), time.Hour)
	hub := m.hub
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sse", func(w http.ResponseWriter, r *http.Request) {
		key := sfere.NewKey(sfere.DefaultScope, sfereCategory, r.URL.Query().Get("id"))
		_ = hub.Serve(w, r, key)
	})
	m.srv = newHTTPServer(mux)
	return m
}

func sfereListen(ctx context.Context, addr string, userTimeout time.Duration) (net.Listener, error) {
	return sfere.Listen(ctx, "tcp", addr, sfere.ListenOptions{UserTimeout: userTimeout})
}

func (m *sfereMode) serve(ln net.Listener) error { return m.srv.Serve(ln) }

func (m *sfereMode) streams() int { return m.hub.Count(sfere.InCategory(sfereCategory)) }

func (m *sfereMode) broadcast(html string) (int, int) {
	res, err := m.hub.Broadcast(sfere.InCategory(sfereCategory), nil, sfere.AppendElements(wire.Selector, html))
	if err != nil {
		return 0, m.streams()
	}
	return res.Delivered, res.Failed
}

func (m *sfereMode) sweep() (wire.SweepResult, error) {
	before := m.beat.Stats()
	res := m.beat.Beat()
	deadline := time.Now().Add(60 * time.Second)
	for m.beat.Stats().Sweeps == before.Sweeps {
		if time.Now().After(deadline) {
			return wire.SweepResult{}, errors.New("heartbeat sweep did not complete in 60s")
		}
		time.Sleep(time.Millisecond)
	}
	after := m.beat.Stats()
	return wire.SweepResult{Streams: res.Delivered, Failures: int64(after.Failures - before.Failures), SweepNS: int64(after.LastSweep)}, nil
}

func (m *sfereMode) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = m.hub.Shutdown(ctx)
	_ = m.srv.Close()
}
