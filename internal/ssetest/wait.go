package ssetest

import (
	"testing"
	"time"
)

// Eventually polls cond until it holds, and fails t if it still does not
// after within, naming what it waited for. Give it a generous ceiling: the
// wait ends as soon as cond holds.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	for pause := time.Millisecond; !cond(); pause = min(2*pause, 20*time.Millisecond) {
		if waited := time.Since(start); waited > within {
			t.Fatalf("still waiting for %s after %v", what, waited.Round(time.Millisecond))
		}
		time.Sleep(pause)
	}
}
