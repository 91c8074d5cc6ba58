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

// kind is the room's kind of app event in the log.
func (c *Cluster) kind() string { return "presence:" + c.room }

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
	c.appends = newAppender(c)
	if r, ok := c.fetchRoster(); ok {
		n.Applied(r)
	}
	var err error
	if c.unlog, err = c.cnode.Handle(c.kind(), c.applied); err != nil {
		return fmt.Errorf("natspresence: %w", err)
	}
	c.rosterSub, err = c.nc.Subscribe(c.rosterSubject(), func(msg *nats.Msg) {
		changes, departed := n.Roster()
		w := rosterWire{Changes: make([]change, len(changes)), Departed: make(map[string]int64, len(departed))}
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

// rosterWire is a roster handed over.
type rosterWire struct {
	Changes  []change         `json:"changes"`
	Departed map[string]int64 `json:"departed,omitempty"`
}

// fetchRoster asks another node for its roster: a batch that only
// updates this node's. It returns false if no node answered in time (this
// is the first node, or the others are out of reach: the log is all
// there is).
func (c *Cluster) fetchRoster() (presence.Applied, bool) {
	msg, err := c.nc.Request(c.rosterSubject(), nil, c.timeout)
	if err != nil {
		if !errors.Is(err, nats.ErrNoResponders) {
			c.log.Warn("natspresence: no roster handed over", "err", err)
		}
		return presence.Applied{}, false
	}
	var w rosterWire
	if err := json.Unmarshal(msg.Data, &w); err != nil {
		c.log.Warn("natspresence: bad roster handed over", "err", err)
		return presence.Applied{}, false
	}
	a := presence.Applied{Changes: make([]presence.Change, len(w.Changes)), Stored: time.Now(),
		Departed: make(map[string]time.Time, len(w.Departed))}
	for i, ch := range w.Changes {
		a.Changes[i] = ch.change()
	}
	for ref, at := range w.Departed {
		a.Departed[ref] = time.Unix(0, at)
	}
	return a, true
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
	Reason    uint8  `json:"why,omitempty"`
	Cause     uint8  `json:"c,omitempty"`
	Resumable bool   `json:"res,omitempty"`
}

func toChange(c presence.Change) change {
	w := change{Leave: c.Leave, Person: c.Member.ID, Meta: c.Member.Meta, Back: c.Member.Back, Ref: c.Ref,
		Reason: uint8(c.Reason), Cause: uint8(c.Cause), Resumable: c.Resumable}
	if !c.Member.Since.IsZero() {
		w.Since = c.Member.Since.UnixNano()
	}
	return w
}

func (w change) change() presence.Change {
	c := presence.Change{Leave: w.Leave, Member: presence.Member{ID: w.Person, Meta: w.Meta, Back: w.Back, Present: true},
		Ref: w.Ref, Reason: presence.Reason(w.Reason), Cause: sfere.Cause(w.Cause), Resumable: w.Resumable}
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
}

type batch struct {
	data    []byte
	decided time.Time
}

func newAppender(c *Cluster) *appender {
	return &appender{c: c, wake: make(chan struct{}, 1)}
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
func (a *appender) run() {
	defer a.c.done.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-a.c.stop
		cancel()
	}()
	wait := 50 * time.Millisecond
	for {
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
		err := a.c.cnode.Append(ctx, a.c.kind(), "", next.data)
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
