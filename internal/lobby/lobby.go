// Package lobby is the demo application of sfere: a chat lobby whose
// participant list stays true when people leave without saying so.
//
// The lobby is a thin application over package presence: a participant is
// a person whose id is its name, held by its browser session (the owner).
// Each tab of a session is one stream under its own key (see
// [presence.StreamKey]); the tracker announces, exactly once, the first
// tab's arrival and the departure once the last tab has been gone for the
// grace period (at once for a vanished peer or an explicit leave). The
// lobby renders those announcements, the participant list and the chat.
//
// Nothing is lost across a reconnect: the hub keeps a history (in a
// cluster, a JetStream log), every event carries its position as its SSE
// id, a page opens its stream from the position it was rendered at, and a
// page that reconnects is sent what it missed. A participant who departed
// because its streams ended keeps its name for the resume window and is
// announced back once (see [Options.Resume]); a restarted single node
// takes sessions back from their signed member cookies (see session.go).
//
// [Start] wires the server in dependency order (store, hub, tracker,
// heartbeat, listener, HTTP server) and [Server.Shutdown] stops it in
// reverse; the lobby command and the tests both run it.
package lobby

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/natscluster"
	"github.com/sfere-go/sfere/presence"
)

// Category is the key category of every lobby stream: the presence room.
const Category = "lobby"

// everyone matches every lobby stream.
var everyone = presence.Everyone(Category)

// Errors of the lobby's operations; the handlers map them to statuses.
var (
	ErrNameTaken = errors.New("that name is already taken; please choose another")
	ErrNotJoined = errors.New("you have not joined the lobby")
	ErrShutdown  = errors.New("the lobby is shutting down")
	// ErrNotSent is a chat line the cluster's event log did not take: it
	// reached nobody, and the sender may try again.
	ErrNotSent = errors.New("not sent: the lobby could not reach every node; try again")
)

// Lobby joins sessions to the presence tracker and renders what it
// announces. It holds no participant state of its own.
type Lobby struct {
	hub     *sfere.Hub
	tracker *presence.Tracker
	log     *slog.Logger
	metrics *metrics
	views   *views

	// cluster carries chat to every node; nil on a single node.
	cluster *natscluster.Node
	// ends revokes the sessions whose resume window ran out; nil in a
	// cluster.
	ends *sessionEnds
}

func newLobby(log *slog.Logger, m *metrics, v *views) *Lobby {
	return &Lobby{log: log, metrics: m, views: v}
}

// presenceOptions are the tracker's options for the lobby: its rendering
// of the participant list and of the joined/left lines, and its metrics.
func (l *Lobby) presenceOptions(opts Options) presence.Options {
	return presence.Options{
		Room:         Category,
		Grace:        opts.Grace,
		Window:       opts.PresenceWindow,
		ClaimTimeout: opts.JoinTimeout,
		Resume:       max(opts.Resume, 0),
		Snapshot:     l.renderSnapshot,
		Diff:         l.renderDiff,
		Goodbye:      l.goodbye,
		OnDiff:       l.counted,
		Logger:       opts.Logger,
	}
}

// joinResult says what /join did.
type joinResult struct {
	name    string
	renamed string // the session's previous name, which departed
}

// join binds name to session sid. The same session joining again under its
// own name changes nothing; a session that held another name leaves under
// that name first.
func (l *Lobby) join(ctx context.Context, sid, name string) (joinResult, error) {
	// The person is the name's identity (PRECIS), so "PHIL" is taken while
	// "phil" is here; the name as typed is what everyone sees. The same
	// person joining again keeps the spelling everyone already sees.
	id := nameIdentity(name)
	if m, ok := l.tracker.Lookup(ctx, sid); ok && m.ID == id {
		return joinResult{name: displayName(m)}, nil
	}
	renamed, err := l.tracker.Claim(ctx, presence.Claim{Person: id, Owner: sid, Meta: name})
	switch {
	case errors.Is(err, presence.ErrTaken):
		return joinResult{}, ErrNameTaken
	case errors.Is(err, presence.ErrClosed):
		return joinResult{}, ErrShutdown
	case err != nil:
		return joinResult{}, err
	}
	l.ends.claimed(id, sid, func(sid string) bool { return l.knows(ctx, sid) })
	return joinResult{name: name, renamed: renamed}, nil
}

// leave makes the session's participant depart now and ends its streams,
// on every node.
func (l *Lobby) leave(ctx context.Context, sid string) (string, error) {
	name, err := l.tracker.Leave(ctx, sid)
	if err != nil {
		return "", ErrNotJoined
	}
	return name, nil
}

// say broadcasts a chat line from the session's participant to everyone.
func (l *Lobby) say(ctx context.Context, sid, text string) (string, error) {
	m, ok := l.tracker.Lookup(ctx, sid)
	if !ok || !m.Present {
		return "", ErrNotJoined
	}
	line, err := l.views.chatLine(displayName(m), text)
	if err != nil {
		return "", err
	}
	if err := l.broadcast(ctx, sfere.AppendElements("#messages", line)); err != nil {
		return "", err
	}
	return displayName(m), nil
}

// pageState is what GET / shows a session: its name if the session is still
// in the lobby (or within grace), and the list.
func (l *Lobby) pageState(ctx context.Context, sid string) (name string, list []string, ok bool) {
	m, ok := l.tracker.Lookup(ctx, sid)
	if !ok {
		return "", nil, false
	}
	return displayName(m), l.present(), true
}

// position is the lobby's position in its history, as a page renders it
// for its stream to open from; "" without a history.
func (l *Lobby) position() string {
	if p := l.hub.Position(); p.Epoch != "" {
		return p.String()
	}
	return ""
}

// knows reports whether sid is the session of a participant.
func (l *Lobby) knows(ctx context.Context, sid string) bool {
	_, ok := l.tracker.Lookup(ctx, sid)
	return ok
}

// present returns the names on the participant list, in order of arrival.
func (l *Lobby) present() []string {
	return displayNames(l.tracker.Members())
}

// displayName is a member's name as typed at /join (its id is the name's
// identity, see nameIdentity).
func displayName(m presence.Member) string {
	if m.Meta != "" {
		return m.Meta
	}
	return m.ID
}

func displayNames(ms []presence.Member) []string {
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = displayName(m)
	}
	return names
}

// count returns how many participants are on the list.
func (l *Lobby) count() int { return l.tracker.Count() }

// broadcast sends effects to every lobby stream (on every node) and counts
// the deliveries. In a cluster with a history it fails with [ErrNotSent]
// when the event log did not take the effects: they reached nobody.
func (l *Lobby) broadcast(ctx context.Context, effects ...sfere.Effect) error {
	var (
		res sfere.Result
		err error
	)
	if l.cluster != nil {
		res, err = l.cluster.BroadcastContext(ctx, everyone, nil, effects...) // Result counts this node's
	} else {
		res, err = l.hub.Broadcast(everyone, nil, effects...)
	}
	switch {
	case errors.Is(err, natscluster.ErrNoLog):
		l.log.Warn("broadcast", "err", err)
		return fmt.Errorf("%w (%w)", ErrNotSent, err)
	case err != nil:
		l.log.Error("broadcast", "err", err)
		return err
	}
	l.metrics.deliveries.Add(float64(res.Delivered))
	l.metrics.deliveryFailures.Add(float64(res.Failed))
	return nil
}

// renderSnapshot is what a new stream receives first: the whole list as
// it was before the batch the stream opened in (that batch's lines and
// items follow in the diff, a newcomer's own arrival among them).
func (l *Lobby) renderSnapshot(ms []presence.Member) []sfere.Effect {
	list, err := l.views.participantList(displayNames(ms))
	if err != nil {
		l.log.Error("render participant list", "err", err)
		return nil
	}
	return []sfere.Effect{sfere.PatchElements(list)}
}

// renderDiff is what every stream receives for a batch: one removal
// per departure, the arrivals' items appended to the list in one patch,
// and every "left" and "joined" line in one patch.
func (l *Lobby) renderDiff(d presence.Diff) []sfere.Effect {
	var effects []sfere.Effect
	var items, lines strings.Builder
	for _, dep := range d.Leaves {
		effects = append(effects, sfere.RemoveElements("#"+participantID(displayName(dep.Member))))
		line, err := l.views.systemLine(displayName(dep.Member) + " left the lobby")
		if err != nil {
			l.log.Error("render departure", "err", err)
			continue
		}
		lines.WriteString(line)
	}
	for _, j := range d.Joins {
		item, err1 := l.views.participantItem(displayName(j))
		line, err2 := l.views.systemLine(arrivalText(j))
		if err := errors.Join(err1, err2); err != nil {
			l.log.Error("render arrival", "err", err)
			continue
		}
		items.WriteString(item)
		lines.WriteString(line)
	}
	if items.Len() > 0 {
		effects = append(effects, sfere.AppendElements("#participant-list", items.String()))
	}
	if lines.Len() > 0 {
		effects = append(effects, sfere.AppendElements("#messages", lines.String()))
	}
	return effects
}

// arrivalText is the line that announces an arrival: a return within the
// resume window is "back", anything else "joined".
func arrivalText(m presence.Member) string {
	if m.Back {
		return displayName(m) + " is back"
	}
	return displayName(m) + " joined the lobby"
}

// goodbye is what a stream the tracker ends receives: the join form back.
func (l *Lobby) goodbye(why error) []sfere.Effect {
	notice := "Please join again."
	if errors.Is(why, presence.ErrLeft) {
		notice = "You have left the lobby. Join again to come back."
	}
	form, err := l.views.joinApp(notice)
	if err != nil {
		l.log.Error("render join form", "err", err)
		return nil
	}
	return []sfere.Effect{sfere.PatchElements(form)}
}

// counted logs and counts a batch before it is sent: whoever sees a
// "left" line and then reads /metrics must find it counted. It also tells
// the record of ended sessions of the departures and returns (see
// [sessionEnds]).
func (l *Lobby) counted(d presence.Diff) {
	l.ends.diff(d)
	for _, dep := range d.Leaves {
		label := departureLabel(dep)
		l.metrics.departures.WithLabelValues(label).Inc()
		l.log.Info("left", "name", displayName(dep.Member), "cause", label, "err", dep.Err)
	}
	for _, j := range d.Joins {
		if j.Back {
			l.metrics.returns.Inc()
			l.log.Info("back", "name", displayName(j))
			continue
		}
		l.metrics.joins.Inc()
		l.log.Info("joined", "name", displayName(j))
	}
}

// departureLabel maps a departure to a small label set for metrics: the
// last stream's eviction cause for a closed tab, else the reason.
func departureLabel(d presence.Departure) string {
	switch d.Reason {
	case presence.ReasonClosed:
		if d.Cause != 0 {
			return d.Cause.String()
		}
		return "closed"
	case presence.ReasonLeft:
		return "leave"
	case presence.ReasonRenamed:
		return "renamed"
	case presence.ReasonNodeLost:
		return "node-lost"
	}
	return "other"
}
