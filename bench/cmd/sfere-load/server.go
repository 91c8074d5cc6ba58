package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sfere-go/sfere/natscluster"

	"github.com/sfere-go/sfere/bench/internal/wire"
)

// server is one benchmark server process the tool started.
type server struct {
	cmd   *exec.Cmd
	ready wire.Ready
	ctl   *http.Client
	exit  chan error
}

// findServer locates the sfere-bench-server binary: the -server flag, next
// to this executable, on PATH, or else built from source with `go build`
// when run inside the bench module.
func findServer(flagPath string) (string, error) {
	if flagPath != "" {
		return flagPath, nil
	}
	const name = "sfere-bench-server"
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	dir, err := os.MkdirTemp("", "sfere-bench-")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, name)
	build := exec.Command("go", "build", "-o", out, "github.com/sfere-go/sfere/bench/cmd/sfere-bench-server")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("no %s binary found (next to this tool, on PATH, or via -server) and go build failed: %w", name, err)
	}
	return out, nil
}

// startServer execs the server in mode and waits for its ready line.
func startServer(bin, mode string, extra []string) (*server, error) {
	args := append([]string{"-mode", mode}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	// The server dies with this tool, however the tool ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, exit: make(chan error, 1), ctl: &http.Client{}}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, wire.ReadyPrefix) {
				select {
				case lines <- line:
				default:
				}
				continue
			}
			fmt.Fprintln(os.Stderr, "server:", line)
		}
	}()
	go func() { s.exit <- cmd.Wait() }()
	select {
	case line := <-lines:
		if err := json.Unmarshal([]byte(strings.TrimPrefix(line, wire.ReadyPrefix)), &s.ready); err != nil {
			s.stop()
			return nil, fmt.Errorf("bad ready line %q: %w", line, err)
		}
		return s, nil
	case err := <-s.exit:
		return nil, fmt.Errorf("server exited before it was ready: %v", err)
	case <-time.After(15 * time.Second):
		s.stop()
		return nil, errors.New("server not ready after 15s")
	}
}

// stop ends the server: SIGTERM, then SIGKILL after 5 s.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exit:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exit
	}
}

func (s *server) call(method, path string, body any, timeout time.Duration, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+s.ready.Control+path, rd)
	if err != nil {
		return err
	}
	resp, err := s.ctl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusNotImplemented {
		return errNotImplemented
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

var errNotImplemented = errors.New("not implemented by this mode")

func (s *server) stats() (wire.Stats, error) {
	var st wire.Stats
	err := s.call("GET", "/stats", nil, 10*time.Second, &st)
	return st, err
}

func (s *server) gc() (wire.Stats, error) {
	var st wire.Stats
	err := s.call("POST", "/gc", nil, 30*time.Second, &st)
	return st, err
}

func (s *server) broadcast(req wire.BroadcastRequest, timeout time.Duration) (wire.BroadcastResult, error) {
	var res wire.BroadcastResult
	err := s.call("POST", "/broadcast", req, timeout, &res)
	return res, err
}

// markLatency starts the server's count of delivery latencies anew
// (errNotImplemented: the mode keeps none).
func (s *server) markLatency() error {
	return s.call("POST", "/latency", nil, 10*time.Second, nil)
}

// latency is the server's delivery latencies since markLatency.
func (s *server) latency() (wire.WriteLatency, error) {
	var l wire.WriteLatency
	err := s.call("GET", "/latency", nil, 10*time.Second, &l)
	return l, err
}

func (s *server) sweep() (wire.SweepResult, error) {
	var res wire.SweepResult
	err := s.call("POST", "/heartbeat", nil, 90*time.Second, &res)
	return res, err
}

// profile saves a CPU profile of the server over d into path.
func (s *server) profile(path string, d time.Duration) error {
	return s.save(path, fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds())), d+30*time.Second)
}

// heapProfile saves a heap profile (after a GC) into path.
func (s *server) heapProfile(path string) error {
	return s.save(path, "/debug/pprof/heap?gc=1", 30*time.Second)
}

func (s *server) save(path, urlPath string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	url := "http://" + s.ready.Control + urlPath
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := s.ctl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// nodes is the server processes of one trial: one, or with -nodes k > 1,
// k sfere nodes joined in a natscluster over NATS servers embedded in
// this process. Broadcasts are triggered on nodes[0] only.
type nodes struct {
	srvs  []*server
	nats  []*natscluster.Server // none with one node
	procs []*natsProc           // with -nats-bin
}

// startNodes starts k servers in mode (k > 1: with -nats on natsServers
// NATS servers routed into one cluster, ids n0..n{k-1}, and the cluster's
// event log of spec).
func startNodes(bin, mode string, extra []string, k, natsServers int, natsBin string, spec logSpec) (*nodes, error) {
	if k <= 1 {
		s, err := startServer(bin, mode, extra)
		if err != nil {
			return nil, err
		}
		return &nodes{srvs: []*server{s}}, nil
	}
	c := &nodes{}
	urls, err := c.startNATS(max(natsServers, 1), natsBin)
	if err != nil {
		c.stop()
		return nil, err
	}
	for i := range k {
		args := append(slices.Clip(extra), "-nats", urls, "-node", fmt.Sprintf("n%d", i))
		if spec.history > 0 {
			args = append(args, "-history", strconv.Itoa(spec.history), "-replicas", strconv.Itoa(spec.replicas))
		}
		s, err := startServer(bin, mode, args)
		if err != nil {
			c.stop()
			return nil, fmt.Errorf("node %d: %w", i, err)
		}
		c.srvs = append(c.srvs, s)
	}
	// Every node subscribed to the broadcast subject before it printed
	// READY; the presence view (peers) forms within one snapshot interval.
	deadline := time.Now().Add(10 * time.Second)
	for {
		formed := true
		for _, s := range c.srvs {
			st, err := s.stats()
			if err != nil || st.Cluster == nil || len(st.Cluster.Peers) < k-1 {
				formed = false
				break
			}
		}
		if formed {
			return c, nil
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("the %d nodes do not all see each other after 10s", k)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends every server, then the NATS server.
func (c *nodes) stop() {
	var wg sync.WaitGroup
	for _, s := range c.srvs {
		wg.Go(s.stop)
	}
	wg.Wait()
	for _, ns := range c.nats {
		ns.Shutdown()
	}
	for _, p := range c.procs {
		p.stop()
	}
}

// streamAddrs lists the nodes' stream listeners, in node order.
func (c *nodes) streamAddrs() []string {
	out := make([]string, len(c.srvs))
	for i, s := range c.srvs {
		out[i] = s.ready.Streams
	}
	return out
}

// stats sums the nodes' figures (streams, RSS, goroutines, memory, ended).
func (c *nodes) stats() (wire.Stats, error) { return c.sum((*server).stats) }

// gc forces a GC on every node and sums their figures afterwards.
func (c *nodes) gc() (wire.Stats, error) { return c.sum((*server).gc) }

func (c *nodes) sum(get func(*server) (wire.Stats, error)) (wire.Stats, error) {
	var out wire.Stats
	for _, s := range c.srvs {
		st, err := get(s)
		if err != nil {
			return out, err
		}
		out.Mode = st.Mode
		out.Streams += st.Streams
		out.RSSBytes += st.RSSBytes
		out.Goroutines += st.Goroutines
		out.HeapInuse += st.HeapInuse
		out.StackInuse += st.StackInuse
		out.Sys += st.Sys
		out.NumGC += st.NumGC
		for k, v := range st.Ended {
			if out.Ended == nil {
				out.Ended = map[string]int64{}
			}
			out.Ended[k] += v
		}
	}
	return out, nil
}
