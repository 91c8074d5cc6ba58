package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// natsServer is one NATS server of the cluster: JetStream, its own store
// directory, routes to the others.
type natsServer struct {
	*proc
	client, route, monitor int
	store                  string
}

// lobbyNode is one lobby node. It reaches the NATS servers through
// forwarders of its own (one per server), so that the nemesis can cut this
// node alone off from NATS by dropping the packets of their ports.
type lobbyNode struct {
	*proc
	port      int
	forwards  []*forwarder
	natsPorts []int // the forwarders' ports
}

// cluster is the system under test: in cluster mode three NATS servers,
// three lobby nodes and nginx in front; in single mode one lobby node
// (no NATS, no proxy).
type cluster struct {
	dir   string
	nats  []*natsServer
	nodes []*lobbyNode
	nginx *proc
	front string // the URL the clients use
}

// clusterConfig says what to start.
type clusterConfig struct {
	single            bool
	nodes             int
	dir               string
	lobbyBin, natsBin string
	lobbyFlags        []string // the flags every lobby node gets
}

// freePorts reserves n free loopback ports below the kernel's ephemeral
// range (where no outgoing connection takes one while a process restarts
// and binds it again), listening on all of them at once so they differ,
// and releases them for the processes to take.
func freePorts(n int) ([]int, error) {
	lo, hi := 10000, ephemeralStart()
	if hi-lo < 10*n {
		return nil, fmt.Errorf("no room for %d ports below the ephemeral range (%d)", n, hi)
	}
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100*n {
			return nil, errors.New("pick a free port: none found")
		}
		port := lo + rand.IntN(hi-lo)
		l, err := net.Listen("tcp", hostPort(port))
		if err != nil {
			continue // taken
		}
		ls = append(ls, l)
		ports = append(ports, port)
	}
	return ports, nil
}

// ephemeralStart is the first port of the kernel's ephemeral range.
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 11000 {
				return v
			}
		}
	}
	return 32768
}

func hostPort(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// startCluster starts the system under test and waits until it serves.
func startCluster(ctx context.Context, cfg clusterConfig) (*cluster, error) {
	c := &cluster{dir: cfg.dir}
	nNATS := 3
	if cfg.single {
		nNATS, cfg.nodes = 0, 1
	}
	ports, err := freePorts(3*nNATS + cfg.nodes*(1+nNATS) + 1)
	if err != nil {
		return nil, err
	}
	take := func() int { p := ports[0]; ports = ports[1:]; return p }
	for i := range nNATS {
		s := &natsServer{client: take(), route: take(), monitor: take(), store: filepath.Join(cfg.dir, fmt.Sprintf("nats-%d-store", i+1))}
		c.nats = append(c.nats, s)
	}
	for i, s := range c.nats {
		var routes []string
		for j, o := range c.nats {
			if j != i {
				routes = append(routes, "nats://"+hostPort(o.route))
			}
		}
		name := fmt.Sprintf("nats-%d", i+1)
		s.proc = &proc{name: name, bin: cfg.natsBin, logPath: filepath.Join(cfg.dir, name+".log"),
			args: []string{"-a", "127.0.0.1", "-p", strconv.Itoa(s.client), "-n", name, "-js", "-sd", s.store,
				"--cluster_name", "sfere", "--cluster", "nats://" + hostPort(s.route), "--routes", strings.Join(routes, ","),
				"-m", strconv.Itoa(s.monitor), "--no_advertise"},
			ready: httpReady("http://" + hostPort(s.monitor) + "/healthz")}
	}
	// The NATS servers start together (each waits for a quorum).
	errs := make(chan error, len(c.nats))
	for _, s := range c.nats {
		go func() { errs <- s.start(ctx) }()
	}
	for range c.nats {
		err = errors.Join(err, <-errs)
	}
	if err != nil {
		c.stop()
		return nil, err
	}
	for i := range cfg.nodes {
		n := &lobbyNode{port: take()}
		name := fmt.Sprintf("lobby-%d", i+1)
		args := append([]string{"-addr", hostPort(n.port)}, cfg.lobbyFlags...)
		if !cfg.single {
			args = append(args, "-node", name) // the lobby refuses -node without NATS
			var urls []string
			for _, s := range c.nats {
				f, err := newForwarder(take(), hostPort(s.client))
				if err != nil {
					c.stop()
					return nil, err
				}
				n.forwards = append(n.forwards, f)
				n.natsPorts = append(n.natsPorts, f.port)
				urls = append(urls, "nats://"+hostPort(f.port))
			}
			args = append(args, "-nats", strings.Join(urls, ","))
		}
		n.proc = &proc{name: name, bin: cfg.lobbyBin, args: args, logPath: filepath.Join(cfg.dir, name+".log"),
			ready: httpReady("http://" + hostPort(n.port) + "/metrics")}
		c.nodes = append(c.nodes, n)
		// One at a time: the first makes the session key file.
		if err := n.start(ctx); err != nil {
			c.stop()
			return nil, err
		}
	}
	front := take()
	if cfg.single {
		c.front = "http://" + hostPort(c.nodes[0].port)
		return c, nil
	}
	c.nginx, err = c.nginxProc(front)
	if err == nil {
		err = c.nginx.start(ctx)
	}
	if err != nil {
		c.stop()
		return nil, err
	}
	c.front = "http://" + hostPort(front)
	return c, nil
}

// stop stops everything: lobby nodes first (a clean shutdown), then nginx
// and the NATS servers.
func (c *cluster) stop() {
	for _, n := range c.nodes {
		if n.proc != nil {
			n.stop(syscall.SIGTERM, 10*time.Second)
		}
		for _, f := range n.forwards {
			f.close()
		}
	}
	if c.nginx != nil {
		c.nginx.stop(syscall.SIGTERM, 5*time.Second)
	}
	for _, s := range c.nats {
		if s.proc != nil {
			s.stop(syscall.SIGTERM, 10*time.Second)
		}
	}
}

// wipeStore empties a NATS server's store directory: it comes back as an
// empty disk.
func (s *natsServer) wipeStore() error {
	if err := os.RemoveAll(s.store); err != nil {
		return fmt.Errorf("wipe %s: %w", s.store, err)
	}
	return nil
}
