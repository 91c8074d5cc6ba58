package sfere

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// storeMaker builds a fresh store reporting evictions to onEvict.
type storeMaker func(t *testing.T, onEvict EvictFunc) Store

func memoryMaker(t *testing.T, onEvict EvictFunc) Store {
	return NewMemoryStore(MemoryOptions{OnEvict: onEvict})
}

func ttlMaker(t *testing.T, onEvict EvictFunc) Store {
	s, err := NewTTLStore(TTLOptions{OnEvict: onEvict})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// The one conformance suite every Store passes.
func TestStoreConformance(t *testing.T) {
	for name, mk := range map[string]storeMaker{"memory": memoryMaker, "ttl": ttlMaker} {
		t.Run(name, func(t *testing.T) { runStoreSuite(t, mk) })
	}
}

func runStoreSuite(t *testing.T, mk storeMaker) {
	brian := NewKey(DefaultScope, "lobby", "brian")
	phil := NewKey(DefaultScope, "lobby", "phil")
	game := NewKey("u2", "game", "42")

	t.Run("PutGetAndFreshKeyFiresNothing", func(t *testing.T) {
		ev := newEvictions()
		st := mk(t, ev.record)
		s := newStream(brian, 0)
		st.Put(s)
		if got, ok := st.Get(brian); !ok || got != s {
			t.Fatalf("Get = %v, %v", got, ok)
		}
		if _, ok := st.Get(phil); ok {
			t.Fatal("Get of a missing key found something")
		}
		st.Put(s) // the same stream again is not a replacement
		ev.none(t, 50*time.Millisecond)
	})

	t.Run("ReplacedOnceAndOldStreamEnded", func(t *testing.T) {
		ev := newEvictions()
		st := mk(t, ev.record)
		old, repl := newStream(brian, 0), newStream(brian, 0)
		st.Put(old)
		st.Put(repl)
		got := ev.next(t, time.Second)
		if got.Cause != CauseReplaced || got.Stream != old || got.Key != brian || got.Err != nil {
			t.Fatalf("eviction = %+v, want replaced of the old stream", got)
		}
		select {
		case <-old.Done():
		default:
			t.Fatal("replaced stream not ended")
		}
		if s, _ := st.Get(brian); s != repl {
			t.Fatal("the new stream does not hold the key")
		}
		if st.PurgeStream(old, CauseClosed, nil) {
			t.Fatal("PurgeStream of a replaced stream removed something")
		}
		ev.none(t, 50*time.Millisecond)
	})

	t.Run("PurgeExplicit", func(t *testing.T) {
		ev := newEvictions()
		st := mk(t, ev.record)
		s := newStream(brian, 0)
		st.Put(s)
		if !st.Purge(brian) {
			t.Fatal("Purge found nothing")
		}
		got := ev.next(t, time.Second)
		if got.Cause != CauseExplicit || got.Stream != s {
			t.Fatalf("eviction = %+v", got)
		}
		if st.Purge(brian) {
			t.Fatal("second Purge found something")
		}
		if st.Count(All) != 0 {
			t.Fatal("store not empty")
		}
		ev.none(t, 50*time.Millisecond)
	})

	t.Run("PurgeStreamCarriesCauseAndError", func(t *testing.T) {
		ev := newEvictions()
		st := mk(t, ev.record)
		s := newStream(brian, 0)
		st.Put(s)
		boom := errors.New("boom")
		if !st.PurgeStream(s, CauseClosed, boom) {
			t.Fatal("PurgeStream found nothing")
		}
		got := ev.next(t, time.Second)
		if got.Cause != CauseClosed || !errors.Is(got.Err, boom) || got.Key != brian {
			t.Fatalf("eviction = %+v", got)
		}
		if st.PurgeStream(s, CauseClosed, boom) {
			t.Fatal("second PurgeStream removed something")
		}
		ev.none(t, 50*time.Millisecond)
	})

	t.Run("KeysAndCountByPattern", func(t *testing.T) {
		st := mk(t, nil)
		for _, k := range []Key{brian, phil, game, NewKey("u1", "lobby", "*")} {
			st.Put(newStream(k, 0))
		}
		tests := []struct {
			p    Pattern
			want []Key
		}{
			{All, []Key{brian, phil, game, NewKey("u1", "lobby", "*")}},
			{InCategory("lobby"), []Key{brian, phil, NewKey("u1", "lobby", "*")}},
			{NewPattern(Exactly(DefaultScope), Exactly("lobby"), Any), []Key{brian, phil}},
			{NewPattern(Any, Any, Exactly("42")), []Key{game}},
			{NewPattern(Any, Exactly("lobby"), Exactly("*")), []Key{NewKey("u1", "lobby", "*")}},
			{phil.Pattern(), []Key{phil}},
			{InScope("nobody"), nil},
			{InCategory("nothing"), nil},
		}
		for _, tt := range tests {
			got := st.Keys(tt.p)
			sortKeys(got)
			sortKeys(tt.want)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Keys(%v) = %v, want %v", tt.p, got, tt.want)
			}
			if n := st.Count(tt.p); n != len(tt.want) {
				t.Errorf("Count(%v) = %d, want %d", tt.p, n, len(tt.want))
			}
			if n := len(st.AppendStreams(nil, tt.p)); n != len(tt.want) {
				t.Errorf("AppendStreams(%v) has %d, want %d", tt.p, n, len(tt.want))
			}
		}
	})

	t.Run("CallbackMayCallTheStore", func(t *testing.T) {
		var st Store
		done := make(chan struct{})
		st = mk(t, func(ev Eviction) {
			// Runs with no store lock held: reading and writing must not deadlock.
			st.Count(All)
			st.Keys(InCategory("lobby"))
			if ev.Key == brian {
				st.Put(newStream(phil, 0))
				st.Purge(phil)
				close(done)
			}
		})
		st.Put(newStream(brian, 0))
		st.Purge(brian)
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatal("callback calling the store deadlocked")
		}
	})

	t.Run("ConcurrentPutPurgeExactlyOnce", func(t *testing.T) {
		ev := newEvictions()
		st := mk(t, ev.record)
		const workers, rounds = 8, 300
		var wg sync.WaitGroup
		var streamsMu sync.Mutex
		var streams []*Stream
		for w := range workers {
			wg.Go(func() {
				for i := range rounds {
					k := NewKey(DefaultScope, "lobby", fmt.Sprint(i%17)) // shared keys: replacements race
					s := newStream(k, 0)
					streamsMu.Lock()
					streams = append(streams, s)
					streamsMu.Unlock()
					st.Put(s)
					switch (w + i) % 3 {
					case 0:
						st.PurgeStream(s, CauseClosed, nil)
					case 1:
						st.Purge(k)
					}
					st.Count(InCategory("lobby"))
				}
			})
		}
		wg.Wait()
		// Drain: whatever is left leaves by an explicit purge.
		for _, k := range st.Keys(All) {
			st.Purge(k)
		}
		if n := st.Count(All); n != 0 {
			t.Fatalf("Count after draining = %d", n)
		}
		seen := map[*Stream]int{}
		for _, e := range ev.snapshot() {
			seen[e.Stream]++
		}
		for _, s := range streams {
			if seen[s] != 1 {
				t.Fatalf("stream %v evicted %d times, want exactly once", s.key, seen[s])
			}
			select {
			case <-s.finished:
			default:
				t.Fatalf("stream %v eviction never finished", s.key)
			}
		}
	})
}

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
	s := newStream(NewKey("d", "lobby", "brian"), 0)
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
	s := newStream(NewKey("d", "lobby", "brian"), 0)
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
		st.Put(newStream(NewKey("d", "lobby", fmt.Sprint(i)), 0))
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
