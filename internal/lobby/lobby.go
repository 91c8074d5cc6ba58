// Package lobby is the demo application of sfere: a chat lobby whose
// participant list stays true when people leave without saying so.
//
// Every participant is bound to a browser session. Its life is a small state
// machine (see [Lobby]) driven by four kinds of events: the session joins
// (POST /join), a stream of the session is stored (POST /sse; the hub's
// OnOpen hook calls [Lobby.stored]), a stream leaves the store
// ([Lobby.onEvict]: the tab closed, the heartbeat found the peer dead, the
// TTL expired, the server evicted it, or a newer stream replaced it), and
// the session leaves (POST /leave). Every departure is announced exactly
// once, whatever the path.
//
// [Start] wires the server in dependency order (store, hub, heartbeat,
// listener, HTTP server) and [Server.Shutdown] stops it in reverse; the
// lobby command and the tests both run it.
package lobby

import (
	"cmp"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/natscluster"
)

// Category is the key category of every lobby stream.
const Category = "lobby"

// everyone matches every lobby stream.
var everyone = sfere.InCategory(Category)

// keyFor returns the stream key of a participant name.
func keyFor(name string) sfere.Key { return sfere.NewKey(sfere.DefaultScope, Category, name) }

// state is where a participant is in its life.
//
//	joining --stream stored--> present --stream ended--> grace --timer--> gone ("left")
//	   |                          ^                        |
//	   |                          +----stream stored-------+  (refresh: silent)
//	   +--timer (no stream came)--> gone (silent: it was never announced)
//
// Leave moves any state to gone at once. A stream evicted because a newer one
// of the same session replaced it changes nothing.
type state uint8

const (
	// stateJoining: /join reserved the name; no stream was stored yet and
	// nobody was told. A timer drops it silently if no stream comes.
	stateJoining state = iota + 1
	// statePresent: announced; its current stream is stored (or a newer
	// stream of the same session is being stored).
	statePresent
	// stateGrace: announced, but its stream ended; the grace timer runs.
	// A new stream of the same session within grace is a refresh.
	stateGrace
	// stateGone: departed. Terminal. It keeps its name reserved only while
	// a stream it was opening is still on its way into the store.
	stateGone
)

// participant is one name in the lobby, bound to one browser session.
// All fields are guarded by Lobby.mu.
type participant struct {
	name string
	sid  string
	key  sfere.Key
	seq  uint64 // order of arrival, for the participant list

	state     state
	announced bool          // "joined" was broadcast: a departure must say "left"
	stream    *sfere.Stream // the current stream, nil if none
	opening   int           // /sse handlers that passed the session check and have not yet stored their stream
	ended     string        // why the last stream ended, for the departure log

	timer *time.Timer // join timeout (joining) or grace (grace)
	gen   uint64      // bumped whenever the timer changes; a stale timer does nothing
}

// Errors of the lobby's operations; the handlers map them to statuses.
var (
	ErrNameTaken  = errors.New("that name is already taken; please choose another")
	ErrNotJoined  = errors.New("you have not joined the lobby")
	ErrShutdown   = errors.New("the lobby is shutting down")
	errNameMoving = errors.New("that name is still leaving the lobby; try again in a moment")
)

// Lobby holds the participants and drives their state machine. Its mutex
// guards all participant state, and every broadcast about the lobby is made
// while holding it, so every stream receives lobby events in one order and a
// newcomer's participant list can never cross an arrival or departure.
//
// Holding mu while broadcasting is safe: [sfere.Hub.Broadcast] only queues
// bytes and never calls back into the lobby. Operations that may call back
// (a purge fires the eviction callback synchronously) run after mu is
// released.
type Lobby struct {
	hub         *sfere.Hub
	grace       time.Duration
	joinTimeout time.Duration
	log         *slog.Logger
	metrics     *metrics
	views       *views

	mu       sync.Mutex
	closed   bool
	seq      uint64
	sessions map[string]*participant // session id -> its participant (never gone)
	names    map[string]*participant // name -> holder (gone only while a stream is opening)

	// Cluster mode (see cluster.go); both nil for a single node, whose
	// maps above are then the whole truth.
	dir     *directory        // the shared registry of names and sessions
	cluster *natscluster.Node // cluster-wide broadcast and send
}

func newLobby(grace, joinTimeout time.Duration, log *slog.Logger, m *metrics, v *views) *Lobby {
	return &Lobby{
		grace:       grace,
		joinTimeout: joinTimeout,
		log:         log,
		metrics:     m,
		views:       v,
		sessions:    make(map[string]*participant),
		names:       make(map[string]*participant),
	}
}

// joinResult says what /join did.
type joinResult struct {
	name    string
	renamed string // the session's previous name, which departed
}

// join binds name to session sid. The same session joining again under its
// own name changes nothing (its next stream quietly replaces the old one).
// A session that held another name leaves under that name first.
func (l *Lobby) join(sid, name string) (joinResult, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return joinResult{}, ErrShutdown
	}
	if q := l.names[name]; q != nil {
		defer l.mu.Unlock()
		switch {
		case q.sid != sid:
			return joinResult{}, ErrNameTaken
		case q.state == stateGone:
			return joinResult{}, errNameMoving
		}
		return joinResult{name: name}, nil
	}
	if l.dir != nil {
		if err := l.dir.claim(name, sid); err != nil {
			l.mu.Unlock()
			return joinResult{}, err
		}
	}
	res := joinResult{name: name}
	var purge *sfere.Stream
	var elsewhere []sfere.Key // streams to close on other nodes
	if old := l.sessions[sid]; old != nil {
		res.renamed = old.name
		if purge = l.depart(old, "renamed", true); purge == nil && l.dir != nil {
			elsewhere = append(elsewhere, old.key)
		}
	} else if l.dir != nil {
		if oldName, ok := l.dir.session(sid); ok && oldName != name {
			res.renamed = oldName
			if l.dir.leave(oldName, sid, "") {
				l.announceLeft(oldName, "renamed")
			}
			elsewhere = append(elsewhere, keyFor(oldName))
		}
	}
	p := &participant{name: name, sid: sid, key: keyFor(name), state: stateJoining}
	if l.dir != nil {
		// The same session may be back through another node: then it was
		// announced already, and its arrival here is not news.
		p.announced = l.dir.announced(name, sid)
	}
	l.sessions[sid] = p
	l.names[name] = p
	l.setTimer(p, l.joinTimeout)
	l.mu.Unlock()
	l.purge(purge)
	l.closeElsewhere(elsewhere...)
	return res, nil
}

// leave makes the session's participant depart now and closes its stream.
func (l *Lobby) leave(sid string) (string, error) {
	l.mu.Lock()
	p := l.sessions[sid]
	if p == nil {
		// In a cluster the session may have joined through another node.
		name, ok := "", false
		if l.dir != nil {
			name, ok = l.dir.session(sid)
		}
		if !ok {
			l.mu.Unlock()
			return "", ErrNotJoined
		}
		if l.dir.leave(name, sid, "") {
			l.announceLeft(name, "leave")
		}
		l.mu.Unlock()
		l.closeElsewhere(keyFor(name))
		return name, nil
	}
	stream := l.depart(p, "leave", true)
	l.mu.Unlock()
	l.purge(stream)
	if stream == nil && l.cluster != nil {
		l.closeElsewhere(p.key)
	}
	return p.name, nil
}

// say broadcasts a chat line from the session's participant to everyone.
func (l *Lobby) say(sid, text string) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	name := ""
	if p := l.sessions[sid]; p != nil && p.announced {
		name = p.name
	} else if l.dir != nil {
		if n, ok := l.dir.session(sid); ok && l.dir.announced(n, sid) {
			name = n // joined through another node
		}
	}
	if name == "" {
		return "", ErrNotJoined
	}
	line, err := l.views.chatLine(name, text)
	if err != nil {
		return "", err
	}
	l.broadcast(everyone, nil, sfere.AppendElements("#messages", line))
	return name, nil
}

// open is the /sse handler's session check: it returns the session's
// participant and counts a stream on its way into the store, or nil if the
// session is unknown. The handler must then either serve the stream (the
// store's Put reaches [Lobby.stored]) or call [Lobby.openFailed].
func (l *Lobby) open(sid string) *participant {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	p := l.sessions[sid]
	if p == nil && l.dir != nil {
		p = l.adopt(sid)
	}
	if p == nil {
		return nil
	}
	p.opening++
	return p
}

// adopt makes a local participant for a session that joined through
// another node (cluster mode), or returns nil if the directory does not
// know the session. mu must be held.
func (l *Lobby) adopt(sid string) *participant {
	name, ok := l.dir.session(sid)
	if !ok {
		return nil
	}
	if q := l.names[name]; q != nil {
		return nil // a local participant of another session still holds the name here
	}
	p := &participant{name: name, sid: sid, key: keyFor(name), state: stateJoining, announced: l.dir.announced(name, sid)}
	l.sessions[sid] = p
	l.names[name] = p
	l.setTimer(p, l.joinTimeout)
	return p
}

// openFailed undoes [Lobby.open] for a stream that was never stored.
func (l *Lobby) openFailed(p *participant) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p.opening--
	l.release(p)
}

// stored is the hub's OnOpen hook: it runs right after the store took s,
// in the goroutine of s's Serve, with no store lock held, before anything
// is written to s. (The store's Put may already have fired the eviction
// callback, cause replaced, for the stream s displaced.) It makes s the
// participant's current stream, announces an arrival, and sends s the
// participant list. Because it holds mu and s already receives broadcasts,
// no lobby event can fall between the list and s.
func (l *Lobby) stored(s *sfere.Stream) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.names[s.Key().ID]
	if p == nil || p.key != s.Key() || p.opening == 0 {
		// Not a stream the lobby opened; it has no participant.
		l.tell(s, l.rejoinEffects("Please join again.")...)
		if p != nil && p.state == statePresent && p.stream == nil {
			l.startGrace(p, "stream replaced by a stranger")
		}
		return
	}
	p.opening--
	if l.closed || p.state == stateGone {
		// It left while this stream was on its way: tell the tab.
		l.release(p)
		l.tell(s, l.rejoinEffects("You have left the lobby. Join again to come back.")...)
		return
	}
	if l.dir != nil {
		first, err := l.dir.arrive(p.name, p.sid)
		if err != nil {
			// The name went to someone else meanwhile, or NATS is out of
			// reach: this stream cannot join the shared lobby.
			l.log.Warn("arrival refused by the directory", "name", p.name, "err", err)
			l.depart(p, "refused", false)
			l.tell(s, l.rejoinEffects("Please join again.")...)
			return
		}
		p.announced = !first
	}
	l.stopTimer(p)
	p.stream = s
	p.state = statePresent
	first := !p.announced
	if first {
		p.announced = true
		l.seq++
		p.seq = l.seq
		item, err1 := l.views.participantItem(p.name)
		line, err2 := l.views.systemLine(p.name + " joined the lobby")
		if err := errors.Join(err1, err2); err != nil {
			l.log.Error("render arrival", "err", err)
		} else {
			l.broadcast(everyone, p.key,
				sfere.AppendElements("#participant-list", item),
				sfere.AppendElements("#messages", line))
		}
		l.metrics.joins.Inc()
		l.log.Info("joined", "name", p.name)
	} else {
		l.log.Debug("stream reopened", "name", p.name)
	}
	list, err := l.views.participantList(l.present())
	if err != nil {
		l.log.Error("render participant list", "err", err)
		return
	}
	effects := []sfere.Effect{sfere.PatchElements(list)}
	if first {
		if line, err := l.views.systemLine(p.name + " joined the lobby"); err == nil {
			effects = append(effects, sfere.AppendElements("#messages", line))
		}
	}
	l.tell(s, effects...)
}

// tell sends effects to the one stream s, on this node.
func (l *Lobby) tell(s *sfere.Stream, effects ...sfere.Effect) {
	if _, err := l.hub.Broadcast(s.Key().Pattern(), nil, effects...); err != nil {
		l.log.Error("send to stream", "key", s.Key(), "err", err)
	}
}

// onEvict is the store's eviction callback. It runs on arbitrary goroutines
// (often the stream's own Serve, or the goroutine of a purge) with no store
// lock held; it never blocks beyond mu.
func (l *Lobby) onEvict(ev sfere.Eviction) {
	l.metrics.evictions.WithLabelValues(ev.Cause.String()).Inc()
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.names[ev.Key.ID]
	if l.closed || p == nil || p.state == stateGone || p.stream != ev.Stream {
		// A stale stream: already replaced, already departed (Leave
		// purges after announcing), or the lobby is shutting down.
		return
	}
	p.stream = nil
	if ev.Cause == sfere.CauseReplaced {
		if errors.Is(ev.Err, natscluster.ErrMoved) {
			// The same key opened on another node, which now holds the
			// participant: leave this node silently (the directory
			// names the new node, so nothing is announced).
			l.depart(p, "moved", false)
		}
		// Otherwise the same session stored a newer stream here;
		// [Lobby.stored] for it runs next. Nothing to announce.
		return
	}
	why := ev.Cause.String()
	if ev.Err != nil {
		why += ": " + ev.Err.Error()
	}
	l.log.Debug("stream ended", "name", p.name, "cause", ev.Cause, "err", ev.Err)
	if errors.Is(ev.Err, sfere.ErrPeerVanished) {
		// TCP heard nothing from the peer for the user timeout: it is not
		// reloading a page, so waiting out a grace period would only make
		// the others learn later.
		l.depart(p, why, false)
		return
	}
	l.startGrace(p, why)
}

// startGrace moves a present participant without a stream into grace.
func (l *Lobby) startGrace(p *participant, why string) {
	p.state = stateGrace
	p.ended = why
	if l.grace <= 0 {
		l.depart(p, why, false)
		return
	}
	l.setTimer(p, l.grace)
}

// timerFired ends a participant's join window or grace period, unless the
// timer was stopped or replaced since.
func (l *Lobby) timerFired(p *participant, gen uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || p.gen != gen {
		return
	}
	p.timer = nil
	switch p.state {
	case stateJoining:
		l.log.Info("join expired: no stream came", "name", p.name)
		l.depart(p, "no stream", false)
	case stateGrace:
		l.depart(p, p.ended, false)
	}
}

// depart is the one place a participant leaves: it marks p gone, frees its
// session and (unless a stream is still opening) its name, and, if p was
// announced, broadcasts one "left" line and one list removal to everyone
// else. In a cluster the directory decides whether this node announces:
// a participant whose stream moved to another node has not left (unless
// anywhere: the person asked to leave), and of two nodes seeing one
// departure only one wins the directory's delete. It returns p's current
// stream, which the caller must purge after releasing mu. mu must be held.
func (l *Lobby) depart(p *participant, why string, anywhere bool) *sfere.Stream {
	l.stopTimer(p)
	p.state = stateGone
	stream := p.stream
	p.stream = nil
	if l.sessions[p.sid] == p {
		delete(l.sessions, p.sid)
	}
	l.release(p)
	announce := p.announced
	if l.dir != nil {
		holder := l.cluster.ID()
		if anywhere {
			holder = ""
		}
		announce = l.dir.leave(p.name, p.sid, holder)
	}
	if announce {
		l.announceLeft(p.name, why)
	}
	return stream
}

// announceLeft tells everyone but name that name left: one "left" line
// and one list removal. mu must be held.
func (l *Lobby) announceLeft(name, why string) {
	// Counted before it is sent: whoever sees the "left" line and then
	// reads /metrics must find it counted.
	l.metrics.departures.WithLabelValues(reasonLabel(why)).Inc()
	l.log.Info("left", "name", name, "cause", why)
	line, err := l.views.systemLine(name + " left the lobby")
	if err != nil {
		l.log.Error("render departure", "err", err)
	} else {
		l.broadcast(everyone, keyFor(name),
			sfere.RemoveElements("#"+participantID(name)),
			sfere.AppendElements("#messages", line))
	}
}

// release frees a gone participant's name once no stream of it is opening.
func (l *Lobby) release(p *participant) {
	if p.state == stateGone && p.opening == 0 && l.names[p.name] == p {
		delete(l.names, p.name)
	}
}

// purge closes a departed participant's stream. Its eviction callback finds
// the participant gone and announces nothing. mu must NOT be held: the store
// runs the callback in this goroutine.
func (l *Lobby) purge(s *sfere.Stream) {
	if s != nil {
		l.hub.Store().PurgeStream(s, sfere.CauseExplicit, nil)
	}
}

func (l *Lobby) setTimer(p *participant, d time.Duration) {
	l.stopTimer(p)
	gen := p.gen
	p.timer = time.AfterFunc(d, func() { l.timerFired(p, gen) })
}

func (l *Lobby) stopTimer(p *participant) {
	p.gen++
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
}

// present returns the names on the participant list, in order of arrival.
// mu must be held.
func (l *Lobby) present() []string {
	if l.dir != nil {
		return l.dir.list()
	}
	ps := make([]*participant, 0, len(l.sessions))
	for _, p := range l.sessions {
		if p.announced && p.state != stateGone {
			ps = append(ps, p)
		}
	}
	slices.SortFunc(ps, func(a, b *participant) int { return cmp.Compare(a.seq, b.seq) })
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.name
	}
	return names
}

// count returns how many participants are on the list.
func (l *Lobby) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.present())
}

// pageState is what GET / shows a session: its name if the session is still
// in the lobby (or within grace), and the list.
func (l *Lobby) pageState(sid string) (name string, list []string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := l.sessions[sid]; p != nil {
		return p.name, l.present(), true
	}
	if l.dir != nil {
		if name, ok := l.dir.session(sid); ok {
			return name, l.present(), true
		}
	}
	return "", nil, false
}

// knows reports whether sid is the session of a participant.
func (l *Lobby) knows(sid string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sessions[sid] != nil {
		return true
	}
	if l.dir != nil {
		_, ok := l.dir.session(sid)
		return ok
	}
	return false
}

// broadcast sends effects to the streams matching p and not exclude, and
// counts the deliveries. It never calls back into the lobby, so it may run
// under mu.
func (l *Lobby) broadcast(p sfere.Pattern, exclude sfere.Matcher, effects ...sfere.Effect) {
	broadcast := l.hub.Broadcast
	if l.cluster != nil {
		broadcast = l.cluster.Broadcast // every node's streams; Result counts this node's
	}
	res, err := broadcast(p, exclude, effects...)
	if err != nil {
		l.log.Error("broadcast", "err", err)
		return
	}
	l.metrics.deliveries.Add(float64(res.Delivered))
	l.metrics.deliveryFailures.Add(float64(res.Failed))
}

// rejoinEffects put the join form back with a notice and end the stream.
func (l *Lobby) rejoinEffects(notice string) []sfere.Effect {
	form, err := l.views.joinApp(notice)
	if err != nil {
		l.log.Error("render join form", "err", err)
		return []sfere.Effect{sfere.CloseStream()}
	}
	return []sfere.Effect{sfere.PatchElements(form), sfere.CloseStream()}
}

// close stops the state machine for shutdown: timers stop and stream ends
// are no longer departures (the hub is about to end every stream). In a
// cluster, this node's participants leave with it, announced to the other
// nodes: their streams end normally, so their pages will not reconnect.
func (l *Lobby) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dir != nil {
		for _, p := range l.sessions {
			l.depart(p, "shutdown", false)
		}
	}
	l.closed = true
	for _, p := range l.names {
		l.stopTimer(p)
	}
}

// reasonLabel maps a departure's cause text to a small label set for metrics.
func reasonLabel(why string) string {
	for _, c := range []sfere.Cause{sfere.CauseClosed, sfere.CauseExplicit, sfere.CauseExpired, sfere.CauseSize, sfere.CauseReplaced} {
		name := c.String()
		if len(why) >= len(name) && why[:len(name)] == name {
			return name
		}
	}
	switch why {
	case "leave", "renamed", "no stream", "node-lost", "refused", "shutdown":
		return why
	}
	return "other"
}
