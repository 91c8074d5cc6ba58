package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/natscluster"

	"github.com/sfere-go/sfere/bench/internal/wire"
)

// sfereMode serves every stream, keyed default/bench/<id>, with Hub.Detach
// (or Hub.Serve, or on net/http: see streamPath); a broadcast is one
// Hub.Broadcast to the category. With -nats the hub is
// one node of a natscluster, and a broadcast is one Node.Broadcast: this
// node's streams directly, every other node's through NATS.
type sfereMode struct {
	store *sfere.MemoryStore
	hub   *sfere.Hub
	beat  *sfere.Heartbeat // beaten on request only (POST /heartbeat)
	srv   *http.Server
	nc    *nats.Conn        // nil on a single node
	node  *natscluster.Node // nil on a single node

	mu      sync.Mutex
	endedBy map[string]int64
}

func (m *sfereMode) ended() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.endedBy)
}

const sfereCategory = "bench"

// streamPath is how sfereMode opens a stream.
type streamPath int

const (
	pathDetach  streamPath = iota // Hub.Detach: the handler returns; what a big server uses
	pathServe                     // Hub.Serve: the handler's goroutine waits for the end
	pathNetHTTP                   // Hub.Serve with HubOptions.NoHijack: net/http writes
	pathGzip                      // Hub.Detach with HubOptions.Compression: gzip for clients that accept it
)

// clusterLog is the cluster's event log of a node: with history > 0 every
// broadcast is published to JetStream (replicas replicas) and delivered
// as each node applies the log.
type clusterLog struct{ history, replicas int }

// newSfereMode builds the mode; with natsURL set it also joins the hub to
// the cluster on those NATS servers as node nodeID (random if empty).
//
// hist is the history a single node keeps (the -payload's: the lobby's
// for a lobby payload, none otherwise).
func newSfereMode(natsURL, nodeID string, path streamPath, cl clusterLog, hist sfere.HistoryOptions) (*sfereMode, error) {
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
	hopts := sfere.HubOptions{NoHijack: path == pathNetHTTP, History: hist}
	if path == pathGzip {
		hopts.Compression = &sfere.CompressionOptions{}
	}
	if natsURL != "" {
		nc, err := nats.Connect(natsURL, nats.Name("sfere-bench-server "+nodeID), nats.ReconnectBufSize(-1))
		if err != nil {
			return nil, fmt.Errorf("nats %s: %w", natsURL, err)
		}
		if cl.history > 0 {
			hopts.History = sfere.HistoryOptions{Size: cl.history, MaxAge: 2 * time.Minute}
		}
		node, err := natscluster.New(nc, m.store, natscluster.Options{NodeID: nodeID, Hub: hopts, Replicas: cl.replicas})
		if err != nil {
			nc.Close()
			return nil, err
		}
		m.nc, m.node, m.hub = nc, node, node.Hub()
	} else {
		m.hub = sfere.NewHub(m.store, hopts)
	}
	m.beat = sfere.NewHeartbeat(m.hub, sfere.InCategory(sfereCategory), time.Hour)
	hub := m.hub
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sse", func(w http.ResponseWriter, r *http.Request) {
		key := sfere.NewKey(sfere.DefaultScope, sfereCategory, r.URL.Query().Get("id"))
		if path == pathDetach || path == pathGzip {
			_, _ = hub.Detach(w, r, key)
			return
		}
		_ = hub.Serve(w, r, key)
	})
	m.srv = newHTTPServer(mux)
	return m, nil
}

func sfereListen(ctx context.Context, addr string, userTimeout time.Duration) (net.Listener, error) {
	return sfere.Listen(ctx, "tcp", addr, sfere.ListenOptions{UserTimeout: userTimeout})
}

func (m *sfereMode) serve(ln net.Listener) error { return m.srv.Serve(ln) }

func (m *sfereMode) streams() int { return m.hub.Count(sfere.InCategory(sfereCategory)) }

func (m *sfereMode) broadcast(selector, html string) (int, int) {
	if m.node != nil {
		// Result counts this node's streams only; the others count theirs.
		// With a log (-history) it is zero: every node delivers as it
		// applies the log, and a refused broadcast reached nobody.
		res, err := m.node.Broadcast(sfere.InCategory(sfereCategory), nil, sfere.AppendElements(selector, html))
		if err != nil && res.Delivered == 0 {
			return 0, m.streams()
		}
		return res.Delivered, res.Failed
	}
	res, err := m.hub.Broadcast(sfere.InCategory(sfereCategory), nil, sfere.AppendElements(selector, html))
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
	if m.node != nil {
		m.node.Close() // after the hub, so the streams' closes are announced
		m.nc.Close()
	}
}

// cluster reports the node's view of the cluster (nil on a single node).
func (m *sfereMode) cluster() *wire.Cluster {
	if m.node == nil {
		return nil
	}
	st := m.node.Stats()
	return &wire.Cluster{
		Node: m.node.ID(), Peers: m.node.Peers(),
		BroadcastsSent: st.BroadcastsSent, BroadcastsReceived: st.BroadcastsReceived,
	}
}
