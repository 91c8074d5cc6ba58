package chat

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"testing"

	kflate "github.com/klauspost/compress/flate"

	"github.com/sfere-go/sfere"
)

// BenchmarkLobbyEventGzip compresses a run of lobby chat events and
// reports the bytes per event before and after: with the load tool's
// stamp in the text (what its sockets carry) and without (what the lobby
// sends). Each event is the chat line appended at #messages, then the
// position-signal patch with the event's id, as a hub with the lobby's
// history writes it. Uncompressed, each event is framed as an HTTP/1.1
// chunk, as a stream writes it.
//
// The group cases compress as a hub's group does: one DEFLATE compressor,
// a sync flush after every event, a full flush every so much input, and
// each output framed as a chunk (level 5 with a full flush every 64 KiB,
// the defaults; level 9 every 256 KiB). The bound cases say where the
// bytes go; their compressed side is not framed:
//
//   - whole: one compressor over the whole run and no flush at all, the
//     output counted once at the end: what DEFLATE makes of the text
//     when nothing has to be read before the run ends.
//   - sync: a sync flush after every event and never a full flush: the
//     least the compressor sends when a reader must have every event at
//     once. Each event ends its block, and an empty stored block (3
//     bits, the padding to a byte, 4 length bytes) follows it; Go's
//     flate reader hands out what it decoded only there (or when its 32
//     KiB window fills), so no other flush would do
//     (TestGzipReaderWaitsForEmptyStoredBlock).
//   - block: sync, less the 4 length bytes of each empty stored block:
//     about what each event's own block costs. A reader could not have
//     the events at once.
//
// The klauspost cases run sync with github.com/klauspost/compress/flate
// instead of compress/flate, at the same levels. fixed-% is the share of
// flushed events whose block the compressor wrote with DEFLATE's fixed
// codes rather than a table of its own (a table costs more than it
// saves on one event).
//
//	go test -run '^$' -bench LobbyEventGzip -benchtime 20000x ./internal/chat
func BenchmarkLobbyEventGzip(b *testing.B) {
	l, err := New()
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name, mode string
		level      int
		flush      int // a full flush every so much input (group)
	}{
		{"level5-64KiB", "group", 5, 64 << 10},
		{"level9-256KiB", "group", 9, 256 << 10},
		{"whole-level5", "whole", 5, 0},
		{"whole-level9", "whole", 9, 0},
		{"sync-level5", "sync", 5, 0},
		{"sync-level9", "sync", 9, 0},
		{"block-level5", "block", 5, 0},
		{"block-level9", "block", 9, 0},
		{"klauspost-sync-level5", "klauspost", 5, 0},
		{"klauspost-sync-level9", "klauspost", 9, 0},
	} {
		for _, stamped := range []bool{true, false} {
			name := c.name + "/stamped"
			if !stamped {
				name = c.name + "/lobby"
			}
			b.Run(name, func(b *testing.B) {
				ev := events{l: l, stamped: stamped}
				if c.mode == "whole" {
					compressWhole(b, &ev, c.level)
					return
				}
				compressEvents(b, &ev, c.mode, c.level, c.flush)
			})
		}
	}
}

// events makes the events of BenchmarkLobbyEventGzip, one after another.
type events struct {
	l       *Lines
	stamped bool
	seq     uint64
	ts      int64
}

// next returns the next event, as a hub with the lobby's history writes
// it.
func (e *events) next(b testing.TB) []byte {
	e.seq++
	if e.ts == 0 {
		e.ts = 1796316859074111653
	}
	e.ts += 16_666_667 + int64(e.seq*7919%1_000_003) // about 60 a second
	var (
		line string
		err  error
	)
	if e.stamped {
		line, err = e.l.Line(e.seq, Stamp(e.seq, e.ts))
	} else {
		who, text := Said(e.seq)
		line, err = e.l.render.Line(who, text)
	}
	if err != nil {
		b.Fatal(err)
	}
	pos := "cf0a36ec58505c0c-" + strconv.FormatUint(e.seq, 10)
	sig, _ := json.Marshal(map[string]string{"_streamPos": pos})
	ev, err := sfere.Render(sfere.AppendElements(Selector, line), sfere.PatchSignals(sig))
	if err != nil {
		b.Fatal(err)
	}
	return append(ev[:len(ev)-1], "id: "+pos+"\n\n"...)
}

// flusher is what the sync cases need of a DEFLATE compressor.
type flusher interface {
	io.Writer
	Flush() error
	Reset(io.Writer)
}

// compressEvents is one run of BenchmarkLobbyEventGzip with a sync flush
// after every event: mode group, sync, block or klauspost.
func compressEvents(b *testing.B, ev *events, mode string, level, flush int) {
	var (
		out bytes.Buffer
		fw  flusher
		err error
	)
	if mode == "klauspost" {
		fw, err = kflate.NewWriter(&out, level)
	} else {
		fw, err = flate.NewWriter(&out, level)
	}
	if err != nil {
		b.Fatal(err)
	}
	var raw, packed, in, fixed int
	for range b.N {
		e := ev.next(b)
		out.Reset()
		if mode == "group" && in >= flush {
			fw.Reset(&out)
			in = 0
		}
		_, _ = fw.Write(e)
		_ = fw.Flush()
		in += len(e)
		raw += chunk(len(e))
		if out.Bytes()[0]>>1&3 == 1 { // the block's type: after a sync flush, each begins at a byte
			fixed++
		}
		switch n := out.Len(); mode {
		case "group":
			packed += chunk(n)
		case "block":
			if !bytes.HasSuffix(out.Bytes(), []byte{0, 0, 0xff, 0xff}) {
				b.Fatalf("event %d: the flush did not end with an empty stored block", ev.seq)
			}
			packed += n - 4
		default:
			packed += n
		}
	}
	report(b, raw, packed)
	b.ReportMetric(100*float64(fixed)/float64(b.N), "fixed-%")
}

// compressWhole is the whole case of BenchmarkLobbyEventGzip: every
// event through one compressor, flushed only at the end.
func compressWhole(b *testing.B, ev *events, level int) {
	var out bytes.Buffer
	fw, err := flate.NewWriter(&out, level)
	if err != nil {
		b.Fatal(err)
	}
	var raw int
	for range b.N {
		e := ev.next(b)
		_, _ = fw.Write(e)
		raw += chunk(len(e))
	}
	if err := fw.Close(); err != nil {
		b.Fatal(err)
	}
	report(b, raw, out.Len())
}

// report reports a run's bytes per event, uncompressed and compressed,
// and their ratio.
func report(b *testing.B, raw, packed int) {
	b.ReportMetric(float64(raw)/float64(b.N), "raw-B/event")
	b.ReportMetric(float64(packed)/float64(b.N), "gzip-B/event")
	b.ReportMetric(float64(raw)/float64(packed), "ratio")
}

// chunk is the size of n bytes framed as one HTTP/1.1 chunk.
func chunk(n int) int { return len(strconv.FormatInt(int64(n), 16)) + 2 + n + 2 }

// TestGzipReaderWaitsForEmptyStoredBlock checks what the sync case of
// BenchmarkLobbyEventGzip rests on: Go's gzip reader hands out an event
// when the empty stored block after it has come, and not before, though
// the event's block has ended. So a compressor whose reader must have
// every event at once pays for that block at every event.
func TestGzipReaderWaitsForEmptyStoredBlock(t *testing.T) {
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	ev := events{l: l, stamped: true}
	e := ev.next(t)
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	if _, err := zw.Write(e); err != nil {
		t.Fatal(err)
	}
	if err := zw.Flush(); err != nil {
		t.Fatal(err)
	}
	flushed := out.Bytes()
	if !bytes.HasSuffix(flushed, []byte{0, 0, 0xff, 0xff}) {
		t.Fatalf("the sync flush did not end with an empty stored block: % x", flushed[len(flushed)-5:])
	}
	for _, c := range []struct {
		name   string
		stream []byte
		early  bool // the event comes out before the input runs out
	}{
		{"the whole flush", flushed, true},
		{"without the stored block's length bytes", flushed[:len(flushed)-4], false},
	} {
		zr, err := gzip.NewReader(io.MultiReader(bytes.NewReader(c.stream), failing{}))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if !bytes.Equal(got, e) {
			t.Fatalf("%s: read %q, want the event %q", c.name, got, e)
		}
		if !errors.Is(err, errNoMore) {
			t.Fatalf("%s: the reader ended with %v, want it to ask for more input", c.name, err)
		}
		// Read again, one call: does the event come out before the
		// reader asks for input it does not have?
		zr, _ = gzip.NewReader(io.MultiReader(bytes.NewReader(c.stream), failing{}))
		n, err := zr.Read(make([]byte, 2*len(e)))
		if early := n == len(e) && err == nil; early != c.early {
			t.Errorf("%s: first Read returned %d bytes and %v; the event out before more input: %v, want %v",
				c.name, n, err, early, c.early)
		}
	}
}

// errNoMore is what failing returns: the input so far is all there is.
var errNoMore = errors.New("no more input yet")

// failing is a reader with nothing more to give.
type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errNoMore }
