package sfere

import (
	"compress/flate"
	"sync"
	"sync/atomic"
	"time"
)

// Group compression: a broadcast is compressed once, and the same bytes
// are written to every compressed stream that is in step.
//
// DEFLATE refers back to what it compressed before, so compressed bytes
// make sense only after exactly the bytes they were compressed after. A
// group is one compressor for the broadcasts to one pattern. It compresses
// each broadcast's events and ends them with a sync flush (the output
// ends on a byte boundary, no block open); every now and then it makes a
// full flush instead: it forgets everything it compressed, so the output
// that follows refers to nothing before it. What it compressed between
// two full flushes is a segment, numbered within the group; each output
// is numbered within its segment (packed.seq, from 1).
//
// A stream is in step with a group when the last thing it wrote was the
// group's output seq of segment seg: then output seq+1 of the same
// segment may follow. Output 1 of any segment may follow anything. So a
// stream is in step, or gets back in step at the next segment, and until
// then it is written stored blocks (compress_stream.go). What takes a
// stream out of step is anything it is written that the group did not
// compress, and any output of the group it misses:
//
//   - a newcomer's opening (initial effects, or a replay after a
//     reconnect, or both), and a retry field;
//   - a [Hub.Send], always written alone;
//   - a broadcast the stream was excluded from (the group compressed it;
//     the stream skips it, and the group's next output is not for it);
//   - a visible heartbeat, which skips busy streams and so is never
//     compressed by a group. A heartbeat comment is written as an empty
//     stored block and keeps the stream in step;
//   - a stream in two groups (a broadcast to its scope, another to its
//     category) is in step with one at a time.
//
// A stream whose queue grew (a slow client) keeps each message with its
// group's bytes, so it writes them in order later and stays in step; its
// messages are never merged.
//
// A stream that falls out of step asks its group for a full flush: the
// group makes one at its next broadcast once [CompressionOptions.JoinDelay]
// has passed since its last, and at least every
// [CompressionOptions.FlushBytes] of input anyway. A replay of events the
// history kept carries their group bytes too: a replay that begins at the
// start of a segment is written in step.
//
// Per stream this costs a CRC-32 of what it is written and a copy of the
// compressed bytes into its write: no compressor, no allocation.

// packed is a message as its group compressed it, shared by every stream
// it is queued to.
type packed struct {
	group *group
	seg   uint64 // the segment, within the group
	seq   uint64 // the output, within the segment: 1 for the first
	data  []byte // DEFLATE blocks, ending with a sync flush
}

// group is one shared compressor: the broadcasts to one pattern.
type group struct {
	mu       sync.Mutex
	fw       *flate.Writer
	out      outBuffer
	seg, seq uint64
	segStart time.Time
	segIn    int          // bytes compressed in this segment
	lastUse  atomic.Int64 // unix nanos, for choosing which group to drop
	// waiting is set by a stream that fell out of step (or was never in
	// it), asking for a full flush.
	waiting atomic.Bool
}

// outBuffer is what a group's compressor writes into: the bytes of one
// output at a time.
type outBuffer struct{ b []byte }

func (o *outBuffer) Write(p []byte) (int, error) {
	o.b = append(o.b, p...)
	return len(p), nil
}

// groups are a hub's shared compressors, one per pattern broadcast to.
type groups struct {
	opts CompressionOptions

	mu        sync.Mutex
	byPattern map[Pattern]*group
}

// newGroups returns the groups of a hub with compression on.
func newGroups(opts CompressionOptions) *groups {
	return &groups{opts: opts.withDefaults(), byPattern: make(map[Pattern]*group)}
}

// lock returns p's group, locked, made if there is none. Past
// MaxGroups, the group used least recently is dropped and its compressor
// goes to the new one: a hub that broadcasts to many patterns in turn
// resets a compressor, it does not allocate one.
func (gs *groups) lock(p Pattern, now time.Time) *group {
	for {
		gs.mu.Lock()
		g := gs.byPattern[p]
		if g == nil {
			g = &group{fw: gs.compressor()}
			gs.byPattern[p] = g
		}
		gs.mu.Unlock()
		g.mu.Lock()
		if g.fw != nil {
			g.lastUse.Store(now.UnixNano())
			return g
		}
		g.mu.Unlock() // dropped meanwhile: its pattern has a new one
	}
}

// compressor returns a compressor for a new group: a new one, or that of
// the group used least recently, which is dropped. Called with gs.mu
// held.
func (gs *groups) compressor() *flate.Writer {
	if len(gs.byPattern) < gs.opts.MaxGroups {
		fw, err := flate.NewWriter(nil, gs.opts.Level)
		if err != nil { // the level was checked
			panic("sfere: flate writer: " + err.Error())
		}
		return fw
	}
	var (
		oldest Pattern
		old    *group
	)
	for q, g := range gs.byPattern {
		if old == nil || g.lastUse.Load() < old.lastUse.Load() {
			oldest, old = q, g
		}
	}
	delete(gs.byPattern, oldest)
	// Taken once no broadcast uses it; a broadcast that waited for the
	// dropped group finds it has no compressor and asks again.
	old.mu.Lock()
	fw := old.fw
	old.fw = nil
	old.mu.Unlock()
	return fw
}

// pack compresses m as the group's next output and attaches it to m, so
// that every stream m is queued to may write it. Call it with g locked,
// and keep g locked until m is queued to every stream it goes to: then
// every stream gets the group's outputs in the order they were made.
func (g *group) pack(m *message, opts *CompressionOptions, now time.Time) {
	if g.seq == 0 || g.segIn >= opts.FlushBytes || g.waiting.Load() && now.Sub(g.segStart) >= opts.JoinDelay {
		// A full flush: the previous output ended with a sync flush, so
		// the compressor only has to forget.
		g.fw.Reset(&g.out)
		g.seg++
		g.seq, g.segIn, g.segStart = 0, 0, now
		g.waiting.Store(false)
	}
	g.out.b = g.out.b[:0]
	// Writes into memory do not fail.
	_, _ = g.fw.Write(m.data)
	_ = g.fw.Flush()
	g.seq++
	g.segIn += len(m.data)
	m.packed = &packed{group: g, seg: g.seg, seq: g.seq, data: append([]byte(nil), g.out.b...)}
	if cap(g.out.b) > 1<<20 {
		g.out.b = nil // one huge broadcast does not pin its buffer
	}
}
