package natstest

import (
	"testing"
	"time"
)

// A goroutine that ends within the ceiling is no leak; one that is still
// there after it is.
func TestSettledWaitsForGoroutinesToEnd(t *testing.T) {
	done := make(chan struct{})
	go func() { time.Sleep(2 * time.Second); close(done) }() // outlasts goleak's own retries
	if err := settled(leakCeiling); err != nil {
		t.Fatalf("a goroutine that ends in 2 s: %v", err)
	}
	<-done

	stop := make(chan struct{})
	go func() { <-stop }()
	defer close(stop)
	if err := settled(time.Second); err == nil {
		t.Fatal("a goroutine blocked past the ceiling was not reported")
	}
}
