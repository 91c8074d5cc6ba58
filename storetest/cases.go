package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// cases are the checks, each on a fresh store.
var cases = []struct {
	name string
	run  func(t tb, newStore func(sfere.EvictFunc) sfere.Store)
}{
	{"PutGetAndFreshKeyFiresNothing", putGet},
	{"ReplacedOnceAndOldStreamEnded", replaced},
	{"PurgeExplicit", purge},
	{"PurgeStreamCarriesCauseAndError", purgeStream},
	{"KeysAndCountByPattern", keysAndCount},
	{"OriginalMatchTable", matchTable},
	{"CallbackMayCallTheStore", callbackMayCallTheStore},
	{"ConcurrentOpenClosePurgeExactlyOnce", concurrent},
}

var (
	brian = sfere.NewKey(sfere.DefaultScope, "lobby", "brian")
	phil  = sfere.NewKey(sfere.DefaultScope, "lobby", "phil")
)

func putGet(t tb, newStore func(sfere.EvictFunc) sfere.Store) {
	e := newEnv(t, newStore, nil)
	s, _ := e.open(brian)
	if got, ok := e.store.Get(brian); !ok || got != s {
		t.Fatalf("Get(%v) = %p, %v; want the stream stored", brian, got, ok)
	}
	if _, ok := e.store.Get(phil); ok {
		t.Fatalf("Get of a missing key found something")
	}
	e.store.Put(s) // the same stream again is not a replacement
	e.store.Touch(s)
	e.ev.none(t)
	if n := e.store.Count(sfere.All); n != 1 {
		t.Fatalf("Count = %d after one stream, stored twice; want 1", n)
	}
}

func replaced(t tb, newStore func(sfere.EvictFunc) sfere.Store) {
	e := newEnv(t, newStore, nil)
	old, oldClient := e.open(brian)
	repl, _ := e.open(brian)
	got := e.ev.next(t)
	if got.Cause != sfere.CauseReplaced || got.Stream != old || got.Key != brian || got.Err != nil {
		t.Fatalf("eviction = %v of %v (stream %p, err %v), want replaced of the old stream %p", got.Cause, got.Key, got.Stream, got.Err, old)
	}
	if !isDone(old) {
		t.Fatalf("the replaced stream was not ended (its eviction did not go through sfere.Evict)")
	}
	e.ends(oldClient, "the replaced stream")
	if s, _ := e.store.Get(brian); s != repl {
		t.Fatalf("the new stream does not hold the key")
	}
	if e.store.PurgeStream(old, sfere.CauseClosed, nil) {
		t.Fatalf("PurgeStream of a replaced stream removed something")
	}
	e.ev.none(t)
}

func purge(t tb, newStore func(sfere.EvictFunc) sfere.Store) {
	e := newEnv(t, newStore, nil)
	s, c := e.open(brian)
	if !e.store.Purge(brian) {
		t.Fatalf("Purge found nothing")
	}
	if got := e.ev.next(t); got.Cause != sfere.CauseExplicit || got.Stream != s || got.Key != brian {
		t.Fatalf("eviction = %v of %v, want explicit of brian's stream", got.Cause, got.Key)
	}
	e.ends(c, "the purged stream")
	if e.store.Purge(brian) {
		t.Fatalf("second Purge found something")
	}
	e.store.Touch(s) // no longer stored: nothing happens
	if n := e.store.Count(sfere.All); n != 0 {
		t.Fatalf("Count = %d after the purge, want 0", n)
	}
	e.ev.none(t)
}

func purgeStream(t tb, newStore func(sfere.EvictFunc) sfere.Store) {
	e := newEnv(t, newStore, nil)
	s, c := e.open(brian)
	boom := errors.New("boom")
	if !e.store.PurgeStream(s, sfere.CauseClosed, boom) {
		t.Fatalf("PurgeStream found nothing")
	}
	got := e.ev.next(t)
	if got.Cause != sfere.CauseClosed || !errors.Is(got.Err, boom) || got.Key != brian || got.Stream != s {
		t.Fatalf("eviction = %v of %v (%v), want closed of brian's stream with its error", got.Cause, got.Key, got.Err)
	}
	e.ends(c, "the purged stream")
	if e.store.PurgeStream(s, sfere.CauseClosed, boom) {
		t.Fatalf("second PurgeStream removed something")
	}
	e.ev.none(t)
}

// patternCase is one pattern and the keys it must select.
type patternCase struct {
	p    sfere.Pattern
	want []sfere.Key
}

// checkPatterns opens a stream under every key and checks that Keys,
// Count and AppendStreams select the keys each case wants.
func checkPatterns(t tb, newStore func(sfere.EvictFunc) sfere.Store, keys []sfere.Key, tests []patternCase) {
	e := newEnv(t, newStore, nil)
	for _, k := range keys {
		e.open(k)
	}
	for _, tt := range tests {
		got := e.store.Keys(tt.p)
		sortKeys(got)
		want := slices.Clone(tt.want)
		sortKeys(want)
		if !slices.Equal(got, want) {
			t.Errorf("Keys(%v) = %v, want %v", tt.p, got, want)
		}
		if n := e.store.Count(tt.p); n != len(want) {
			t.Errorf("Count(%v) = %d, want %d", tt.p, n, len(want))
		}
		var streamKeys []sfere.Key
		for _, s := range e.store.AppendStreams(nil, tt.p) {
			streamKeys = append(streamKeys, s.Key())
		}
		sortKeys(streamKeys)
		if !slices.Equal(streamKeys, want) {
			t.Errorf("AppendStreams(%v) has the streams of %v, want %v", tt.p, streamKeys, want)
		}
	}
	// AppendStreams appends.
	first := e.store.AppendStreams(nil, sfere.All)
	if both := e.store.AppendStreams(first, sfere.All); len(both) != 2*len(keys) || !slices.Equal(both[:len(first)], first) {
		t.Errorf("AppendStreams onto %d streams returned %d, want them kept and %d more", len(first), len(both), len(keys))
	}
}

func keysAndCount(t tb, newStore func(sfere.EvictFunc) sfere.Store) {
	game := sfere.NewKey("u2", "game", "42")
	star := sfere.NewKey("u1", "lobby", "*") // a literal "*" is no wildcard in a key
	ex := sfere.Exactly
	checkPatterns(t, newStore, []sfere.Key{brian, phil, game, star}, []patternCase{
		{sfere.All, []sfere.Key{brian, phil, game, star}},
		{sfere.InCategory("lobby"), []sfere.Key{brian, phil, star}},
		{sfere.NewPattern(ex(sfere.DefaultScope), ex("lobby"), sfere.Any), []sfere.Key{brian, phil}},
		{sfere.NewPattern(sfere.Any, sfere.Any, ex("42")), []sfere.Key{game}},
		{sfere.NewPattern(sfere.Any, ex("lobby"), ex("*")), []sfere.Key{star}},
		{phil.Pattern(), []sfere.Key{phil}},
		{sfere.InScope("nobody"), nil},
		{sfere.InCategory("nothing"), nil},
	})
}

// matchTable is the table the original sfere is tested against
// (pattern, keys, match): keys are [scope [category id]], and a wildcard
// stands for the scope, the whole inner pair, the category or the id.
func matchTable(t tb, newStore func(sfere.EvictFunc) sfere.Store) {
	var (
		u1Lobby = sfere.NewKey("u1", "room", "lobby")
		u2Lobby = sfere.NewKey("u2", "room", "lobby")
		u1Game  = sfere.NewKey("u1", "game", "42")
		u1Other = sfere.NewKey("u1", "room", "other")
		ex      = sfere.Exactly
		anyPart = sfere.Any
	)
	checkPatterns(t, newStore, []sfere.Key{u1Lobby, u2Lobby, u1Game, u1Other}, []patternCase{
		{u1Lobby.Pattern(), []sfere.Key{u1Lobby}},                                                // u1 (room lobby)
		{sfere.NewPattern(anyPart, ex("room"), ex("lobby")), []sfere.Key{u1Lobby, u2Lobby}},      // * (room lobby)
		{sfere.NewPattern(ex("u1"), anyPart, anyPart), []sfere.Key{u1Lobby, u1Game, u1Other}},    // u1 *
		{sfere.NewPattern(anyPart, ex("room"), anyPart), []sfere.Key{u1Lobby, u1Other, u2Lobby}}, // * (room *)
		{sfere.All, []sfere.Key{u1Lobby, u2Lobby, u1Game, u1Other}},                              // * *
		{sfere.NewPattern(ex("u3"), ex("room"), ex("lobby")), nil},                               // nobody's
	})
}

// The eviction callback runs with no store lock held: it may read the
// store, store again a stream it holds, and purge another key (whose
// eviction calls it again).
func callbackMayCallTheStore(t tb, newStore func(sfere.EvictFunc) sfere.Store) {
	var (
		spare    *sfere.Stream
		spareMu  sync.Mutex
		philGone = make(chan struct{})
		once     sync.Once // a broken store may report phil twice
	)
	e := newEnv(t, newStore, func(e *env, ev sfere.Eviction) {
		e.store.Count(sfere.All)
		e.store.Keys(sfere.InCategory("lobby"))
		e.store.Get(phil)
		switch ev.Key {
		case brian:
			spareMu.Lock()
			s := spare
			spareMu.Unlock()
			e.store.Put(s) // the same stream again: a no-op
			e.store.Purge(phil)
		case phil:
			once.Do(func() { close(philGone) })
		}
	})
	e.open(brian)
	e.open(phil)
	s, _ := e.open(sfere.NewKey(sfere.DefaultScope, "spare", "s"))
	spareMu.Lock()
	spare = s
	spareMu.Unlock()
	purged := make(chan struct{})
	go func() {
		defer close(purged)
		e.store.Purge(brian)
	}()
	select {
	case <-philGone:
	case <-time.After(ceiling):
		t.Fatalf("an eviction callback calling the store deadlocked (is the callback called with a lock held?)")
	}
	<-purged
	if n := e.store.Count(sfere.All); n != 1 {
		t.Fatalf("Count = %d after purging two of three, want 1", n)
	}
}

// Many goroutines open streams under shared keys (so replacements race),
// close their clients, purge by key and by stream, and count, all at once:
// every stream is evicted exactly once, and its eviction completes.
func concurrent(t tb, newStore func(sfere.EvictFunc) sfere.Store) {
	e := newEnv(t, newStore, nil)
	const workers, rounds = 6, 15
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				k := sfere.NewKey(sfere.DefaultScope, "lobby", fmt.Sprint(i%5))
				c, err := e.dial(k)
				if err != nil {
					// A stream another goroutine ended before its first
					// message is no failure; anything else is.
					if !errors.Is(err, ssetest.ErrEnded) {
						t.Errorf("%v", err)
					}
					continue
				}
				switch (w + i) % 4 {
				case 0:
					if s, ok := e.store.Get(k); ok {
						e.store.PurgeStream(s, sfere.CauseClosed, nil)
					}
				case 1:
					e.store.Purge(k)
				case 2:
					c.Close() // a closed tab: the hub purges the stream
				}
				e.store.Count(sfere.InCategory("lobby"))
				defer c.Close()
			}
		})
	}
	wg.Wait()
	// Whatever is left leaves by an explicit purge.
	for _, k := range e.store.Keys(sfere.All) {
		e.store.Purge(k)
	}
	streams := e.streams()
	if len(streams) == 0 {
		t.Fatalf("no stream was opened")
	}
	deadline := time.Now().Add(ceiling)
	for _, s := range streams {
		for e.endedCount(s) == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if n := e.store.Count(sfere.All); n != 0 {
		t.Fatalf("Count after purging every key = %d", n)
	}
	time.Sleep(quiet) // room for a duplicate to show
	seen := map[*sfere.Stream]int{}
	for _, ev := range e.ev.snapshot() {
		seen[ev.Stream]++
	}
	for _, s := range streams {
		if seen[s] != 1 || e.endedCount(s) != 1 {
			t.Fatalf("stream %v: evicted %d times, eviction completed %d times; want exactly once", s.Key(), seen[s], e.endedCount(s))
		}
	}
	if len(seen) != len(streams) {
		t.Fatalf("%d streams evicted, %d stored", len(seen), len(streams))
	}
}

func sortKeys(ks []sfere.Key) {
	slices.SortFunc(ks, func(a, b sfere.Key) int {
		return strings.Compare(a.String(), b.String())
	})
}
