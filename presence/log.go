package presence

import (
	"cmp"
	"slices"
	"time"

	"github.com/sfere-go/sfere"
)

// LogCluster is a [Cluster] whose nodes' hubs copy one shared log (package
// natspresence over a natscluster node that keeps a history). A tracker
// over one sends the room's changes through the log instead of to its
// own streams: each node appends the changes it decided (its batches, as
// a single node would send them: [LogCluster.Append]), and every node
// applies the log's changes, in log order, to the room's roster (the
// state its streams are shown), delivering the diff they make at the
// log's position ([Notify.Applied]). So a stream that resumes on any node
// is replayed the lines it missed, once, in order, and a stream that
// recovered holds the room's state: it gets no snapshot.
//
// Applying is idempotent: a change the roster shows already (an arrival
// of the same claim, a departure of a claim no longer there, an arrival
// of a claim that departed) changes nothing and is delivered to nobody.
// So several nodes may append the same decision (each node decides what
// it sees: a person's arrival, its grace running out, a lost node's
// people departing) and the roster shows it once, on every node.
type LogCluster interface {
	Cluster
	// Logs reports whether the room's changes go through the log (the
	// node keeps one).
	Logs() bool
	// Append adds one batch of this node's changes to the log. It is
	// called like [Cluster.Hold] (never with the tracker's lock, one at
	// a time, in order) and must not wait on the network: the cluster
	// appends in the background, in order, retrying a batch the log did
	// not take.
	Append(changes []Change)
}

// Change is one arrival or departure as it goes through a cluster's log.
type Change struct {
	// Leave is set for a departure; otherwise it is an arrival (a return
	// if Member.Back is set).
	Leave  bool
	Member Member
	// Ref is the arrival's Ref: the claim's (see [Claim]) for its first
	// arrival, the next after the last for each later one (see
	// arriveLocked). The roster tells two arrivals of one person apart by
	// it, and a departure departs the arrival of its Ref.
	Ref string
	// Claim is the Ref of the claim an arrival (or a departure) is of:
	// the arrivals of one claim share it, whatever their own Refs. A
	// node that knew nothing of a claim's earlier arrivals (it started
	// since, or it never heard of them) finds by it the arrival the
	// roster shows of its person, and departs that one. Empty from a
	// node that does not set it.
	Claim string
	// Reason, Cause and Resumable are a departure's (see [Departure]);
	// its Err does not go through the log.
	Reason    Reason
	Cause     sfere.Cause
	Resumable bool
}

// Applied is one batch of changes as a node applies the log.
type Applied struct {
	Changes []Change
	// Stored is when the log stored the batch: the same on every node.
	Stored time.Time
	// Deliver delivers the batch's diff at its position in the log; nil
	// for a batch that only updates the roster: one the node applied
	// before the tracker started, or another node's roster handed over
	// as the tracker starts (see [Notify.Roster]).
	Deliver func(p sfere.Pattern, exclude sfere.Matcher, effects ...sfere.Effect) (sfere.Result, error)
	// Departed, with a roster handed over, holds the Refs of the claims
	// that departed lately, with when (the log's time): an arrival of
	// one of them applied later changes nothing.
	Departed map[string]time.Time
}

// tombFor is how long the roster remembers a claim that departed, in the
// log's time: an arrival of it appended later (by a node that saw the
// arrival late, or a batch retried after an outage) changes nothing.
const tombFor = 10 * time.Minute

// rosterEntry is one person in the roster: the arrival of ref, of the
// claim claim ("" if the arrival's node did not say).
type rosterEntry struct {
	m     Member
	ref   string
	claim string
}

// ofClaim reports whether e is an arrival of the claim ref: by the
// claim's Ref it carries, or by its own (the claim's first, or one of the
// next few).
func (e rosterEntry) ofClaim(ref string) bool {
	return e.claim != "" && e.claim == ref || e.ref == ref || descends(e.ref, ref)
}

// logCluster returns the cluster as a LogCluster if the room's changes go
// through its log.
func logCluster(c Cluster) (LogCluster, bool) {
	lc, ok := c.(LogCluster)
	return lc, ok && lc.Logs()
}

// flushLogLocked is flushLocked for a room whose changes go through the
// log: the streams opened since the last batch get the roster's snapshot,
// and the changes this node decided since the last batch go to the log,
// less those the roster shows already. Nothing of them reaches a stream
// until the log is applied (see applied).
func (t *Tracker) flushLogLocked() {
	t.snapshotFreshLocked()
	_, changes := t.diffLocked()
	if len(t.leaving) > 0 {
		changes = append(t.leavingLocked(changes), changes...)
	}
	kept := changes[:0]
	for _, c := range changes {
		e, in := t.roster[c.Member.ID]
		switch {
		case !c.Leave && in && e.ref == c.Ref:
			continue // its arrival is in the roster already
		case c.Leave && (!in || e.ref != c.Ref) && t.tombstoned(c.Ref, time.Now()):
			continue // its departure is
		}
		kept = append(kept, c)
	}
	if len(kept) > 0 {
		batch := slices.Clone(kept)
		t.callLocked(func(c Cluster) { c.(LogCluster).Append(batch) })
	}
}

// Applied implements [Notify]: a batch of the log, at its position. It
// renders batches after [Tracker.Close] too, until the cluster stops
// handing them over: the node's streams may still be taking the log (a
// server shutting down says goodbye to them), and a stream that took a
// later position without this one would skip it when it resumes.
func (n notify) Applied(a Applied) {
	t := n.t
	t.mu.Lock()
	defer t.unlock()
	for ref, at := range a.Departed {
		if when, ok := t.tomb[ref]; !ok || at.UnixNano() > when {
			t.tombLocked(ref, at)
		}
	}
	if a.Deliver != nil {
		// Streams that opened since the last batch hold no list yet:
		// theirs is the roster before this batch, which they then get.
		t.snapshotFreshLocked()
	}
	d := t.applyRosterLocked(a.Changes, a.Stored)
	if d.Empty() || a.Deliver == nil {
		return
	}
	if t.onDiff != nil {
		t.onDiff(d)
	}
	for _, f := range t.onDiffs {
		f(d)
	}
	if _, err := a.Deliver(t.everyone, t.notYetRecordedLocked(), t.diff(d)...); err != nil {
		t.log.Error("presence: diff", "err", err)
	}
}

// notYetRecordedLocked returns the streams stored but not yet recorded
// (their opened waits for the lock): they get their snapshot (as they are
// recorded, or at the next batch) and nothing before it. A reconnecting
// client that will hold the room's state takes every batch. The set is a
// copy the tracker never changes: a hub with a history matches it again
// when a stream resumes, from its own goroutine.
func (t *Tracker) notYetRecordedLocked() sfere.KeySet {
	skip := make(sfere.KeySet, len(t.opening))
	for k, o := range t.opening {
		if !o.reconnect {
			skip[k] = struct{}{}
		}
	}
	return skip
}

// applyRosterLocked applies changes, stored at stored, to the roster and
// returns the diff they made: the changes the roster did not show yet.
func (t *Tracker) applyRosterLocked(changes []Change, stored time.Time) Diff {
	var d Diff
	for _, c := range changes {
		id := c.Member.ID
		e, in := t.roster[id]
		if c.Leave {
			if !in || e.ref != c.Ref {
				continue
			}
			delete(t.roster, id)
			t.tombLocked(c.Ref, stored)
			d.Leaves = append(d.Leaves, Departure{Member: e.m, Reason: c.Reason, Cause: c.Cause, Resumable: c.Resumable})
			t.reArriveLocked(id, c)
			continue
		}
		if in && e.ref != c.Ref && c.Claim != "" && e.claim == c.Claim {
			// An arrival of the claim the roster shows already, under
			// the Ref another node gave it: a node that knew nothing of
			// the claim's earlier arrivals (it started since), or whose
			// departure of the last one never came through the log. It
			// changes nothing; the nodes that appended it depart, from
			// now on, the arrival the roster shows.
			t.adoptRefLocked(id, c.Ref, e.ref)
			continue
		}
		if in && e.ref == c.Ref {
			continue
		}
		if t.tombstoned(c.Ref, stored) {
			if !in {
				// An arrival under a Ref that departed: a node that
				// knew the person only by its claim (it started anew,
				// or the person reached it after a departure it had
				// not seen) arrived it under the claim's Ref. If this
				// node holds the person, it is here: it arrives again.
				t.reArriveLocked(id, Change{Member: c.Member, Ref: c.Ref, Claim: c.Claim})
			}
			continue
		}
		if in {
			// Another claim of the person: its departure never came
			// through the log (its batch was lost), so it departs now.
			t.tombLocked(e.ref, stored)
			d.Leaves = append(d.Leaves, Departure{Member: e.m, Reason: ReasonClosed})
		}
		m := c.Member
		m.Present = true
		t.roster[id] = rosterEntry{m: Member{ID: m.ID, Meta: m.Meta, Since: m.Since, Present: true}, ref: c.Ref, claim: c.Claim}
		d.Joins = append(d.Joins, m)
		if p := t.people[id]; p != nil && p.epoch != 0 && descends(c.Ref, p.logged) {
			// The person arrived on this node, which never saw it
			// depart, but the log did (another node found the node
			// holding its streams, this one or another, lost) and it
			// came back there: its departure, when this node decides
			// it, is of the arrival the log shows.
			t.adoptRefLocked(id, p.logged, c.Ref)
		}
	}
	if !d.Empty() {
		t.sorted, t.snapEffects = nil, nil
	}
	slices.SortFunc(d.Joins, byArrival)
	slices.SortStableFunc(d.Leaves, func(a, b Departure) int { return cmp.Compare(a.ID, b.ID) })
	return d
}

// adoptRefLocked makes the person id, if this node's latest arrival of it
// went through the log under the Ref from, depart the roster's arrival
// to instead.
func (t *Tracker) adoptRefLocked(id, from, to string) {
	if p := t.people[id]; p != nil && p.logged == from {
		p.logged = to
	}
	if ref, ok := t.pubRefs[id]; ok && ref == from {
		t.pubRefs[id] = to
	}
}

// leaveLogLocked makes sure that p's departure on ev (a leave or a
// rename, which never wait for another node to decide them) reaches the
// log: if the roster shows an arrival of p's claim, its departure goes
// into the next batch, under that arrival's Ref. This node may never
// have seen p arrive (it knows p from the claims only, or it started
// since), its own departure of p may be of another Ref (it learnt of p
// without the claim's earlier arrivals), and the node that holds p's
// streams may never hear of the leave (the cluster's message is lost,
// or that node is gone): the roster decides, and a departure it already
// applied, from any node, changes nothing.
func (t *Tracker) leaveLogLocked(p *person, ev personEvent) {
	e, in := t.roster[p.id]
	if !t.logMode || !in || !(e.ofClaim(p.ref) || e.ref == p.logged) {
		return
	}
	d := p.departure(ev)
	if t.leaving == nil {
		t.leaving = make(map[string]Change)
	}
	t.leaving[p.id] = Change{Leave: true, Member: e.m, Ref: e.ref, Claim: e.claim, Reason: d.Reason}
	t.changedLocked()
}

// leavingLocked returns the departures leaveLogLocked queued, less those
// that changes (the batch's) hold already.
func (t *Tracker) leavingLocked(changes []Change) []Change {
	out := make([]Change, 0, len(t.leaving))
	for id, l := range t.leaving {
		if !slices.ContainsFunc(changes, func(c Change) bool { return c.Leave && c.Member.ID == id && c.Ref == l.Ref }) {
			out = append(out, l)
		}
	}
	clear(t.leaving)
	slices.SortFunc(out, func(a, b Change) int { return cmp.Compare(a.Member.ID, b.Member.ID) })
	return out
}

// reArriveLocked answers the log's departure c of person id, which the
// roster showed under c.Ref: if this node still holds a stream of the
// person, the person is here, and arrives again, back, under the next Ref
// after c.Ref. Another node decided the departure from what it heard: a
// node cut off from the rest for a while finds every node it stops
// hearing lost, and a node that did not hear this one in time lets the
// person's grace run out. The node that decided a loss does the same when
// it hears this node again (Notify.Held), under the same Ref, so the
// roster shows one return; this node's own does not wait for that node,
// which may be gone since, and answers the other departures too, which
// nobody else would. A departure the person asked for (left, renamed)
// is not answered: this node ends the person's streams as it hears of it.
//
// It also answers an arrival the roster ignored because its Ref departed
// (c with no Reason), while the roster does not show the person.
func (t *Tracker) reArriveLocked(id string, c Change) {
	p := t.people[id]
	if t.closed || c.Reason == ReasonLeft || c.Reason == ReasonRenamed ||
		p == nil || p.state != stPresent || len(p.streams) == 0 {
		return
	}
	if _, in := t.roster[id]; in {
		return
	}
	p.logged = c.Ref // the arrival again follows the departed one, as the deciding node's does
	p.back = true
	t.arriveLocked(p)
}

// tombLocked remembers that the claim ref departed, at stored.
func (t *Tracker) tombLocked(ref string, stored time.Time) {
	if ref == "" {
		return
	}
	at := stored.UnixNano()
	if len(t.tomb) >= 1024 && len(t.tomb)%1024 == 0 {
		for r, when := range t.tomb {
			if at-when > int64(tombFor) {
				delete(t.tomb, r)
			}
		}
	}
	t.tomb[ref] = at
}

// tombstoned reports whether the claim ref departed within tombFor of at.
func (t *Tracker) tombstoned(ref string, at time.Time) bool {
	when, ok := t.tomb[ref]
	return ok && at.UnixNano()-when <= int64(tombFor)
}

// rosterMembersLocked returns the roster in order of arrival.
func (t *Tracker) rosterMembersLocked() []Member {
	ms := make([]Member, 0, len(t.roster))
	for _, e := range t.roster {
		ms = append(ms, e.m)
	}
	slices.SortFunc(ms, byArrival)
	return ms
}

// Roster implements [Notify].
func (n notify) Roster() ([]Change, map[string]time.Time) {
	t := n.t
	t.mu.Lock()
	defer t.unlock()
	changes := make([]Change, 0, len(t.roster))
	for _, e := range t.roster {
		changes = append(changes, Change{Member: e.m, Ref: e.ref, Claim: e.claim})
	}
	slices.SortFunc(changes, func(a, b Change) int { return byArrival(a.Member, b.Member) })
	departed := make(map[string]time.Time, len(t.tomb))
	for ref, at := range t.tomb {
		departed[ref] = time.Unix(0, at)
	}
	return changes, departed
}

// descends reports whether ref is one of the next few arrivals' Refs
// after from (see arriveLocked).
func descends(ref, from string) bool {
	for range 8 {
		if from == "" {
			return false
		}
		from = nextRef(from)
		if from == ref {
			return true
		}
	}
	return false
}
