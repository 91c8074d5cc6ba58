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

// ErrKindHandled is returned by [Node.Handle] for a kind that has a
// handler already.
var ErrKindHandled = errors.New("natscluster: kind has a handler already")

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
const earlierLimit = 10_000

// apps is a node's app handlers.
type apps struct {
	mu       sync.Mutex // held while a handler runs: one event at a time, in log order
	handlers map[string]AppHandler
	earlier  map[string][]AppEvent // applied with no handler, by kind

	// The log held back for the handler of a declared kind (see
	// Options.AppKinds): from the first event of such a kind the node
	// applied before its handler, every event, in log order.
	declared map[string]bool
	holdFor  time.Duration // how long at most
	held     []heldEvent
	timer    *time.Timer // ends the hold when holdFor has passed
	gaveUp   bool        // a hold ran out: no more holds
	closed   bool

	// A handler removed: from the first event of its kind the node
	// applies after, it delivers no more of the log (see Node.Handle).
	removed map[string]bool
	stopped bool
}

// heldEvent is an event of the log held back.
type heldEvent struct {
	l      *eventLog
	pos    sfere.Position
	stored time.Time
	e      event
}

// declare makes kinds declared: the log is held back for their handlers
// (see Options.AppKinds) for at most holdFor.
func (a *apps) declare(kinds []string, holdFor time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range kinds {
		if a.declared == nil {
			a.declared = make(map[string]bool)
		}
		a.declared[k] = true
	}
	a.holdFor = holdFor
}

// hold holds e, the log's event at pos, back if the log is held back, or
// if it is the first event of a declared kind without a handler; it
// reports whether it did. The log's applier calls it for every event, in
// order. Once the node is closed, or an event of a kind whose handler was
// removed came, it takes every event and delivers none: a stream that
// got a later event would resume past the one its app no longer renders.
func (a *apps) hold(l *eventLog, pos sfere.Position, stored time.Time, e event) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.closed || a.stopped:
		return true
	case a.removed[e.Kind]:
		a.stopped = true
		l.n.log.Info("cluster: the handler of an app event kind was removed; this node's streams get no more of the log", "kind", e.Kind, "seq", pos.Offset)
		return true
	case len(a.held) > 0:
	case a.gaveUp || a.closed || e.Kind == "" || !a.declared[e.Kind] || a.handlers[e.Kind] != nil:
		return false
	default:
		a.timer = time.AfterFunc(a.holdFor, a.giveUp)
	}
	a.held = append(a.held, heldEvent{l: l, pos: pos, stored: stored, e: e})
	return true
}

// releaseLocked delivers the events held back, in order, up to the next
// one of a declared kind still without a handler (every one, if force).
func (a *apps) releaseLocked(n *Node, force bool) {
	for len(a.held) > 0 {
		h := a.held[0]
		if !force && h.e.Kind != "" && a.declared[h.e.Kind] && a.handlers[h.e.Kind] == nil {
			return
		}
		a.held = a.held[1:]
		if h.pos.Epoch != h.l.currentEpoch() {
			continue // the log was made anew meanwhile: its history was reset
		}
		if h.e.Kind != "" {
			n.applyAppLocked(h.pos, h.stored, h.e, h.e.Until != 0 && h.stored.UnixNano() > h.e.Until)
		} else {
			h.l.deliver(h.pos, h.stored, h.e)
		}
	}
	a.held = nil
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
}

// giveUp ends a hold that ran out: the node delivers what it held back,
// the events of kinds without a handler to nobody.
func (a *apps) giveUp() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.timer == nil || len(a.held) == 0 {
		return
	}
	a.timer = nil
	a.gaveUp = true
	h := a.held[0]
	h.l.n.log.Warn("cluster: no handler came for a declared kind of app events; the log goes on without it", "kind", h.e.Kind)
	a.releaseLocked(h.l.n, true)
}

// close drops what is held back: the node closed.
func (a *apps) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	a.held = nil
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
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
// the node serves streams that the events concern. If kind is declared
// ([Options.AppKinds]), the node held the log back for h from the first
// event of kind it met: those events and every later one are delivered
// now, in order, h's at their positions, as on every node. Events of an
// undeclared kind the node applied before (a node that starts while the
// log holds some) are handed to h first, marked [AppEvent.Earlier], for
// its state only; their positions went to no stream here, so the node's
// history stops serving the positions before now (a client that resumes
// from one is given the full state instead). The returned func removes
// h, for an app on its way out: from the next event of kind the node
// applies, it delivers no more of the log to its streams (they would
// otherwise take later events without the ones only h rendered, and a
// client resuming elsewhere would skip them); a handler registered again
// for kind ends that, and the node's history then stops serving the
// positions before it. A kind has one handler: a second gets
// [ErrKindHandled].
func (n *Node) Handle(kind string, h AppHandler) (cancel func(), err error) {
	a := &n.apps
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.handlers == nil {
		a.handlers = make(map[string]AppHandler)
	}
	if _, ok := a.handlers[kind]; ok {
		return nil, fmt.Errorf("%w: %q", ErrKindHandled, kind)
	}
	a.handlers[kind] = h
	if a.removed[kind] {
		delete(a.removed, kind)
		if a.stopped {
			// The events since went to no stream here.
			a.stopped = false
			if n.events != nil {
				if err := n.hub.ResetHistory(n.events.currentEpoch()); err != nil {
					n.log.Warn("cluster: history not reset after a handler's gap", "kind", kind, "err", err)
				}
			}
		}
	}
	a.releaseLocked(n, false)
	delete(a.declared, kind) // a handler removed later holds nothing back
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
		if a.handlers[kind] == nil {
			return
		}
		delete(a.handlers, kind)
		if a.removed == nil {
			a.removed = make(map[string]bool)
		}
		a.removed[kind] = true
	}, nil
}

// Held returns the app events of kind that the node holds back for its
// handler (see [Options.AppKinds]), in log order, and the sequence of the
// log up to which the node has applied or held it back. An app that hands
// its state over between nodes (package natspresence: a room's roster)
// uses them to know what its handler is about to render.
func (n *Node) Held(kind string) (held []AppEvent, through uint64) {
	a := &n.apps
	a.mu.Lock()
	for _, h := range a.held {
		if h.e.Kind == kind {
			held = append(held, AppEvent{Kind: kind, Data: h.e.Data, At: h.pos, Stored: h.stored})
		}
	}
	a.mu.Unlock()
	if l := n.events; l != nil {
		l.mu.Lock()
		through = l.applied
		l.mu.Unlock()
	}
	return held, through
}

// placeholder is what a position holds on a node whose app events went to
// no stream.
var placeholder = sfere.PatchSignals(json.RawMessage(`{}`))

// applyApp applies the app event e, the log's at pos, stored at stored.
// late is set for an event stored after its deadline: refused to its
// appender, it goes to no handler and no stream.
func (n *Node) applyApp(pos sfere.Position, stored time.Time, e event, late bool) {
	n.apps.mu.Lock()
	defer n.apps.mu.Unlock()
	n.applyAppLocked(pos, stored, e, late)
}

// applyAppLocked is applyApp with n.apps.mu held.
func (n *Node) applyAppLocked(pos sfere.Position, stored time.Time, e event, late bool) {
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
	}
	if !delivered {
		if _, err := n.hub.BroadcastAt(pos, sfere.All, sfere.All, placeholder); err != nil {
			n.log.Warn("cluster: app event not placed", "seq", pos.Offset, "err", err)
		}
	}
}
