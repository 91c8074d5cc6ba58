package presence

import (
	"time"

	"github.com/sfere-go/sfere"
)

// person is one person as this node's tracker knows it. Its life:
//
//	claimed --first stream--> present --last stream ended--> grace --timer--> departed
//	   |                       ^  ^                            |    (or at once: peer vanished, node lost)
//	   |                       |  +------a stream came back----+   (silent)
//	   |                       |                               |
//	   |                       |              with a resume window (Options.Resume):
//	   |                       |                               v
//	   |                       +----a stream came back------ away (departure announced; claim kept)
//	   |                           (a new Ref; announced          |
//	   |                            as a join with Back)          +--window over, Leave, rename--> dropped (silent)
//	   +--claim timeout (no stream came)--> dropped (silent: never announced)
//
// Leave, a rename and a lost node depart from any state; Leave and a
// rename never leave a person away. All fields are guarded by Tracker.mu.
type person struct {
	id, owner, meta string
	ref             string    // the claim's Ref
	since           time.Time // arrival
	epoch           uint64    // the arrival's number; 0 until it arrived

	local    int            // streams on this node
	remote   map[string]int // streams on other nodes, by node
	vanished bool           // the last stream ended because its peer vanished
	away     bool           // departed, its claim kept for the resume window
	back     bool           // its next announced arrival is a return within the window

	lastCause sfere.Cause // how the last stream ended
	lastErr   error

	timer *time.Timer // claim timeout, grace or resume window
	gen   uint64      // bumped whenever the timer changes; a stale timer does nothing
}

func (t *Tracker) newPersonLocked(c Claim) *person {
	p := &person{id: c.Person, owner: c.Owner, meta: c.Meta, ref: c.Ref}
	id, owner := c.Person, c.Owner
	t.people[id] = p
	t.owners[owner] = p
	return p
}

// held reports whether a stream of p lives on any node.
func (p *person) held() bool {
	if p.local > 0 {
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
	return Claim{Person: p.id, Owner: p.owner, Meta: p.meta, Ref: p.ref, Away: p.away}
}

// setTimerLocked runs fire(p, gen) after d unless the timer is stopped or
// replaced first.
func (t *Tracker) setTimerLocked(p *person, d time.Duration, fire func(*person, uint64)) {
	p.stopTimerLocked()
	gen := p.gen
	p.timer = time.AfterFunc(d, func() { fire(p, gen) })
}

func (p *person) stopTimerLocked() {
	p.gen++
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
}
