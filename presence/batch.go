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

// flushLocked sends one batch: first the room's state before it (the
// published members, a snapshot) to the streams that opened since the
// last batch (a stream whose position could not be served got its own as
// it opened: see [Tracker.openingSnapshotLocked]), then the batch's diff
// to every stream that holds a snapshot, the fresh ones included. Both
// only queue bytes (the hub never waits for a client), so they run under
// the lock that orders every change, and each stream gets its snapshot
// before any diff; a stream not yet recorded gets neither, and its
// snapshot when it is recorded or with the next batch.
//
// The snapshot is live (addressed to streams no later stream shares a
// key with, it is kept in no history and carries no position); the diff
// is kept like any broadcast. So a fresh stream that breaks and resumes
// from before the diff is replayed the diff once, and one that got the
// diff resumes after it: no change is ever shown twice. (A snapshot that
// held the batch itself, in place of the diff, was doubled by such a
// replay.)
func (t *Tracker) flushLocked() {
	t.lastFlush = time.Now()
	if t.logMode {
		t.flushLogLocked()
		return
	}
	t.snapshotFreshLocked()
	d, _ := t.diffLocked()
	if d.Empty() {
		return
	}
	if t.onDiff != nil {
		t.onDiff(d)
	}
	for _, f := range t.onDiffs {
		f(d)
	}
	// Not to a stream stored but not yet recorded (its opened waits for
	// the lock), which gets its snapshot (as it is recorded, or at the
	// next batch) and nothing before it. The exclusion is a copy the
	// tracker never changes: a hub with a history matches it again when
	// a stream resumes, from its own goroutine.
	skip := make(sfere.KeySet, len(t.opening))
	for k, o := range t.opening {
		if !o.reconnect { // a reconnecting client takes every batch
			skip[k] = struct{}{}
		}
	}
	if _, err := t.hub.Broadcast(t.everyone, skip, t.diff(d)...); err != nil {
		t.log.Error("presence: diff", "err", err)
	}
}

// snapshotFreshLocked sends the streams opened since the last batch the
// roster's snapshot: every change applied before now is in it, and every
// later one reaches them as a diff.
func (t *Tracker) snapshotFreshLocked() {
	if len(t.fresh) == 0 {
		return
	}
	fresh := t.fresh
	t.fresh = make(sfere.KeySet)
	if t.snapEffects == nil {
		t.snapEffects = t.snapshot(t.membersLocked())
	}
	if _, err := t.hub.BroadcastLive(t.everyone, excluding(fresh), t.snapEffects...); err != nil {
		t.log.Error("presence: snapshot", "err", err)
	}
}

// diffLocked turns the changes since the last batch into a diff and makes
// it the published state. A person who arrived and departed within one
// batch is in neither list; one who departed and arrived again is in both.
// With the room's changes in a log, it also returns them as the log's
// changes (departures first), with their claims' Refs.
func (t *Tracker) diffLocked() (Diff, []Change) {
	var d Diff
	var leaves, joins []Change
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
			if t.logMode {
				ref, claim := t.pubRefs[id], ""
				if e, in := t.roster[id]; in && e.ref == ref {
					claim = e.claim
				}
				leaves = append(leaves, Change{Leave: true, Member: pub, Ref: ref, Claim: claim,
					Reason: dep.Reason, Cause: dep.Cause, Resumable: dep.Resumable})
			}
			delete(t.published, id)
			delete(t.epochs, id)
			delete(t.pubRefs, id)
		}
		if isIn && (!wasIn || p.epoch != pubEpoch) {
			m := p.member()
			t.published[id] = m
			t.epochs[id] = p.epoch
			m.Back, p.back = p.back, false
			d.Joins = append(d.Joins, m)
			if t.logMode {
				t.pubRefs[id] = p.logged
				joins = append(joins, Change{Member: m, Ref: p.logged, Claim: p.ref})
			}
		}
	}
	if !d.Empty() {
		t.sorted, t.snapEffects = nil, nil
	}
	clear(t.dirty)
	clear(t.departed)
	slices.SortFunc(d.Joins, byArrival)
	slices.SortFunc(d.Leaves, func(a, b Departure) int { return cmp.Compare(a.ID, b.ID) })
	slices.SortFunc(joins, func(a, b Change) int { return byArrival(a.Member, b.Member) })
	slices.SortFunc(leaves, func(a, b Change) int { return cmp.Compare(a.Member.ID, b.Member.ID) })
	return d, append(leaves, joins...)
}
