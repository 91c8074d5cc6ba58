package sfere

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// The conformance suite every Store passes is package storetest; MemoryStore
// and TTLStore run it in store_conformance_test.go. Here: what only a
// TTLStore does.

// cleanUp runs the cache's pending maintenance now (tests use it with a
// fake clock instead of waiting for the periodic clean-up).
func (t *TTLStore) cleanUp() { t.cache.CleanUp() }

func sortKeys(ks []Key) {
	slices.SortFunc(ks, func(a, b Key) int {
		if c := compareStrings(a.Scope, b.Scope); c != 0 {
			return c
		}
		if c := compareStrings(a.Category, b.Category); c != 0 {
			return c
		}
		return compareStrings(a.ID, b.ID)
	})
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestTTLStoreSlidingExpiry(t *testing.T) {
	clock := newFakeClock()
	ev := newEvictions()
	st, err := NewTTLStore(TTLOptions{Duration: time.Minute, Clock: clock, OnEvict: ev.record})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := newStream(NewKey("d", "lobby", "brian"), 0, nil)
	st.Put(s)
	for range 5 {
		clock.Advance(40 * time.Second)
		st.Touch(s) // a successful write: the timer restarts
		st.cleanUp()
	}
	ev.none(t, 50*time.Millisecond)
	if st.Count(All) != 1 {
		t.Fatal("a touched stream expired")
	}
	clock.Advance(61 * time.Second)
	st.cleanUp()
	got := ev.next(t, 2*time.Second)
	if got.Cause != CauseExpired || got.Stream != s {
		t.Fatalf("eviction = %+v, want expired", got)
	}
	if st.Count(All) != 0 {
		t.Fatal("expired stream still counted")
	}
	ev.none(t, 50*time.Millisecond)
}

func TestTTLStoreFixedExpiryIgnoresAccess(t *testing.T) {
	clock := newFakeClock()
	ev := newEvictions()
	st, err := NewTTLStore(TTLOptions{Duration: time.Minute, Expiry: Fixed, Clock: clock, OnEvict: ev.record})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := newStream(NewKey("d", "lobby", "brian"), 0, nil)
	st.Put(s)
	clock.Advance(40 * time.Second)
	st.Touch(s)
	st.Get(s.key)
	st.cleanUp()
	ev.none(t, 50*time.Millisecond)
	clock.Advance(21 * time.Second)
	st.cleanUp()
	if got := ev.next(t, 2*time.Second); got.Cause != CauseExpired {
		t.Fatalf("eviction = %+v, want expired despite access", got)
	}
}

func TestTTLStoreSizeCap(t *testing.T) {
	ev := newEvictions()
	const max = 10
	st, err := NewTTLStore(TTLOptions{MaxSize: max, OnEvict: ev.record})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const n = 50
	for i := range n {
		st.Put(newStream(NewKey("d", "lobby", fmt.Sprint(i)), 0, nil))
	}
	st.cleanUp()
	for range n - max {
		if got := ev.next(t, 2*time.Second); got.Cause != CauseSize {
			t.Fatalf("eviction = %+v, want size", got)
		}
	}
	ev.none(t, 100*time.Millisecond)
	if c := st.Count(All); c != max {
		t.Fatalf("Count = %d after size evictions, want %d", c, max)
	}
}

func TestTTLStoreRejectsBadOptions(t *testing.T) {
	if _, err := NewTTLStore(TTLOptions{Duration: -time.Second}); err == nil {
		t.Fatal("negative duration accepted")
	}
	if _, err := NewTTLStore(TTLOptions{Expiry: Expiry(9)}); err == nil {
		t.Fatal("unknown expiry accepted")
	}
}
