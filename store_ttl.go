package sfere

import (
	"cmp"
	"fmt"
	"time"

	"github.com/maypok86/otter/v2"
)

// Expiry selects how a [TTLStore] times its entries.
type Expiry uint8

const (
	// Sliding restarts an entry's timer on every access: a Get, and every
	// successful write to the stream's client (so a heartbeat keeps a live
	// stream alive).
	Sliding Expiry = iota
	// Fixed times an entry from the moment its stream was stored.
	Fixed
)

// String returns "sliding" or "fixed".
func (e Expiry) String() string {
	switch e {
	case Sliding:
		return "sliding"
	case Fixed:
		return "fixed"
	}
	return fmt.Sprintf("Expiry(%d)", uint8(e))
}

// Clock tells a [TTLStore] the time; tests inject a fake one.
type Clock interface {
	Now() time.Time
}

// Defaults of [TTLOptions].
const (
	DefaultTTL     = 10 * time.Minute
	DefaultMaxSize = 10_000
)

// TTLOptions configures a [TTLStore]. The zero value gives a 10-minute
// sliding expiry and room for 10,000 streams.
type TTLOptions struct {
	// Duration is how long an entry lives without access (Sliding) or
	// after it was stored (Fixed). Zero means [DefaultTTL].
	Duration time.Duration
	// MaxSize is the most streams the store keeps; zero means
	// [DefaultMaxSize]. Near the limit the cache's admission policy
	// (W-TinyLFU) chooses which stream to evict, which may be the newest.
	MaxSize int
	// Expiry is [Sliding] (the default) or [Fixed].
	Expiry Expiry
	// Clock replaces the wall clock, for tests. Nil means real time.
	Clock Clock
	// OnEvict is called once for every stream that leaves the store.
	OnEvict EvictFunc
}

// TTLStore is a [Store] whose entries expire and whose size is capped,
// built on the otter cache (a Go port of Caffeine's design). Expired and
// size-evicted streams are closed and reported with [CauseExpired] or
// [CauseSize]; expiry is noticed by the cache's clean-up, which runs about
// once a second and on store activity.
//
// Keys, Count and AppendStreams list a stream whose time is up until the
// cache's clean-up has noticed it (about a second at most).
//
// Call [TTLStore.Close] when done with it, to stop the cache's clean-up goroutine.
type TTLStore struct {
	onEvict EvictFunc
	cache   *otter.Cache[Key, *Stream]

	// The index's lock also orders every cache mutation with the index, so
	// the index (the truth about which stream holds a key) and the cache
	// (the timer and size policy) always agree on the stream stored under
	// a key.
	index
}

// NewTTLStore returns an empty [TTLStore].
func NewTTLStore(opts TTLOptions) (*TTLStore, error) {
	if opts.Duration < 0 || opts.MaxSize < 0 {
		return nil, fmt.Errorf("sfere: TTL store: negative duration %v or size %d", opts.Duration, opts.MaxSize)
	}
	opts.Duration = cmp.Or(opts.Duration, DefaultTTL)
	opts.MaxSize = cmp.Or(opts.MaxSize, DefaultMaxSize)
	s := &TTLStore{onEvict: opts.OnEvict}
	o := &otter.Options[Key, *Stream]{
		MaximumSize: opts.MaxSize,
		OnDeletion:  s.onDeletion,
	}
	switch opts.Expiry {
	case Sliding:
		o.ExpiryCalculator = otter.ExpiryAccessing[Key, *Stream](opts.Duration)
	case Fixed:
		// Only Put writes an entry, and every Put is a new stream, so
		// "since the last write" is "since the stream was stored".
		o.ExpiryCalculator = otter.ExpiryWriting[Key, *Stream](opts.Duration)
	default:
		return nil, fmt.Errorf("sfere: TTL store: unknown expiry %v", opts.Expiry)
	}
	if opts.Clock != nil {
		o.Clock = otterClock{opts.Clock}
	}
	cache, err := otter.New(o)
	if err != nil {
		return nil, fmt.Errorf("sfere: TTL store: %w", err)
	}
	s.cache = cache
	return s, nil
}

// Close stops the cache's background clean-up. The store keeps working,
// but expiry is then noticed only on store activity.
func (t *TTLStore) Close() {
	t.cache.StopAllGoroutines()
}

// onDeletion learns from the cache which streams its policy removed. Only
// expiry and size are news: explicit removals and replacements were
// already handled by the store itself, which ignores the cache's echo.
// The cache runs this on its own goroutine, after its locks are released.
func (t *TTLStore) onDeletion(e otter.DeletionEvent[Key, *Stream]) {
	var cause Cause
	switch e.Cause {
	case otter.CauseExpiration:
		cause = CauseExpired
	case otter.CauseOverflow:
		cause = CauseSize
	default:
		return
	}
	t.mu.Lock()
	ok := t.removeStream(e.Value)
	t.mu.Unlock()
	if ok {
		Evict(t.onEvict, Eviction{Key: e.Key, Stream: e.Value, Cause: cause})
	}
}

// Put implements [Store].
func (t *TTLStore) Put(s *Stream) {
	t.mu.Lock()
	old := t.put(s)
	t.cache.Set(s.key, s)
	t.mu.Unlock()
	if old != nil && old != s {
		Evict(t.onEvict, Eviction{Key: old.key, Stream: old, Cause: CauseReplaced})
	}
}

// Get implements [Store]; with [Sliding] expiry it restarts the entry's timer.
func (t *TTLStore) Get(k Key) (*Stream, bool) {
	s, ok := t.index.Get(k)
	if ok {
		t.cache.GetIfPresent(k)
	}
	return s, ok
}

// Touch implements [Store]; with [Sliding] expiry it restarts the entry's timer.
// If a newer stream has taken s's key, that stream's timer restarts instead,
// which is harmless: s is being closed.
func (t *TTLStore) Touch(s *Stream) {
	t.cache.GetIfPresent(s.key)
}

// Purge implements [Store].
func (t *TTLStore) Purge(k Key) bool {
	t.mu.Lock()
	s := t.remove(k)
	if s != nil {
		t.cache.Invalidate(k)
	}
	t.mu.Unlock()
	if s == nil {
		return false
	}
	Evict(t.onEvict, Eviction{Key: k, Stream: s, Cause: CauseExplicit})
	return true
}

// PurgeStream implements [Store].
func (t *TTLStore) PurgeStream(s *Stream, cause Cause, err error) bool {
	t.mu.Lock()
	ok := t.removeStream(s)
	if ok {
		t.cache.Invalidate(s.key)
	}
	t.mu.Unlock()
	if ok {
		Evict(t.onEvict, Eviction{Key: s.key, Stream: s, Cause: cause, Err: err})
	}
	return ok
}

// otterClock adapts a [Clock] to the cache's clock. Periodic clean-ups
// still tick in real time; they read the injected clock.
type otterClock struct{ c Clock }

func (o otterClock) NowNano() int64 { return o.c.Now().UnixNano() }

func (o otterClock) Tick(d time.Duration) <-chan time.Time { return time.NewTicker(d).C }
