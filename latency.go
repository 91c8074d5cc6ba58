package sfere

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Latencies is a histogram of delivery latencies: for every event of a
// broadcast or send written to a stream, the time from the moment the hub
// rendered it ([Hub.Broadcast], [Hub.BroadcastLive], [Hub.BroadcastAt],
// [Hub.Send], which queue it at once) to the end of the write that
// carried it to the client. Heartbeats, a stream's opening and events
// replayed from the history to a stream that resumed are not counted: they
// were not waiting in the stream's queue since their rendering.
//
// The buckets are fixed: four per power of two from 256 ns up (so a
// figure is known to within a quarter of itself), the last holding
// everything from about an hour up. A hub keeps one (see [HubStats]),
// counted with one atomic add per write, never a lock or an allocation.
// It counts since the hub was made: to see a recent stretch, take the
// difference of two readings ([Latencies.Sub]).
type Latencies struct {
	counts [latencyBuckets]uint64
}

const (
	// latencyUnit is the width of the first buckets, as a shift of
	// nanoseconds (256 ns).
	latencyUnit = 8
	// latencyOctaves is how many powers of two the buckets span above the
	// first four: up to 2^(latencyOctaves+2) units (about 1.2 hours).
	latencyOctaves = 32
	latencyBuckets = 4 + 4*latencyOctaves
)

// latencyBucket returns the bucket of a latency of d.
func latencyBucket(d time.Duration) int {
	if d < 0 {
		d = 0
	}
	v := uint64(d) >> latencyUnit
	if v < 4 {
		return int(v)
	}
	e := bits.Len64(v) - 1 // v is in [2^e, 2^(e+1)), e ≥ 2
	sub := int(v>>(e-2)) & 3
	b := 4 + (e-2)*4 + sub
	return min(b, latencyBuckets-1)
}

// latencyUpper returns the upper bound of bucket b (exclusive); the last
// bucket has none and gives its lower bound.
func latencyUpper(b int) time.Duration {
	if b < 4 {
		return time.Duration(b+1) << latencyUnit
	}
	e, sub := (b-4)/4+2, (b-4)%4
	if b == latencyBuckets-1 {
		return time.Duration(4+sub) << (e - 2) << latencyUnit
	}
	return time.Duration(5+sub) << (e - 2) << latencyUnit
}

// Count returns how many deliveries the histogram holds.
func (l Latencies) Count() uint64 {
	var n uint64
	for _, c := range l.counts {
		n += c
	}
	return n
}

// Sub returns the deliveries counted in l and not in earlier, an earlier
// reading of the same hub's histogram: those of the stretch between the
// two readings.
func (l Latencies) Sub(earlier Latencies) Latencies {
	var d Latencies
	for i := range l.counts {
		d.counts[i] = l.counts[i] - min(earlier.counts[i], l.counts[i])
	}
	return d
}

// Quantile returns an upper bound of the latency within which a share q
// (0 < q ≤ 1: 0.5 the median, 0.99 the 99th percentile) of the
// deliveries were written: the upper edge of the bucket holding that
// rank, at most a quarter above the true figure (from 1 µs up). It
// returns 0 for an empty
// histogram or a q outside (0, 1].
func (l Latencies) Quantile(q float64) time.Duration {
	n := l.Count()
	if n == 0 || !(q > 0 && q <= 1) {
		return 0
	}
	rank := uint64(q * float64(n))
	if float64(rank) < q*float64(n) {
		rank++ // the ceiling: the rank-th delivery in order of latency
	}
	rank = max(rank, 1)
	var seen uint64
	for b, c := range l.counts {
		seen += c
		if seen >= rank {
			return latencyUpper(b)
		}
	}
	return latencyUpper(latencyBuckets - 1)
}

// latencyCounts are the counters behind a hub's [Latencies].
type latencyCounts struct {
	counts [latencyBuckets]atomic.Uint64
}

// wrote records the deliveries of a successful write of batch (what was
// written of it) to s, which ended now. It reads the clock once, and only
// if the batch holds a delivery.
func (c *latencyCounts) wrote(s *Stream, batch []*message) {
	var done time.Time
	for _, m := range batch {
		// A zero rendered time (heartbeats, openings, positions) and one
		// before the stream was made (its initial effects, replayed
		// events) are no delivery of a queued event.
		if m.heartbeat || m.rendered.Before(s.opened) {
			continue
		}
		if done.IsZero() {
			done = time.Now()
		}
		c.counts[latencyBucket(done.Sub(m.rendered))].Add(1)
	}
}

// read returns the histogram as it stands.
func (c *latencyCounts) read() Latencies {
	var l Latencies
	for i := range c.counts {
		l.counts[i] = c.counts[i].Load()
	}
	return l
}
