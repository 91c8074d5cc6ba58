package storetest_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/storetest"
)

// mapStore is a Store written as a third party writes one, with sfere's
// exported API alone: a map under a mutex, every eviction handed to
// sfere.Evict once the mutex is released.
type mapStore struct {
	onEvict sfere.EvictFunc
	mu      sync.Mutex
	m       map[sfere.Key]*sfere.Stream
}

func newMapStore(onEvict sfere.EvictFunc) *mapStore {
	return &mapStore{onEvict: onEvict, m: map[sfere.Key]*sfere.Stream{}}
}

func (s *mapStore) Put(st *sfere.Stream) {
	s.mu.Lock()
	old := s.m[st.Key()]
	s.m[st.Key()] = st
	s.mu.Unlock()
	if old != nil && old != st {
		sfere.Evict(s.onEvict, sfere.Eviction{Key: old.Key(), Stream: old, Cause: sfere.CauseReplaced})
	}
}

func (s *mapStore) Get(k sfere.Key) (*sfere.Stream, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.m[k]
	return st, ok
}

func (s *mapStore) Touch(*sfere.Stream) {} // nothing expires

func (s *mapStore) Purge(k sfere.Key) bool {
	s.mu.Lock()
	st, ok := s.m[k]
	delete(s.m, k)
	s.mu.Unlock()
	if ok {
		sfere.Evict(s.onEvict, sfere.Eviction{Key: k, Stream: st, Cause: sfere.CauseExplicit})
	}
	return ok
}

func (s *mapStore) PurgeStream(st *sfere.Stream, cause sfere.Cause, err error) bool {
	s.mu.Lock()
	ok := s.m[st.Key()] == st
	if ok {
		delete(s.m, st.Key())
	}
	s.mu.Unlock()
	if ok {
		sfere.Evict(s.onEvict, sfere.Eviction{Key: st.Key(), Stream: st, Cause: cause, Err: err})
	}
	return ok
}

func (s *mapStore) Keys(p sfere.Pattern) []sfere.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []sfere.Key
	for k := range s.m {
		if p.Match(k) {
			keys = append(keys, k)
		}
	}
	return keys
}

func (s *mapStore) Count(p sfere.Pattern) int { return len(s.Keys(p)) }

func (s *mapStore) AppendStreams(dst []*sfere.Stream, p sfere.Pattern) []*sfere.Stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, st := range s.m {
		if p.Match(k) {
			dst = append(dst, st)
		}
	}
	return dst
}

// Check runs the suite outside a test: here on a store kept in a plain
// map, written with sfere's exported API alone.
func ExampleCheck() {
	err := storetest.Check(func(onEvict sfere.EvictFunc) (sfere.Store, func()) {
		return newMapStore(onEvict), nil
	})
	fmt.Println("the map store keeps the Store contract:", err == nil)
	// Output: the map store keeps the Store contract: true
}

// Run is the suite as subtests of a test function, in a _test.go file of
// the package that holds the store. A store that holds resources
// releases them with t.Cleanup.
func ExampleRun() {
	testTTLStore := func(t *testing.T) {
		storetest.Run(t, func(t *testing.T, onEvict sfere.EvictFunc) sfere.Store {
			s, err := sfere.NewTTLStore(sfere.TTLOptions{OnEvict: onEvict})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			return s
		})
	}
	_ = testTTLStore // func TestTTLStore(t *testing.T) in a real test file
}
