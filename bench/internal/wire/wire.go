// Package wire holds what the benchmark server and the load tool agree on:
// the payload that carries a broadcast's sequence number and send time, the
// control API's messages, and the line the server prints when it is ready.
package wire

import "strconv"

// Marker brackets the "seq:sendUnixNano" stamp inside every broadcast
// payload. No other byte the modes write (SSE framing, HTTP chunk headers,
// centrifuge's JSON, heartbeats) is a '^'.
const Marker = '^'

// Modes the server can run in.
const (
	ModeSfere      = "sfere"
	ModeCentrifuge = "centrifuge"
	ModeNaive      = "naive"
	ModeRaw        = "raw"
	// ModeSfereServe holds each stream with the blocking Hub.Serve (the
	// connection still taken over from net/http); ModeSfereNetHTTP keeps
	// every stream on net/http (HubOptions.NoHijack), as HTTP/2 and TLS
	// streams are. Both are run only when asked for, to compare with
	// ModeSfere, which uses Hub.Detach.
	ModeSfereServe   = "sfere-serve"
	ModeSfereNetHTTP = "sfere-nethttp"
	// ModeSfereGzip is ModeSfere with HubOptions.Compression (each
	// broadcast compressed once for every stream); ModeNaiveGzip is
	// ModeNaive with datastar-go's own per-stream gzip
	// (datastar.WithCompression, level 5). Their clients send
	// Accept-Encoding: gzip and decode what they get. Run only when asked
	// for.
	ModeSfereGzip = "sfere-gzip"
	ModeNaiveGzip = "naive-gzip"
)

// Gzipped reports whether the clients of mode ask for gzip.
func Gzipped(mode string) bool { return mode == ModeSfereGzip || mode == ModeNaiveGzip }

// Modes lists every mode, in the order reports show them.
var Modes = []string{ModeSfere, ModeRaw, ModeCentrifuge, ModeNaive}

// KnownModes are the modes the server accepts.
var KnownModes = []string{ModeSfere, ModeRaw, ModeCentrifuge, ModeNaive, ModeSfereServe, ModeSfereNetHTTP, ModeSfereGzip, ModeNaiveGzip}

// HTML returns a size-byte HTML element (at least the stamp's length)
// whose text carries ^seq:ts^, padded with dots.
func HTML(seq uint64, ts int64, size int) string {
	b := make([]byte, 0, size+32)
	b = append(b, "<p>"...)
	b = append(b, Marker)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, Marker)
	for len(b) < size-len("</p>") {
		b = append(b, '.')
	}
	b = append(b, "</p>"...)
	return string(b)
}

// Selector is where the dots payload is appended in the (imaginary) page
// (the lobby payload goes where the lobby puts chat lines: package chat).
const Selector = "#feed"

// Ready is printed by the server on one stdout line, prefixed by ReadyPrefix,
// once both listeners are up.
type Ready struct {
	Mode    string `json:"mode"`
	Streams string `json:"streams"` // host:port of the stream listener
	Control string `json:"control"` // host:port of the control API
	PID     int    `json:"pid"`
}

// ReadyPrefix starts the server's ready line.
const ReadyPrefix = "READY "

// Stats is the answer of GET /stats.
type Stats struct {
	Mode       string `json:"mode"`
	Streams    int    `json:"streams"` // streams the server holds (stored/subscribed/accepted)
	RSSBytes   int64  `json:"rss_bytes"`
	Goroutines int    `json:"goroutines"`
	HeapInuse  uint64 `json:"heap_inuse"`
	StackInuse uint64 `json:"stack_inuse"`
	Sys        uint64 `json:"sys"`
	NumGC      uint32 `json:"num_gc"`
	// Ended counts streams that ended, by reason (sfere: eviction cause
	// and error), since the server started.
	Ended map[string]int64 `json:"ended,omitempty"`
	// Cluster is set when the server is a natscluster node (-nats).
	Cluster *Cluster `json:"cluster,omitempty"`
}

// Cluster is a natscluster node's view of the cluster.
type Cluster struct {
	Node               string   `json:"node"`
	Peers              []string `json:"peers"` // the other nodes this one sees
	BroadcastsSent     uint64   `json:"broadcasts_sent"`
	BroadcastsReceived uint64   `json:"broadcasts_received"`
}

// BroadcastRequest is the body of POST /broadcast: Count broadcasts of a
// Size-byte payload at Rate per second (0: as fast as possible), numbered
// from Seq0.
type BroadcastRequest struct {
	Count int     `json:"count"`
	Size  int     `json:"size"`
	Rate  float64 `json:"rate"`
	Seq0  uint64  `json:"seq0"`
}

// BroadcastResult is the answer of POST /broadcast, once every broadcast
// was issued (queued for sfere and centrifuge, written for raw and naive).
type BroadcastResult struct {
	Issued    int   `json:"issued"`
	Delivered int64 `json:"delivered"` // streams that took a broadcast, summed
	Failed    int64 `json:"failed"`
	FirstSend int64 `json:"first_send_unix_nano"`
	LastSend  int64 `json:"last_send_unix_nano"`
	Done      int64 `json:"done_unix_nano"`
}

// WriteLatency is the answer of GET /latency (sfere modes): the hub's own
// delivery latencies ([sfere.Latencies]: from a broadcast's rendering to
// the end of the write that carried it to a stream) since the last POST
// /latency. Beside the clients' send-to-receipt latency it tells the
// server's part from what happens after the write (the kernel, and the
// client's reading and decoding).
type WriteLatency struct {
	Count uint64 `json:"count"`
	P50ns int64  `json:"p50_ns"`
	P99ns int64  `json:"p99_ns"`
	Maxns int64  `json:"max_ns"` // the highest bucket's upper bound
}

// SweepResult is the answer of POST /heartbeat: one heartbeat to every
// stream, timed from queuing to the last stream's write.
type SweepResult struct {
	Streams  int   `json:"streams"`
	Failures int64 `json:"failures"`
	SweepNS  int64 `json:"sweep_ns"`
}
