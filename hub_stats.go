package sfere

import "sync/atomic"

// HubStats are a hub's counters since it was made: what a dashboard or a
// metrics exporter turns into rates by reading them twice. Reading them
// costs a few atomic loads; keeping them costs the hub a few atomic adds
// per stream, per broadcast and per write, never a lock.
type HubStats struct {
	// Opened counts streams the hub stored.
	Opened uint64
	// Ended counts streams that ended, whatever the cause; EndedBy tells
	// them apart.
	Ended uint64
	// Broadcasts counts calls of [Hub.Broadcast], [Hub.BroadcastLive] and
	// [Hub.BroadcastAt] that rendered an event (heartbeats are not
	// counted: see [HeartbeatStats]). Sends counts [Hub.Send] calls that
	// found a stream.
	Broadcasts uint64
	Sends      uint64
	// Delivered counts events queued to a stream by broadcasts and sends;
	// Failed counts streams that refused one (ended, or too far behind).
	Delivered uint64
	Failed    uint64
	// Written counts the bytes of events written to clients, heartbeats
	// included, as rendered (before compression).
	Written uint64
	// Latency is the histogram of delivery latencies: from an event's
	// rendering to the end of its write, per stream it reached (see
	// [Latencies]).
	Latency Latencies

	ended [numCauses]uint64
}

// numCauses bounds the causes a hub counts (index 0 is unused).
const numCauses = int(CauseNodeLost) + 1

// EndedBy returns how many streams ended with cause c.
func (s HubStats) EndedBy(c Cause) uint64 {
	if int(c) >= numCauses {
		return 0
	}
	return s.ended[c]
}

// hubStats are the counters behind [HubStats].
type hubStats struct {
	opened, broadcasts, sends, delivered, failed, written atomic.Uint64
	ended                                                 [numCauses]atomic.Uint64
	latency                                               latencyCounts // latency.go
}

// published records one broadcast's result.
func (c *hubStats) published(res Result) {
	c.broadcasts.Add(1)
	c.delivered.Add(uint64(res.Delivered))
	c.failed.Add(uint64(res.Failed))
}

// sent records one send's result.
func (c *hubStats) sent(res Result) {
	c.sends.Add(1)
	c.delivered.Add(uint64(res.Delivered))
	c.failed.Add(uint64(res.Failed))
}

// endedWith records a stream that ended with cause.
func (c *hubStats) endedWith(cause Cause) {
	if int(cause) < numCauses {
		c.ended[cause].Add(1)
	}
}

// Stats returns the hub's counters.
func (h *Hub) Stats() HubStats {
	s := HubStats{
		Opened:     h.stats.opened.Load(),
		Broadcasts: h.stats.broadcasts.Load(),
		Sends:      h.stats.sends.Load(),
		Delivered:  h.stats.delivered.Load(),
		Failed:     h.stats.failed.Load(),
		Written:    h.stats.written.Load(),
		Latency:    h.stats.latency.read(),
	}
	for i := range s.ended {
		s.ended[i] = h.stats.ended[i].Load()
		s.Ended += s.ended[i]
	}
	return s
}
