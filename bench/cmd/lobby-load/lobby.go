package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// lobbyProc is the lobby under test: a process this tool started, or (pid
// 0) one the user started, of which only the URL is known.
type lobbyProc struct {
	url string
	cmd *exec.Cmd

	mu       sync.Mutex
	warnings int      // log lines at WARN or ERROR
	samples  []string // the first few of them
	crash    []string // from a line starting "panic:" or "fatal error:" on, a few lines
	stopping bool     // stop was called: an exit is not a crash
	exited   chan struct{}
}

// Server is what the tool learned about the lobby process during a trial.
type Server struct {
	PID        int      `json:"pid,omitempty"`
	CPUSec     float64  `json:"cpu_s,omitempty"` // user+system CPU time the trial cost the lobby
	PeakRSSMiB float64  `json:"peak_rss_mib,omitempty"`
	RSSMiB     float64  `json:"rss_mib_at_end,omitempty"`
	Warnings   int      `json:"log_warnings"`
	Samples    []string `json:"log_warning_samples,omitempty"`
	// Exited: the lobby process had ended by itself (a crash); Crash is
	// the first lines of what it said about it (a panic or fatal error).
	Exited bool     `json:"exited,omitempty"`
	Crash  []string `json:"crash,omitempty"`
}

// findLobby returns the lobby binary: the one named, or "lobby" next to
// this tool, or one built now with go build (which needs the working
// directory inside the bench module or the repository).
func findLobby(named string) (string, error) {
	if named != "" {
		return named, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "lobby")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	dir, err := os.MkdirTemp("", "lobby-load-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "lobby")
	logf("building the lobby: go build -o %s github.com/sfere-go/sfere/cmd/lobby", bin)
	out, err := exec.Command("go", "build", "-o", bin, "github.com/sfere-go/sfere/cmd/lobby").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build of the lobby failed (run from the bench module, or pass -lobby): %v\n%s", err, out)
	}
	return bin, nil
}

// startLobby starts the lobby binary and waits for the line in which it
// says where it listens.
func startLobby(bin string, args []string) (*lobbyProc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	l := &lobbyProc{cmd: cmd, exited: make(chan struct{})}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if !sent && strings.Contains(line, "lobby listening") {
				if _, rest, ok := strings.Cut(line, "url="); ok {
					u, _, _ := strings.Cut(rest, " ")
					urlc <- u
					sent = true
				}
			}
			l.mu.Lock()
			if (strings.HasPrefix(line, "panic:") || strings.HasPrefix(line, "fatal error:")) && l.crash == nil || l.crash != nil && len(l.crash) < 12 {
				l.crash = append(l.crash, line)
			}
			l.mu.Unlock()
			if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
				l.mu.Lock()
				l.warnings++
				if len(l.samples) < 5 {
					l.samples = append(l.samples, line)
				}
				l.mu.Unlock()
			}
		}
		_ = cmd.Wait()
		close(l.exited)
	}()
	select {
	case l.url = <-urlc:
		logf("lobby pid %d at %s (%s %s)", cmd.Process.Pid, l.url, filepath.Base(bin), strings.Join(args, " "))
		return l, nil
	case <-l.exited:
		return nil, fmt.Errorf("%s exited before it listened: %v", bin, l.warningSamples())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		return nil, errors.New("the lobby did not say where it listens within 30 s")
	}
}

func (l *lobbyProc) warningSamples() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.samples...)
}

// server reports the lobby process's CPU time so far and its memory.
func (l *lobbyProc) server() Server {
	if l.cmd == nil {
		return Server{}
	}
	pid := l.cmd.Process.Pid
	s := Server{PID: pid}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name (in parentheses): utime is the
		// 14th field of the line, stime the 15th, in clock ticks (100/s).
		if i := strings.LastIndexByte(string(b), ')'); i > 0 {
			f := strings.Fields(string(b)[i+1:])
			if len(f) > 13 {
				ut, _ := strconv.ParseFloat(f[11], 64)
				st, _ := strconv.ParseFloat(f[12], 64)
				s.CPUSec = (ut + st) / 100
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				s.PeakRSSMiB = kib(v) / 1024
			}
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				s.RSSMiB = kib(v) / 1024
			}
		}
	}
	l.mu.Lock()
	s.Warnings, s.Samples = l.warnings, append([]string(nil), l.samples...)
	s.Crash = append([]string(nil), l.crash...)
	select {
	case <-l.exited:
		s.Exited = !l.stopping
	default:
	}
	l.mu.Unlock()
	return s
}

func kib(v string) float64 {
	f := strings.Fields(v)
	if len(f) == 0 {
		return 0
	}
	x, _ := strconv.ParseFloat(f[0], 64)
	return x
}

// stop ends a lobby this tool started: SIGTERM (a graceful shutdown ends
// every stream from the server's side), then SIGKILL after 15 s.
func (l *lobbyProc) stop() {
	if l.cmd == nil {
		return
	}
	l.mu.Lock()
	l.stopping = true
	l.mu.Unlock()
	_ = l.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-l.exited:
	case <-time.After(15 * time.Second):
		logf("the lobby did not stop within 15 s of SIGTERM; killing it")
		_ = l.cmd.Process.Kill()
		<-l.exited
	}
}
