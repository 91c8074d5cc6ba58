package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sfere-go/sfere/bench/internal/wire"
)

// fleet is the load tool's side of N streams: one lean reader goroutine
// per connection, a fixed read buffer each, and a byte scanner that
// decodes HTTP chunking and finds the ^seq:ts^ stamps without allocating.
type fleet struct {
	conns []*stream
	lat   hist
	// nodeLat is the latency per server node (-nodes > 1 only; else nil).
	nodeLat []*hist

	// The window of sequence numbers the current phase counts.
	seqLo, seqHi atomic.Uint64

	delivered atomic.Int64 // stamps in the window, all streams
	stray     atomic.Int64 // stamps outside the window (late or early)
	reorder   atomic.Int64 // a stamp not above the stream's previous one
	closed    atomic.Int64 // streams the server ended (or that broke)
	closing   atomic.Bool  // set when the tool itself closes the streams
	wire      atomic.Int64 // bytes read from every socket, as they came (compressed or not)
	hop       bool         // -client-hop: every body goes through a pipe to a goroutine of its own (see connect)
	wg        sync.WaitGroup
}

// stream is one client connection. Its fields are written by its reader
// goroutine; the counters main reads are atomic.
type stream struct {
	id    int
	node  int // index of the server node it is connected to
	c     net.Conn
	ready chan struct{} // closed once response headers arrived (or failed)
	ok    bool          // response was 200; set before ready is closed

	// sink: the stream is read but neither scanned nor decoded nor
	// counted (-decode-every): it loads the server, not this tool.
	sink     bool
	gone     bool          // the server ended the response (last chunk)
	got      atomic.Uint32 // stamps in the window
	lastRecv atomic.Int64  // unix nanos of the last stamp in the window
	lastSeq  uint64

	// HTTP response parsing.
	http    bool
	inHead  bool
	head    []byte
	chunked bool
	zw      *io.PipeWriter // -client-hop: the body goes to its own goroutine (inflate); nil: scanned here
	// inflating: the body is gzip, decoded on the reader goroutine
	// (inflateHere); pend[off:] is body not decoded yet.
	inflating bool
	pend      []byte
	off       int
	cstate    uint8
	csize     uint64

	// stamp scanner
	sstate uint8
	seq    uint64
	ts     int64
}

// chunk decoder states
const (
	csSize uint8 = iota
	csSizeLine
	csData
	csDataEnd
	csEnd
)

// stamp scanner states
const (
	ssOut uint8 = iota
	ssSeq
	ssTS
)

func newStream(id, node int, c net.Conn, http bool) *stream {
	return &stream{id: id, node: node, c: c, http: http, inHead: http, ready: make(chan struct{})}
}

// read is the stream's reader goroutine. A gzipped body is decoded on
// it too, as it reads (inflateHere), unless -client-hop hands bodies to a
// goroutine of their own.
func (f *fleet) read(s *stream, bufSize int) {
	defer f.wg.Done()
	if !s.http {
		s.ok = true
		close(s.ready)
	}
	buf := make([]byte, bufSize)
	var err error
	for {
		var n int
		n, err = s.c.Read(buf)
		if n > 0 && (!s.sink || s.inHead) {
			if !s.sink {
				f.wire.Add(int64(n))
			}
			f.feed(s, buf[:n], time.Now().UnixNano())
		}
		if err == nil && s.inflating {
			err = f.inflateHere(s, buf)
		}
		if err != nil {
			break
		}
	}
	if s.zw != nil {
		s.zw.CloseWithError(err)
	}
	if s.inHead {
		s.inHead = false
		close(s.ready)
	}
	if !f.closing.Load() && !s.gone {
		f.closed.Add(1)
	}
}

func (f *fleet) feed(s *stream, p []byte, now int64) {
	if s.inHead {
		s.head = append(s.head, p...)
		end := bytes.Index(s.head, []byte("\r\n\r\n"))
		if end < 0 {
			if len(s.head) > 16<<10 {
				s.inHead = false
				close(s.ready)
			}
			return
		}
		h := s.head[:end]
		s.ok = bytes.HasPrefix(h, []byte("HTTP/1.1 200")) || bytes.HasPrefix(h, []byte("HTTP/1.0 200"))
		lower := bytes.ToLower(h)
		s.chunked = bytes.Contains(lower, []byte("transfer-encoding: chunked"))
		if s.sink {
			s.inHead = false
			s.head = nil
			close(s.ready)
			return
		}
		switch gz := bytes.Contains(lower, []byte("content-encoding: gzip")); {
		case f.hop:
			pr, pw := io.Pipe()
			s.zw = pw
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				_ = f.inflate(s, pr, len(p), gz)
			}()
		case gz:
			s.inflating = true // read goes on in inflateHere
		}
		p = s.head[end+4:]
		s.head = nil
		s.inHead = false
		close(s.ready)
	}
	if !s.chunked {
		f.body(s, p, now)
		return
	}
	for len(p) > 0 {
		switch s.cstate {
		case csSize:
			c := p[0]
			p = p[1:]
			switch {
			case c >= '0' && c <= '9':
				s.csize = s.csize<<4 | uint64(c-'0')
			case c >= 'a' && c <= 'f':
				s.csize = s.csize<<4 | uint64(c-'a'+10)
			case c >= 'A' && c <= 'F':
				s.csize = s.csize<<4 | uint64(c-'A'+10)
			case c == '\n':
				f.endSizeLine(s)
			default:
				s.cstate = csSizeLine
			}
		case csSizeLine:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				return
			}
			p = p[i+1:]
			f.endSizeLine(s)
		case csData:
			k := min(uint64(len(p)), s.csize)
			f.body(s, p[:k], now)
			p = p[k:]
			s.csize -= k
			if s.csize == 0 {
				s.cstate = csDataEnd
			}
		case csDataEnd:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				return
			}
			p = p[i+1:]
			s.cstate = csSize
		case csEnd:
			return
		}
	}
}

func (f *fleet) endSizeLine(s *stream) {
	if s.csize > 0 {
		s.cstate = csData
		return
	}
	// The last chunk: the server ended the stream (and may keep the
	// connection open for another request). Count it and hang up.
	s.cstate = csEnd
	if !f.closing.Load() && !s.gone {
		f.closed.Add(1)
	}
	s.gone = true
	_ = s.c.Close()
}

// body takes bytes of the response body: scanned for stamps, kept for
// the stream's gzip decoder, or handed to its goroutine (-client-hop).
func (f *fleet) body(s *stream, p []byte, now int64) {
	switch {
	case s.inflating:
		s.pend = append(s.pend, p...)
	case s.zw != nil:
		if _, err := s.zw.Write(p); err != nil {
			s.zw = nil // the decoder failed: the stream counts what it got
		}
	default:
		f.scan(s, p, now)
	}
}

// inflateHere decodes the stream's gzipped body on its reader goroutine
// until the connection fails or ends, reading the socket as the decoder
// asks for more (bodyReader). It returns why it stopped.
func (f *fleet) inflateHere(s *stream, buf []byte) error {
	return f.inflate(s, &bodyReader{f: f, s: s, buf: buf}, len(buf), true)
}

// inflate decodes a gzipped body with the standard gzip reader (or takes
// an uncompressed one as it is), scanning what it decodes for stamps,
// received when decoded. Only its goroutine scans the stream from then
// on. It returns the error that ended the body.
func (f *fleet) inflate(s *stream, body io.Reader, bufSize int, gz bool) error {
	stop := func(err error) error {
		if pr, ok := body.(*io.PipeReader); ok {
			pr.CloseWithError(err)
		}
		return err
	}
	r := body
	if gz {
		zr, err := gzip.NewReader(body)
		if err != nil {
			return stop(err)
		}
		r = zr
	}
	buf := make([]byte, max(bufSize, 4096))
	for {
		n, err := r.Read(buf)
		if n > 0 {
			f.scan(s, buf[:n], time.Now().UnixNano())
		}
		if err != nil {
			return stop(err)
		}
	}
}

// bodyReader is a gzipped stream's body as its decoder reads it: the
// bytes feed set aside (s.pend), then more read from the socket and taken
// out of their HTTP chunks, counted as wire bytes as they come.
type bodyReader struct {
	f   *fleet
	s   *stream
	buf []byte
}

func (b *bodyReader) Read(p []byte) (int, error) {
	s := b.s
	for len(s.pend) == s.off {
		s.pend, s.off = s.pend[:0], 0
		if s.gone {
			return 0, io.EOF
		}
		n, err := s.c.Read(b.buf)
		if n > 0 {
			b.f.wire.Add(int64(n))
			b.f.feed(s, b.buf[:n], 0)
		}
		if err != nil && len(s.pend) == 0 {
			return 0, err
		}
	}
	n := copy(p, s.pend[s.off:])
	s.off += n
	return n, nil
}

// scan finds ^seq:ts^ stamps in body bytes, across read boundaries.
func (f *fleet) scan(s *stream, p []byte, now int64) {
	var n int64
	for len(p) > 0 {
		if s.sstate == ssOut {
			i := bytes.IndexByte(p, wire.Marker)
			if i < 0 {
				break
			}
			p = p[i+1:]
			s.sstate, s.seq = ssSeq, 0
			continue
		}
		c := p[0]
		p = p[1:]
		switch {
		case c >= '0' && c <= '9':
			if s.sstate == ssSeq {
				s.seq = s.seq*10 + uint64(c-'0')
			} else {
				s.ts = s.ts*10 + int64(c-'0')
			}
		case c == ':' && s.sstate == ssSeq:
			s.sstate, s.ts = ssTS, 0
		case c == wire.Marker && s.sstate == ssTS:
			s.sstate = ssOut
			if f.stamp(s, s.seq, s.ts, now) {
				n++
			}
		case c == wire.Marker:
			s.sstate, s.seq = ssSeq, 0
		default:
			s.sstate = ssOut
		}
	}
	if n > 0 {
		f.delivered.Add(n)
	}
}

func (f *fleet) stamp(s *stream, seq uint64, ts, now int64) bool {
	if seq < f.seqLo.Load() || seq >= f.seqHi.Load() {
		f.stray.Add(1)
		return false
	}
	if seq <= s.lastSeq && s.got.Load() > 0 {
		f.reorder.Add(1)
	}
	s.lastSeq = seq
	s.got.Add(1)
	s.lastRecv.Store(now)
	f.lat.record(s.id, now-ts)
	if f.nodeLat != nil {
		f.nodeLat[s.node].record(s.id, now-ts)
	}
	return true
}

// window starts a phase counting stamps seq0 <= seq < seq0+count.
func (f *fleet) window(seq0, count uint64) {
	f.seqHi.Store(0) // nothing counts while resetting
	f.lat.reset()
	for _, h := range f.nodeLat {
		h.reset()
	}
	f.delivered.Store(0)
	f.stray.Store(0)
	f.reorder.Store(0)
	for _, s := range f.conns {
		s.got.Store(0)
		s.lastRecv.Store(0)
	}
	f.seqLo.Store(seq0)
	f.seqHi.Store(seq0 + count)
}

// sampled counts the streams whose stamps are counted (not sinks).
func (f *fleet) sampled() int {
	n := 0
	for _, s := range f.conns {
		if !s.sink {
			n++
		}
	}
	return n
}

// lastReceive is the latest stamp receipt in the window, over all streams.
func (f *fleet) lastReceive() int64 {
	var last int64
	for _, s := range f.conns {
		last = max(last, s.lastRecv.Load())
	}
	return last
}

// short counts the streams that got fewer than want stamps in the window,
// and the stamps missing in all.
func (f *fleet) short(want uint32) (streams int, missing int64) {
	return f.shortOn(want, -1)
}

// shortOn is short for the streams on one node (all nodes if node < 0).
func (f *fleet) shortOn(want uint32, node int) (streams int, missing int64) {
	for _, s := range f.conns {
		if s.sink || node >= 0 && s.node != node {
			continue
		}
		if g := s.got.Load(); g < want {
			streams++
			missing += int64(want - g)
		}
	}
	return streams, missing
}

func (f *fleet) closeAll() {
	f.closing.Store(true)
	for _, s := range f.conns {
		_ = s.c.Close()
	}
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}
