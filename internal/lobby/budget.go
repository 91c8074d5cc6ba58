package lobby

import (
	"context"
	"math"
	"strconv"
	"sync"
	"time"
)

// budgets are what one client address may use up of what everyone shares
// (the address as [clients] tells it: IPv4, or an IPv6 /64). Each is off
// when nil. SECURITY.md lists them with their defaults, flags and tests.
type budgets struct {
	// joins, streams and lines are token buckets per address: /join
	// requests, stream openings and chat lines (on top of the
	// per-session message limit).
	joins, streams, lines *rateLimit
	// names caps the names one address holds at once (reserved by a
	// /join, present, or kept for their resume window).
	names *nameBudget
	// open caps the streams one address holds open at once.
	open *streamLimit
}

// retryAfter is the Retry-After value, in whole seconds (at least one),
// of a refusal that waited d.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}

// nameBudget caps the sessions (each holding one name) that one address
// made and the lobby still knows. It learns that a session ended by
// asking (alive), when the address joins again or the record grows, so
// the lobby needs no hook for every way a name is released. A session
// counts from [nameBudget.acquire] on, but it is asked about only once
// its join claimed the name ([nameBudget.confirm]): before that the lobby
// does not know it yet, and taking it for ended would let concurrent joins
// from one address past the cap. Every check and change of the record
// happens under its lock.
type nameBudget struct {
	max   int
	alive func(ctx context.Context, sid string) bool

	mu      sync.Mutex
	held    map[string]map[string]bool // address -> its sessions -> claimed (false: its join is under way)
	total   int
	pruneAt int
}

func newNameBudget(max int, alive func(ctx context.Context, sid string) bool) *nameBudget {
	if max <= 0 {
		return nil
	}
	return &nameBudget{max: max, alive: alive, held: make(map[string]map[string]bool), pruneAt: minPruneAt}
}

// acquire counts session sid against addr, unless addr holds the most
// names already. The join that made sid then calls confirm once it
// claimed its name, or release if it did not.
func (b *nameBudget) acquire(ctx context.Context, addr, sid string) bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.total >= b.pruneAt {
		for a := range b.held {
			b.pruneLocked(ctx, a)
		}
		b.pruneAt = max(minPruneAt, 2*b.total)
	}
	set := b.held[addr]
	if len(set) >= b.max {
		b.pruneLocked(ctx, addr)
		set = b.held[addr]
	}
	if len(set) >= b.max {
		return false
	}
	if set == nil {
		set = make(map[string]bool)
		b.held[addr] = set
	}
	set[sid] = false
	b.total++
	return true
}

// confirm says that the join of session sid of addr claimed its name:
// from now on the session counts while the lobby knows it.
func (b *nameBudget) confirm(addr, sid string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if set, ok := b.held[addr]; ok {
		if _, ok := set[sid]; ok {
			set[sid] = true
		}
	}
}

// release forgets session sid of addr (its join failed).
func (b *nameBudget) release(addr, sid string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if set, ok := b.held[addr]; ok {
		if _, ok := set[sid]; ok {
			delete(set, sid)
			b.total--
		}
		if len(set) == 0 {
			delete(b.held, addr)
		}
	}
}

// pruneLocked forgets the sessions of addr that claimed their names and
// ended since. b.mu must be held.
func (b *nameBudget) pruneLocked(ctx context.Context, addr string) {
	set := b.held[addr]
	for sid, claimed := range set {
		if claimed && !b.alive(ctx, sid) {
			delete(set, sid)
			b.total--
		}
	}
	if len(set) == 0 {
		delete(b.held, addr)
	}
}

// streamLimit caps the open streams of each client address. A nil
// *streamLimit allows everything.
type streamLimit struct {
	max  int
	mu   sync.Mutex
	open map[string]int
}

func newStreamLimit(max int) *streamLimit {
	if max <= 0 {
		return nil
	}
	return &streamLimit{max: max, open: make(map[string]int)}
}

// acquire counts one more stream of addr, unless addr is at the cap.
func (l *streamLimit) acquire(addr string) bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[addr] >= l.max {
		return false
	}
	l.open[addr]++
	return true
}

// release counts one stream of addr as ended.
func (l *streamLimit) release(addr string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.open[addr] - 1; n > 0 {
		l.open[addr] = n
	} else {
		delete(l.open, addr)
	}
}

// rateLimit is a token bucket per key (a session, an address): rate tokens a second,
// at most burst saved up. A nil *rateLimit allows everything. Buckets that
// have filled up again are forgotten, so it holds only recent senders.
type rateLimit struct {
	rate, burst float64
	now         func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	pruneAt int
}

type bucket struct {
	tokens float64
	at     time.Time
}

const minPruneAt = 1024

func newRateLimit(rate float64, burst int) *rateLimit {
	if rate <= 0 {
		return nil
	}
	return &rateLimit{rate: rate, burst: float64(max(burst, 1)), now: time.Now, buckets: make(map[string]*bucket), pruneAt: minPruneAt}
}

// allow takes a token from key's bucket and reports whether there was one.
func (l *rateLimit) allow(key string) bool {
	ok, _ := l.take(key)
	return ok
}

// take takes a token from key's bucket; without one, it says how long
// until there is one.
func (l *rateLimit) take(key string) (ok bool, wait time.Duration) {
	if l == nil {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.pruneAt {
			l.prune(now)
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	} else {
		b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
		b.at = now
	}
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens--
	return true, 0
}

// prune forgets the buckets that are full again. l.mu must be held.
func (l *rateLimit) prune(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.at).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
	l.pruneAt = max(minPruneAt, 2*len(l.buckets))
}

// size returns how many buckets the limiter holds (tests).
func (l *rateLimit) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
