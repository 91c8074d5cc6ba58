package sfere

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test in the package must leave no goroutine behind: no stream,
// heartbeat, hub or store outlives what the test closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
