package natstest

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// leakCeiling bounds how long VerifyTestMain waits for goroutines to end.
const leakCeiling = 15 * time.Second

// VerifyTestMain runs a package's tests and then, as
// goleak.VerifyTestMain does, fails the run if goroutines are left; but
// it gives them up to leakCeiling to end first. An in-process nats-server
// returns from Shutdown before its file store's flush loop and its
// access-time ticker (package ats) have stopped, and on a loaded machine
// they outlast goleak's own retries (about a second): a leak is what is
// still there after the ceiling.
func VerifyTestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := settled(leakCeiling); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines left after a successful run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// settled polls goleak until no goroutine is left or within has passed,
// and returns goleak's last finding.
func settled(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		err := goleak.Find()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(250 * time.Millisecond)
	}
}
