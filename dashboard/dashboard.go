package dashboard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/natscluster"
	"github.com/sfere-go/sfere/presence"
	"github.com/sfere-go/sfere/presence/natspresence"
	"github.com/starfederation/datastar-go/datastar"
)

// Defaults of [Options].
const (
	DefaultPath     = "/debug/dashboard"
	DefaultCategory = "sfere-dashboard"
	DefaultInterval = time.Second
	DefaultWindow   = 5 * time.Minute
	// DefaultScript is the Datastar client the page loads when
	// [Options.Script] is empty.
	DefaultScript = "https://cdn.jsdelivr.net/gh/starfederation/datastar@1.0.2/bundles/datastar.js"
)

// ErrBadOptions is returned (wrapped) by [New] for options it cannot use.
var ErrBadOptions = errors.New("dashboard: bad options")

// Options configures a [Dashboard]. The zero value is usable: a dashboard
// of the hub alone at [DefaultPath].
type Options struct {
	// Path is where the dashboard is mounted: its page is served at Path
	// and its stream and search under it. Letters, digits and "/_.-"
	// only, starting with "/". Empty means [DefaultPath].
	Path string
	// Script is the URL of the Datastar client the page loads (say, the
	// app's own copy); empty means [DefaultScript]. Integrity, if set, is
	// its subresource integrity hash ("sha384-…").
	Script    string
	Integrity string
	// Category is the category of the dashboard's own streams, which the
	// figures of the hub leave out; keep it apart from the app's.
	// Empty means [DefaultCategory].
	Category string
	// Interval is how often an open dashboard is updated; zero means
	// [DefaultInterval]. Window is how far back its plots reach; zero
	// means [DefaultWindow].
	Interval time.Duration
	Window   time.Duration
	// Heartbeat, if set, adds its sweeps to the overview.
	Heartbeat *sfere.Heartbeat
	// Trackers, if set, fill the People pane: one room each.
	Trackers []*presence.Tracker
	// Node, if set, fills the Cluster pane. Its hub should be the hub
	// given to [New].
	Node *natscluster.Node
	// NATS, if set, adds the state of this NATS connection (the node's)
	// to the Cluster pane: its status, server (passwords redacted),
	// traffic and reconnects.
	NATS *nats.Conn
	// Presence, if set with Node, adds to the Cluster pane the claims
	// these presence clusters (the Trackers' [presence.Options.Cluster])
	// assert for this node ([natspresence.Cluster.Claims]).
	Presence []*natspresence.Cluster
}

// Dashboard is an [http.Handler] serving a live page about a hub: its
// streams, people, rates, runtime and cluster. Make one with [New] and
// mount it at its [Options.Path] (both the path and what is under it),
// behind whatever guards the app's debug routes: the page shows stream
// keys and people's names, though never message contents or owners.
//
// The page is a Datastar page fed by a stream of the hub itself, under
// the key (scope [sfere.DefaultScope], category [Options.Category], a
// random id per page). The dashboard samples and renders only while at
// least one such stream is open: with none, it does no work at all.
type Dashboard struct {
	hub     *sfere.Hub
	opts    Options
	page    pageStatic   // what every page shares (page.go)
	handler http.Handler // route behind the cross-origin check

	renders atomic.Uint64 // ticks that rendered the panes for open pages
	samples atomic.Uint64

	// What the dashboard's own streams did to the hub's counters, taken
	// out of the figures.
	ownOpened, ownEnded, ownBroadcasts, ownDelivered atomic.Uint64
	ownWritten                                       atomic.Uint64 // bytes queued to its own streams
	ownEndedBy                                       [numCauses]atomic.Uint64

	// Recoveries of the hub's streams, counted only while watched (the
	// hook that counts them costs an atomic load otherwise).
	watching                       atomic.Bool
	recovered, unrecovered, replay atomic.Uint64

	// Recent arrivals and departures per room (index of Options.Trackers),
	// recorded only while watched. Their own lock: the trackers' hooks
	// take it under a tracker's lock, so nothing holds it while calling
	// a tracker.
	recentMu sync.Mutex
	recent   [][]change

	mu       sync.Mutex
	conns    map[string]string // open page streams: id → its search (a pattern's text; "" for all)
	stop     context.CancelFunc
	stopped  chan struct{} // closed when the running sampler returned
	last     *sample       // the newest sample
	points   []point       // the plots' samples, oldest first, within Window
	rtBuffer []metrics.Sample
}

// New returns a dashboard of hub. From then on it follows the hub's
// streams ([sfere.Hub.OnOpen]) and the trackers' batches
// ([presence.Tracker.OnDiff]) for the figures it counts only while a page
// is open; with none open, each hook is one atomic load. Hooks cannot be
// removed: make one dashboard per hub, for the life of the hub.
func New(hub *sfere.Hub, opts Options) (*Dashboard, error) {
	if hub == nil {
		return nil, fmt.Errorf("%w: no hub", ErrBadOptions)
	}
	if opts.Path == "" {
		opts.Path = DefaultPath
	}
	opts.Path = strings.TrimSuffix(opts.Path, "/")
	if !validPath(opts.Path) {
		return nil, fmt.Errorf("%w: path %q: want \"/\" then letters, digits and /_.-", ErrBadOptions, opts.Path)
	}
	if opts.Script == "" {
		opts.Script = DefaultScript
	}
	if opts.Category == "" {
		opts.Category = DefaultCategory
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	for _, t := range opts.Trackers {
		if t == nil {
			return nil, fmt.Errorf("%w: a nil tracker", ErrBadOptions)
		}
	}
	for _, c := range opts.Presence {
		if c == nil {
			return nil, fmt.Errorf("%w: a nil presence cluster", ErrBadOptions)
		}
	}
	d := &Dashboard{
		hub:      hub,
		opts:     opts,
		conns:    make(map[string]string),
		rtBuffer: newRuntimeBuffer(),
	}
	d.page = newPageStatic(opts)
	hub.OnOpen(d.opened)
	d.recent = make([][]change, len(opts.Trackers))
	for i, t := range opts.Trackers {
		t.OnDiff(func(diff presence.Diff) { d.changed(i, diff) })
	}
	d.handler = http.NewCrossOriginProtection().Handler(http.HandlerFunc(d.route))
	return d, nil
}

// Must returns d, and panics if err is not nil: it mounts a dashboard of
// constant options in one line, as [html/template.Must] parses a constant
// template.
//
//	mux.Handle(dashboard.DefaultPath+"/", dashboard.Must(dashboard.New(hub, dashboard.Options{})))
func Must(d *Dashboard, err error) *Dashboard {
	if err != nil {
		panic(err)
	}
	return d
}

// opened counts what became of the position a stream of the hub asked
// for, while a page watches.
func (d *Dashboard) opened(s *sfere.Stream) {
	if !d.watching.Load() {
		return
	}
	rec := s.Recovery()
	switch {
	case rec.Recovered:
		d.recovered.Add(1)
		d.replay.Add(uint64(rec.Replayed))
	case rec.Err != nil:
		d.unrecovered.Add(1)
	}
}

// maxRecent bounds the recent changes kept per room.
const maxRecent = 20

// change is one arrival or departure in a room.
type change struct {
	at       time.Time
	id, meta string
	what     string
}

// changed records a tracker's batch, while a page watches. It runs under
// the tracker's lock.
func (d *Dashboard) changed(room int, diff presence.Diff) {
	if !d.watching.Load() {
		return
	}
	now := time.Now()
	var batch []change
	for _, l := range diff.Leaves {
		what := "left: " + l.Reason.String()
		if l.Reason == presence.ReasonClosed && l.Cause != 0 {
			what += " (" + l.Cause.String() + ")" // never l.Err: it may name the client's address
		}
		if l.Resumable {
			what += ", may resume"
		}
		batch = append(batch, change{at: now, id: l.ID, meta: l.Meta, what: what})
	}
	for _, m := range diff.Joins {
		what := "arrived"
		if m.Back {
			what = "came back"
		}
		batch = append(batch, change{at: now, id: m.ID, meta: m.Meta, what: what})
	}
	d.recentMu.Lock()
	defer d.recentMu.Unlock()
	r := append(d.recent[room], batch...)
	if len(r) > maxRecent {
		r = append(r[:0], r[len(r)-maxRecent:]...)
	}
	d.recent[room] = r
}

// recentOf returns room's recent changes, newest first.
func (d *Dashboard) recentOf(room int) []change {
	d.recentMu.Lock()
	defer d.recentMu.Unlock()
	r := slices.Clone(d.recent[room])
	slices.Reverse(r)
	return r
}

// validPath reports whether p is "/" followed by letters, digits and
// "/_.-" (so it needs no escaping anywhere the page writes it).
func validPath(p string) bool {
	if len(p) < 2 || p[0] != '/' {
		return false
	}
	for _, c := range []byte(p) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("/_.-", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

// Renders returns how many times the dashboard rendered its panes for
// its open pages (once per interval while any is open, whatever their
// number). It stays put while no page is open.
func (d *Dashboard) Renders() uint64 { return d.renders.Load() }

// ServeHTTP serves the page (GET Path), its stream (GET Path/stream) and
// its search (POST Path/search, refused if a browser says it comes from
// another site: see [http.CrossOriginProtection]).
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) { d.handler.ServeHTTP(w, r) }

func (d *Dashboard) route(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == d.opts.Path || r.URL.Path == d.opts.Path+"/":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, "GET, HEAD")
			return
		}
		d.servePage(w, r)
	case r.URL.Path == d.opts.Path+"/stream":
		if r.Method != http.MethodGet {
			methodNotAllowed(w, "GET")
			return
		}
		d.serveStream(w, r)
	case r.URL.Path == d.opts.Path+"/search":
		if r.Method != http.MethodPost {
			methodNotAllowed(w, "POST")
			return
		}
		d.serveSearch(w, r)
	default:
		http.NotFound(w, r)
	}
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
}

// signals are the page's Datastar signals the server reads.
type signals struct {
	Conn   string `json:"conn"`
	Search string `json:"search"`
}

// newConnID returns a random id for a page's stream.
func newConnID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// validConn reports whether id is one newConnID could have made.
func validConn(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// servePage serves the whole page, rendered now.
func (d *Dashboard) servePage(w http.ResponseWriter, r *http.Request) {
	v := d.currentView("")
	html, err := d.page.render(d.opts, newConnID(), v)
	if err != nil {
		http.Error(w, "dashboard: "+err.Error(), http.StatusInternalServerError)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "same-origin")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Content-Security-Policy", d.page.csp)
	_, _ = w.Write(html)
}

// serveStream opens a page's stream: the dashboard starts sampling if it
// is the first, and stops once the last has ended.
func (d *Dashboard) serveStream(w http.ResponseWriter, r *http.Request) {
	var sig signals
	if err := datastar.ReadSignals(r, &sig); err != nil || !validConn(sig.Conn) {
		http.Error(w, "dashboard: a stream needs the page's conn signal", http.StatusBadRequest)
		return
	}
	key := sfere.NewKey(sfere.DefaultScope, d.opts.Category, sig.Conn)
	search := strings.TrimSpace(sig.Search)
	if _, err := parseSearch(search); err != nil {
		search = ""
	}
	d.mu.Lock()
	if _, open := d.conns[sig.Conn]; !open {
		d.watchLocked()
	}
	d.conns[sig.Conn] = search
	d.mu.Unlock()
	v := d.currentView(search) // before the stream counts as the dashboard's own
	if d.hub.Count(key.Pattern()) == 0 {
		v.Overview.Own++ // this stream, about to be stored
	}
	d.ownOpened.Add(1)
	opening := d.effects(v)
	size := uint64(renderedLen(opening))
	d.ownWritten.Add(size)
	s, err := d.hub.Detach(w, r, key, opening...)
	if err != nil {
		d.ownOpened.Add(^uint64(0))
		d.ownWritten.Add(-size)
		d.release(sig.Conn, nil)
		if errors.Is(err, sfere.ErrHubClosed) {
			http.Error(w, "dashboard: server shutting down", http.StatusServiceUnavailable)
		}
		return
	}
	s.AfterEnd(func() { d.release(sig.Conn, s) })
}

// release forgets the stream of conn once it ended (s: the stream, nil
// if it never opened), unless a newer stream of the same page took its
// place; with no stream left the sampler stops.
func (d *Dashboard) release(conn string, s *sfere.Stream) {
	if s != nil {
		ev := s.Eviction()
		d.ownEnded.Add(1)
		if int(ev.Cause) < numCauses {
			d.ownEndedBy[ev.Cause].Add(1)
		}
		if ev.Cause == sfere.CauseReplaced {
			return // the page's new stream holds conn
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, open := d.conns[conn]; !open {
		return
	}
	delete(d.conns, conn)
	if len(d.conns) == 0 && d.stop != nil {
		d.watching.Store(false)
		d.stop()
		d.stop = nil
	}
}

// watchLocked starts the sampler for the first open page, once the
// previous one (if any) has returned.
func (d *Dashboard) watchLocked() {
	if d.stop != nil {
		return
	}
	d.watching.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	prev, done := d.stopped, make(chan struct{})
	d.stop, d.stopped = cancel, done
	go func() {
		defer close(done)
		if prev != nil {
			<-prev
		}
		d.run(ctx)
	}()
}

// run samples and updates the open pages every interval until ctx ends.
func (d *Dashboard) run(ctx context.Context) {
	t := time.NewTicker(d.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			d.tick(now)
		}
	}
}

// tick takes a sample and sends every open page its panes.
func (d *Dashboard) tick(now time.Time) {
	log := d.readLog() // a round trip to NATS: under no lock
	d.mu.Lock()
	d.sampleLocked(now, log)
	searches := make(map[string][]string) // search → conns
	for conn, search := range d.conns {
		searches[search] = append(searches[search], conn)
	}
	d.mu.Unlock()
	if len(searches) == 0 {
		return
	}
	d.renders.Add(1)
	all := sfere.InCategory(d.opts.Category)
	var custom sfere.KeySet
	for search, conns := range searches {
		if search == "" {
			continue
		}
		effects := d.effects(d.currentView(search))
		for _, conn := range conns {
			key := sfere.NewKey(sfere.DefaultScope, d.opts.Category, conn)
			if custom == nil {
				custom = make(sfere.KeySet)
			}
			custom[key] = struct{}{}
			d.publish(key.Pattern(), nil, effects)
		}
	}
	if _, ok := searches[""]; ok {
		d.publish(all, custom, d.effects(d.currentView("")))
	}
}

// publish sends the dashboard's own effects, counted apart from the app's.
// No history keeps them (BroadcastLive): a page that reconnects is sent
// the present, not the past.
func (d *Dashboard) publish(p sfere.Pattern, exclude sfere.Matcher, effects []sfere.Effect) {
	d.ownBroadcasts.Add(1)
	res, err := d.hub.BroadcastLive(p, exclude, effects...)
	if err == nil {
		d.ownDelivered.Add(uint64(res.Delivered))
		d.ownWritten.Add(uint64(res.Delivered * renderedLen(effects)))
	}
}

// renderedLen is the size of effects as an event: what the hub writes of
// them to each stream (its id and framing aside), taken out of the bytes
// the hub wrote.
func renderedLen(effects []sfere.Effect) int {
	data, err := sfere.Render(effects...)
	if err != nil {
		return 0
	}
	return len(data)
}

// logState is the cluster's event log as a sample holds it.
type logState struct {
	state *natscluster.LogState // nil: no node, or a node without a history
	err   error                 // why it could not be read
}

// readLog asks the node for its event log's state, bounded by the
// interval (at most 2 s): it waits on NATS, so it runs under no lock.
func (d *Dashboard) readLog() logState {
	if d.opts.Node == nil {
		return logState{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(d.opts.Interval, 2*time.Second))
	defer cancel()
	st, err := d.opts.Node.LogState(ctx)
	switch {
	case errors.Is(err, natscluster.ErrNoHistory):
		return logState{}
	case err != nil:
		return logState{err: err}
	}
	return logState{state: &st}
}

// readLocked reads a sample at now (the runtime's figures into the
// dashboard's one buffer, hence the lock).
func (d *Dashboard) readLocked(now time.Time) *sample {
	s := &sample{at: now}
	// Own counts first: an own stream the hub has counted is then always
	// counted here too (the hub's figures minus these never go below).
	s.ownOpened, s.ownEnded = d.ownOpened.Load(), d.ownEnded.Load()
	s.ownBroadcasts, s.ownDelivered, s.ownWritten = d.ownBroadcasts.Load(), d.ownDelivered.Load(), d.ownWritten.Load()
	for i := range s.ownEndedBy {
		s.ownEndedBy[i] = d.ownEndedBy[i].Load()
	}
	s.hub = d.hub.Stats()
	s.own = d.hub.Count(sfere.InCategory(d.opts.Category))
	s.streams = max(d.hub.Count(sfere.All)-s.own, 0)
	if d.opts.Heartbeat != nil {
		s.beat = d.opts.Heartbeat.Stats()
	}
	if d.opts.Node != nil {
		s.node = d.opts.Node.Stats()
	}
	s.recovered, s.unrecovered, s.replayed = d.recovered.Load(), d.unrecovered.Load(), d.replay.Load()
	s.readRuntime(d.rtBuffer)
	return s
}

// sampleLocked reads a sample at now, with the event log's state log,
// and adds it to the plots.
func (d *Dashboard) sampleLocked(now time.Time, log logState) {
	d.samples.Add(1)
	s := d.readLocked(now)
	s.log = log
	p := point{at: now, streams: s.streams, goroutines: s.goroutines, heap: s.heap}
	if d.last != nil && now.Sub(d.last.at) < 3*d.opts.Interval {
		p.r, p.hasRates = ratesBetween(d.last, s), true
	}
	for _, t := range d.opts.Trackers {
		p.people += t.Count()
	}
	if d.last != nil {
		d.last.gcPauses = nil // only the newest sample needs it
	}
	d.last = s
	d.points = append(d.points, p)
	cut := 0
	for cut < len(d.points) && now.Sub(d.points[cut].at) > d.opts.Window {
		cut++
	}
	if cut > 0 {
		d.points = append(d.points[:0], d.points[cut:]...)
	}
}

// point is one sample as the plots and the overview show it.
type point struct {
	at         time.Time
	streams    int
	people     int
	goroutines uint64
	heap       uint64
	r          rates
	hasRates   bool // r is from the sample before, taken one interval earlier
}
