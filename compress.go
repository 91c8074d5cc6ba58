package sfere

import (
	"cmp"
	"compress/flate"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Defaults of [CompressionOptions].
const (
	DefaultCompressionLevel = 5
	DefaultFlushBytes       = 64 << 10
	DefaultJoinDelay        = 500 * time.Millisecond
	DefaultMaxGroups        = 16
)

// CompressionOptions turns on gzip for the streams whose client accepts
// it ([HubOptions.Compression]), and tunes the compressors the hub shares
// between streams.
//
// A stream is compressed when its request's Accept-Encoding accepts gzip
// (browsers always send it) and no middleware set a Content-Encoding
// already; its response says Content-Encoding: gzip. Every response of
// the hub says Vary: Accept-Encoding. Other streams are written as they
// would be without compression.
//
// Streams are not compressed one by one. Each broadcast is compressed
// once, by a compressor the hub keeps for the broadcast's pattern (a
// group), and every compressed stream that received the same events
// since the group's last full flush is written those same compressed
// bytes: the compression costs one pass per broadcast, not one per
// stream, and a stream holds no compressor of its own. What a stream gets
// alone (its opening, a replay, a [Hub.Send], a broadcast it was excluded
// from, a visible heartbeat) is written as DEFLATE stored blocks, not
// compressed, and takes it out of its group until the group's next full
// flush, which it then rejoins. A heartbeat comment is written as an
// empty block: it proves the client without taking the stream out of
// its group. See compress_group.go for the rules.
type CompressionOptions struct {
	// Level is the DEFLATE level of the shared compressors, from
	// [compress/flate.BestSpeed] to [compress/flate.BestCompression].
	// Zero means [DefaultCompressionLevel].
	Level int
	// FlushBytes is how much input a group's compressor takes before a
	// full flush (which forgets the past: the next events compress a
	// little worse, and streams waiting to join the group join there).
	// Zero means [DefaultFlushBytes].
	FlushBytes int
	// JoinDelay bounds how long a stream waits to join its group: a
	// group that some stream waits for makes a full flush at its first
	// broadcast once this long has passed since its last one. Zero means
	// [DefaultJoinDelay].
	JoinDelay time.Duration
	// MaxGroups bounds how many shared compressors the hub keeps (about
	// 0.8 MB each at the default level), one per pattern broadcast to;
	// the one used least recently goes first. Zero means
	// [DefaultMaxGroups].
	MaxGroups int
}

// withDefaults returns o with its zero fields set to the defaults, and
// a level flate accepts.
func (o CompressionOptions) withDefaults() CompressionOptions {
	o.Level = cmp.Or(o.Level, DefaultCompressionLevel)
	if o.Level < flate.BestSpeed || o.Level > flate.BestCompression {
		o.Level = DefaultCompressionLevel
	}
	o.FlushBytes = cmp.Or(max(o.FlushBytes, 0), DefaultFlushBytes)
	o.JoinDelay = cmp.Or(max(o.JoinDelay, 0), DefaultJoinDelay)
	o.MaxGroups = cmp.Or(max(o.MaxGroups, 0), DefaultMaxGroups)
	return o
}

// acceptsGzip reports whether the request's Accept-Encoding accepts gzip:
// it names gzip (or x-gzip), or *, with a quality above zero, and does
// not refuse gzip by name.
func acceptsGzip(r *http.Request) bool {
	named, star := 0, 0 // 0: not said, 1: accepted, -1: refused
	for _, v := range r.Header.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(part, ";")
			coding = strings.TrimSpace(coding)
			verdict := 1
			if q, ok := quality(params); ok && q <= 0 {
				verdict = -1
			}
			switch {
			case strings.EqualFold(coding, "gzip"), strings.EqualFold(coding, "x-gzip"):
				if named == 0 || verdict < 0 {
					named = verdict
				}
			case coding == "*":
				star = verdict
			}
		}
	}
	return named > 0 || named == 0 && star > 0
}

// quality reads the q parameter of one coding in Accept-Encoding; ok is
// false if there is none (or it does not parse: then it is ignored).
func quality(params string) (float64, bool) {
	for p := range strings.SplitSeq(params, ";") {
		name, value, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(name), "q") {
			q, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			return q, err == nil
		}
	}
	return 0, false
}
