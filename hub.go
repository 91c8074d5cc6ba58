package sfere

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of [HubOptions].
const (
	DefaultWriteTimeout  = 5 * time.Second
	DefaultMaxQueueBytes = 1 << 20
)

// ErrNoStream is returned by [Hub.Send] when no stream is stored under the key.
var ErrNoStream = errors.New("sfere: no stream for key")

// HubOptions configures a [Hub]. The zero value is usable.
type HubOptions struct {
	// WriteTimeout bounds each write (with its flush) to one client; a
	// write that takes longer ends the stream with [CauseClosed]. Keep it
	// below the heartbeat interval. Zero means [DefaultWriteTimeout];
	// negative means no deadline.
	WriteTimeout time.Duration
	// MaxQueueBytes bounds the bytes waiting for one client; a client that
	// falls further behind is closed with [ErrSlowClient]. Zero means
	// [DefaultMaxQueueBytes]; negative means unbounded.
	MaxQueueBytes int
	// OnOpen, if set, is called on Serve's goroutine after a new stream
	// is stored and before its initial effects are written (a cluster
	// announces the stream here); [Stream.Recovery] is known by then. It
	// must not block. Its counterpart is
	// the store's [EvictFunc], called once when the stream leaves.
	OnOpen func(*Stream)
	// History keeps what the hub sent, so that a client that reconnects
	// with the position of the last event it got is sent what it missed
	// (see [Hub.Serve]). The zero value keeps nothing.
	History HistoryOptions
	// Retry, if positive, tells each client how long to wait before it
	// reconnects a broken stream: Retry plus a random share of Retry, sent
	// as the SSE retry field with the stream's opening. Browsers (and the
	// Datastar client, whose backoff starts from it) then spread their
	// reconnects after a restart instead of all coming back at once.
	Retry time.Duration
	// NoHijack keeps every stream on net/http's response writer, as
	// streams over HTTP/2 and TLS always are, instead of taking HTTP/1.1
	// connections over (see [Hub.Serve]). Each stream then keeps a
	// goroutine and net/http's buffers for its whole life.
	NoHijack bool
	// Compression, if set, writes gzip to every stream whose client
	// accepts it, each broadcast compressed once for all of them (see
	// [CompressionOptions]). Nil: no stream is compressed.
	Compression *CompressionOptions
}

// Hub binds a [Store] to live Datastar SSE streams: [Hub.Serve] opens and
// holds a stream, and [Hub.Broadcast] and [Hub.Send] reach streams by key
// or pattern from any goroutine.
type Hub struct {
	store       Store
	opts        HubOptions    // as given, with the defaults in place (MaxQueueBytes 0: unbounded)
	hist        *history      // nil: no history
	buffers     sync.Pool     // *[]*Stream for broadcasts
	writers     writers       // write streams on taken-over connections (writers.go)
	zip         *groups       // shared compressors (compress_group.go); nil: compression off
	verdictWait time.Duration // readerVerdictWait; a test lengthens it

	mu      sync.Mutex
	closed  bool
	closing chan struct{} // closed by Shutdown
	active  sync.WaitGroup

	onOpen atomic.Pointer[[]func(*Stream)] // added by OnOpen; replaced whole, under mu
	stats  hubStats                        // hub_stats.go
}

// NewHub returns a hub over store.
func NewHub(store Store, opts HubOptions) *Hub {
	opts.WriteTimeout = cmp.Or(opts.WriteTimeout, DefaultWriteTimeout)
	switch {
	case opts.MaxQueueBytes == 0:
		opts.MaxQueueBytes = DefaultMaxQueueBytes
	case opts.MaxQueueBytes < 0:
		opts.MaxQueueBytes = 0
	}
	h := &Hub{
		store:       store,
		opts:        opts,
		hist:        newHistory(opts.History, opts.MaxQueueBytes),
		verdictWait: readerVerdictWait,
		closing:     make(chan struct{}),
	}
	if opts.Compression != nil {
		h.zip = newGroups(*opts.Compression)
	}
	h.writers.init(h)
	h.buffers.New = func() any { return new([]*Stream) }
	return h
}

// OnOpen adds f to what the hub calls for every stream it stores from now
// on, after [HubOptions.OnOpen] and as it is called: on Serve's goroutine,
// before the stream's initial effects are written, with [Stream.Recovery]
// known; f must not block. With [Stream.AfterEnd] it lets a package built
// on a hub (say, presence) follow the hub's streams from its own
// constructor, so that nobody has to wire it to the hub's options.
func (h *Hub) OnOpen(f func(*Stream)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var fns []func(*Stream)
	if old := h.onOpen.Load(); old != nil {
		fns = append(fns, *old...)
	}
	fns = append(fns, f)
	h.onOpen.Store(&fns)
}

// Store returns the hub's store.
func (h *Hub) Store() Store { return h.store }

// Serve turns the response into a Datastar SSE stream stored under key,
// writes the initial effects, and then writes whatever is sent to the
// stream until it ends: the client goes away, a write fails or times out,
// the client falls too far behind, the app sends [CloseStream], the stream
// is evicted (replaced, purged, expired, size) or the hub shuts down.
//
// When Serve returns, the stream is out of the store and its eviction
// callback has returned. It returns nil once the stream was served; an
// error only if it could not start: bad initial effects, a response that
// cannot stream (w can neither flush nor be taken over), a position ahead
// of a shared history that the history did not reach in time (an error
// wrapping [ErrPositionAhead], with nothing written to w: see
// [HistoryOptions.AheadWait]; answer it so that the client tries again
// soon), or
// [ErrHubClosed]. Call it before writing anything to w; headers already
// set on w are sent.
//
// The stream is stored before its response head is written, on either
// path: a client that has received the head is sent every [Hub.Broadcast]
// and [Hub.Send] made after that, after its opening. (A head that cannot
// be written ends the stream like any failed write.)
//
// With a history ([HubOptions.History]) every event written from a
// broadcast or send carries its [Position] as its SSE id (each event of a
// broadcast of several effects its own: see [Position.Part]), and a request
// that carries a position (the Last-Event-ID header a reconnecting client
// sends, or a lastEventID query parameter) resumes: if the history still
// holds every event after it, the stream is sent exactly those of them it
// would have received, in order, before any live event, and the initial
// effects are not sent. Otherwise nothing of the history is sent and the
// initial effects are: so pass the page's full state as the initial
// effects, and a client that could not resume is brought up to date by
// them, never left with a gap. [Stream.Recovery] says which happened.
// Each missed event is matched against its pattern and exclusions once,
// when the stream is stored (a Matcher the app changed since is read
// then); every later event reaches the stream live, or not, as any
// stream. A Last-Event-ID header with several positions (fetch joins a
// page's own header with the one a client adds on a retry) resumes from
// the last.
//
// The request's body should be read (or be empty) before Serve is called:
// then a closed connection is noticed at once, without waiting for a write
// to fail.
//
// Over HTTP/1.1 without TLS, Serve takes the connection over from
// net/http (it hijacks it) once the request is parsed: the hub writes the
// response itself (chunked, as net/http would; the connection closes when
// the stream ends), and its writers write everything queued for the
// stream in one write that never waits. net/http's background reader
// ends, and [net/http.Server.Shutdown] no longer waits for the
// connection: [Hub.Shutdown] ends it. Serve's own goroutine (with the
// request and net/http's state for the connection) stays until the
// stream ends; [Hub.Detach] frees those too. Over HTTP/2, HTTP/1.0 or
// TLS, when a middleware set a Content-Encoding, when w cannot hijack, or
// with [HubOptions.NoHijack], the stream stays on w and Serve's goroutine
// writes it.
//
// To compress streams, let the hub do it ([HubOptions.Compression]) rather
// than a middleware: its gzip works on both paths, taken over or not, and
// compresses each broadcast once for every stream instead of once per
// stream.
func (h *Hub) Serve(w http.ResponseWriter, r *http.Request, key Key, initial ...Effect) error {
	_, err := h.open(w, r, key, initial, false)
	return err
}

// Detach is [Hub.Serve] without the wait: once the stream is stored and
// its initial effects are queued, it returns the stream, and the handler
// may return while the stream lives on. Only a taken-over connection can
// outlive its handler, so where Serve keeps the stream on net/http (see
// there), Detach serves it to its end before it returns.
//
// Detach holds no goroutine per idle stream beyond the one that notices
// the client closing. To release what the caller holds for the stream
// when it ends, use [Stream.AfterEnd] or the store's [EvictFunc].
func (h *Hub) Detach(w http.ResponseWriter, r *http.Request, key Key, initial ...Effect) (*Stream, error) {
	return h.open(w, r, key, initial, true)
}

// open is Serve (detach false) and Detach (detach true).
func (h *Hub) open(w http.ResponseWriter, r *http.Request, key Key, initial []Effect, detach bool) (*Stream, error) {
	first, err := render(initial)
	if err != nil {
		return nil, err
	}
	if err := h.awaitPosition(r); err != nil {
		return nil, err
	}
	if !h.enter() {
		return nil, ErrHubClosed
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	gz := h.negotiate(w, r)
	hj, ok := h.canTakeOver(w, r)
	if gz {
		hdr.Set("Content-Encoding", "gzip")
	}
	if !ok {
		defer h.active.Done()
		return h.serveHTTP(w, r, key, first, gz)
	}
	c, head, err := h.takeOver(hj, w)
	if err != nil {
		h.active.Done()
		return nil, err
	}
	s := newStream(key, h.opts.MaxQueueBytes, c)
	c.s = s
	if gz {
		c.gz = new(gzipStream)
		s.compressed = true
	}
	// Stored before the client has its head: a broadcast made once it has
	// it reaches the stream.
	h.admit(s, r, first)
	h.writeHead(c, head)
	if detach {
		go h.watch(nil, c)
		return s, nil
	}
	ctx := r.Context()
	stop := context.AfterFunc(ctx, c.interrupt)
	defer stop()
	h.watch(ctx, c)
	return s, nil
}

// awaitPosition waits, for a request that resumes from a position ahead
// of a shared history, until the history is there (see
// [HistoryOptions.AheadWait]).
func (h *Hub) awaitPosition(r *http.Request) error {
	if h.hist == nil {
		return nil
	}
	text := lastEventID(r)
	if text == "" {
		return nil
	}
	from, err := ParsePosition(text)
	if err != nil {
		return nil // not recovered: admit says so
	}
	return h.hist.await(r.Context(), h.closing, from)
}

// negotiate says whether the stream is compressed: the hub compresses,
// no middleware encodes the body already, and the client accepts gzip.
// With compression on, the response varies with Accept-Encoding either
// way.
func (h *Hub) negotiate(w http.ResponseWriter, r *http.Request) bool {
	if h.zip == nil {
		return false
	}
	w.Header().Add("Vary", "Accept-Encoding")
	return w.Header().Get("Content-Encoding") == "" && acceptsGzip(r)
}

// admit stores s and gives it its opening: the events its client missed,
// if the request carries a position the history can serve, or else the
// initial effects (first), which carry the position they were rendered
// at. Either comes before any live event.
func (h *Hub) admit(s *Stream, r *http.Request, first *message) {
	var opening, replay []*message
	if h.opts.Retry > 0 {
		opening = append(opening, &message{data: retryField(h.opts.Retry + rand.N(h.opts.Retry)), idAt: -1})
	}
	// Stored before its opening is in place, so that no live event is
	// missed; its writer waits (paused) until then.
	s.paused = true
	var rec Recovery
	if h.hist == nil {
		h.store.Put(s)
	} else {
		// The initial effects were rendered about now: base is the state
		// they hold. A stream that asks for no position, or for one that
		// cannot be served, is sent what comes after base, after them.
		base := h.Position()
		from, asked := base, false
		var err error
		if text := lastEventID(r); text != "" {
			from, err = ParsePosition(text)
			if err != nil {
				err = ErrPositionUnknown
			}
			rec.From, asked = from, true
		}
		// Events with a position skip the stream from its storing until
		// its opening is decided (under the history's lock): its opening
		// brings every event up to the newest (each matched against its
		// exclusions now, with the key new), and every later one reaches
		// it live. So an event comes once, and an exclusion the app
		// changes later (a KeySet it keeps filling) never brings back an
		// event the stream did not get.
		s.admitting.Store(true)
		h.store.Put(s)
		var top Position
		replay, top, err = h.hist.opening(s, from, base, err)
		if asked {
			rec.Err, rec.Recovered = err, err == nil
		}
		if rec.Recovered {
			rec.Replayed = len(replay)
		}
		// Each event of the initial effects carries a position, the last
		// one base: a client cut off inside them resumes with a new
		// opening, one that has them all with what came since.
		first = first.asOpening(base, h.hist.signal)
		// With a position signal, the opening ends at top, unless the
		// initial effects' own patch of it says so already.
		if end := h.hist.positionEvent(top); end != nil && (rec.Recovered || top != base || first.idAt < 0) {
			replay = append(replay, end)
		}
	}
	s.mu.Lock()
	s.recovery = rec // known to OnOpen
	s.mu.Unlock()
	h.stats.opened.Add(1)
	if h.opts.OnOpen != nil {
		h.opts.OnOpen(s)
	}
	if fns := h.onOpen.Load(); fns != nil {
		for _, f := range *fns {
			f(s)
		}
	}
	s.open(opening, replay, first, rec.Recovered)
}

// lastEventID is the position a request resumes from: its Last-Event-ID
// header, or the lastEventID query parameter (for clients that cannot set
// headers). A header that carries several (a page passes the position it
// was rendered at while the Datastar client adds the id of the last event
// it got: fetch joins them with ", ") gives its last one, the newest.
func lastEventID(r *http.Request) string {
	text := cmp.Or(strings.Join(r.Header.Values("Last-Event-ID"), ","), r.URL.Query().Get("lastEventID"))
	if i := strings.LastIndexByte(text, ','); i >= 0 {
		text = text[i+1:]
	}
	return strings.TrimSpace(text)
}

// Resumes reports whether r asks to resume (its Last-Event-ID header, or
// the lastEventID query parameter) from a position the hub's history can
// serve: one [Hub.Serve] would recover from, unless the history moves on
// first or a replay limit refuses it. A position ahead of a shared
// history counts, if the hub waits for it ([HistoryOptions.AheadWait]):
// its stream either recovers once the history gets there or is refused
// before anything is written. It is false without a history, without a
// position, and for a position that is malformed, of another epoch (an
// earlier run's), ahead of a history of the hub's own (or of a shared one
// that does not wait), inside an opening, or older than what the history
// keeps. An app that gives each stream state of its own (package
// presence) learns from it, before the stream opens, whether its client
// will be replayed what it missed.
func (h *Hub) Resumes(r *http.Request) bool {
	text := lastEventID(r)
	if h.hist == nil || text == "" {
		return false
	}
	pos, err := ParsePosition(text)
	if err != nil {
		return false
	}
	err = h.hist.servable(pos)
	return err == nil || errors.Is(err, ErrPositionAhead) && h.hist.waitsAhead()
}

// Position returns the position of the newest event in the hub's
// history (the zero Position if it keeps none): a page rendered now can
// carry it, so that its first stream request resumes from there.
func (h *Hub) Position() Position {
	if h.hist == nil {
		return Position{}
	}
	return h.hist.position()
}

// retire is how a stream's life ends, whichever sink wrote it: the stream
// ends itself if why is set (cause closed), the eviction callback returns,
// and whatever was still queued fails: nothing queued after an eviction
// is written.
func (h *Hub) retire(s *Stream, why error) {
	if why != nil {
		h.store.PurgeStream(s, CauseClosed, why)
	}
	<-s.finished
	h.stats.endedWith(s.Eviction().Cause)
	settleAll(s.leftovers(), false)
}

// stopReason says why a stream must stop for its client or the hub, if it
// must; ctx is the request's context, nil for a detached stream.
func (h *Hub) stopReason(ctx context.Context) error {
	if ctx != nil && ctx.Err() != nil {
		return markVanished(ctx, ErrClientGone)
	}
	select {
	case <-h.closing:
		return ErrHubClosed
	default:
		return nil
	}
}

func (h *Hub) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.active.Add(1)
	return true
}

// Result says what became of one [Hub.Broadcast] or [Hub.Send].
type Result struct {
	// Delivered counts the streams that took the message into their
	// queue; each stream's writer writes it to its client soon after.
	Delivered int
	// Failed counts the streams that refused it because they had ended
	// or their client had fallen too far behind (that stream is closed).
	Failed int
}

// Broadcast renders effects once and queues the same bytes to every stream
// whose key matches p and not exclude (nil excludes nothing). All effects
// of one call reach each stream together, in order. It never waits for a
// client; a slow or dead client only fails its own stream. A stream whose
// client has received its response head is reached by every broadcast
// made after that (see [Hub.Serve]).
func (h *Hub) Broadcast(p Pattern, exclude Matcher, effects ...Effect) (Result, error) {
	m, err := render(effects)
	if err != nil {
		return Result{}, err
	}
	res, _ := h.publish(p, exclude, m, 0)
	return res, nil
}

// BroadcastLive is [Hub.Broadcast] for what only the streams open now
// need, such as a snapshot of state addressed to the streams that just
// opened: its event carries no position (no id: the client keeps the one
// it had) and is not kept in the history, so it takes none of the
// history's room and is never replayed.
func (h *Hub) BroadcastLive(p Pattern, exclude Matcher, effects ...Effect) (Result, error) {
	m, err := render(effects)
	if err != nil {
		return Result{}, err
	}
	res, _ := h.deliver(p, exclude, m, 0)
	return res, nil
}

// ErrNoHistory is returned by [Hub.BroadcastAt] on a hub without a
// shared history ([HistoryOptions.Epoch]).
var ErrNoHistory = errors.New("sfere: hub keeps no shared history")

// BroadcastAt is [Hub.Broadcast] for an event that a log shared by several
// hubs (a cluster's) placed at pos: the hub keeps it at pos in its history
// and writes it with pos as its id, so a client may resume on any hub
// that reads the log. Events must be applied in the log's order; one at
// or before the newest position is ignored (Result is zero), a gap in
// the offsets means the events before it are no longer served, and a new
// epoch starts the history anew. pos places a whole message ([Position.Part]
// zero; any other is an error): the events of a message of several take
// their parts of it, alike on every hub that applies the same log.
//
// BroadcastAt and [Hub.ResetHistory] are what any log shared by hubs
// needs of each of them (package natscluster is one, over JetStream; a
// database table or a Kafka topic would need the same): apply an event at
// the position the log gave it, and learn that the log was made anew. The
// hub's history must be a copy of such a log ([HistoryOptions.Epoch]).
func (h *Hub) BroadcastAt(pos Position, p Pattern, exclude Matcher, effects ...Effect) (Result, error) {
	if h.hist == nil {
		return Result{}, ErrNoHistory
	}
	m, err := render(effects)
	if err != nil {
		return Result{}, err
	}
	var res Result
	err = h.hist.recordAt(pos, m, p, exclude, func(m *message) {
		res, _ = h.deliver(p, exclude, m, 0)
	})
	return res, err
}

// ResetHistory tells a hub with a shared history that the log it copies
// was made anew, in epoch, numbered from 1: what the hub kept is
// forgotten, and positions of any other epoch are no longer served. A
// cluster calls it as soon as it finds its log lost, before the new log's
// first event, so no client resumes from a history that no longer exists.
func (h *Hub) ResetHistory(epoch string) error {
	if h.hist == nil {
		return ErrNoHistory
	}
	return h.hist.reset(epoch)
}

// publish queues m to the streams matching p and not exclude, through
// the history if the hub keeps one (which gives m its position). If
// wroteSince is set, streams that began a successful write of app traffic
// after it are skipped (and counted in skipped).
func (h *Hub) publish(p Pattern, exclude Matcher, m *message, wroteSince int64) (res Result, skipped int) {
	if h.hist == nil {
		return h.deliver(p, exclude, m, wroteSince)
	}
	h.hist.record(m, p, exclude, func(m *message) {
		res, skipped = h.deliver(p, exclude, m, wroteSince)
	})
	return res, skipped
}

// deliver is publish once m has its position, if it takes one (the
// history then holds its lock until deliver returns).
func (h *Hub) deliver(p Pattern, exclude Matcher, m *message, wroteSince int64) (res Result, skipped int) {
	buf := h.buffers.Get().(*[]*Stream)
	streams := h.store.AppendStreams((*buf)[:0], p)
	if h.zip != nil && wroteSince == 0 && !m.heartbeat && len(m.data) > 0 && anyCompressed(streams, exclude) {
		// Compressed once for every compressed stream it reaches, under
		// the group's lock until it is queued to all of them.
		now := time.Now()
		g := h.zip.lock(p, now)
		defer g.mu.Unlock()
		g.pack(m, &h.zip.opts, now)
	}
	wakes := wakeBatch{w: &h.writers}
	for _, s := range streams {
		if exclude != nil && exclude.Match(s.key) || (m.offset != 0 || m.positioned) && s.admitting.Load() {
			continue
		}
		if wroteSince != 0 && s.lastAppWrite.Load() > wroteSince {
			skipped++
			continue
		}
		if err := s.enqueue(m, &wakes); err == nil {
			res.Delivered++
		} else {
			res.Failed++
		}
	}
	wakes.flush()
	if !m.heartbeat {
		h.stats.published(res)
	}
	clear(streams)
	*buf = streams[:0]
	h.buffers.Put(buf)
	return res, skipped
}

// anyCompressed reports whether any of streams not excluded is compressed.
func anyCompressed(streams []*Stream, exclude Matcher) bool {
	for _, s := range streams {
		if s.compressed && (exclude == nil || !exclude.Match(s.key)) {
			return true
		}
	}
	return false
}

// Send queues effects to the stream stored under key. It returns an error
// wrapping [ErrNoStream] if there is none, or [ErrStreamEnded] or
// [ErrSlowClient] if the stream refused them.
func (h *Hub) Send(key Key, effects ...Effect) (Result, error) {
	m, err := render(effects)
	if err != nil {
		return Result{}, err
	}
	s, ok := h.store.Get(key)
	var res Result
	deliver := func(m *message) {
		switch {
		case !ok:
			err = fmt.Errorf("%w: %v", ErrNoStream, key)
		case m.offset != 0 && s.admitting.Load():
			res.Delivered = 1 // its opening brings it (see admit)
		default:
			if qerr := s.enqueue(m, nil); qerr != nil {
				res.Failed, err = 1, fmt.Errorf("sfere: send to %v: %w", key, qerr)
			} else {
				res.Delivered = 1
			}
		}
	}
	if h.hist == nil {
		deliver(m)
	} else {
		// Kept even if no stream is stored now: the key's client may be
		// reconnecting, and then it gets the event from the history.
		h.hist.record(m, key.Pattern(), nil, deliver)
	}
	if ok {
		h.stats.sent(res)
	}
	return res, err
}

// List returns the keys of the streams matching p, in no particular order.
func (h *Hub) List(p Pattern) []Key { return h.store.Keys(p) }

// Count returns how many streams match p.
func (h *Hub) Count(p Pattern) int { return h.store.Count(p) }

// Shutdown ends every stream (cause closed, [ErrHubClosed]), refuses new
// ones, and waits until every Serve has returned or ctx ends.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.closing)
	}
	h.mu.Unlock()
	if h.hist != nil {
		h.hist.close()
	}
	// Interrupt every stream so that whatever serves it sees the hub
	// closing. One stored after this scan sees closing before it waits.
	for _, s := range h.store.AppendStreams(nil, NewPattern(Any, Any, Any)) {
		if s.sink != nil {
			s.sink.interrupt()
		}
	}
	done := make(chan struct{})
	go func() {
		h.active.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sfere: shutdown: %w", ctx.Err())
	}
}
