package natscluster

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is a NATS server running inside this process, with JetStream
// (which the lobby's shared participant registry uses), for tests and a
// local multi-node demo. A production cluster runs real NATS servers.
type Server struct {
	*server.Server
	tempDir string // removed at shutdown
}

// StartServer starts a [Server] listening on addr (host:port; port 0
// picks a free one), keeping JetStream's files in storeDir; with "" it uses
// a temporary directory, removed at shutdown. A server restarted on the
// same storeDir finds its streams and key-value buckets again. Stop it
// with [Server.Shutdown].
func StartServer(addr, storeDir string) (*Server, error) {
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
	dir, tempDir := storeDir, ""
	if dir == "" {
		if dir, err = os.MkdirTemp("", "sfere-nats-"); err != nil {
			return nil, fmt.Errorf("natscluster: embedded server: %w", err)
		}
		tempDir = dir
	}
	s, err := server.NewServer(&server.Options{
		Host: host, Port: p, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: dir,
	})
	if err != nil {
		removeTemp(tempDir)
		return nil, fmt.Errorf("natscluster: embedded server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		removeTemp(tempDir)
		return nil, fmt.Errorf("natscluster: embedded server on %s not ready", addr)
	}
	return &Server{Server: s, tempDir: tempDir}, nil
}

func removeTemp(dir string) {
	if dir != "" {
		os.RemoveAll(dir)
	}
}

// Shutdown stops the server, waits for it and removes its temporary storage.
func (s *Server) Shutdown() {
	s.Server.Shutdown()
	s.Server.WaitForShutdown()
	removeTemp(s.tempDir)
}
