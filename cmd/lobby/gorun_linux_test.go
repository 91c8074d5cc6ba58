package main

import (
	"bytes"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
)

// A SIGTERM to the go command of `go run ./cmd/lobby` stops the lobby too,
// gracefully (the go command dies of it and does not pass it on). The go
// command is played by this test binary under the name go, doing what go
// run does: start the program, ignore SIGINT and SIGQUIT, wait.
func TestGoRunStopsOnSIGTERM(t *testing.T) {
	fakeGo := filepath.Join(t.TempDir(), "go")
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fakeGo, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(fakeGo, "-addr", "127.0.0.1:0", "-session-key-file", "")
	cmd.Env = append(os.Environ(), "LOBBY_TEST_FAKE_GO=1", "LOBBY_TEST_BIN="+os.Args[0])
	checkStopsWithParent(t, cmd, 30*time.Second)
}

// The same with the real go command, which compiles first (minutes on a
// busy machine): only with LOBBY_TEST_GO_RUN=1.
func TestRealGoRunStopsOnSIGTERM(t *testing.T) {
	if os.Getenv("LOBBY_TEST_GO_RUN") != "1" {
		t.Skip("compiles the command with go run; set LOBBY_TEST_GO_RUN=1 to run it")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	checkStopsWithParent(t, exec.Command(goCmd, "run", ".", "-addr", "127.0.0.1:0", "-session-key-file", ""), 10*time.Minute)
}

// fakeGoRun is what go run does once the program is built: run it with
// SIGINT and SIGQUIT ignored, and wait.
func fakeGoRun(args []string) int {
	signal.Ignore(os.Interrupt, syscall.SIGQUIT)
	child := exec.Command(os.Getenv("LOBBY_TEST_BIN"), args...)
	child.Env = append(os.Environ(), "LOBBY_TEST_MAIN=1", "LOBBY_TEST_FAKE_GO=")
	child.Stderr = os.Stderr
	if err := child.Run(); err != nil {
		return 1
	}
	return 0
}

// checkStopsWithParent starts cmd, a go run of the lobby, waits up to
// start for the lobby to listen, sends cmd SIGTERM, and checks that the
// lobby stops gracefully.
func checkStopsWithParent(t *testing.T, cmd *exec.Cmd, start time.Duration) {
	t.Helper()
	var out lockedBuffer
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	var waitErr error
	go func() { // Wait returns once every holder of stderr (the lobby too) is gone
		waitErr = cmd.Wait()
		close(waited)
	}()
	pid := 0
	t.Cleanup(func() {
		cmd.Process.Kill()
		if pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		<-waited
	})
	ssetest.Eventually(t, start, "the lobby to listen", func() bool {
		return bytes.Contains(out.Bytes(), []byte(`msg="lobby listening"`))
	})
	if m := regexp.MustCompile(`msg="lobby starting".* pid=(\d+)`).FindSubmatch(out.Bytes()); m != nil {
		pid, _ = strconv.Atoi(string(m[1]))
	}
	if pid == 0 || pid == cmd.Process.Pid {
		t.Fatalf("no pid of a child of go run in:\n%s", out.Bytes())
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		t.Fatalf("the lobby (pid %d) still runs 30 s after go run got SIGTERM:\n%s", pid, out.Bytes())
	}
	if !bytes.Contains(out.Bytes(), []byte(`msg="lobby stopped"`)) {
		t.Fatalf("the lobby did not stop gracefully (go run: %v):\n%s", waitErr, out.Bytes())
	}
}

// lockedBuffer is a child's output, read while it is written.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.b.Bytes())
}
