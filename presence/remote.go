package presence

import (
	"github.com/sfere-go/sfere"
)

// notify is the tracker's side of a [Cluster]: what the other nodes hold.
type notify struct{ t *Tracker }

var _ Notify = notify{}

func (n notify) Held(node string, h Hold) {
	t := n.t
	t.mu.Lock()
	defer t.unlock()
	t.heldLocked(node, h)
}

// heldLocked records what node holds of h.Person.
func (t *Tracker) heldLocked(node string, h Hold) {
	if t.closed {
		return
	}
	lineage := ""
	if t.departedRef(h.Ref) {
		if h.Streams == 0 || t.gone[h.Ref].lostTo != node {
			return // late news of a claim that departed
		}
		// It departed because node was found lost, and node still holds
		// it: node was not lost (a stalled process, a cut link) and is
		// heard again. Its person arrives again, as its streams do.
		lineage = t.gone[h.Ref].logged
		delete(t.gone, h.Ref)
	}
	p := t.people[h.Person]
	if p == nil {
		if h.Streams == 0 {
			return
		}
		if old := t.owners[h.Owner]; old != nil {
			// The owner moved to another id through that node.
			t.stepLocked(old, evRename)
		}
		p = t.newPersonLocked(h.Claim)
		// In a cluster's log the claim departed: its arrival again
		// follows its last one there (see arriveLocked).
		p.logged = lineage
	}
	if p.owner != h.Owner {
		t.log.Warn("presence: a person is held by two owners; keeping this node's", "person", h.Person, "node", node)
		return
	}
	if h.Streams > 0 {
		if p.remote == nil {
			p.remote = make(map[string]int)
		}
		p.remote[node] = h.Streams
		if p.epoch == 0 && !h.Since.IsZero() {
			p.since = h.Since // it arrives with this stream
		}
		wasAway := p.state == stAway
		if wasAway {
			// Back through that node, under the Ref it gave the return
			// (the batch that announces it may go out within the step,
			// naming the claim).
			p.backRef = h.Ref
		}
		t.stepLocked(p, evStream)
		if wasAway {
			// This node keeps asserting the claim as it did while away.
			t.callLocked(reserve(p.claim()))
		}
		return
	}
	if _, ok := p.remote[node]; !ok {
		return
	}
	delete(p.remote, node)
	if !p.held() {
		p.vanished, p.lastCause, p.lastErr = h.Vanished, sfere.CauseClosed, nil
		t.stepLocked(p, lastEnded(h.Vanished))
	}
}

func (n notify) Snapshot(node string, holds []Hold) {
	t := n.t
	t.mu.Lock()
	defer t.unlock()
	in := make(map[string]bool, len(holds))
	for _, h := range holds {
		in[h.Person] = true
		t.heldLocked(node, h)
	}
	for _, p := range t.people {
		if _, ok := p.remote[node]; ok && !in[p.id] {
			t.heldLocked(node, Hold{Claim: p.claim()})
		}
	}
}

func (n notify) NodeLost(node string) {
	t := n.t
	t.mu.Lock()
	defer t.unlock()
	if t.closed {
		return
	}
	for _, p := range t.people {
		if _, ok := p.remote[node]; !ok {
			continue
		}
		delete(p.remote, node)
		if !p.held() {
			ref := p.ref
			t.stepLocked(p, evNodeLost)
			if g, ok := t.gone[ref]; ok && g.lostTo == "" {
				g.lostTo = node // departed with node's loss: see heldLocked
				t.gone[ref] = g
			}
		}
	}
}

func (n notify) Left(person, owner string) {
	t := n.t
	t.mu.Lock()
	p := t.people[person]
	if t.closed || p == nil || p.owner != owner {
		t.unlock()
		return
	}
	closing := t.stepLocked(p, evLeave)
	t.unlock()
	t.end(closing, ErrLeft)
}

func (n notify) Holds() []Hold {
	t := n.t
	t.mu.Lock()
	defer t.unlock()
	var out []Hold
	for _, p := range t.people {
		if len(p.streams) > 0 {
			out = append(out, Hold{Claim: p.claim(), Streams: len(p.streams), Since: p.since})
		}
	}
	return out
}
