package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// proc is one server process of the cluster under test (a NATS server, a
// lobby node, nginx), which the nemesis kills, stops and restarts. Its
// output goes to a log file, appended across restarts.
type proc struct {
	name    string
	bin     string
	args    []string
	logPath string
	// ready answers once the process serves (nil: as soon as it runs).
	ready func(ctx context.Context) error
	// before runs before each start (the NATS server's empty store).
	before func() error

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	paused bool
}

// startTries is how many times start starts a process that exits while
// starting, a second apart, as a supervisor (systemd's Restart=) would: a
// lobby node exits when the cluster's event log is out of reach at its
// start.
const startTries = 5

// start starts the process and waits until it is ready (at most the
// ceiling), starting it again if it exits meanwhile.
func (p *proc) start(ctx context.Context) error {
	var err error
	for i := range startTries {
		if i > 0 {
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return err
			}
		}
		if err = p.startOnce(ctx); !errors.Is(err, errExited) {
			return err
		}
	}
	return err
}

// errExited says that a process exited while starting.
var errExited = errors.New("exited while starting")

func (p *proc) startOnce(ctx context.Context) error {
	if p.before != nil {
		if err := p.before(); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	out, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: log: %w", p.name, err)
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = out, out
	// The process dies with the campaign, even if the campaign is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("%s: start: %w", p.name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(exited)
	}()
	p.mu.Lock()
	p.cmd, p.exited, p.paused = cmd, exited, false
	p.mu.Unlock()
	if p.ready == nil {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, readyCeiling)
	defer cancel()
	for {
		err := p.ready(rctx)
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%s %w (see %s)", p.name, errExited, p.logPath)
		case <-rctx.Done():
			return fmt.Errorf("%s not ready within %v (see %s): %w", p.name, readyCeiling, p.logPath, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// readyCeiling bounds the wait for a process to serve.
const readyCeiling = 60 * time.Second

// pid returns the running process's id, 0 if none.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	select {
	case <-p.exited:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}

// signal sends sig to the running process.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return errors.New(p.name + ": not started")
	}
	switch sig {
	case syscall.SIGSTOP:
		p.paused = true
	case syscall.SIGCONT:
		p.paused = false
	}
	return p.cmd.Process.Signal(sig)
}

// kill kills the process (SIGKILL) and waits for it to be gone.
func (p *proc) kill() {
	p.stop(syscall.SIGKILL, 0)
}

// stop sends sig (continuing a paused process first), waits at most grace
// for it to exit, then kills it.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, exited, paused := p.cmd, p.exited, p.paused
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	if paused && sig != syscall.SIGKILL {
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	select {
	case <-exited:
		return
	case <-time.After(grace):
	}
	_ = cmd.Process.Kill()
	<-exited
}

// httpReady is a ready check: GET url answers 200.
func httpReady(url string) func(ctx context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}
