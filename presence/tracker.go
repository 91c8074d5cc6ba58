package presence

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/sfere-go/sfere"
)

// Defaults of [Options].
const (
	DefaultGrace        = 2 * time.Second
	DefaultWindow       = 50 * time.Millisecond
	DefaultMaxWindow    = 800 * time.Millisecond
	DefaultClaimTimeout = 15 * time.Second
)

// Errors of the tracker's operations.
var (
	// ErrTaken: the person id is held by another owner.
	ErrTaken = errors.New("presence: person held by another owner")
	// ErrNotClaimed: the owner holds no person (it never claimed one, it
	// left, or its claim lapsed).
	ErrNotClaimed = errors.New("presence: owner holds no person")
	// ErrLeft: the person left; given to [Options.Goodbye] for the
	// streams the tracker ends because of it.
	ErrLeft = errors.New("presence: person left")
	// ErrClosed: the tracker is closed.
	ErrClosed = errors.New("presence: tracker closed")
)

// Reason says why a person departed.
type Reason uint8

const (
	// ReasonClosed: the person's last stream ended and none came back
	// within the grace period, or its peer vanished. [Departure.Cause]
	// and [Departure.Err] say how the last stream ended.
	ReasonClosed Reason = iota + 1
	// ReasonLeft: the application called [Tracker.Leave].
	ReasonLeft
	// ReasonRenamed: the owner claimed another person id.
	ReasonRenamed
	// ReasonNodeLost: the cluster node that held the person's streams
	// stopped answering.
	ReasonNodeLost
)

var reasonNames = [...]string{
	ReasonClosed:   "closed",
	ReasonLeft:     "left",
	ReasonRenamed:  "renamed",
	ReasonNodeLost: "node-lost",
}

// String returns the reason's lower-case name, e.g. "closed".
func (r Reason) String() string {
	if r >= ReasonClosed && int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// Member is one person as the room sees it.
type Member struct {
	// ID is the person's id, chosen by the application.
	ID string
	// Meta is the application's metadata of the person (say, a display
	// name), as given to [Tracker.Claim].
	Meta string
	// Since is when the person arrived.
	Since time.Time
	// Present is false while the person has claimed its id but no stream
	// came yet, or while it is away within its resume window (only
	// [Tracker.Lookup] returns such members).
	Present bool
	// Back is set on a member of [Diff.Joins] who returns within its
	// resume window ([Options.Resume]): the person departed because its
	// streams ended and one of its owner's streams opened again before
	// the window ran out. An application says "brian is back" rather
	// than "brian joined". It is false everywhere else (members of a
	// snapshot, [Tracker.Members], [Tracker.Lookup]).
	Back bool
}

// Departure is one person leaving.
type Departure struct {
	Member
	Reason Reason
	// Cause and Err are the eviction cause and error of the person's
	// last stream, for [ReasonClosed].
	Cause sfere.Cause
	Err   error
	// Resumable is set when the person's claim is kept for the resume
	// window ([Options.Resume]): if its owner opens a stream within it,
	// the person joins again with [Member.Back] set.
	Resumable bool
}

// Diff is one batch of changes: Leaves apply before Joins (a person may
// leave and arrive again within one batch). Each list is ordered, Joins by
// arrival, Leaves by id.
type Diff struct {
	Joins  []Member
	Leaves []Departure
}

// Empty reports whether d has no change.
func (d Diff) Empty() bool { return len(d.Joins) == 0 && len(d.Leaves) == 0 }

// Options configures a [Tracker].
type Options struct {
	// Room is the category of the room's stream keys. Required.
	Room string
	// Grace is how long a person whose last stream ended may come back
	// (a reload) before its departure. Zero means [DefaultGrace];
	// negative means no grace.
	Grace time.Duration
	// StormGrace is the grace period when many streams break at once (a
	// proxy restart, a blip at the server): at least 20 people's last
	// streams, and a tenth of the room's people, within one Grace.
	// Their people come back all together, and the server takes a while
	// to answer them all: each person whose stream broke in the storm, or
	// was in its grace period when the storm began, may come back within
	// StormGrace of its break, and no storm grace runs out while the
	// storm's people are still coming back (one did within the last
	// Grace). Zero means 5 × Grace; a StormGrace not above Grace turns
	// the rule off.
	StormGrace time.Duration
	// Window is the batching window: changes within it reach each stream
	// as one event. Zero means [DefaultWindow]; negative means every
	// change goes out alone, at once.
	Window time.Duration
	// MaxWindow bounds the window while changes keep coming: each window
	// held for changes is twice the last, up to MaxWindow, until a window
	// passes without a change. Zero means [DefaultMaxWindow]; it is never
	// below Window.
	MaxWindow time.Duration
	// ClaimTimeout is how long a claim waits for the person's first
	// stream before it lapses, silently. Zero means [DefaultClaimTimeout].
	ClaimTimeout time.Duration
	// Resume is the resume window: how long a person who departed
	// because its streams ended ([ReasonClosed]: the grace period ran out
	// or its last stream's peer vanished; [ReasonNodeLost]) keeps its
	// claim. The departure is announced as ever, once, and meanwhile the
	// id stays reserved for its owner (another owner's claim gets
	// [ErrTaken], on every node of a cluster), [Tracker.Lookup] finds it
	// (Member.Present false), and [Tracker.Serve] or [Tracker.Detach] by
	// the owner brings the person back: it joins again, announced once,
	// with [Member.Back] set. When the window runs out with no stream,
	// the claim is released silently (no second departure); so it is
	// when the owner calls [Tracker.Leave] or claims another id
	// meanwhile. [ReasonLeft] and [ReasonRenamed] departures are never
	// resumable. The claim timeout does not apply to a person away.
	// Zero (or negative) means no window: the claim is released at the
	// departure. Every node of a cluster must use the same Resume.
	Resume time.Duration
	// Snapshot renders the room's state for a stream that holds none: the
	// members as of the last batch, after which the stream receives the
	// batches like every other (so a newcomer sees its own arrival in the
	// diff). The stream gets it with the next batch, or as it opens if
	// its position could not be served on a hub with a history of its own
	// (see replayHoldsState). Required.
	Snapshot func(members []Member) []sfere.Effect
	// Diff renders a batch for every other stream of the room. Required.
	Diff func(d Diff) []sfere.Effect
	// Goodbye, if set, renders what a stream the tracker ends receives
	// before it closes: why is [ErrLeft] (its person left) or
	// [ErrNotClaimed] (the stream's owner holds no person).
	Goodbye func(why error) []sfere.Effect
	// OnDiff, if set, is told of every non-empty batch before it is
	// sent (for logs and metrics); where the room's changes go through a
	// cluster's log ([LogCluster]), of every batch of the log that changed
	// the roster, as this node applies it (so on every node, once each,
	// without [Departure.Err]). It runs with the tracker's lock held: it
	// must not block or call the tracker.
	OnDiff func(Diff)
	// Cluster, if set, shares the room with other nodes.
	Cluster Cluster
	// Logger receives the tracker's warnings. Nil means slog.Default().
	Logger *slog.Logger
}

// Tracker follows the people of one room over their streams on one hub.
// All its methods are safe for concurrent use. It holds one lock; nothing
// that waits on the network runs under it (broadcasts only queue bytes),
// and it never calls its cluster with the lock held.
type Tracker struct {
	hub              *sfere.Hub
	room             string
	everyone         sfere.Pattern
	grace            time.Duration
	stormGrace       time.Duration
	window           time.Duration
	maxWindow        time.Duration
	claimTimeout     time.Duration
	resume           time.Duration
	snapshot         func([]Member) []sfere.Effect
	diff             func(Diff) []sfere.Effect
	goodbye          func(error) []sfere.Effect
	onDiff           func(Diff)
	onDiffs          []func(Diff) // added by Tracker.OnDiff, under mu
	replayHoldsState bool
	cluster          Cluster
	logMode          bool // the room's changes go through the cluster's log (see LogCluster)
	log              *slog.Logger
	clock            clock

	mu          sync.Mutex
	outbox      []func(Cluster) // cluster calls decided under mu, made after it (see unlock)
	sending     bool            // a goroutine is making the outbox's calls
	sent        sync.Cond       // signalled when it stops; L is &mu
	closed      bool
	seq         uint64                 // arrival epochs
	people      map[string]*person     // id -> person (claimed, present, in grace or away)
	owners      map[string]*person     // owner -> person
	opening     map[sfere.Key]opening  // streams on their way into the store
	published   map[string]Member      // the state as of the last batch
	sorted      []Member               // published in order of arrival; nil when stale
	snapEffects []sfere.Effect         // the snapshot of sorted, rendered; nil when stale or not yet rendered
	epochs      map[string]uint64      // published arrival epoch by id
	dirty       map[string]struct{}    // ids changed since the last batch
	departed    map[string]Departure   // this batch's departures by id
	fresh       sfere.KeySet           // streams opened since the last batch
	gone        map[string]goneRef     // Refs of departed claims
	pubRefs     map[string]string      // published claims' Refs by id (log mode)
	leaving     map[string]Change      // leaves and renames for the next batch, as the roster shows them (log mode; see leaveLogLocked)
	roster      map[string]rosterEntry // the log's state: what the streams are shown (log mode)
	tomb        map[string]int64       // Refs of claims that departed in the log, at its time (log mode)
	lastFlush   time.Time              // when the last batch went out
	current     time.Duration          // the window in force: Window, doubled while a storm lasts
	breaks      rate                   // people whose last stream ended, lately (see storm.go)
	stormReturn time.Time              // when one of a storm's people last came back
	storm       bool                   // the last break was in a storm
	flushing    *time.Timer            // the pending batch's timer, if any
}

// New returns a tracker of opts.Room on hub. It follows the hub's streams
// from now on (see [sfere.Hub.OnOpen]): there is nothing to wire. Make it
// before the hub serves any stream of the room.
func New(hub *sfere.Hub, opts Options) (*Tracker, error) {
	if opts.Room == "" {
		return nil, errors.New("presence: Options.Room is required")
	}
	if opts.Snapshot == nil || opts.Diff == nil {
		return nil, errors.New("presence: Options.Snapshot and Options.Diff are required")
	}
	t := &Tracker{
		hub:              hub,
		room:             opts.Room,
		everyone:         Everyone(opts.Room),
		grace:            cmp.Or(opts.Grace, DefaultGrace),
		window:           cmp.Or(opts.Window, DefaultWindow),
		maxWindow:        cmp.Or(opts.MaxWindow, DefaultMaxWindow),
		claimTimeout:     cmp.Or(opts.ClaimTimeout, DefaultClaimTimeout),
		resume:           max(opts.Resume, 0),
		snapshot:         opts.Snapshot,
		diff:             opts.Diff,
		goodbye:          opts.Goodbye,
		onDiff:           opts.OnDiff,
		replayHoldsState: replayHoldsState(hub, opts.Cluster),
		cluster:          opts.Cluster,
		log:              cmp.Or(opts.Logger, slog.Default()),
		clock:            realClock{},
		people:           make(map[string]*person),
		owners:           make(map[string]*person),
		opening:          make(map[sfere.Key]opening),
		published:        make(map[string]Member),
		epochs:           make(map[string]uint64),
		dirty:            make(map[string]struct{}),
		departed:         make(map[string]Departure),
		fresh:            make(sfere.KeySet),
		gone:             make(map[string]goneRef),
		pubRefs:          make(map[string]string),
		roster:           make(map[string]rosterEntry),
		tomb:             make(map[string]int64),
	}
	_, t.logMode = logCluster(opts.Cluster)
	t.sent.L = &t.mu
	t.stormGrace = cmp.Or(opts.StormGrace, 5*t.grace)
	t.breaks.span = max(t.grace, minStormSpan)
	t.maxWindow = max(t.maxWindow, t.window)
	t.current = t.window
	if t.cluster != nil {
		if err := t.cluster.Start(notify{t}); err != nil {
			return nil, fmt.Errorf("presence: start cluster: %w", err)
		}
	}
	hub.OnOpen(t.opened)
	return t, nil
}

// Room returns the room the tracker follows.
func (t *Tracker) Room() string { return t.room }

// Claim reserves c.Person for c.Owner, with c.Meta as its metadata (c.Ref
// and c.Away are the tracker's own: they are ignored). Claiming a person
// the owner already holds changes nothing but its metadata; a person held
// by another owner is refused with [ErrTaken], also while that person is
// away within its resume window. If the owner held another person, that
// one departs
// ([ReasonRenamed]; silently if it was away, its window given up) and its
// id is returned as renamed. A claim lapses, silently, if no stream of the
// person opens within the claim timeout.
func (t *Tracker) Claim(ctx context.Context, c Claim) (renamed string, err error) {
	person, owner, meta := c.Person, c.Owner, c.Meta
	t.mu.Lock()
	if t.closed {
		t.unlock()
		return "", ErrClosed
	}
	if p := t.people[person]; p != nil {
		defer t.unlock()
		if p.owner != owner {
			return "", fmt.Errorf("%w: %q", ErrTaken, person)
		}
		p.meta = meta
		return "", nil
	}
	t.unlock()

	c = Claim{Person: person, Owner: owner, Meta: meta, Ref: newConnID()}
	if t.cluster != nil {
		if c, err = t.cluster.Claim(ctx, c); err != nil {
			return "", err
		}
	}

	t.mu.Lock()
	if t.closed {
		t.unlock()
		return "", ErrClosed
	}
	if p := t.people[person]; p != nil {
		// Claimed here (or seen held elsewhere) while the cluster answered.
		defer t.unlock()
		if p.owner != owner {
			t.callLocked(release(person, owner))
			return "", fmt.Errorf("%w: %q", ErrTaken, person)
		}
		return "", nil
	}
	var closing []*sfere.Stream
	if old := t.owners[owner]; old != nil {
		renamed = old.id
		if old.state == stAway {
			// The other nodes keep it reserved too: they drop it now.
			t.callLocked(leave(old.id, old.owner))
		}
		closing = t.stepLocked(old, evRename)
	}
	t.newPersonLocked(c)
	t.unlock()
	t.end(closing, ErrLeft)
	return renamed, nil
}

// Lookup returns the person owner holds, if any: present (arrived, or
// within grace), only claimed, or away within its resume window (both with
// Member.Present false). In a cluster it also finds a claim made through
// another node.
func (t *Tracker) Lookup(ctx context.Context, owner string) (Member, bool) {
	p, err := t.holder(ctx, owner)
	if err != nil {
		return Member{}, false
	}
	t.mu.Lock()
	defer t.unlock()
	return p.member(), true
}

// holder returns owner's person, adopting a claim made through another
// node.
func (t *Tracker) holder(ctx context.Context, owner string) (*person, error) {
	t.mu.Lock()
	if t.closed {
		t.unlock()
		return nil, ErrClosed
	}
	p := t.owners[owner]
	t.unlock()
	if p != nil {
		return p, nil
	}
	if t.cluster == nil {
		return nil, ErrNotClaimed
	}
	c, ok := t.cluster.Lookup(ctx, owner)
	if !ok {
		return nil, ErrNotClaimed
	}
	t.mu.Lock()
	defer t.unlock()
	if p := t.owners[owner]; p != nil {
		return p, nil
	}
	if t.people[c.Person] != nil || t.departedRef(c.Ref) {
		return nil, ErrNotClaimed // held here by another owner, or gone
	}
	return t.newPersonLocked(c), nil
}

// Serve serves a new stream of owner's person, under its own key, until
// the stream ends (see [sfere.Hub.Serve]). It returns [ErrNotClaimed]
// without writing anything if owner holds no person: the caller answers.
// A person away within its resume window comes back with the stream
// (see [Options.Resume]).
func (t *Tracker) Serve(w http.ResponseWriter, r *http.Request, owner string, initial ...sfere.Effect) error {
	_, err := t.open(w, r, owner, initial, false)
	return err
}

// Detach is [Tracker.Serve] without the wait (see [sfere.Hub.Detach]).
func (t *Tracker) Detach(w http.ResponseWriter, r *http.Request, owner string, initial ...sfere.Effect) (*sfere.Stream, error) {
	return t.open(w, r, owner, initial, true)
}

func (t *Tracker) open(w http.ResponseWriter, r *http.Request, owner string, initial []sfere.Effect, detach bool) (*sfere.Stream, error) {
	p, err := t.holder(r.Context(), owner)
	if err != nil {
		return nil, err
	}
	key := StreamKey(t.room, p.id, newConnID())
	// A request with a Last-Event-ID header is a client reconnecting
	// (a page's first request passes its position as a query parameter).
	// One whose position the history cannot serve (an earlier run's) will
	// get its snapshot in its opening: like a new stream, it must not be
	// sent a batch before that snapshot, which holds the batch.
	reconnect := t.replayHoldsState && r.Header.Get("Last-Event-ID") != "" && t.hub.Resumes(r)
	t.mu.Lock()
	if t.people[p.id] != p {
		t.unlock()
		return nil, ErrNotClaimed // it left meanwhile
	}
	t.opening[key] = opening{p, reconnect}
	t.unlock()
	var s *sfere.Stream
	if detach {
		s, err = t.hub.Detach(w, r, key, initial...)
	} else {
		err = t.hub.Serve(w, r, key, initial...)
	}
	if err != nil {
		t.mu.Lock()
		delete(t.opening, key)
		t.unlock()
	}
	return s, err
}

// replayHoldsState reports whether a client that reconnects (its request
// carries a Last-Event-ID header) and whose stream recovered was replayed
// every batch it missed, and so holds the room's state: it then gets no
// snapshot, only the batches after. That holds when the hub keeps a
// history that the tracker's batches are in: its own, or a cluster's
// shared log that the room's changes go through (see [LogCluster]). A
// cluster without a log sends each node's batches to its own streams
// only: there every stream gets a snapshot (at 5,000 people, a list of
// about 250 KB each). A page's first request should pass the position it
// was rendered at as the lastEventID query parameter, not the header: it
// holds no batch yet.
func replayHoldsState(hub *sfere.Hub, cluster Cluster) bool {
	_, logs := logCluster(cluster)
	return (cluster == nil || logs) && hub.Position().Epoch != ""
}

// opening is a stream on its way into the store: its person, and whether
// it is a client reconnecting that holds the room's state if its stream
// recovers (see replayHoldsState), from a position the history held as
// it came ([sfere.Hub.Resumes]).
type opening struct {
	p         *person
	reconnect bool
}

// opened records a stream the hub stored (the hub calls it: see [New]),
// and arranges for its end to be recorded. A stream of the room that the
// tracker did not open for a claimed person is sent [Options.Goodbye] and
// closed.
func (t *Tracker) opened(s *sfere.Stream) {
	key := s.Key()
	if key.Category != t.room {
		return
	}
	t.mu.Lock()
	o := t.opening[key]
	p := o.p
	delete(t.opening, key)
	if t.closed || p == nil || t.people[p.id] != p {
		t.unlock()
		t.end([]*sfere.Stream{s}, ErrNotClaimed)
		return
	}
	p.streams[s] = struct{}{}
	p.vanished = false
	switch rec := s.Recovery(); {
	case t.replayHoldsState && rec.Err != nil:
		// A position that could not be served: the page's list is an
		// old one (or none), and its opening gives it a position.
		t.openingSnapshotLocked(s)
	case !o.reconnect || !rec.Recovered:
		t.fresh[key] = struct{}{} // the next batch sends it a snapshot
	case p.unlisted > 0:
		// Recovered, but maybe by a page whose stream broke before its
		// first snapshot (a newcomer's page holds no list).
		p.unlisted--
		t.fresh[key] = struct{}{}
	}
	t.stepLocked(p, evStream)
	t.holdLocked(p)
	t.changedLocked()
	t.unlock()
	// Outside the lock: a stream that ended already runs it now.
	s.AfterEnd(func() { t.ended(p, s) })
}

// openingSnapshotLocked sends s the snapshot of the published members
// now, as part of its opening (it is queued behind the opening the hub is
// about to write, in the same write). It is for a stream whose position
// could not be served, where a replay holds the state (replayHoldsState: a
// hub with a history of its own, no cluster): its page shows an
// old list (or none), and a reconnect resumes from any position it was
// sent, the opening's among them, without a snapshot. A snapshot held
// back for the next batch would leave a page that breaks before that
// batch resuming on its old list, replayed the batches after its
// position: they would announce again what that list shows. The
// published members are the state as of the newest batch that went out:
// the batches before the stream's position are in the snapshot and those
// after it reach the stream as to every other. The rendering is kept
// until the next batch changes the members, so the streams of a restart
// storm that open between two batches share one (each stream still
// renders its own event from it).
//
// A newcomer's page (its stream recovers from the position the page was
// rendered at, and it holds no list) or a reloaded one (it holds the list
// of that position) gets its snapshot with the next batch, shared by all
// that opened since: a join storm renders one list per batch, not one per
// person. Replayed batches cannot double anything such a page shows; if
// its stream ends before the snapshot, the person's next stream that
// recovers gets one (person.unlisted).
func (t *Tracker) openingSnapshotLocked(s *sfere.Stream) {
	if t.snapEffects == nil {
		t.snapEffects = t.snapshot(t.membersLocked())
	}
	if _, err := t.hub.BroadcastLive(s.Key().Pattern(), nil, t.snapEffects...); err != nil {
		t.log.Error("presence: snapshot", "err", err)
	}
}

// ended records the end of p's stream s.
func (t *Tracker) ended(p *person, s *sfere.Stream) {
	ev := s.Eviction()
	t.mu.Lock()
	defer t.unlock()
	t.endedLocked(p, s, ev.Cause, ev.Err)
}

// endedLocked handles the end of one of this node's streams.
func (t *Tracker) endedLocked(p *person, s *sfere.Stream, cause sfere.Cause, err error) {
	if _, ok := p.streams[s]; !ok {
		return // p was forgotten meanwhile, and its streams with it
	}
	delete(p.streams, s)
	if _, ok := t.fresh[s.Key()]; ok {
		delete(t.fresh, s.Key())
		if t.replayHoldsState {
			p.unlisted++ // its page may resume from its opening without a list
		}
	}
	if t.closed {
		return
	}
	p.lastCause, p.lastErr = cause, err
	if len(p.streams) == 0 {
		p.vanished = errors.Is(err, sfere.ErrPeerVanished)
	}
	t.holdLocked(p)
	if !p.held() {
		t.stepLocked(p, lastEnded(p.vanished))
	}
}

// lastEnded is the event of a person's last stream ending.
func lastEnded(vanished bool) personEvent {
	if vanished {
		return evVanished
	}
	return evEnded
}

// Leave makes owner's person depart now ([ReasonLeft]) and ends its
// streams on every node; it returns the person's id, or [ErrNotClaimed].
// A person away within its resume window is released silently (it was
// announced gone already) and its id returned.
func (t *Tracker) Leave(ctx context.Context, owner string) (string, error) {
	p, err := t.holder(ctx, owner)
	if err != nil {
		return "", err
	}
	t.mu.Lock()
	if t.people[p.id] != p {
		t.unlock()
		return "", ErrNotClaimed
	}
	closing := t.stepLocked(p, evLeave)
	t.callLocked(leave(p.id, p.owner))
	t.unlock()
	t.end(closing, ErrLeft)
	return p.id, nil
}

// goneFor is how long the Ref of a departed claim is remembered: late news
// from other nodes about it is ignored meanwhile.
const goneFor = time.Minute

// goneRef is a departed claim: when, and the node whose loss it departed
// with, if that is why.
type goneRef struct {
	at     time.Time
	lostTo string
	logged string // the Ref its last arrival went through a cluster's log under
}

// rememberGoneLocked records a departed claim's Ref, with the Ref its last
// arrival went through a cluster's log under.
func (t *Tracker) rememberGoneLocked(ref, logged string) {
	if ref == "" {
		return
	}
	now := time.Now()
	if len(t.gone) >= 1024 && len(t.gone)%1024 == 0 {
		for r, g := range t.gone {
			if now.Sub(g.at) > goneFor {
				delete(t.gone, r)
			}
		}
	}
	t.gone[ref] = goneRef{at: now, logged: logged}
}

// departedRef reports whether ref is a claim that departed lately. t.mu
// must be held.
func (t *Tracker) departedRef(ref string) bool {
	g, ok := t.gone[ref]
	return ok && time.Since(g.at) <= goneFor
}

// holdLocked tells the cluster what this node holds of p.
func (t *Tracker) holdLocked(p *person) {
	t.callLocked(hold(Hold{Claim: p.claim(), Streams: len(p.streams), Since: p.since, Vanished: p.vanished}))
}

// end sends why's goodbye to streams and closes them. t.mu must not be
// held: a stream that cannot take the goodbye is purged, and its eviction
// comes back to the tracker.
func (t *Tracker) end(streams []*sfere.Stream, why error) {
	var effects []sfere.Effect
	if t.goodbye != nil {
		effects = t.goodbye(why)
	}
	effects = append(effects, sfere.CloseStream())
	for _, s := range streams {
		// The CloseStream ends the stream once the goodbye is written.
		if _, err := t.hub.Send(s.Key(), effects...); err != nil && !errors.Is(err, sfere.ErrNoStream) {
			t.hub.Store().PurgeStream(s, sfere.CauseExplicit, nil)
		}
	}
}

// Members returns the room's people as the streams were last told, in
// order of arrival.
func (t *Tracker) Members() []Member {
	t.mu.Lock()
	defer t.unlock()
	return slices.Clone(t.membersLocked())
}

// Count returns how many people the streams were last told of.
func (t *Tracker) Count() int {
	t.mu.Lock()
	defer t.unlock()
	if t.logMode {
		return len(t.roster)
	}
	return len(t.published)
}

// membersLocked returns the published members in order of arrival: a
// slice shared until the next change, which callers must not modify.
func (t *Tracker) membersLocked() []Member {
	if t.sorted == nil && t.logMode {
		t.sorted = t.rosterMembersLocked()
	}
	if t.sorted == nil {
		t.sorted = make([]Member, 0, len(t.published))
		for _, m := range t.published {
			t.sorted = append(t.sorted, m)
		}
		slices.SortFunc(t.sorted, byArrival)
	}
	return t.sorted
}

func byArrival(a, b Member) int {
	return cmp.Or(a.Since.Compare(b.Since), cmp.Compare(a.ID, b.ID))
}

// Close stops the tracker: timers stop, pending changes are dropped, and
// streams that end afterwards change nothing (the hub is about to end
// them). In a cluster, the other nodes treat this node's people as if
// their streams here had ended. Close does not end streams.
func (t *Tracker) Close() {
	t.mu.Lock()
	if t.closed {
		t.unlock()
		return
	}
	t.closed = true
	for _, p := range t.people {
		p.stopTimerLocked()
	}
	if t.flushing != nil {
		t.flushing.Stop()
		t.flushing = nil
	}
	for t.sending {
		t.sent.Wait() // the cluster calls in flight go before Close
	}
	t.unlock()
	if t.cluster != nil {
		t.cluster.Close()
	}
}
