package presence

import (
	"cmp"
	"slices"
	"time"

	"github.com/sfere-go/sfere"
)

// changedLocked is called after every change: the first change after a
// quiet window goes out at once; later ones wait for the window's end, so
// one batch carries them all. While a storm lasts (each held batch carries
// at least stormBatch changes), each window is twice the last, up to the
// maximum, so a storm of any length costs each stream a few dozen events;
// a smaller batch or a quiet window brings the window back to its base.
func (t *Tracker) changedLocked() {
	if t.closed || t.flushing != nil {
		return
	}
	if t.window < 0 {
		t.flushLocked()
		return
	}
	since := time.Since(t.lastFlush)
	if since >= t.current {
		if since >= 2*t.current {
			t.current = t.window // it was quiet: back to the short window
		}
		t.flushLocked()
		return
	}
	t.flushing = time.AfterFunc(t.current-since, t.flushTimer)
}

// stormBatch is how many changes (arrivals, departures, streams opened) a
// held batch must carry for the next window to be longer.
const stormBatch = 10

// flushTimer sends a batch held for its window, and sets the next window:
// longer after a big batch, the base one after a small batch.
func (t *Tracker) flushTimer() {
	t.mu.Lock()
	defer t.unlock()
	t.flushing = nil
	if t.closed {
		return
	}
	if len(t.dirty)+len(t.fresh) >= stormBatch {
		t.current = min(2*t.current, t.maxWindow)
	} else {
		t.current = t.window
	}
	t.flushLocked()
}

// flushLocked sends one batch: the diff to every stream that holds a
// snapshot, and the snapshot after the diff to the streams that opened
// since the last batch. Both only queue bytes (the hub never waits for a
// client), so they run under the lock that orders every change: a stream
// is either fresh (gets the snapshot, which includes this batch) or not
// (gets the batch), never both and never neither; a stream not yet
// recorded gets neither, and its snapshot with the next batch.
func (t *Tracker) flushLocked() {
	t.lastFlush = time.Now()
	d := t.diffLocked()
	if !d.Empty() {
		if t.onDiff != nil {
			t.onDiff(d)
		}
		// Only to streams that hold a snapshot: not to the fresh ones,
		// nor to a stream stored but not yet recorded (its opened waits
		// for the lock), which gets its snapshot at the next batch, and
		// nothing before it. Each exclusion is a copy the tracker never
		// changes: a hub with a history matches it again when a stream
		// resumes, from its own goroutine.
		skip := make(sfere.KeySet, len(t.opening)+len(t.fresh))
		for k, o := range t.opening {
			if !o.reconnect { // a reconnecting client takes every batch
				skip[k] = struct{}{}
			}
		}
		for k := range t.fresh {
			skip[k] = struct{}{}
		}
		if _, err := t.hub.Broadcast(t.everyone, skip, t.diff(d)...); err != nil {
			t.log.Error("presence: diff", "err", err)
		}
	}
	if len(t.fresh) > 0 {
		// The fresh set goes with the broadcast; the tracker starts a new one.
		fresh := t.fresh
		t.fresh = make(sfere.KeySet)
		// A snapshot is addressed to the streams that just opened, whose
		// keys no later stream has: no reconnect could be replayed it, so
		// it goes out without a position and stays out of the history.
		if _, err := t.hub.BroadcastLive(t.everyone, excluding(fresh), t.snapshot(t.membersLocked(), d)...); err != nil {
			t.log.Error("presence: snapshot", "err", err)
		}
	}
}

// diffLocked turns the changes since the last batch into a diff and makes
// it the published state. A person who arrived and departed within one
// batch is in neither list; one who departed and arrived again is in both.
func (t *Tracker) diffLocked() Diff {
	var d Diff
	for id := range t.dirty {
		pub, wasIn := t.published[id]
		pubEpoch := t.epochs[id]
		p := t.people[id]
		isIn := p != nil && p.epoch != 0
		if wasIn && (!isIn || p.epoch != pubEpoch) {
			dep, ok := t.departed[id]
			if !ok {
				dep = Departure{Member: pub, Reason: ReasonClosed, Cause: sfere.CauseClosed}
			}
			dep.Member = pub
			d.Leaves = append(d.Leaves, dep)
			delete(t.published, id)
			delete(t.epochs, id)
		}
		if isIn && (!wasIn || p.epoch != pubEpoch) {
			m := p.member()
			t.published[id] = m
			t.epochs[id] = p.epoch
			m.Back, p.back = p.back, false
			d.Joins = append(d.Joins, m)
		}
	}
	if !d.Empty() {
		t.sorted = nil
	}
	clear(t.dirty)
	clear(t.departed)
	slices.SortFunc(d.Joins, byArrival)
	slices.SortFunc(d.Leaves, func(a, b Departure) int { return cmp.Compare(a.ID, b.ID) })
	return d
}
