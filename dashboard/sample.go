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
	log     logState
	// Counts of the dashboard's own doing, taken out of the hub's figures.
	ownOpened, ownEnded, ownBroadcasts, ownDelivered uint64
	ownWritten                                       uint64
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
	// Delivery latencies between the samples ([sfere.Latencies]): how
	// many, and upper bounds of their median, 90th and 99th percentiles.
	latencies     uint64
	p50, p90, p99 time.Duration
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
	// net is the app's share of a hub counter: its growth less the
	// dashboard's own. The two are counted at different moments (the own
	// bytes as queued, the hub's as written), so a share that comes out
	// below zero is zero.
	net := func(from, to, ownFrom, ownTo uint64) float64 {
		d := int64(to-from) - int64(ownTo-ownFrom)
		if d <= 0 {
			return 0
		}
		return float64(d) / dt
	}
	per := func(from, to uint64) float64 { return net(from, to, 0, 0) }
	r := rates{
		opens:       net(a.hub.Opened, b.hub.Opened, a.ownOpened, b.ownOpened),
		ends:        net(a.hub.Ended, b.hub.Ended, a.ownEnded, b.ownEnded),
		broadcasts:  net(a.hub.Broadcasts+a.hub.Sends, b.hub.Broadcasts+b.hub.Sends, a.ownBroadcasts, b.ownBroadcasts),
		delivered:   net(a.hub.Delivered, b.hub.Delivered, a.ownDelivered, b.ownDelivered),
		failed:      per(a.hub.Failed, b.hub.Failed),
		bytes:       net(a.hub.Written, b.hub.Written, a.ownWritten, b.ownWritten),
		sweeps:      per(a.beat.Sweeps, b.beat.Sweeps),
		gcs:         per(a.gcCycles, b.gcCycles),
		recovered:   per(a.recovered, b.recovered),
		unrecovered: per(a.unrecovered, b.unrecovered),
		replayed:    per(a.replayed, b.replayed),
	}
	lat := b.hub.Latency.Sub(a.hub.Latency)
	r.latencies = lat.Count()
	r.p50, r.p90, r.p99 = lat.Quantile(0.5), lat.Quantile(0.9), lat.Quantile(0.99)
	for _, c := range causes {
		r.endsBy[c] = net(a.hub.EndedBy(c), b.hub.EndedBy(c), a.ownEndedBy[c], b.ownEndedBy[c])
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
