// Package storetest checks that a [sfere.Store] keeps the Store contract,
// as testing/slogtest does for slog handlers. [sfere.MemoryStore] and
// [sfere.TTLStore] pass it; so must a store written elsewhere (on Redis, say):
//
//	func TestMyStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, onEvict sfere.EvictFunc) sfere.Store {
//			return mystore.New(onEvict)
//		})
//	}
//
// The suite stores real streams: it serves them with a [sfere.Hub] over the
// store, to clients it connects over loopback TCP, so it also checks that
// an evicted stream really ends (its client's response ends and its Serve
// returns), which needs the store to hand every eviction to [sfere.Evict].
//
// What it checks: Get finds what was put, and storing a fresh key (or the
// same stream again) fires nothing; a new stream under a stored key evicts
// the old one with [sfere.CauseReplaced], exactly once, and ends it; Purge
// and PurgeStream evict exactly once with their cause and error and report
// whether they removed anything; Keys, Count and AppendStreams agree on
// every kind of pattern, including the match table of the original sfere;
// the eviction callback runs with no store lock held (it may read and
// write the store); and under concurrent opens, closes, purges and counts
// every stream is evicted exactly once and its eviction completes.
package storetest

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/sfere-go/sfere"
)

// Run runs the suite on stores from newStore, one fresh store per check,
// each as a subtest of t. newStore must return an empty store that calls
// onEvict once for every stream that leaves it (through [sfere.Evict]),
// and release what the store holds with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T, onEvict sfere.EvictFunc) sfere.Store) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, func(onEvict sfere.EvictFunc) sfere.Store { return newStore(t, onEvict) })
		})
	}
}

// Check runs the suite outside a test and returns what failed (nil if
// nothing did), each error naming its check. newStore returns an empty
// store that calls onEvict once for every stream that leaves it, and a
// function that releases the store (or nil).
func Check(newStore func(onEvict sfere.EvictFunc) (sfere.Store, func())) error {
	var errs []error
	for _, c := range cases {
		r := &reporter{name: c.name}
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer r.cleanUp()
			c.run(r, func(onEvict sfere.EvictFunc) sfere.Store {
				st, release := newStore(onEvict)
				if release != nil {
					r.Cleanup(release)
				}
				return st
			})
		}()
		<-done
		errs = append(errs, r.errs...)
	}
	return errors.Join(errs...)
}

// tb is what a check needs of a test; *testing.T has it, and so does the
// reporter of Check.
type tb interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// reporter is the tb of [Check]: it collects failures, and Fatalf ends
// the check's goroutine as testing.T's does.
type reporter struct {
	name     string
	mu       sync.Mutex
	errs     []error
	cleanups []func()
}

func (r *reporter) Helper() {}

func (r *reporter) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Errorf("%s: %s", r.name, fmt.Sprintf(format, args...)))
}

func (r *reporter) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func (r *reporter) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

// cleanUp runs the cleanups, last registered first, as testing does.
func (r *reporter) cleanUp() {
	for {
		r.mu.Lock()
		if len(r.cleanups) == 0 {
			r.mu.Unlock()
			return
		}
		f := r.cleanups[len(r.cleanups)-1]
		r.cleanups = r.cleanups[:len(r.cleanups)-1]
		r.mu.Unlock()
		f()
	}
}
