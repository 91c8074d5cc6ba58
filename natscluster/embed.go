package natscluster

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// StartServer starts a NATS server inside this process, listening on addr
// (host:port; port 0 picks a free one), for tests and a local multi-node
// demo. Stop it with Shutdown. A production cluster runs real NATS servers.
func StartServer(addr string) (*server.Server, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("natscluster: embedded server address: %w", err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("natscluster: embedded server port: %w", err)
	}
	if p == 0 {
		p = server.RANDOM_PORT
	}
	s, err := server.NewServer(&server.Options{Host: host, Port: p, NoLog: true, NoSigs: true})
	if err != nil {
		return nil, fmt.Errorf("natscluster: embedded server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("natscluster: embedded server on %s not ready", addr)
	}
	return s, nil
}
