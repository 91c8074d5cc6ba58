package presence

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/sfere-go/sfere"
)

// personState is where a person is in its life on this node's tracker.
// Every change goes through [step], applied by [Tracker.stepLocked].
//
//	          stream: arrives, announced         last stream ended, with a grace period
//	claimed ----------------------------> present -------------------------------------> grace
//	   |                                   ^   |   <------- stream: stays, silent -------    |
//	   | timer (claim timeout)             |   | peer vanished, node lost, or               | timer (grace,
//	   v                                   |   | last stream ended without a grace period   | or a storm's)
//	 gone, silent                          |   v                                            |
//	                                       |  departs, announced <--------------------------+
//	                                       |   |  resumable (Options.Resume; closed or node lost)
//	                                       |   +-----------------------------------> away
//	                                       |   |  otherwise                           |  |
//	                                       |   v                                      |  | timer (window over)
//	                                       |  gone                                    |  v
//	                                       +---- stream: back, announced as a join ---+  gone, silent
//
//	leave, rename: from present or grace -> gone, announced
//	               from claimed or away  -> gone, silent (never announced, or announced gone already)
//
// gone is final: the person is forgotten, its claim released. Events that
// the diagram does not show for a state change nothing.
type personState uint8

const (
	stClaimed personState = iota // claimed; no stream came yet (claim timeout running)
	stPresent                    // arrived; a stream of it lives on some node
	stGrace                      // arrived; held nowhere (grace timer running)
	stAway                       // departed resumably; claim kept (resume window running)
	stGone                       // departed or dropped; forgotten
)

var stateNames = [...]string{stClaimed: "claimed", stPresent: "present", stGrace: "grace", stAway: "away", stGone: "gone"}

func (s personState) String() string { return stateNames[s] }

// personEvent is what happens to a person.
type personEvent uint8

const (
	evStream   personEvent = iota // a stream of it lives, here or on another node
	evEnded                       // its last stream anywhere ended
	evVanished                    // its last stream ended because its peer vanished
	evNodeLost                    // the node that held its last streams was lost
	evTimer                       // its timer ran out: claim timeout, grace or resume window
	evLeave                       // it left: Tracker.Leave, here or on another node
	evRename                      // its owner claimed another id
)

var eventNames = [...]string{evStream: "stream", evEnded: "ended", evVanished: "vanished",
	evNodeLost: "node-lost", evTimer: "timer", evLeave: "leave", evRename: "rename"}

func (e personEvent) String() string { return eventNames[e] }

// personAction is what [Tracker.stepLocked] does after a step.
type personAction uint8

const (
	doNothing personAction = iota
	doArrive               // announce its arrival
	doReturn               // announce its return (Member.Back), under a new Ref
	doStay                 // stop the grace timer; nobody is told
	doGrace                // start the grace timer
	doAway                 // announce the departure; keep the claim for the resume window
	doDepart               // announce the departure; release the claim; forget it
	doDrop                 // release the claim and forget it, silently
)

var actionNames = [...]string{doNothing: "nothing", doArrive: "arrive", doReturn: "return", doStay: "stay",
	doGrace: "grace", doAway: "away", doDepart: "depart", doDrop: "drop"}

func (a personAction) String() string { return actionNames[a] }

// rules are the options that shape a person's life.
type rules struct {
	grace  bool // a person held nowhere waits for the grace period (Options.Grace not negative)
	resume bool // a departure because streams ended keeps the claim (Options.Resume > 0)
}

// step is a person's state machine: the state after ev in st, and what
// to do. It is the only place a person's state is decided.
func step(st personState, ev personEvent, r rules) (personState, personAction) {
	departs := func() (personState, personAction) {
		if r.resume {
			return stAway, doAway
		}
		return stGone, doDepart
	}
	switch {
	case st == stGone:
		return stGone, doNothing
	case ev == evLeave || ev == evRename:
		if st == stPresent || st == stGrace {
			return stGone, doDepart
		}
		return stGone, doDrop
	case ev == evStream:
		switch st {
		case stClaimed:
			return stPresent, doArrive
		case stGrace:
			return stPresent, doStay
		case stAway:
			return stPresent, doReturn
		}
	case ev == evTimer:
		switch st {
		case stClaimed, stAway:
			return stGone, doDrop
		case stGrace:
			return departs()
		}
	case ev == evEnded && st == stPresent:
		if r.grace {
			return stGrace, doGrace
		}
		return departs()
	case (ev == evVanished || ev == evNodeLost) && st == stPresent:
		return departs()
	}
	return st, doNothing
}

// person is one person as this node's tracker knows it. All fields are
// guarded by Tracker.mu.
type person struct {
	id, owner, meta string
	ref             string    // the claim's Ref
	since           time.Time // arrival
	epoch           uint64    // the arrival's number; 0 unless present or in grace
	state           personState

	streams  map[*sfere.Stream]struct{} // its streams on this node
	remote   map[string]int             // its streams on other nodes, by node
	vanished bool                       // its last stream here ended because its peer vanished
	back     bool                       // its next announced arrival is a return within the window
	unlisted int                        // its streams here that ended before their snapshot (see Tracker.opened)
	logged   string                     // the Ref its last arrival went through a cluster's log under (see arriveLocked)
	backRef  string                     // while away: the Ref its return through another node takes (see heldLocked)

	lastCause sfere.Cause // how its last stream ended
	lastErr   error
	brokeAt   time.Time // when its grace period started
	stormed   bool      // its grace period is a storm's (see storm.go)

	timer stopper   // claim timeout, grace or resume window
	gen   uint64    // bumped whenever the timer changes; a stale timer does nothing
	until time.Time // while away: when its resume window runs out (see Tracker.Away)
}

// newPersonLocked records c, claimed (or away, for a claim the cluster
// keeps for a person within its resume window), with its timer running.
func (t *Tracker) newPersonLocked(c Claim) *person {
	p := &person{id: c.Person, owner: c.Owner, meta: c.Meta, ref: c.Ref, streams: make(map[*sfere.Stream]struct{})}
	t.people[p.id] = p
	t.owners[p.owner] = p
	if c.Away && t.resume > 0 {
		p.state = stAway
		p.until = t.clock.now().Add(t.resume)
		t.setTimerLocked(p, t.resume)
	} else {
		t.setTimerLocked(p, t.claimTimeout)
	}
	return p
}

// held reports whether a stream of p lives on any node.
func (p *person) held() bool {
	if len(p.streams) > 0 {
		return true
	}
	for _, n := range p.remote {
		if n > 0 {
			return true
		}
	}
	return false
}

func (p *person) member() Member {
	return Member{ID: p.id, Meta: p.meta, Since: p.since, Present: p.epoch != 0}
}

func (p *person) claim() Claim {
	return Claim{Person: p.id, Owner: p.owner, Meta: p.meta, Ref: p.ref, Away: p.state == stAway}
}

// departure is how p departs on ev.
func (p *person) departure(ev personEvent) Departure {
	switch ev {
	case evLeave:
		return Departure{Reason: ReasonLeft}
	case evRename:
		return Departure{Reason: ReasonRenamed}
	case evNodeLost:
		return Departure{Reason: ReasonNodeLost, Cause: sfere.CauseNodeLost}
	}
	return Departure{Reason: ReasonClosed, Cause: p.lastCause, Err: p.lastErr}
}

// stepLocked applies ev to p (see [step]) and does what the step says. It
// returns p's streams on this node if p was forgotten: the caller ends
// them (after unlocking) when p left or was renamed, and forgets them
// otherwise (it has none then).
func (t *Tracker) stepLocked(p *person, ev personEvent) []*sfere.Stream {
	from := p.state
	to, do := step(from, ev, rules{grace: t.grace >= 0, resume: t.resume > 0})
	if (do == doDepart || do == doDrop) && (ev == evLeave || ev == evRename) && from != stAway {
		t.leaveLogLocked(p, ev)
	}
	p.state = to
	switch do {
	case doArrive:
		p.stopTimerLocked()
		t.arriveLocked(p)
	case doReturn:
		// Under a new Ref: news of the departed one (remembered as gone)
		// is not mistaken for this. Through another node, under the one
		// that node gave it.
		p.stopTimerLocked()
		p.ref, p.back, p.backRef = cmp.Or(p.backRef, nextRef(p.ref)), true, ""
		t.arriveLocked(p)
	case doStay:
		p.stopTimerLocked()
		t.returnedLocked(p)
	case doGrace:
		t.graceLocked(p)
	case doAway:
		t.awayLocked(p, p.departure(ev))
	case doDepart:
		d := p.departure(ev)
		d.Member = p.member()
		closing := t.forgetLocked(p)
		t.recordDepartureLocked(d)
		return closing
	case doDrop:
		return t.forgetLocked(p)
	}
	return nil
}

// arriveLocked announces p's arrival in the next batch.
func (t *Tracker) arriveLocked(p *person) {
	t.seq++
	p.epoch = t.seq
	// In a cluster's log, each arrival of a claim has a Ref of its own,
	// alike on every node: the claim's for its first, and for each later
	// one (a return, an arrival again after its node was found lost and
	// heard again) the next after the last. A return's is the one its
	// claim takes (nextRef), and a claim lost and back twice gets two.
	// A node that knows nothing of the claim's earlier arrivals (it
	// learnt of the person from another node's news or the claims, and
	// started since they went through the log) takes the one the roster
	// shows, if it shows one of the claim: that is the person's arrival
	// in the log, and the one its departure must name.
	if p.logged == "" {
		p.logged = p.ref
		if e, in := t.roster[p.id]; in && e.ofClaim(p.ref) {
			p.logged = e.ref
		}
	} else {
		p.logged = nextRef(p.logged)
	}
	if p.since.IsZero() {
		p.since = time.Now()
	}
	t.dirty[p.id] = struct{}{}
	t.changedLocked()
}

// awayLocked makes p depart resumably: the departure d is announced, but
// p keeps its claim (on every node: the cluster keeps asserting it) until
// the resume window runs out or its owner comes back. p is held nowhere,
// so it has no stream on this node.
func (t *Tracker) awayLocked(p *person, d Departure) {
	t.rememberGoneLocked(p.ref, p.logged)
	d.Resumable = true
	d.Member = p.member()
	p.epoch, p.since = 0, time.Time{}
	p.back = false
	p.remote = nil
	t.callLocked(reserve(p.claim()))
	p.until = t.clock.now().Add(t.resume)
	t.setTimerLocked(p, t.resume)
	t.recordDepartureLocked(d)
}

// forgetLocked forgets p and releases its claim. It returns p's streams
// on this node, which it no longer follows.
func (t *Tracker) forgetLocked(p *person) []*sfere.Stream {
	p.stopTimerLocked()
	t.rememberGoneLocked(p.ref, p.logged)
	delete(t.people, p.id)
	if t.owners[p.owner] == p {
		delete(t.owners, p.owner)
	}
	var streams []*sfere.Stream
	for s := range p.streams {
		delete(t.fresh, s.Key())
		streams = append(streams, s)
	}
	clear(p.streams)
	t.callLocked(release(p.id, p.owner))
	if len(streams) > 0 {
		t.callLocked(hold(Hold{Claim: p.claim()}))
	}
	return streams
}

// recordDepartureLocked records the departure d for the next batch; the
// person's state must show it already (a batch may go out at once).
func (t *Tracker) recordDepartureLocked(d Departure) {
	d.Member.Present = true
	t.departed[d.ID] = d
	t.dirty[d.ID] = struct{}{}
	t.changedLocked()
}

// nextRef is the Ref of a return after a departure under ref: a new one,
// the same on every node (two nodes that see the person back at once, or
// a node that knew it only from the cluster, agree on it).
func nextRef(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return hex.EncodeToString(sum[:8])
}

// setTimerLocked steps p with evTimer after d unless the timer is stopped
// or replaced first.
func (t *Tracker) setTimerLocked(p *person, d time.Duration) {
	p.stopTimerLocked()
	gen := p.gen
	p.timer = t.clock.afterFunc(d, func() { t.timerFired(p, gen) })
}

func (p *person) stopTimerLocked() {
	p.gen++
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
}

// timerFired is p's timer running out: its claim timeout, grace period or
// resume window, whichever its state says.
func (t *Tracker) timerFired(p *person, gen uint64) {
	t.mu.Lock()
	defer t.unlock()
	if t.closed || p.gen != gen || t.people[p.id] != p {
		return
	}
	p.timer = nil
	if p.state == stGrace && !t.graceOverLocked(p) {
		return
	}
	t.stepLocked(p, evTimer)
}
