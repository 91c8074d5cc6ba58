package ssetest

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// Logger returns a logger that writes records at level and above to t's
// log (shown for a failed test, or with -v), so a server under test says
// what it did without flooding the output. Records that arrive after t
// has ended are dropped, so a server still stopping cannot make the test
// panic. To drop everything, use slog.New(slog.DiscardHandler).
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	return slog.New(LogHandler(t, level))
}

// LogHandler is the handler of [Logger], for tests that wrap it.
func LogHandler(t testing.TB, level slog.Level) slog.Handler {
	w := &testLog{t: t}
	t.Cleanup(w.end)
	return slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})
}

// testLog writes each record as one line of t's log, until t ends.
type testLog struct {
	t     testing.TB
	mu    sync.Mutex
	ended bool
}

func (w *testLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.ended {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testLog) end() {
	w.mu.Lock()
	w.ended = true
	w.mu.Unlock()
}
