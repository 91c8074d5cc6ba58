package natscluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sfere-go/sfere/internal/testport"
)

// natsCluster is three in-process NATS servers routed into one cluster,
// each with its own store directory, on fixed ports so that a server can
// be replaced by a fresh one at the same place.
type natsCluster struct {
	t    *testing.T
	opts [3]ServerOptions
	bin  string // a nats-server binary: the servers are processes, killed with SIGKILL

	mu   sync.Mutex
	srv  [3]*Server
	proc [3]*exec.Cmd
}

func startNATSCluster(t *testing.T) *natsCluster {
	t.Helper()
	return startNATSClusterOf(t, "")
}

// startNATSClusterOf is startNATSCluster with the servers run as
// processes of the nats-server binary bin (in-process if "").
func startNATSClusterOf(t *testing.T, bin string) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t, bin: bin}
	dir := t.TempDir()
	// Below the ephemeral range: a replaced server binds the same ports
	// again.
	addrs := testport.Addrs(t, 2*len(c.opts))
	var routes []string
	for i := range c.opts {
		c.opts[i] = ServerOptions{
			Addr:     addrs[2*i],
			Cluster:  addrs[2*i+1],
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
		for _, p := range c.proc {
			if p != nil {
				p.Process.Kill()
				p.Wait()
			}
		}
	})
	return c
}

func (c *natsCluster) start(i int) {
	c.t.Helper()
	if c.bin != "" {
		c.startProcess(i)
		return
	}
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

// replace loses server i with its disk (shut down, or killed with
// SIGKILL if it is a process; store deleted) and starts a fresh one in
// its place.
func (c *natsCluster) replace(i int) {
	c.t.Helper()
	c.mu.Lock()
	s, p := c.srv[i], c.proc[i]
	c.srv[i], c.proc[i] = nil, nil
	c.mu.Unlock()
	if p != nil {
		p.Process.Kill()
		p.Wait()
	} else {
		s.Shutdown()
	}
	if err := os.RemoveAll(c.opts[i].StoreDir); err != nil {
		c.t.Fatal(err)
	}
	c.start(i)
}

// current reports whether server i is a current member of JetStream and
// of each stream's replica group.
func (c *natsCluster) current(i int, streams ...string) bool {
	if c.bin != "" {
		return c.currentProcess(i, streams...)
	}
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

var (
	natsBinOnce sync.Once
	natsBin     string
	natsBinErr  error
)

// natsServerBinary builds the nats-server command of the module this
// package depends on, once per test binary.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds nats-server")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build nats-server with")
	}
	natsBinOnce.Do(func() {
		// One binary per nats-server version, kept between runs in the
		// temporary directory; built beside it and renamed into place,
		// so test binaries building it at once do not collide.
		v, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/nats-io/nats-server/v2").Output()
		if err != nil {
			natsBinErr = fmt.Errorf("go list: %w", err)
			return
		}
		version := strings.TrimSpace(string(v))
		natsBin = filepath.Join(os.TempDir(), "sfere-test-nats-server-"+version)
		if _, err := os.Stat(natsBin); err == nil {
			return
		}
		tmp, err := os.MkdirTemp("", "sfere-nats-bin-")
		if err != nil {
			natsBinErr = err
			return
		}
		defer os.RemoveAll(tmp)
		out, err := exec.Command("go", "build", "-o", filepath.Join(tmp, "nats-server"), "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err == nil {
			err = os.Rename(filepath.Join(tmp, "nats-server"), natsBin)
		}
		if err != nil {
			natsBinErr, natsBin = err, string(out)
		}
	})
	if natsBinErr != nil {
		t.Fatalf("go build nats-server: %v\n%s", natsBinErr, natsBin)
	}
	return natsBin
}

// startProcess runs server i as a nats-server process and waits until it
// takes clients.
func (c *natsCluster) startProcess(i int) {
	c.t.Helper()
	o := c.opts[i]
	host, port, _ := net.SplitHostPort(o.Addr)
	args := []string{"-a", host, "-p", port, "-n", o.Name, "-js", "-sd", o.StoreDir,
		"--cluster_name", "sfere", "-cluster", "nats://" + o.Cluster, "-routes", strings.Join(o.Routes, ",")}
	cmd := exec.Command(c.bin, args...)
	// The server's log goes beside its store (which a replacement
	// deletes), to be shown if it never takes clients.
	logPath := filepath.Join(filepath.Dir(o.StoreDir), o.Name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.proc[i] = cmd
	c.mu.Unlock()
	for end := time.Now().Add(ceiling); ; time.Sleep(20 * time.Millisecond) {
		nc, err := nats.Connect("nats://"+o.Addr, nats.NoReconnect())
		if err == nil {
			nc.Close()
			return
		}
		if time.Now().After(end) {
			log, _ := os.ReadFile(logPath)
			if len(log) > 4096 {
				log = log[len(log)-4096:]
			}
			c.t.Fatalf("nats-server %s not ready: %v; its log:\n%s", o.Name, err, log)
		}
	}
}

// currentProcess is current for a server process, asked through the
// JetStream API of the cluster: the server's replica of each stream is
// current and online.
func (c *natsCluster) currentProcess(i int, streams ...string) bool {
	nc, err := nats.Connect(c.urls(), nats.NoReconnect())
	if err != nil {
		return false
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, name := range streams {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		if err != nil || info.Cluster == nil {
			return false
		}
		ok := info.Cluster.Leader == c.opts[i].Name
		for _, r := range info.Cluster.Replicas {
			if r.Name == c.opts[i].Name {
				ok = r.Current && !r.Offline && r.Lag == 0
			}
		}
		if !ok {
			return false
		}
	}
	return true
}
