package sfere

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HistoryOptions configures the history a [Hub] keeps of what it sent, so
// that a client that reconnects gets what it missed (see [Hub.Serve]).
// The zero value keeps none, and events carry no ids.
type HistoryOptions struct {
	// Size is how many events the history keeps (broadcasts and sends
	// that carry events; heartbeats and comments are not kept). Zero
	// keeps none.
	Size int
	// MaxAge drops events once they are older than this (they are
	// neither replayed nor held); zero keeps them until Size or MaxBytes
	// pushes them out.
	MaxAge time.Duration
	// MaxBytes bounds the bytes of the events the history holds (as
	// written, with their ids); the oldest go first, so a client that
	// missed them is not recovered ([ErrPositionGone]). The newest event
	// is always held. Zero means no byte bound.
	MaxBytes int
	// MaxReplay is the most events one reconnect may replay; a client
	// further behind is not recovered ([ErrReplayLimit]) and gets the
	// page's full state instead. Zero means Size. A replay is also
	// bounded in bytes, by [HubOptions.MaxQueueBytes] (it is queued like
	// live events): a client whose missed events weigh more is not
	// recovered either ([ErrReplayLimit]).
	MaxReplay int
	// Epoch, if set, makes the history a copy of a log kept elsewhere (a
	// cluster's: see natscluster): events enter it only through
	// [Hub.BroadcastAt], at the positions the log gave them, and the
	// hub's own Broadcast and Send write events without ids that are not
	// kept. Empty: the hub numbers its events itself, in an epoch of its
	// own (random: a restart starts a new one).
	Epoch string
	// PositionSignal, if set, names a Datastar signal the hub keeps at
	// the page's position, for a page that reopens its stream by itself
	// (the Datastar client keeps the ids it reads to itself): each event
	// of a message kept in the history is followed by a patch of the
	// signal to its position (which also carries the id; see
	// [Position.Part]), every stream's opening ends with one,
	// and a visible heartbeat ([NewVisibleHeartbeat]) carries it. Start
	// it with an underscore (e.g. "_position") so the page never sends it
	// back with its signals. [NewHub] panics on a name that is not a
	// signal name (see [ErrBadSignalName]).
	PositionSignal string
	// AheadWait is how long a stream whose request asks to resume from a
	// position ahead of a shared history (Epoch set: the hub applies a
	// log that other hubs may have applied further, and the client was
	// last served by one of them) waits for this hub to apply the log that
	// far, before [Hub.Serve] refuses it with an error wrapping
	// [ErrPositionAhead]: answer it so that the client tries again soon,
	// maybe on another hub (a 503 with Retry-After; a Datastar page, whose
	// client retries no error status, an element that opens its stream
	// again, as the lobby does). Served at once instead,
	// the stream would be sent the state at this hub's older position, and
	// then, live, the events its client already has. Zero means
	// [DefaultAheadWait]; negative refuses such a stream at once. A
	// history of the hub's own never waits: no other hub gives its
	// positions.
	AheadWait time.Duration
}

// DefaultAheadWait is the [HistoryOptions.AheadWait] of zero.
const DefaultAheadWait = 2 * time.Second

// Position is a place in a hub's history: the history's epoch and the
// offset of an event in it. Every event the hub writes from a broadcast
// or send carries its position as the SSE id, which the client sends
// back as Last-Event-ID when it reconnects.
//
// Offsets are contiguous within an epoch. The epoch changes whenever the
// history may have lost events (a new hub: a restart), so a position of
// another epoch is never taken for one of this.
type Position struct {
	Epoch  string
	Offset uint64
	// Part, if not zero, is a place inside the message at Offset (one
	// broadcast or send of several effects, which the client receives as
	// several SSE events): the client has its first Part events and not
	// the rest. Every event of such a message carries a position, the
	// last one the message's own (Part zero), so a client cut off between
	// two of them resumes exactly after the last one it read and never
	// applies one twice. Part is the same on every hub that applies a
	// shared log ([Hub.BroadcastAt]): each renders the message alike.
	Part int
	// Opening, with Part, is a place inside a stream's opening: the
	// initial effects, rendered when the newest event was the one at
	// Offset, of which the client has the first Part events. Every event
	// of an opening carries a position too, the last one Offset's (the
	// client then has the state as of Offset), so a client cut off inside
	// it never keeps an older id it had. No history keeps an opening: a
	// stream resumed from inside one gets a new one
	// ([ErrPositionInOpening]).
	Opening bool
}

// String returns the position's text form, as sent in ids: epoch-offset,
// epoch-offset.part for a place inside a message, or epoch-offset.opart
// for one inside an opening.
func (p Position) String() string { return string(p.appendText(nil)) }

// appendText appends the position's text form to dst.
func (p Position) appendText(dst []byte) []byte {
	dst = append(dst, p.Epoch...)
	dst = append(dst, '-')
	dst = strconv.AppendUint(dst, p.Offset, 10)
	if p.Part != 0 {
		dst = append(dst, '.')
		if p.Opening {
			dst = append(dst, 'o')
		}
		dst = strconv.AppendInt(dst, int64(p.Part), 10)
	}
	return dst
}

// maxPart bounds [Position.Part] as parsed: no message has more events.
const maxPart = 1 << 30

// ParsePosition parses the text form of a position.
func ParsePosition(s string) (Position, error) {
	i := strings.LastIndexByte(s, '-')
	if i <= 0 {
		return Position{}, fmt.Errorf("sfere: position %q: want epoch-offset", s)
	}
	offset, part, inside := strings.Cut(s[i+1:], ".")
	off, err := strconv.ParseUint(offset, 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("sfere: position %q: %w", s, err)
	}
	p := Position{Epoch: s[:i], Offset: off}
	if inside {
		part, p.Opening = strings.CutPrefix(part, "o")
		n, err := strconv.ParseUint(part, 10, 64)
		switch {
		case err != nil:
			return Position{}, fmt.Errorf("sfere: position %q: part: %w", s, err)
		case n == 0 || n > maxPart:
			return Position{}, fmt.Errorf("sfere: position %q: part out of range", s)
		}
		p.Part = int(n)
	}
	return p, nil
}

// Reasons a stream could not be recovered ([Recovery.Err]).
var (
	// ErrPositionUnknown: the position is of another epoch (the history
	// was lost since, e.g. by a restart), malformed, or the hub keeps no
	// history.
	ErrPositionUnknown = errors.New("sfere: position unknown")
	// ErrPositionGone: events after the position were dropped from the
	// history (its size or age limit).
	ErrPositionGone = errors.New("sfere: position no longer in history")
	// ErrPositionAhead: the position is past the newest event. A hub
	// whose history copies a shared log does not serve such a position
	// at an older state: it waits for the log, and [Hub.Serve] returns an
	// error wrapping ErrPositionAhead if it does not get there (see
	// [HistoryOptions.AheadWait]).
	ErrPositionAhead = errors.New("sfere: position ahead of history")
	// ErrPositionInOpening: the position is inside a stream's opening
	// (its initial effects; see [Position.Opening]), which no history
	// keeps: the client was cut off before it had all of it.
	ErrPositionInOpening = errors.New("sfere: position inside an opening")
	// ErrReplayLimit: more events were missed than
	// [HistoryOptions.MaxReplay], or more bytes than the stream's queue
	// may hold ([HubOptions.MaxQueueBytes]).
	ErrReplayLimit = errors.New("sfere: too many missed events")
)

// Recovery says what became of the position a stream's request carried
// (the Last-Event-ID header, or the lastEventID query parameter).
type Recovery struct {
	// From is the position asked for; zero if the request carried none.
	From Position
	// Recovered is true if every event after From that the stream would
	// have received was replayed, in order and before any live event, in
	// place of the initial effects.
	Recovered bool
	// Replayed counts the replayed broadcasts and sends (each one
	// message, of one or several SSE events); the rest of a message the
	// client was cut off inside counts as one.
	Replayed int
	// Err says why a position could not be recovered (nil if none was
	// asked for): [ErrPositionUnknown], [ErrPositionGone],
	// [ErrPositionAhead], [ErrPositionInOpening] or [ErrReplayLimit].
	Err error
}

// entry is one event in the history: the message as written, and whom it
// was for (a broadcast's pattern and exclusions, or a send's key).
type entry struct {
	at      int64 // unix nanos
	msg     *message
	pattern Pattern
	exclude Matcher // nil: none
}

// history is a bounded ring of the events a hub sent, bounded in count,
// bytes and age. Its lock is held while an event is appended and queued
// to its streams, so every stream receives events in offset order, and
// while a reconnecting stream's queue is rebuilt, so a replay never
// crosses a live event. Events that age out are dropped by a timer, so an
// idle hub holds nothing old.
type history struct {
	shared         bool   // positions come from a log elsewhere (BroadcastAt)
	signal         string // PositionSignal: "" for none
	maxAge         time.Duration
	maxBytes       int // 0: no bound
	maxReplay      int
	maxReplayBytes int // 0: no bound
	aheadWait      time.Duration

	mu     sync.Mutex
	epoch  string
	ring   []entry // offset o lives at ring[o % len(ring)]
	top    uint64  // offset of the newest event; 0: none yet
	floor  uint64  // no event before this offset is held (a gap in a shared log, or dropped)
	bytes  int     // bytes of the events held
	expiry *time.Timer
	closed bool
	// moved, if not nil, is closed (and cleared) when top or the epoch
	// changes: a stream waiting for the history to reach its position
	// (await) looks again.
	moved chan struct{}
}

// newHistory returns the history opts ask for (nil for none); a replay
// may queue at most maxQueue bytes (0: no bound).
func newHistory(opts HistoryOptions, maxQueue int) *history {
	if opts.Size <= 0 {
		return nil
	}
	if opts.PositionSignal != "" {
		if err := checkSignalName(opts.PositionSignal); err != nil {
			panic("sfere: HistoryOptions.PositionSignal: " + err.Error())
		}
	}
	h := &history{
		epoch:          opts.Epoch,
		shared:         opts.Epoch != "",
		signal:         opts.PositionSignal,
		maxAge:         opts.MaxAge,
		maxBytes:       max(opts.MaxBytes, 0),
		maxReplay:      opts.MaxReplay,
		maxReplayBytes: maxQueue,
		aheadWait:      cmp.Or(opts.AheadWait, DefaultAheadWait),
		ring:           make([]entry, opts.Size),
	}
	if !h.shared {
		var b [8]byte
		_, _ = rand.Read(b[:])
		h.epoch = hex.EncodeToString(b[:])
	}
	if h.maxReplay <= 0 || h.maxReplay > opts.Size {
		h.maxReplay = opts.Size
	}
	return h
}

// position returns the position of the newest event.
func (h *history) position() Position {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Position{Epoch: h.epoch, Offset: h.top}
}

// record keeps m, an event for the streams matching p and not exclude, as
// the next one and hands it to deliver as written (with its position),
// under the history's lock, so that every stream receives events in
// position order. What the history does not keep (a message of comments
// only, or any message if the history copies a shared log, whose events
// come through recordAt) is handed over as it is, without the lock.
func (h *history) record(m *message, p Pattern, exclude Matcher, deliver func(*message)) {
	if h.shared || m.idAt < 0 {
		deliver(m)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	deliver(h.appendLocked(m, p, exclude, time.Now()))
}

// recordAt is record for a shared history: m is kept at pos, the
// position its log gave it, and handed to deliver as written; an event at
// or before the newest position was applied already and goes nowhere. A
// message of comments only is handed over as it is.
func (h *history) recordAt(pos Position, m *message, p Pattern, exclude Matcher, deliver func(*message)) error {
	switch {
	case !h.shared:
		return ErrNoHistory
	case pos.Part != 0 || pos.Opening:
		return fmt.Errorf("sfere: position %v: a log places whole messages, not parts of one", pos)
	case m.idAt < 0:
		deliver(m)
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if m, ok := h.appendAtLocked(m, p, exclude, pos, time.Now()); ok {
		deliver(m)
	}
	return nil
}

// reset is resetLocked for a shared history: its log was made anew in
// epoch, numbered from 1.
func (h *history) reset(epoch string) error {
	if !h.shared {
		return ErrNoHistory
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.resetLocked(epoch, 0)
	return nil
}

// atTop calls f with the newest position under the history's lock: what
// f queues to a stream comes after every event up to that position.
func (h *history) atTop(f func(top Position)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(Position{Epoch: h.epoch, Offset: h.top})
}

// opening decides the opening of s, stored with s.admitting set, under
// the history's lock: the events after from that s's key would have
// received, or, if they cannot all be replayed (err says why; fromErr if
// from could not be parsed), the events after base, the position its
// initial effects were rendered at, which follow them (none if those
// cannot be replayed either); and top, the position of the newest event,
// where the stream starts live. Once the lock is taken, events reach s
// live (admitting is cleared), so an event comes once: before top in the
// replay, after it live.
func (h *history) opening(s *Stream, from, base Position, fromErr error) (replay []*message, top Position, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s.admitting.Store(false)
	now := time.Now()
	err = fromErr
	if err == nil {
		replay, err = h.replayLocked(nil, from, s.key, now)
	}
	if err != nil {
		replay, _ = h.replayLocked(nil, base, s.key, now)
	}
	return replay, Position{Epoch: h.epoch, Offset: h.top}, err
}

// positionEvent returns the event that ends a stream's opening if the
// history names a position signal (nil if not): it sets the signal to
// top, where the stream starts, so the page learns it even when nothing
// was missed (and sees its stream alive at once). The position the page
// is told never goes back: the initial effects carry the position they
// were rendered at, the events replayed after them later ones, and top
// is the newest.
func (h *history) positionEvent(top Position) *message {
	if h.signal == "" {
		return nil
	}
	return &message{data: appendPositionEvent(nil, h.signal, top, false), idAt: -1}
}

// appendLocked adds m (for p, less exclude) as the next event and returns
// it as written: each of its events with its position as the id (and the
// position signal's patch, if the history names one).
func (h *history) appendLocked(m *message, p Pattern, exclude Matcher, now time.Time) *message {
	h.top++
	h.movedLocked()
	m = m.withPosition(Position{Epoch: h.epoch, Offset: h.top}, h.signal)
	m.offset = h.top
	e := &h.ring[h.top%uint64(len(h.ring))]
	if e.msg != nil { // the event Size pushes out
		h.bytes -= len(e.msg.data)
	}
	*e = entry{at: now.UnixNano(), msg: m, pattern: p, exclude: exclude}
	h.bytes += len(m.data)
	h.dropLocked(now)
	if h.maxAge > 0 && h.expiry == nil && !h.closed {
		h.expiry = time.AfterFunc(h.maxAge, h.expire)
	}
	return m
}

// firstLocked returns the offset of the oldest event held (top+1 if none).
func (h *history) firstLocked() uint64 {
	first := max(1, h.floor)
	if n := uint64(len(h.ring)); h.top >= n {
		first = max(first, h.top-n+1)
	}
	return first
}

// dropLocked drops the oldest events while the history holds more bytes
// than its bound (keeping the newest) or they are older than its age.
func (h *history) dropLocked(now time.Time) {
	cutoff := int64(0)
	if h.maxAge > 0 {
		cutoff = now.Add(-h.maxAge).UnixNano()
	}
	n := uint64(len(h.ring))
	for o := h.firstLocked(); o <= h.top; o++ {
		e := &h.ring[o%n]
		tooBig := h.maxBytes > 0 && h.bytes > h.maxBytes && o < h.top
		if !tooBig && (e.msg == nil || e.at >= cutoff) {
			return
		}
		if e.msg != nil {
			h.bytes -= len(e.msg.data)
		}
		*e = entry{}
		h.floor = o + 1
	}
}

// expire drops the events that aged out, and sets the timer again for the
// oldest one left.
func (h *history) expire() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.expiry = nil
	if h.closed {
		return
	}
	now := time.Now()
	h.dropLocked(now)
	if first := h.firstLocked(); first <= h.top {
		at := time.Unix(0, h.ring[first%uint64(len(h.ring))].at)
		h.expiry = time.AfterFunc(max(at.Add(h.maxAge).Sub(now), time.Millisecond), h.expire)
	}
}

// close stops the expiry timer.
func (h *history) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	if h.expiry != nil {
		h.expiry.Stop()
		h.expiry = nil
	}
}

// resetLocked forgets every event and starts epoch at offset top+1
// (before which nothing is served).
func (h *history) resetLocked(epoch string, top uint64) {
	h.epoch, h.top, h.floor = epoch, top, top+1
	clear(h.ring)
	h.bytes = 0
	h.movedLocked()
}

// movedLocked wakes the streams waiting for the history to move (await).
func (h *history) movedLocked() {
	if h.moved != nil {
		close(h.moved)
		h.moved = nil
	}
}

// await waits until a shared history reaches from, a position a client
// asks to resume from, if it is ahead of it (the same epoch, a later
// offset): another hub that applies the same log served it that far, and
// this one lags the log (or is cut off from it). It returns nil once the
// history is there, or at once if from is not ahead (or the history is
// not shared); an error wrapping [ErrPositionAhead] if it is not there
// after the history's AheadWait, or when ctx ends first; and
// [ErrHubClosed] if closing is closed first.
// waitsAhead reports whether a stream that asks for a position ahead of
// the history waits for it ([history.await]) rather than being refused
// at once.
func (h *history) waitsAhead() bool { return h.shared && h.aheadWait > 0 }

func (h *history) await(ctx context.Context, closing <-chan struct{}, from Position) error {
	if !h.shared {
		return nil
	}
	var timeout <-chan time.Time
	for {
		h.mu.Lock()
		if h.closed || from.Epoch != h.epoch || from.Offset <= h.top {
			h.mu.Unlock()
			return nil
		}
		if h.moved == nil {
			h.moved = make(chan struct{})
		}
		moved, top := h.moved, Position{Epoch: h.epoch, Offset: h.top}
		h.mu.Unlock()
		if timeout == nil {
			if h.aheadWait <= 0 {
				return fmt.Errorf("%w: the history is at %v, the request asks for %v", ErrPositionAhead, top, from)
			}
			t := time.NewTimer(h.aheadWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-moved:
		case <-closing:
			return ErrHubClosed
		case <-ctx.Done():
			return fmt.Errorf("%w: the history is at %v, the request asks for %v: %w", ErrPositionAhead, top, from, ctx.Err())
		case <-timeout:
			return fmt.Errorf("%w: the history is at %v after %v, the request asks for %v", ErrPositionAhead, top, h.aheadWait, from)
		}
	}
}

// appendAtLocked adds m at pos, a position a shared log gave it, and
// returns it as written; ok is false if pos is not past the newest event
// (it was applied already). A position of a new epoch starts the history
// anew; one past the next offset leaves a gap before which nothing is
// served.
func (h *history) appendAtLocked(m *message, p Pattern, exclude Matcher, pos Position, now time.Time) (_ *message, ok bool) {
	switch {
	case pos.Epoch != h.epoch:
		h.resetLocked(pos.Epoch, pos.Offset-1)
	case pos.Offset <= h.top:
		return nil, false
	case pos.Offset > h.top+1:
		h.top, h.floor = pos.Offset-1, pos.Offset
	}
	return h.appendLocked(m, p, exclude, now), true
}

// oldestLocked returns the offset of the oldest event still in the
// history at now (top+1 if none).
func (h *history) oldestLocked(now time.Time) uint64 {
	n := uint64(len(h.ring))
	oldest := h.firstLocked()
	if h.maxAge > 0 {
		// Events are appended in time order: the first young one is found
		// by binary search.
		cutoff := now.Add(-h.maxAge).UnixNano()
		oldest += uint64(sort.Search(int(h.top+1-oldest), func(i int) bool {
			return h.ring[(oldest+uint64(i))%n].at >= cutoff
		}))
	}
	return oldest
}

// servableLocked says why a replay from cannot be served (nil if it can,
// but for the replay limits, which depend on the stream's key).
func (h *history) servableLocked(from Position, now time.Time) error {
	oldest := h.oldestLocked(now)
	switch {
	case from.Opening:
		return ErrPositionInOpening
	case from.Epoch != h.epoch, from.Part != 0 && from.Offset == 0:
		return ErrPositionUnknown
	case from.Offset > h.top:
		return ErrPositionAhead
	case from.Offset+1 < oldest, from.Part != 0 && from.Offset < oldest:
		return ErrPositionGone
	}
	return nil
}

// servable is servableLocked under the history's lock.
func (h *history) servable(from Position) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.servableLocked(from, time.Now())
}

// replayLocked appends to dst the events after from that key would have
// received, and says why it cannot if it cannot (dst is then returned
// as it was). From a place inside a message (from.Part), the rest of that
// message comes first.
func (h *history) replayLocked(dst []*message, from Position, key Key, now time.Time) ([]*message, error) {
	if err := h.servableLocked(from, now); err != nil {
		return dst, err
	}
	start, n, size := len(dst), uint64(len(h.ring)), 0
	if e := &h.ring[from.Offset%n]; from.Part != 0 && e.pattern.Match(key) && (e.exclude == nil || !e.exclude.Match(key)) {
		// The rest of the message from is inside comes first.
		rest, ok := e.msg.after(from.Part)
		switch {
		case !ok:
			return dst, ErrPositionUnknown
		case h.maxReplayBytes > 0 && len(rest.data) > h.maxReplayBytes:
			return dst, ErrReplayLimit
		}
		size = len(rest.data)
		dst = append(dst, rest)
	}
	for o := from.Offset + 1; o <= h.top; o++ {
		e := &h.ring[o%n]
		if !e.pattern.Match(key) || (e.exclude != nil && e.exclude.Match(key)) {
			continue
		}
		size += len(e.msg.data)
		if len(dst)-start == h.maxReplay || h.maxReplayBytes > 0 && size > h.maxReplayBytes {
			clear(dst[start:])
			return dst[:start], ErrReplayLimit
		}
		dst = append(dst, e.msg)
	}
	return dst, nil
}
