package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
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

// The parent's death signal is a thread's setting: disarmed from another
// thread than the one that armed it, it stays armed there, and the
// kernel's SIGTERM, sent again each time the lobby passes from one of the
// dying go command's threads to another, kills a lobby that has already
// stopped listening for it (a full test run once saw "shutting down" and
// no "lobby stopped"). Here the arming and the disarming goroutines are
// locked to two different threads, and the parent dies once disarm has
// returned: no SIGTERM may follow. Armed and never disarmed, it must.
func TestParentDeathSignalDisarmsFromAnyThread(t *testing.T) {
	for _, tc := range []struct {
		disarm bool
		want   string
	}{
		{disarm: false, want: "SIGTERM after the parent died"},
		{disarm: true, want: "no SIGTERM after the parent died"},
	} {
		t.Run(fmt.Sprintf("disarm=%v", tc.disarm), func(t *testing.T) {
			var out bytes.Buffer
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "LOBBY_TEST_PDEATH=parent", fmt.Sprintf("LOBBY_TEST_PDEATH_DISARM=%v", tc.disarm))
			cmd.Stdout = &out
			cmd.Stderr = &out
			// Wait returns once the orphaned child has closed its output too.
			if err := cmd.Run(); err != nil {
				t.Fatalf("parent: %v\n%s", err, out.Bytes())
			}
			if got := strings.TrimSpace(out.String()); got != tc.want {
				t.Fatalf("child said %q, want %q", got, tc.want)
			}
		})
	}
}

func init() {
	switch os.Getenv("LOBBY_TEST_PDEATH") {
	case "parent":
		os.Exit(pdeathParent())
	case "child":
		os.Exit(pdeathChild())
	}
}

// pdeathParent starts the child of TestParentDeathSignalDisarmsFromAnyThread,
// waits until it has armed (and perhaps disarmed) the signal, and exits
// without waiting for it.
func pdeathParent() int {
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Println(err)
		return 1
	}
	child := exec.Command(os.Args[0])
	child.Env = append(os.Environ(), "LOBBY_TEST_PDEATH=child")
	child.Stdout = os.Stdout
	child.Stderr = os.Stderr
	child.ExtraFiles = []*os.File{w} // fd 3
	if err := child.Start(); err != nil {
		fmt.Println(err)
		return 1
	}
	w.Close()
	io.Copy(io.Discard, r) // until the child closes fd 3: it is ready
	return 0
}

// pdeathChild arms the parent's death signal on one thread, disarms it
// from another if asked, tells the parent it is ready, and says whether a
// SIGTERM came once the parent was gone.
func pdeathChild() int {
	terms := make(chan os.Signal, 1)
	signal.Notify(terms, syscall.SIGTERM)
	parent := os.Getppid()
	disarms := make(chan func())
	go func() { // keeps its thread, so the disarming goroutine gets another
		runtime.LockOSThread()
		disarms <- signalOnParentDeath(parent, syscall.SIGTERM)
		select {}
	}()
	disarm := <-disarms
	if os.Getenv("LOBBY_TEST_PDEATH_DISARM") == "true" {
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			disarm()
			close(done)
		}()
		<-done
	}
	os.NewFile(3, "ready").Close()
	// Polls (no testing.T here): the parent's death is seen as a new ppid.
	for deadline := time.Now().Add(30 * time.Second); os.Getppid() == parent; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			fmt.Println("the parent still runs after 30 s")
			return 1
		}
	}
	select {
	case <-terms:
		fmt.Println("SIGTERM after the parent died")
	// A negative check no clock can fake: the kernel queues the signal as
	// it hands the child to a new parent, so a second is plenty.
	case <-time.After(time.Second):
		fmt.Println("no SIGTERM after the parent died")
	}
	return 0
}
