package dashboard

import (
	"runtime/metrics"
	"time"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/natscluster"
)

// sample is what the dashboard reads once per interval, while watched.
type sample struct {
	at      time.Time
	streams int // the hub's streams, the dashboard's own left out
	own     int // the dashboard's own streams
	hub     sfere.HubStats
	beat    sfere.HeartbeatStats
	node    natscluster.Stats
	// Counts of the dashboard's own doing, taken out of the hub's figures.
	ownOpened, ownEnded, ownBroadcasts, ownDelivered uint64
	ownEndedBy                                       [numCauses]uint64
	// Streams that asked for a position, counted while watched: served
	// from the history, refused; events replayed.
	recovered, unrecovered, replayed uint64

	goroutines uint64
	heap       uint64 // bytes of live and unswept heap objects
	mapped     uint64 // bytes the runtime holds from the OS
	gcCycles   uint64
	gcPauses   *metrics.Float64Histogram // stop-the-world GC pauses since start
}

// runtimeMetrics are the runtime/metrics names a sample reads.
var runtimeMetrics = [...]string{
	"/sched/goroutines:goroutines",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/total:bytes",
	"/gc/cycles/total:gc-cycles",
	"/sched/pauses/total/gc:seconds",
}

// readRuntime fills the runtime's figures of s; buf is reused between
// samples (it is the sampler's own).
func (s *sample) readRuntime(buf []metrics.Sample) {
	metrics.Read(buf)
	val := func(i int) uint64 {
		if buf[i].Value.Kind() == metrics.KindUint64 {
			return buf[i].Value.Uint64()
		}
		return 0
	}
	s.goroutines, s.heap, s.mapped, s.gcCycles = val(0), val(1), val(2), val(3)
	if buf[4].Value.Kind() == metrics.KindFloat64Histogram {
		h := buf[4].Value.Float64Histogram()
		// The runtime reuses the histogram's slices on the next Read.
		s.gcPauses = &metrics.Float64Histogram{
			Counts:  append([]uint64(nil), h.Counts...),
			Buckets: append([]float64(nil), h.Buckets...),
		}
	}
}

func newRuntimeBuffer() []metrics.Sample {
	buf := make([]metrics.Sample, len(runtimeMetrics))
	for i, name := range runtimeMetrics {
		buf[i].Name = name
	}
	return buf
}

// rates are the per-second figures between two samples.
type rates struct {
	opens, ends            float64
	broadcasts, delivered  float64
	failed                 float64
	bytes                  float64
	sweeps                 float64
	gcs                    float64
	recovered, unrecovered float64
	replayed               float64
	// maxPause is an upper bound of the longest GC pause between the
	// samples (the upper edge of its histogram bucket); zero if none.
	maxPause time.Duration
	// ends by cause, per second.
	endsBy [numCauses]float64
}

// numCauses bounds the causes counted by cause (index 0 is unused).
const numCauses = int(sfere.CauseNodeLost) + 1

// causes are the causes the overview lists, in the catalogue's order.
var causes = []sfere.Cause{sfere.CauseClosed, sfere.CauseExplicit, sfere.CauseReplaced,
	sfere.CauseExpired, sfere.CauseSize, sfere.CauseNodeLost}

// ratesBetween returns the rates from a to b (b later); zero rates if
// they are not in order.
func ratesBetween(a, b *sample) rates {
	if a == nil || b == nil {
		return rates{}
	}
	dt := b.at.Sub(a.at).Seconds()
	if dt <= 0 {
		return rates{}
	}
	per := func(from, to uint64) float64 {
		if to < from || to > 1<<63 { // an own count ahead of the hub's, for an instant
			return 0
		}
		return float64(to-from) / dt
	}
	r := rates{
		opens:       per(a.hub.Opened-a.ownOpened, b.hub.Opened-b.ownOpened),
		ends:        per(a.hub.Ended-a.ownEnded, b.hub.Ended-b.ownEnded),
		broadcasts:  per(a.hub.Broadcasts+a.hub.Sends-a.ownBroadcasts, b.hub.Broadcasts+b.hub.Sends-b.ownBroadcasts),
		delivered:   per(a.hub.Delivered-a.ownDelivered, b.hub.Delivered-b.ownDelivered),
		failed:      per(a.hub.Failed, b.hub.Failed),
		bytes:       per(a.hub.Written, b.hub.Written),
		sweeps:      per(a.beat.Sweeps, b.beat.Sweeps),
		gcs:         per(a.gcCycles, b.gcCycles),
		recovered:   per(a.recovered, b.recovered),
		unrecovered: per(a.unrecovered, b.unrecovered),
		replayed:    per(a.replayed, b.replayed),
	}
	for _, c := range causes {
		r.endsBy[c] = per(a.hub.EndedBy(c)-a.ownEndedBy[c], b.hub.EndedBy(c)-b.ownEndedBy[c])
	}
	if a.gcPauses != nil && b.gcPauses != nil && len(a.gcPauses.Counts) == len(b.gcPauses.Counts) {
		for i := len(b.gcPauses.Counts) - 1; i >= 0; i-- {
			if b.gcPauses.Counts[i] > a.gcPauses.Counts[i] {
				r.maxPause = time.Duration(b.gcPauses.Buckets[i+1] * float64(time.Second))
				break
			}
		}
	}
	return r
}
