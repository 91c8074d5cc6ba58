package natspresence_test

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
)

var (
	natsBinOnce sync.Once
	natsBin     string
	natsBinErr  error
)

// natsServerBinary builds the nats-server command of the module this
// package depends on, once per test binary, and keeps it between runs in
// the temporary directory (natscluster's tests share it).
func natsServerBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds nats-server")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build nats-server with")
	}
	natsBinOnce.Do(func() {
		v, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/nats-io/nats-server/v2").Output()
		if err != nil {
			natsBinErr = fmt.Errorf("go list: %w", err)
			return
		}
		natsBin = filepath.Join(os.TempDir(), "sfere-test-nats-server-"+strings.TrimSpace(string(v)))
		if _, err := os.Stat(natsBin); err == nil {
			return
		}
		// Built beside it and renamed into place, so test binaries
		// building it at once do not collide.
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
func (n *natsTrio) startProcess(i int) {
	n.t.Helper()
	o := n.opts[i]
	host, port, _ := net.SplitHostPort(o.Addr)
	args := []string{"-a", host, "-p", port, "-n", o.Name, "-js", "-sd", o.StoreDir,
		"--cluster_name", "sfere", "-cluster", "nats://" + o.Cluster, "-routes", strings.Join(o.Routes, ",")}
	cmd := exec.Command(n.bin, args...)
	// The log goes beside the store (which a replacement deletes), to be
	// shown if the server never takes clients.
	logPath := filepath.Join(filepath.Dir(o.StoreDir), o.Name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.mu.Lock()
	n.proc[i] = cmd
	n.mu.Unlock()
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
			n.t.Fatalf("nats-server %s not ready: %v; its log:\n%s", o.Name, err, log)
		}
	}
}

// currentProcess is current for a server process, asked through the
// JetStream API: its replica of stream is current, online and not
// behind, or it leads the stream.
func (n *natsTrio) currentProcess(i int, stream string) bool {
	nc, err := nats.Connect(n.urls(), nats.NoReconnect())
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
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return false
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil {
		return false
	}
	if info.Cluster.Leader == n.opts[i].Name {
		return true
	}
	for _, r := range info.Cluster.Replicas {
		if r.Name == n.opts[i].Name {
			return r.Current && !r.Offline && r.Lag == 0
		}
	}
	return false
}
