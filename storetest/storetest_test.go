package storetest_test

import (
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A store built on sfere's exported API alone passes, through Run.
func TestMapStorePasses(t *testing.T) {
	storetest.Run(t, func(t *testing.T, onEvict sfere.EvictFunc) sfere.Store { return newMapStore(onEvict) })
}

// sloppyCount counts every key, whatever the pattern.
type sloppyCount struct{ *mapStore }

func (s sloppyCount) Count(sfere.Pattern) int { return len(s.Keys(sfere.All)) }

// doubleEvict reports a purged stream's eviction twice.
type doubleEvict struct{ *mapStore }

func (s doubleEvict) Purge(k sfere.Key) bool {
	st, ok := s.Get(k)
	if !ok || !s.mapStore.Purge(k) {
		return false
	}
	sfere.Evict(s.onEvict, sfere.Eviction{Key: k, Stream: st, Cause: sfere.CauseExplicit})
	return true
}

// The suite fails a store that breaks the contract, and says how. (A
// store that drops a stream without sfere.Evict fails it too, but leaves
// that stream's Serve waiting for good: no test here builds one.)
func TestCheckFindsBrokenStores(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(onEvict sfere.EvictFunc) sfere.Store
		want  []string // in the error
	}{
		{"count ignores the pattern", func(f sfere.EvictFunc) sfere.Store { return sloppyCount{newMapStore(f)} },
			[]string{"KeysAndCountByPattern: Count(*/lobby/*) = 4, want 3", "OriginalMatchTable: Count("}},
		{"purge evicts twice", func(f sfere.EvictFunc) sfere.Store { return doubleEvict{newMapStore(f)} },
			[]string{"PurgeExplicit: unexpected eviction explicit of default/lobby/brian", "ConcurrentOpenClosePurgeExactlyOnce: stream"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := storetest.Check(func(onEvict sfere.EvictFunc) (sfere.Store, func()) { return tc.store(onEvict), nil })
			if err == nil {
				t.Fatal("a broken store passed")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}
