package ssetest

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// Served is a server a test runs with [Serve].
type Served struct {
	// Addr is the loopback address (host:port) it serves on.
	Addr string

	t      testing.TB
	within time.Duration
	cancel context.CancelFunc
	done   chan struct{} // closed when run returned
	err    error         // what run returned
	once   sync.Once
}

// Serve runs run on a free loopback address until the test ends (or
// [Served.Stop]), and returns once the address takes connections. run
// must serve on addr until its context ends, then return nil, as the
// examples' run functions do. Serve fails t if run ends before it
// serves, or with an error; within bounds each wait (for it to listen,
// for it to return).
func Serve(t testing.TB, within time.Duration, run func(ctx context.Context, addr string) error) *Served {
	t.Helper()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Served{Addr: addr, t: t, within: within, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.err = run(ctx, addr)
	}()
	t.Cleanup(s.Stop)
	Eventually(t, within, "the server to listen on "+addr, func() bool {
		select {
		case <-s.done:
			s.once.Do(cancel) // reported here: nothing left for Stop
			t.Fatalf("run ended before serving: %v", s.err)
		default:
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return s
}

// Stop ends run's context and waits for it to return; it fails the test
// if run returns an error or does not return within Serve's ceiling.
// Serve stops the server when the test ends; Stop does it earlier, and
// only once.
func (s *Served) Stop() {
	s.t.Helper()
	s.once.Do(func() {
		s.cancel()
		select {
		case <-s.done:
			if s.err != nil {
				s.t.Errorf("run after its context ended: %v", s.err)
			}
		case <-time.After(s.within):
			s.t.Errorf("run did not return %v after its context ended", s.within)
		}
	})
}
