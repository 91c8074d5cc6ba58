package natspresence

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/natscluster"
	"github.com/sfere-go/sfere/presence"
)

// The room's changes in the cluster's log: see the package doc.

// appendFor bounds how long a batch is tried again.
const appendFor = time.Minute

// appendChunk bounds the changes of one log event, well under NATS's
// payload limit.
const appendChunk = 1000

// Logs implements [presence.LogCluster]: the room's changes go through
// the log on a node that keeps one.
func (c *Cluster) Logs() bool { return c.cnode.HasLog() }

// Kind is the kind of the app events ([natscluster.Node.Append]) that
// carry room's changes in the cluster's log. Give it to the node's
// [natscluster.Options.AppKinds]: a node that starts while the log holds
// some then holds the log back until the room's tracker starts, and
// renders them at their positions like every other node, so its history
// serves every position of the log. Without it, such a node's history
// serves only the positions after its tracker started.
func Kind(room string) string { return "presence:" + room }

// kind is the room's kind of app event in the log.
func (c *Cluster) kind() string { return Kind(c.room) }

// Append implements [presence.LogCluster]: the batch is queued, and
// appended in the background.
func (c *Cluster) Append(changes []presence.Change) {
	if c.appends == nil {
		return
	}
	for len(changes) > 0 {
		n := min(len(changes), appendChunk)
		c.appends.queue(changes[:n])
		changes = changes[n:]
	}
}

// startLog sends the room's changes through the log from now on: it asks
// another node for its roster (for the people whose arrival the log no
// longer holds), registers the room's handler with the node (the batches
// the node applied before come first, for the roster only), and answers
// the nodes that start later.
func (c *Cluster) startLog(n presence.Notify) error {
	if r, at, ok := c.fetchRoster(); ok {
		n.Applied(c.rollBack(r, at))
	}
	var err error
	if c.unlog, err = c.cnode.Handle(c.kind(), c.applied); err != nil {
		return fmt.Errorf("natspresence: %w", err)
	}
	c.rosterSub, err = c.nc.Subscribe(c.rosterSubject(), func(msg *nats.Msg) {
		changes, departed := n.Roster()
		// Read after the roster: every batch it reflects is at or before.
		at := c.cnode.Hub().Position()
		w := rosterWire{At: at.String(), Changes: make([]change, len(changes)), Departed: make(map[string]int64, len(departed))}
		for i, ch := range changes {
			w.Changes[i] = toChange(ch)
		}
		for ref, at := range departed {
			w.Departed[ref] = at.UnixNano()
		}
		b, err := json.Marshal(w)
		if err == nil {
			err = msg.Respond(b)
		}
		if err != nil {
			c.log.Warn("natspresence: roster not handed over", "err", err)
		}
	})
	if err != nil {
		c.unlog()
		return fmt.Errorf("natspresence: subscribe: %w", err)
	}
	return nil
}

func (c *Cluster) rosterSubject() string {
	return c.cnode.Prefix() + ".roster." + hex.EncodeToString([]byte(c.room))
}

// rosterWire is a roster handed over, as of At (a position of the log:
// it reflects every batch at or before it).
type rosterWire struct {
	At       string           `json:"at"`
	Changes  []change         `json:"changes"`
	Departed map[string]int64 `json:"departed,omitempty"`
}

// fetchRoster asks another node for its roster: a batch that only
// updates this node's. It returns false if no node answered in time (this
// is the first node, or the others are out of reach: the log is all
// there is).
func (c *Cluster) fetchRoster() (presence.Applied, sfere.Position, bool) {
	msg, err := c.nc.Request(c.rosterSubject(), nil, c.timeout)
	if err != nil {
		if !errors.Is(err, nats.ErrNoResponders) {
			c.log.Warn("natspresence: no roster handed over", "err", err)
		}
		return presence.Applied{}, sfere.Position{}, false
	}
	var w rosterWire
	err = json.Unmarshal(msg.Data, &w)
	var at sfere.Position
	if err == nil {
		at, err = sfere.ParsePosition(w.At)
	}
	if err != nil {
		c.log.Warn("natspresence: bad roster handed over", "err", err)
		return presence.Applied{}, sfere.Position{}, false
	}
	a := presence.Applied{Changes: make([]presence.Change, len(w.Changes)), Stored: time.Now(),
		Departed: make(map[string]time.Time, len(w.Departed))}
	for i, ch := range w.Changes {
		a.Changes[i] = ch.change()
	}
	for ref, when := range w.Departed {
		a.Departed[ref] = time.Unix(0, when)
	}
	return a, at, true
}

// rollBack returns the roster r, handed over as of at, as it was before
// the room's batches that the node holds back for its tracker (see
// [Kind]): the tracker is about to render those at their positions, each
// against the roster before it, as every node did. It waits (briefly)
// until the node has taken in the log up to at, so that every batch r
// reflects is among them. By the batches' Refs: a claim that arrives in
// them is not in the roster before; a claim that departs in them, and did
// not arrive in them, is, and is no longer remembered as departed.
func (c *Cluster) rollBack(r presence.Applied, at sfere.Position) presence.Applied {
	held, through := c.cnode.Held(c.kind())
	for deadline := time.Now().Add(c.timeout); at.Epoch == c.cnode.Hub().Position().Epoch && through < at.Offset &&
		time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		held, through = c.cnode.Held(c.kind())
	}
	if len(held) == 0 {
		return r
	}
	arrived := make(map[string]bool)
	departed := make(map[string]presence.Change)
	for _, e := range held {
		var wire []change
		if json.Unmarshal(e.Data, &wire) != nil {
			continue
		}
		for _, w := range wire {
			switch ch := w.change(); {
			case !ch.Leave:
				arrived[ch.Ref] = true
			case !arrived[ch.Ref]:
				if _, ok := departed[ch.Ref]; !ok {
					departed[ch.Ref] = ch
				}
			}
		}
	}
	shown := make(map[string]bool)
	kept := r.Changes[:0]
	for _, ch := range r.Changes {
		if !arrived[ch.Ref] {
			kept = append(kept, ch)
			shown[ch.Member.ID] = true
		}
	}
	for ref, ch := range departed {
		delete(r.Departed, ref)
		if !shown[ch.Member.ID] {
			kept = append(kept, presence.Change{Member: ch.Member, Ref: ref, Claim: ch.Claim})
			shown[ch.Member.ID] = true
		}
	}
	for ref := range arrived {
		delete(r.Departed, ref)
	}
	r.Changes = kept
	return r
}

// applied hands a batch of the room's changes, as the node applies the
// log, to the tracker.
func (c *Cluster) applied(e natscluster.AppEvent, deliver natscluster.Deliver) {
	var wire []change
	if err := json.Unmarshal(e.Data, &wire); err != nil {
		c.log.Warn("natspresence: bad batch in the log", "at", e.At, "err", err)
		return
	}
	changes := make([]presence.Change, len(wire))
	for i, w := range wire {
		changes[i] = w.change()
	}
	c.mu.Lock()
	n := c.n
	c.mu.Unlock()
	a := presence.Applied{Changes: changes, Stored: e.Stored}
	if deliver != nil {
		a.Deliver = deliver
	}
	n.Applied(a)
}

// change is a presence.Change on the wire.
type change struct {
	Leave     bool   `json:"l,omitempty"`
	Person    string `json:"p"`
	Meta      string `json:"m,omitempty"`
	Since     int64  `json:"s,omitempty"`
	Back      bool   `json:"b,omitempty"`
	Ref       string `json:"r,omitempty"`
	Claim     string `json:"cr,omitempty"`
	Reason    uint8  `json:"why,omitempty"`
	Cause     uint8  `json:"c,omitempty"`
	Resumable bool   `json:"res,omitempty"`
}

func toChange(c presence.Change) change {
	w := change{Leave: c.Leave, Person: c.Member.ID, Meta: c.Member.Meta, Back: c.Member.Back, Ref: c.Ref, Claim: c.Claim,
		Reason: uint8(c.Reason), Cause: uint8(c.Cause), Resumable: c.Resumable}
	if !c.Member.Since.IsZero() {
		w.Since = c.Member.Since.UnixNano()
	}
	return w
}

func (w change) change() presence.Change {
	c := presence.Change{Leave: w.Leave, Member: presence.Member{ID: w.Person, Meta: w.Meta, Back: w.Back, Present: true},
		Ref: w.Ref, Claim: w.Claim, Reason: presence.Reason(w.Reason), Cause: sfere.Cause(w.Cause), Resumable: w.Resumable}
	if w.Since != 0 {
		c.Member.Since = time.Unix(0, w.Since)
	}
	return c
}

// appender appends a node's batches to the log, one at a time, in order.
type appender struct {
	c       *Cluster
	mu      sync.Mutex
	batches []batch
	wake    chan struct{}
	done    chan struct{} // closed when run returns
}

type batch struct {
	data    []byte
	decided time.Time
}

func newAppender(c *Cluster) *appender {
	return &appender{c: c, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// queue adds a batch; it never waits.
func (a *appender) queue(changes []presence.Change) {
	wire := make([]change, len(changes))
	for i, ch := range changes {
		wire[i] = toChange(ch)
	}
	b, err := json.Marshal(wire)
	if err != nil {
		a.c.log.Error("natspresence: batch not encoded", "err", err)
		return
	}
	a.mu.Lock()
	a.batches = append(a.batches, batch{data: b, decided: time.Now()})
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// run appends the queued batches until the cluster stops.
//
// An append in flight when the cluster stops is not cancelled: a publish
// cancelled after it sent its bytes waits out its deadline to learn
// whether the log took it (see [natscluster.Node.Append]), seconds, while
// one left alone ends as soon as JetStream answers. The batches still
// queued are dropped (the other nodes decide the same changes).
func (a *appender) run() {
	defer close(a.done)
	wait := 50 * time.Millisecond
	for {
		select {
		case <-a.c.stop:
			return
		default:
		}
		a.mu.Lock()
		var next *batch
		if len(a.batches) > 0 {
			next = &a.batches[0]
		}
		a.mu.Unlock()
		if next == nil {
			select {
			case <-a.c.stop:
				return
			case <-a.wake:
				continue
			}
		}
		// A new Nats-Msg-Id each time (see the package doc): an
		// attempt the log stored too late, after its deadline, is
		// applied to nobody, and a retry under its id would be taken
		// for it.
		err := a.c.cnode.Append(context.Background(), a.c.kind(), "", next.data)
		switch {
		case err == nil, time.Since(next.decided) > appendFor, !errors.Is(err, natscluster.ErrNoLog):
			if err != nil {
				a.c.log.Warn("natspresence: a batch of the room's changes was not put into the log; dropped", "err", err)
			}
			a.mu.Lock()
			a.batches = a.batches[1:]
			a.mu.Unlock()
			wait = 50 * time.Millisecond
			continue
		}
		a.c.log.Warn("natspresence: a batch of the room's changes is not in the log yet; trying again", "err", err)
		select {
		case <-a.c.stop:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}
