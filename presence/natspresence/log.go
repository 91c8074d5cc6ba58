package natspresence

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

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
