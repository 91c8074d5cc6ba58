package natscluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nuid"

	"github.com/sfere-go/sfere"
)

// An app's own events in the cluster's log. Besides broadcasts and sends,
// an app (package natspresence: who arrived, departed, came back) may put
// events of its own into the log with [Node.Append]: each holds a kind
// and the app's payload, and every node, as it applies the log, hands it
// to the handler registered for its kind ([Node.Handle]), at its position
// and in log order. The handler turns it into what the node's streams
// receive, delivered at the event's position, so an app's event is
// replayed like a broadcast to a client that resumes on any node. An
// event's payload is the app's decision, not its rendering: each node
// renders it from its own state as of that position (a handler must
// render alike on every node that applied the same events).

// ErrNoHandler is returned by [Node.Handle] for a kind that has a
// handler already.
var ErrNoHandler = errors.New("natscluster: kind has a handler already")

// AppEvent is one event an app appended to the cluster's log, as a node
// applies it.
type AppEvent struct {
	// Kind and Data are what [Node.Append] was given.
	Kind string
	Data []byte
	// At is the event's position in the log, and in the node's history.
	At sfere.Position
	// Stored is when the log stored the event: the same on every node,
	// so a handler may base decisions on it (say, how long it remembers
	// something) and still decide alike everywhere.
	Stored time.Time
	// Earlier is set on the events of the kind that the node applied
	// before its handler was registered, handed to the handler when it
	// is, in log order, for its state only: their positions hold
	// nothing for any stream on this node, and the node's history no
	// longer serves the positions before the handler's registration.
	Earlier bool
}

// Deliver delivers an app event's effects at its position: queued to the
// node's streams that match p and not exclude, kept in the node's history
// at the event's position ([sfere.Hub.BroadcastAt]). A handler calls it
// at most once per event, before it returns; the node delivers an event
// that the handler delivered nothing for to no stream (it keeps its
// position).
type Deliver func(p sfere.Pattern, exclude sfere.Matcher, effects ...sfere.Effect) (sfere.Result, error)

// AppHandler handles one kind of app event as the node applies the log:
// e's effects go out through deliver (nil for [AppEvent.Earlier] events).
// It runs on the goroutine that applies the log, one event at a time,
// and holds up every later event of the log until it returns: it must
// not wait on the network.
type AppHandler func(e AppEvent, deliver Deliver)

// earlierLimit bounds the events of a kind without a handler that a node
// keeps for the handler to come.
const earlierLimit = 100_000

// apps is a node's app handlers.
type apps struct {
	mu       sync.Mutex // held while a handler runs: one event at a time, in log order
	handlers map[string]AppHandler
	earlier  map[string][]AppEvent // applied with no handler, by kind
}

// HasLog reports whether the node keeps the cluster's event log (it has
// a history): only then do [Node.Append] and [Node.Handle] do anything.
func (n *Node) HasLog() bool { return n.events != nil }

// Append puts an app's event of kind, with payload data, into the
// cluster's log, and returns once the log holds it (every node then
// applies it, in log order, through the handler of its kind: see
// [Node.Handle]) or it gave up. id is the event's Nats-Msg-Id: JetStream
// stores events with the same id once within its duplicates window (two
// minutes by default), so nodes that decide the same thing may append it
// under one id, and it is stored once. An empty id means a new one. A
// shared id has a cost: an append that gave up (its error wraps
// [ErrNoLog]) may still be stored after its deadline and then applied to
// nobody, and an append under the same id within the window is taken for
// that one and returns nil. Share an id only where a later decision
// mends a lost event (package natspresence shares none).
//
// Like [Node.Broadcast] with a history, the publish is retried for up to
// [Options.PublishTimeout] (or until ctx ends); an error wrapping
// [ErrNoLog] means no node applies the event. On a node without a log it
// returns an error wrapping [ErrNoHistory].
func (n *Node) Append(ctx context.Context, kind, id string, data []byte) error {
	if n.events == nil {
		return fmt.Errorf("natscluster: append %q: %w", kind, ErrNoHistory)
	}
	if kind == "" {
		return errors.New("natscluster: append: empty kind")
	}
	if id == "" {
		id = nuid.Next()
	}
	err := n.events.publishEvent(ctx, event{Kind: kind, Data: json.RawMessage(data)}, id)
	if errors.Is(err, ErrNoLog) {
		n.logRefused.Add(1)
	}
	return err
}

// Handle registers h for the app events of kind: from now on, each such
// event the node applies goes to h, at its position. Register it before
// the node serves streams that the events concern. Events of kind the
// node applied before (a node that starts while the log holds some) are
// handed to h first, marked [AppEvent.Earlier], for its state only; their
// positions went to no stream here, so the node's history stops serving
// the positions before now (a client that resumes from one is given the
// full state instead). The returned func removes h. A kind has one
// handler: a second gets [ErrNoHandler].
func (n *Node) Handle(kind string, h AppHandler) (cancel func(), err error) {
	a := &n.apps
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.handlers == nil {
		a.handlers = make(map[string]AppHandler)
	}
	if _, ok := a.handlers[kind]; ok {
		return nil, fmt.Errorf("%w: %q", ErrNoHandler, kind)
	}
	a.handlers[kind] = h
	if earlier := a.earlier[kind]; len(earlier) > 0 {
		delete(a.earlier, kind)
		for _, e := range earlier {
			h(e, nil)
		}
		if n.events != nil {
			if err := n.hub.ResetHistory(n.events.currentEpoch()); err != nil {
				n.log.Warn("cluster: history not reset after earlier app events", "kind", kind, "err", err)
			}
		}
	}
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		delete(a.handlers, kind)
	}, nil
}

// placeholder is what a position holds on a node whose app events went to
// no stream.
var placeholder = sfere.PatchSignals(json.RawMessage(`{}`))

// applyApp applies the app event e, the log's at pos, stored at stored.
// late is set for an event stored after its deadline: refused to its
// appender, it goes to no handler and no stream.
func (n *Node) applyApp(pos sfere.Position, stored time.Time, e event, late bool) {
	delivered := false
	deliver := func(p sfere.Pattern, exclude sfere.Matcher, effects ...sfere.Effect) (sfere.Result, error) {
		if delivered {
			return sfere.Result{}, errors.New("natscluster: an app event delivered twice")
		}
		delivered = true
		return n.hub.BroadcastAt(pos, p, exclude, effects...)
	}
	if !late {
		a := &n.apps
		ev := AppEvent{Kind: e.Kind, Data: e.Data, At: pos, Stored: stored}
		a.mu.Lock()
		if h := a.handlers[e.Kind]; h != nil {
			h(ev, deliver)
		} else {
			if a.earlier == nil {
				a.earlier = make(map[string][]AppEvent)
			}
			ev.Earlier = true
			if q := a.earlier[e.Kind]; len(q) < earlierLimit {
				a.earlier[e.Kind] = append(q, ev)
			}
		}
		a.mu.Unlock()
	}
	if !delivered {
		if _, err := n.hub.BroadcastAt(pos, sfere.All, sfere.All, placeholder); err != nil {
			n.log.Warn("cluster: app event not placed", "seq", pos.Offset, "err", err)
		}
	}
}
