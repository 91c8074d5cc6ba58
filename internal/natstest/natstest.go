// Package natstest runs a NATS cluster for tests that lose a server and
// want a fresh one in its place: three servers with JetStream, routed to
// each other, each with its own store, on fixed loopback ports below the
// kernel's ephemeral range (see [testport]) so that a replacement binds
// the same ports again.
//
// The servers run in the test's process ([StartCluster]) or as processes
// of the nats-server command of the module's nats-server version
// ([StartProcessCluster]), which die hard: SIGKILL, no leader hand-over.
//
// It starts its servers through nats-server's own server package, not
// through natscluster, so that natscluster's own tests can use it.
package natstest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sfere-go/sfere/internal/testport"
)

// Size is the number of servers in a [Cluster].
const Size = 3

// ready bounds the wait for a server to take clients: generous, a server
// that starts well takes far less.
const ready = time.Minute

// spec is where one server of a cluster runs; it outlives the server, so
// that a replacement takes its place.
type spec struct {
	name     string
	addr     string // client address, host:port
	cluster  string // route address, host:port
	monitor  string // monitoring address of a process, host:port
	storeDir string
	routes   []string // every server's route URL
}

// Cluster is [Size] NATS servers routed into one cluster. Its methods
// fail the test they were started for if a server cannot start.
type Cluster struct {
	t     testing.TB
	bin   string // the nats-server binary; "": servers in this process
	specs [Size]spec

	mu   sync.Mutex
	srv  [Size]*server.Server
	proc [Size]*exec.Cmd
}

// StartCluster starts the servers in this process and stops them when
// the test ends.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	return start(t, "")
}

// StartProcessCluster starts the servers as nats-server processes and
// kills them when the test ends. It builds the nats-server command once
// per version (kept in the temporary directory between runs), and skips
// the test under -short or without a go command to build it with.
func StartProcessCluster(t testing.TB) *Cluster {
	t.Helper()
	return start(t, binary(t))
}

func start(t testing.TB, bin string) *Cluster {
	t.Helper()
	c := &Cluster{t: t, bin: bin}
	dir := t.TempDir()
	addrs := testport.Addrs(t, 3*Size)
	var routes []string
	for i := range c.specs {
		name := "nats" + strconv.Itoa(i+1)
		c.specs[i] = spec{name: name, addr: addrs[3*i], cluster: addrs[3*i+1], monitor: addrs[3*i+2], storeDir: filepath.Join(dir, name)}
		routes = append(routes, "nats://"+c.specs[i].cluster)
	}
	for i := range c.specs {
		c.specs[i].routes = routes
	}
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i := range c.specs {
			c.stopLocked(i)
		}
	})
	if bin != "" {
		t.Cleanup(func() {
			if t.Failed() {
				c.logTails(dir)
			}
		})
	}
	for i := range c.specs {
		c.Start(i)
	}
	return c
}

// logTails shows the end of each server process's log (kept beside its
// store, in dir), so a failed test says what the servers saw: elections,
// lost routes, catch-ups.
func (c *Cluster) logTails(dir string) {
	for _, s := range c.specs {
		log, err := os.ReadFile(filepath.Join(dir, s.name+".log"))
		if err != nil {
			c.t.Logf("nats-server %s: no log: %v", s.name, err)
			continue
		}
		c.t.Logf("nats-server %s, the end of its log:\n%s", s.name, tail(log, 6144))
	}
}

// URLs is every server's client URL, comma separated, as nats.Connect
// takes them.
func (c *Cluster) URLs() string {
	u := make([]string, Size)
	for i := range c.specs {
		u[i] = c.URL(i)
	}
	return strings.Join(u, ",")
}

// URL is server i's client URL.
func (c *Cluster) URL(i int) string { return "nats://" + c.specs[i].addr }

// Names lists the servers' names, in order: the names JetStream gives
// stream leaders and replicas.
func (c *Cluster) Names() []string {
	n := make([]string, Size)
	for i, s := range c.specs {
		n[i] = s.name
	}
	return n
}

// Start starts server i in its place, on whatever store it left (none
// after [Cluster.Replace]), and waits until it takes clients. Server i
// must be stopped.
func (c *Cluster) Start(i int) {
	c.t.Helper()
	if c.bin != "" {
		c.startProcess(i)
		return
	}
	s := c.specs[i]
	host, port, err := hostPort(s.addr)
	if err != nil {
		c.t.Fatal(err)
	}
	chost, cport, err := hostPort(s.cluster)
	if err != nil {
		c.t.Fatal(err)
	}
	opts := &server.Options{ServerName: s.name, Host: host, Port: port, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: s.storeDir,
		Cluster: server.ClusterOpts{Name: "sfere", Host: chost, Port: cport},
		Routes:  server.RoutesFromStr(strings.Join(s.routes, ","))}
	srv, err := server.NewServer(opts)
	if err != nil {
		c.t.Fatalf("NATS server %s: %v", s.name, err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(ready) {
		srv.Shutdown()
		srv.WaitForShutdown()
		c.t.Fatalf("NATS server %s takes no clients after %v", s.name, ready)
	}
	c.mu.Lock()
	c.srv[i] = srv
	c.mu.Unlock()
}

// Stop stops server i and keeps its store: shut down in this process,
// or killed with SIGKILL.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopLocked(i)
}

func (c *Cluster) stopLocked(i int) {
	if s := c.srv[i]; s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
	if p := c.proc[i]; p != nil {
		p.Process.Kill()
		p.Wait()
	}
	c.srv[i], c.proc[i] = nil, nil
}

// Replace loses server i with its disk (stopped as [Cluster.Stop] does,
// its store deleted) and starts a fresh one in its place.
func (c *Cluster) Replace(i int) {
	c.t.Helper()
	c.Stop(i)
	if err := os.RemoveAll(c.specs[i].storeDir); err != nil {
		c.t.Fatal(err)
	}
	c.Start(i)
}

// Current reports whether server i is a current member of JetStream and
// of the replica group of each of streams.
//
// Of a process, the cluster is asked through the JetStream API (its
// replica of each stream is current and online, or it leads it), and the
// server itself through its monitoring port (its own copy holds every
// message the leader held a moment before). The leader's word alone is
// not enough: just after a kill it still reports the lost server's
// replica, under the same name, as current (one CI run took the next
// server down 83 ms after a replacement, with two of three copies then
// out of reach).
func (c *Cluster) Current(i int, streams ...string) bool {
	if c.bin != "" {
		return c.currentProcess(i, streams...)
	}
	c.mu.Lock()
	s := c.srv[i]
	c.mu.Unlock()
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

func (c *Cluster) currentProcess(i int, streams ...string) bool {
	nc, err := nats.Connect(c.URLs(), nats.NoReconnect())
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
	name := c.specs[i].name
	for _, st := range streams {
		s, err := js.Stream(ctx, st)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		if err != nil || info.Cluster == nil {
			return false
		}
		ok := info.Cluster.Leader == name
		for _, r := range info.Cluster.Replicas {
			if r.Name == name {
				ok = r.Current && !r.Offline && r.Lag == 0
			}
		}
		if !ok || c.localLastSeq(ctx, i, st) < info.State.LastSeq {
			return false
		}
	}
	return true
}

// localLastSeq is the last sequence number server process i's own copy of
// stream holds, as its monitoring endpoint reports it (0 if it has none).
func (c *Cluster) localLastSeq(ctx context.Context, i int, stream string) uint64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.specs[i].monitor+"/jsz?accounts=true&streams=true", nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var jsz server.JSInfo
	if err := json.NewDecoder(resp.Body).Decode(&jsz); err != nil {
		return 0
	}
	for _, a := range jsz.AccountDetails {
		for _, st := range a.Streams {
			if st.Name == stream {
				return st.State.LastSeq
			}
		}
	}
	return 0
}

// startProcess runs server i as a nats-server process and waits until it
// takes clients.
func (c *Cluster) startProcess(i int) {
	c.t.Helper()
	s := c.specs[i]
	host, port, _ := net.SplitHostPort(s.addr)
	_, mport, _ := net.SplitHostPort(s.monitor)
	cmd := exec.Command(c.bin, "-a", host, "-p", port, "-n", s.name, "-js", "-sd", s.storeDir, "-m", mport,
		"--cluster_name", "sfere", "-cluster", "nats://"+s.cluster, "-routes", strings.Join(s.routes, ","))
	// The log goes beside the store (which a replacement deletes), to be
	// shown if the server never takes clients.
	logPath := filepath.Join(filepath.Dir(s.storeDir), s.name+".log")
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
	for end := time.Now().Add(ready); ; time.Sleep(20 * time.Millisecond) {
		nc, err := nats.Connect(c.URL(i), nats.NoReconnect())
		if err == nil {
			nc.Close()
			return
		}
		if time.Now().After(end) {
			log, _ := os.ReadFile(logPath)
			c.t.Fatalf("nats-server %s takes no clients after %v: %v; its log:\n%s", s.name, ready, err, tail(log, 4096))
		}
	}
}

// tail is the last n bytes of b.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func hostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("natstest: address %q: %w", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", 0, fmt.Errorf("natstest: address %q: %w", addr, err)
	}
	return host, p, nil
}

var (
	binOnce sync.Once
	binPath string // the binary, or the build's output if binErr
	binErr  error
)

// binary builds the nats-server command of the module's nats-server
// version, once per test binary, and keeps it between runs in the
// temporary directory (every package's tests share it).
func binary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds nats-server")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build nats-server with")
	}
	binOnce.Do(func() {
		v, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/nats-io/nats-server/v2").Output()
		if err != nil {
			binErr = fmt.Errorf("go list: %w", err)
			return
		}
		binPath = filepath.Join(os.TempDir(), "sfere-test-nats-server-"+strings.TrimSpace(string(v)))
		if _, err := os.Stat(binPath); err == nil {
			return
		}
		// Built beside it and renamed into place, so test binaries
		// building it at once do not collide.
		tmp, err := os.MkdirTemp("", "sfere-nats-bin-")
		if err != nil {
			binErr = err
			return
		}
		defer os.RemoveAll(tmp)
		out, err := exec.Command("go", "build", "-o", filepath.Join(tmp, "nats-server"), "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err == nil {
			err = os.Rename(filepath.Join(tmp, "nats-server"), binPath)
		}
		if err != nil {
			binErr, binPath = err, string(out)
		}
	})
	if binErr != nil {
		t.Fatalf("go build nats-server: %v\n%s", binErr, binPath)
	}
	return binPath
}
