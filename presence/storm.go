package presence

import "time"

// A storm is many streams breaking at once: a proxy that restarts, a blip
// at the server or on the network. Their people come back together, and a
// server that answers thousands of reconnects at once takes a while to
// answer the last: longer, on a busy machine, than a grace period meant
// for one reload. So in a storm the grace period stretches:
//
//   - a storm is at least stormMin breaks (a present person's last stream
//     ended), and at least a tenth of the room's people, within one grace
//     period (at least minStormSpan): a room's ordinary comings and goings,
//     even brisk ones, stay below, and a break that a busy client or
//     server spreads over seconds is still one storm;
//   - a person whose last stream ends in a storm gets the storm grace
//     (Options.StormGrace), and so does everyone already in their grace
//     period when the storm starts, counted from their own break;
//   - a storm grace does not run out while the storm's people are still
//     coming back (the server is answering them, however slowly: one came
//     back within the last grace period): it is renewed for a grace period
//     at a time until they stop. Each person comes back once, so this
//     ends at most a grace period after the last of them.
//
// Breaks are counted over the last span; nothing scans the room but the
// start of a storm.

// stormMin is the fewest breaks that make a storm, in any room, within
// the storm span: the grace period, at least minStormSpan.
const (
	stormMin     = 20
	minStormSpan = 250 * time.Millisecond
)

// rate counts events over about the last span: the current half span and
// the one before.
type rate struct {
	span      time.Duration
	start     time.Time // of the current half
	cur, prev int
}

func (r *rate) roll(now time.Time) {
	switch d := now.Sub(r.start); {
	case d >= r.span:
		r.cur, r.prev, r.start = 0, 0, now
	case d >= r.span/2:
		r.cur, r.prev, r.start = 0, r.cur, now
	}
}

// add counts one event at now.
func (r *rate) add(now time.Time) {
	r.roll(now)
	r.cur++
}

// count returns the events over about the last span.
func (r *rate) count(now time.Time) int {
	r.roll(now)
	return r.cur + r.prev
}

// stormLocked reports whether n events over the last span make a storm.
func (t *Tracker) stormLocked(n int) bool {
	return t.stormGrace > t.grace && n >= max(stormMin, len(t.people)/10)
}

// graceLocked starts p's grace period: its last stream ended now.
func (t *Tracker) graceLocked(p *person) {
	now := t.clock.now()
	p.brokeAt = now
	t.breaks.add(now)
	storm := t.stormLocked(t.breaks.count(now))
	if storm && !t.storm {
		// Those who broke just before the storm was known are in it too.
		for _, q := range t.people {
			if q.state == stGrace && q != p && !q.stormed {
				q.stormed = true
				t.setTimerLocked(q, q.brokeAt.Add(t.stormGrace).Sub(now))
			}
		}
	}
	t.storm = storm
	p.stormed = storm
	if storm {
		t.setTimerLocked(p, t.stormGrace)
		return
	}
	t.setTimerLocked(p, t.grace)
}

// returnedLocked records p coming back within its grace period.
func (t *Tracker) returnedLocked(p *person) {
	if p.stormed {
		t.stormReturn = t.clock.now()
	}
}

// graceOverLocked reports whether p's grace period is over, its timer
// having run out; while the storm's people are still coming back, it
// renews a storm grace for a grace period instead.
func (t *Tracker) graceOverLocked(p *person) bool {
	if !p.stormed || t.clock.now().Sub(t.stormReturn) >= t.grace {
		return true
	}
	t.setTimerLocked(p, t.grace)
	return false
}
