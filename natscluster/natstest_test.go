package natscluster

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// natsCluster is three in-process NATS servers routed into one cluster,
// each with its own store directory, on fixed ports so that a server can
// be replaced by a fresh one at the same place.
type natsCluster struct {
	t    *testing.T
	opts [3]ServerOptions

	mu  sync.Mutex
	srv [3]*Server
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startNATSCluster(t *testing.T) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t}
	dir := t.TempDir()
	var routes []string
	for i := range c.opts {
		c.opts[i] = ServerOptions{
			Addr:     freeAddr(t),
			Cluster:  freeAddr(t),
			Name:     "n" + string(rune('1'+i)),
			StoreDir: filepath.Join(dir, "n"+string(rune('1'+i))),
		}
		routes = append(routes, "nats://"+c.opts[i].Cluster)
	}
	for i := range c.opts {
		c.opts[i].Routes = routes
		c.start(i)
	}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, s := range c.srv {
			if s != nil {
				s.Shutdown()
			}
		}
	})
	return c
}

func (c *natsCluster) start(i int) {
	c.t.Helper()
	s, err := StartServerWith(c.opts[i])
	if err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.srv[i] = s
	c.mu.Unlock()
}

// urls is every server's client URL, comma separated, as nats.Connect
// takes them.
func (c *natsCluster) urls() string {
	u := make([]string, len(c.opts))
	for i, o := range c.opts {
		u[i] = "nats://" + o.Addr
	}
	return strings.Join(u, ",")
}

// server returns server i as it runs now.
func (c *natsCluster) server(i int) *Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.srv[i]
}

// replace loses server i with its disk (shut down, store deleted) and
// starts a fresh one in its place.
func (c *natsCluster) replace(i int) {
	c.t.Helper()
	c.mu.Lock()
	s := c.srv[i]
	c.srv[i] = nil
	c.mu.Unlock()
	s.Shutdown()
	if err := os.RemoveAll(c.opts[i].StoreDir); err != nil {
		c.t.Fatal(err)
	}
	c.start(i)
}

// current reports whether server i is a current member of JetStream and
// of each stream's replica group.
func (c *natsCluster) current(i int, streams ...string) bool {
	s := c.server(i)
	if s == nil || !s.JetStreamIsCurrent() {
		return false
	}
	for _, st := range streams {
		if !s.JetStreamIsStreamCurrent("$G", st) {
			return false
		}
	}
	return true
}
