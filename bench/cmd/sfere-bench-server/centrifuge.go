package main

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/centrifugal/centrifuge"

	"github.com/sfere-go/sfere/bench/internal/wire"
)

// centrifugeMode serves streams with the centrifuge library's SSE handler.
// Each client is subscribed server-side to one channel when it connects
// (no recovery, no positioning, no presence: the cheapest subscription);
// a broadcast is one Node.Publish to that channel with the in-memory broker.
// The connect request travels in the cf_connect query parameter, so the
// stream is one-way after that.
type centrifugeMode struct {
	node *centrifuge.Node
	srv  *http.Server
}

const centrifugeChannel = "bench"

func newCentrifugeMode() (*centrifugeMode, error) {
	node, err := centrifuge.New(centrifuge.Config{LogLevel: centrifuge.LogLevelNone})
	if err != nil {
		return nil, err
	}
	node.OnConnecting(func(ctx context.Context, e centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		return centrifuge.ConnectReply{
			Credentials:   &centrifuge.Credentials{UserID: "bench"},
			Subscriptions: map[string]centrifuge.SubscribeOptions{centrifugeChannel: {}},
		}, nil
	})
	node.OnConnect(func(*centrifuge.Client) {})
	if err := node.Run(); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	// Pings every 25 s (the default) keep the stream warm like sfere's
	// heartbeat; pong checks are off because a one-way client (like
	// centrifuge's unidirectional transports) never answers them: with
	// them on, every client is dropped 35 s after it connects.
	mux.Handle("/sse", centrifuge.NewSSEHandler(node, centrifuge.SSEConfig{
		PingPongConfig: centrifuge.PingPongConfig{PongTimeout: -1},
	}))
	return &centrifugeMode{node: node, srv: newHTTPServer(mux)}, nil
}

func (m *centrifugeMode) serve(ln net.Listener) error { return m.srv.Serve(ln) }

func (m *centrifugeMode) streams() int { return m.node.Hub().NumSubscribers(centrifugeChannel) }

// broadcast publishes html as a JSON object (the JSON protocol carries
// publication data as raw JSON).
func (m *centrifugeMode) broadcast(_, html string) (int, int) {
	data := make([]byte, 0, len(html)+8)
	data = append(data, `{"h":"`...)
	data = append(data, html...)
	data = append(data, `"}`...)
	if _, err := m.node.Publish(centrifugeChannel, data); err != nil {
		return 0, m.streams()
	}
	return m.streams(), 0
}

// sweep: centrifuge pings each client on its own timer (25 s), there is no
// sweep to trigger.
func (m *centrifugeMode) sweep() (wire.SweepResult, error) { return wire.SweepResult{}, errNoSweep }

func (m *centrifugeMode) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = m.node.Shutdown(ctx)
	_ = m.srv.Close()
}

func (m *centrifugeMode) ended() map[string]int64 { return nil }
