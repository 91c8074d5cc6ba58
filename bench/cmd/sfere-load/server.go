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
	"strings"
	"syscall"
	"time"

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
	if resp.StatusCode != http.StatusOK {
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
