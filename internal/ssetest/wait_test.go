package ssetest

import (
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a testing.TB that records what a helper reports.
type recorder struct {
	testing.TB
	fatal    string
	logs     []string
	cleanups []func()
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Log(args ...any) { r.logs = append(r.logs, fmt.Sprint(args...)) }

func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

// run runs f as a test body would, so that Fatalf ends only f.
func (r *recorder) run(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

func TestEventuallyWaitsForTheCondition(t *testing.T) {
	var n atomic.Int64
	go func() {
		for range 5 {
			time.Sleep(5 * time.Millisecond) // pacing: the ticks Eventually waits for
			n.Add(1)
		}
	}()
	Eventually(t, 5*time.Second, "five ticks", func() bool { return n.Load() == 5 })
}

func TestEventuallyFailsNamingWhatItWaitedFor(t *testing.T) {
	r := &recorder{TB: t}
	start := time.Now()
	r.run(func() { Eventually(r, 50*time.Millisecond, "the moon", func() bool { return false }) })
	if !strings.Contains(r.fatal, "still waiting for the moon after") || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("failure %q after %v", r.fatal, time.Since(start))
	}
}

func TestLoggerIsQuietAndStopsWithTheTest(t *testing.T) {
	r := &recorder{TB: t}
	log := Logger(r, slog.LevelWarn)
	log.Info("chatter")
	log.Warn("trouble", "id", 7)
	if len(r.logs) != 1 || !strings.Contains(r.logs[0], "msg=trouble id=7") || strings.HasSuffix(r.logs[0], "\n") {
		t.Fatalf("logged %q, want the warning alone, as one line", r.logs)
	}
	for _, f := range r.cleanups {
		f()
	}
	log.Error("after the end")
	if len(r.logs) != 1 {
		t.Fatalf("logged after the test ended: %q", r.logs)
	}
}
