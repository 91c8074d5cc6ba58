package dashboard_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test must leave no goroutine behind: a dashboard's sampler stops
// once its last page's stream has ended.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
