package chat

import (
	"bytes"
	"compress/flate"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/sfere-go/sfere"
)

// BenchmarkLobbyEventGzip compresses a run of lobby chat events the way
// a hub's group does (one DEFLATE compressor at level 5, a sync flush
// after every event, a full flush every 64 KiB of input) and reports the
// bytes per event before and after, each framed as an HTTP/1.1 chunk
// (and, for comparison, at level 9 with a full flush every 256 KiB):
// with the load tool's stamp in the text (what its sockets carry) and
// without (what the lobby sends). Each event is the chat line appended at
// #messages, then the position-signal patch with the event's id, as a
// hub with the lobby's history writes it.
//
//	go test -run '^$' -bench LobbyEventGzip ./internal/chat
func BenchmarkLobbyEventGzip(b *testing.B) {
	l, err := New()
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name         string
		level, flush int
	}{{"level5-64KiB", 5, 64 << 10}, {"level9-256KiB", 9, 256 << 10}} {
		for _, stamped := range []bool{true, false} {
			name := c.name + "/stamped"
			if !stamped {
				name = c.name + "/lobby"
			}
			b.Run(name, func(b *testing.B) { compressEvents(b, l, c.level, c.flush, stamped) })
		}
	}
}

// compressEvents is one run of BenchmarkLobbyEventGzip.
func compressEvents(b *testing.B, l *Lines, level, flush int, stamped bool) {
	var out bytes.Buffer
	fw, err := flate.NewWriter(&out, level)
	if err != nil {
		b.Fatal(err)
	}
	var raw, packed, in int
	ts := int64(1796316859074111653)
	for i := range b.N {
		seq := uint64(i + 1)
		ts += 16_666_667 + int64(seq*7919%1_000_003) // about 60 a second
		var line string
		if stamped {
			line, err = l.Line(seq, Stamp(seq, ts))
		} else {
			who, text := Said(seq)
			line, err = l.render.Line(who, text)
		}
		if err != nil {
			b.Fatal(err)
		}
		pos := "cf0a36ec58505c0c-" + strconv.FormatUint(seq, 10)
		sig, _ := json.Marshal(map[string]string{"_streamPos": pos})
		ev, err := sfere.Render(sfere.AppendElements(Selector, line), sfere.PatchSignals(sig))
		if err != nil {
			b.Fatal(err)
		}
		ev = append(ev[:len(ev)-1], "id: "+pos+"\n\n"...)
		out.Reset()
		if in >= flush {
			fw.Reset(&out)
			in = 0
		}
		_, _ = fw.Write(ev)
		_ = fw.Flush()
		in += len(ev)
		raw += chunk(len(ev))
		packed += chunk(out.Len())
	}
	b.ReportMetric(float64(raw)/float64(b.N), "raw-B/event")
	b.ReportMetric(float64(packed)/float64(b.N), "gzip-B/event")
	b.ReportMetric(float64(raw)/float64(packed), "ratio")
}

// chunk is the size of n bytes framed as one HTTP/1.1 chunk.
func chunk(n int) int { return len(strconv.FormatInt(int64(n), 16)) + 2 + n + 2 }
