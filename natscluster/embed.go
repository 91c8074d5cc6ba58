package natscluster

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is a NATS server running inside this process, with JetStream
// (which the event log and the shared participant registry use): alone,
// for tests and a one-machine demo, or as one of a cluster of servers
// that route to each other, so that every lobby node can carry its own
// NATS server and the cluster needs no other service.
type Server struct {
	*server.Server
	tempDir string // removed at shutdown
}

// ServerOptions configures an embedded [Server].
type ServerOptions struct {
	// Addr is the client address, host:port; port 0 picks a free one.
	Addr string
	// StoreDir keeps JetStream's files; "" means a temporary directory,
	// removed at shutdown. A server restarted on the same StoreDir finds
	// its streams and buckets again; a server of a cluster restarted
	// without them gets them back from the other servers.
	StoreDir string
	// Name names the server, uniquely in its cluster; keep it across
	// restarts. Empty means one derived from Addr.
	Name string
	// Cluster, if set, is the address (host:port) this server takes
	// routes from other servers on: it joins a NATS cluster.
	Cluster string
	// ClusterName names the NATS cluster; every server of it has the
	// same. Empty means "sfere".
	ClusterName string
	// Routes are the other servers' cluster addresses, as
	// nats://host:port URLs (this server's own may be among them).
	Routes []string
}

// ErrBadServerOptions is returned (wrapped) by [StartServerWith] for
// options that cannot make a server.
var ErrBadServerOptions = errors.New("natscluster: embedded server")

// StartServer starts a lone [Server] on addr (host:port; port 0 picks a
// free one), keeping JetStream's files in storeDir ("": a temporary
// directory). Stop it with [Server.Shutdown].
func StartServer(addr, storeDir string) (*Server, error) {
	return StartServerWith(ServerOptions{Addr: addr, StoreDir: storeDir})
}

// StartServerWith starts a [Server] with opts and waits until it takes
// clients (in a cluster, JetStream needs a majority of the servers up
// before it takes streams). Stop it with [Server.Shutdown].
func StartServerWith(opts ServerOptions) (*Server, error) {
	host, p, err := hostPort(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("%w: address: %w", ErrBadServerOptions, err)
	}
	if p == 0 {
		p = server.RANDOM_PORT
	}
	sopts := &server.Options{Host: host, Port: p, NoLog: true, NoSigs: true, JetStream: true, ServerName: opts.Name}
	if sopts.ServerName == "" && p != server.RANDOM_PORT {
		sopts.ServerName = net.JoinHostPort(host, strconv.Itoa(p))
	}
	if opts.Cluster != "" {
		chost, cport, err := hostPort(opts.Cluster)
		if err != nil || cport == 0 {
			return nil, fmt.Errorf("%w: cluster address %q: want host:port with a port", ErrBadServerOptions, opts.Cluster)
		}
		if opts.Name == "" && p == server.RANDOM_PORT {
			return nil, fmt.Errorf("%w: a cluster server needs a Name or a fixed port (its name must outlive a restart)", ErrBadServerOptions)
		}
		sopts.Cluster = server.ClusterOpts{Name: cmp.Or(opts.ClusterName, "sfere"), Host: chost, Port: cport}
		for _, r := range opts.Routes {
			u, err := url.Parse(r)
			if err != nil || u.Scheme != "nats" || u.Port() == "" {
				return nil, fmt.Errorf("%w: route %q: want nats://host:port", ErrBadServerOptions, r)
			}
			sopts.Routes = append(sopts.Routes, u)
		}
	} else if len(opts.Routes) > 0 {
		return nil, fmt.Errorf("%w: routes need a cluster address", ErrBadServerOptions)
	}
	dir, tempDir := opts.StoreDir, ""
	if dir == "" {
		if dir, err = os.MkdirTemp("", "sfere-nats-"); err != nil {
			return nil, fmt.Errorf("natscluster: embedded server: %w", err)
		}
		tempDir = dir
	}
	sopts.StoreDir = dir
	s, err := server.NewServer(sopts)
	if err != nil {
		removeTemp(tempDir)
		return nil, fmt.Errorf("natscluster: embedded server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		removeTemp(tempDir)
		return nil, fmt.Errorf("natscluster: embedded server on %s not ready", opts.Addr)
	}
	return &Server{Server: s, tempDir: tempDir}, nil
}

func hostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("port %q", port)
	}
	return host, p, nil
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
