package sfere

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
)

func TestAcceptsGzip(t *testing.T) {
	for _, tc := range []struct {
		header []string
		want   bool
	}{
		{nil, false},
		{[]string{"gzip"}, true},
		{[]string{"gzip, deflate, br, zstd"}, true}, // Chromium's
		{[]string{"br", "GZIP;q=0.5"}, true},
		{[]string{"x-gzip"}, true},
		{[]string{"identity"}, false},
		{[]string{"gzip;q=0"}, false},
		{[]string{"gzip; q=0.0, identity"}, false},
		{[]string{"*"}, true},
		{[]string{"*;q=0"}, false},
		{[]string{"*, gzip;q=0"}, false},
		{[]string{"gzip;q=0, gzip"}, false}, // a refusal wins
		{[]string{"gzip;q=bad"}, true},      // a quality that does not parse is ignored
		{[]string{"gzipx, xgzip"}, false},
	} {
		r := &http.Request{Header: http.Header{"Accept-Encoding": tc.header}}
		if got := acceptsGzip(r); got != tc.want {
			t.Errorf("Accept-Encoding %q: accepts gzip %v, want %v", tc.header, got, tc.want)
		}
	}
}

// dialGzip opens a stream at /sse?id=id whose request accepts gzip (or
// says Accept-Encoding: accept, if not empty), decoding what it gets.
func dialGzip(t testing.TB, srv *httptest.Server, id, accept string, header http.Header, opts ...ssetest.Option) *ssetest.Client {
	t.Helper()
	req := ssetest.DatastarPost("/sse?id="+id, "{}")
	req.Header.Set("Accept-Encoding", accept)
	for name, v := range header {
		req.Header[name] = v
	}
	return ssetest.Open(t, srv.Listener.Addr().String(), req, append(opts, ssetest.Gunzip())...)
}

// Compression is negotiated per stream: the client that accepts gzip gets
// it, the others get the stream as they would without compression, and
// every response of a compressing hub varies with Accept-Encoding.
func TestCompressionNegotiated(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub := NewHub(NewMemoryStore(MemoryOptions{}), HubOptions{NoHijack: noHijack, Compression: &CompressionOptions{}})
		srv := testServer(t, hub, PatchElements(`<div id="page">hello</div>`))
		for _, tc := range []struct {
			accept, encoding string
		}{
			{"gzip, deflate, br, zstd", "gzip"},
			{"identity", ""},
			{"gzip;q=0, identity", ""},
		} {
			c := dialGzip(t, srv, "c"+tc.encoding, tc.accept, nil)
			head := c.WaitHead(waitLong)
			if got := head.Header.Get("Content-Encoding"); got != tc.encoding {
				t.Errorf("Accept-Encoding %q: Content-Encoding %q, want %q", tc.accept, got, tc.encoding)
			}
			if got := head.Header.Values("Vary"); !containsFold(got, "Accept-Encoding") {
				t.Errorf("Accept-Encoding %q: Vary %q, want Accept-Encoding", tc.accept, got)
			}
			c.Wait(waitLong, ssetest.Containing(`<div id="page">hello</div>`))
		}

		plain := NewHub(NewMemoryStore(MemoryOptions{}), HubOptions{NoHijack: noHijack})
		psrv := testServer(t, plain, PatchElements(`<div id="page">hello</div>`))
		c := dialGzip(t, psrv, "off", "gzip", nil)
		head := c.WaitHead(waitLong)
		if got := head.Header.Get("Content-Encoding"); got != "" {
			t.Errorf("hub without compression: Content-Encoding %q", got)
		}
		if got := head.Header.Values("Vary"); len(got) > 0 {
			t.Errorf("hub without compression: Vary %q", got)
		}
		c.Wait(waitLong, ssetest.Containing(`<div id="page">hello</div>`))
	})
}

func containsFold(values []string, want string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), want) {
				return true
			}
		}
	}
	return false
}

// twin is a compressed stream and an uncompressed one that the test
// treats alike: every broadcast reaches or skips both, every send goes to
// both. Their decoded events must be the same.
type twin struct {
	name       string
	zip, plain *ssetest.Client
	zkey, pkey Key
}

func openTwin(t *testing.T, srv *httptest.Server, name string, slow bool, lastEventID string) *twin {
	t.Helper()
	var opts []ssetest.Option
	if slow {
		// A small receive buffer read slowly: its queue grows.
		opts = append(opts, ssetest.RecvBuffer(2048), ssetest.SlowReads(256, time.Millisecond))
	}
	var header http.Header
	if lastEventID != "" {
		header = http.Header{"Last-Event-ID": {lastEventID}}
	}
	tw := &twin{
		name:  name,
		zip:   dialGzip(t, srv, "z-"+name, "gzip", header, opts...),
		plain: dialGzip(t, srv, "p-"+name, "", header, opts...),
		zkey:  lobbyKey("z-" + name),
		pkey:  lobbyKey("p-" + name),
	}
	if got := tw.zip.WaitHead(waitLong).Header.Get("Content-Encoding"); got != "gzip" {
		t.Fatalf("%s: Content-Encoding %q, want gzip", name, got)
	}
	return tw
}

func (tw *twin) keys() KeySet { return Keys(tw.zkey, tw.pkey) }

// check compares the twins' events, one by one; comments aside (a
// heartbeat comment is an empty block on a compressed stream).
func (tw *twin) check(t *testing.T) {
	t.Helper()
	z, p := events(tw.zip), events(tw.plain)
	if len(z) != len(p) {
		t.Errorf("%s: %d events compressed, %d uncompressed", tw.name, len(z), len(p))
	}
	for i := range min(len(z), len(p)) {
		if z[i] != p[i] {
			t.Errorf("%s: event %d compressed:\n%s\nuncompressed:\n%s", tw.name, i, z[i], p[i])
			return
		}
	}
}

// sentToB is what the test sends to each of twin b's streams: each send
// takes a position of its own, so the twins' ids differ there only.
const sentToB = `{"direct":"to b"}`

// events returns a client's events in wire form, comments left out, and
// the id of a send to b left out.
func events(c *ssetest.Client) []string {
	var out []string
	for _, e := range c.Events() {
		if e.IsComment {
			continue
		}
		if strings.Contains(e.Text(), sentToB) {
			e.ID, e.HasID = "", false
		}
		out = append(out, e.String())
	}
	return out
}

// settle waits until every stream of the twins, but those exclude
// matches, has seen an event containing text.
func settle(t *testing.T, all []*twin, exclude Matcher, text string) {
	t.Helper()
	for _, tw := range all {
		for _, c := range []*ssetest.Client{tw.zip, tw.plain} {
			if exclude == nil || !exclude.Match(tw.zkey) {
				c.WaitSeen(waitLong, ssetest.Containing(text))
			}
		}
	}
}

// chat is a lobby-like chat line, about 200 bytes once rendered.
func chat(i int) Effect {
	who := []string{"brian", "alice", "carol", "dave"}[i%4]
	return AppendElements("#messages", fmt.Sprintf(`<li id="m%d" class="message"><b class="who">%s</b> <span class="text">message number %d of the test</span> <time>12:%02d</time></li>`, i, who, i, i%60))
}

// Every compressed stream, decoded with a standard gzip reader, carries
// exactly the events of an uncompressed stream treated alike, whatever
// takes it out of its group: joining mid-group, an exclusion, a targeted
// send, a heartbeat (comment or visible), a slow reader, a replay after a
// reconnect; and its gzip member ends properly (trailer checked) when the
// stream is closed. The streams that share a group's output send a
// fraction of the uncompressed bytes.
func TestCompressedStreamsMatchPlain(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub := NewHub(NewMemoryStore(MemoryOptions{}), HubOptions{
			NoHijack:    noHijack,
			History:     HistoryOptions{Size: 1000},
			Compression: &CompressionOptions{JoinDelay: time.Nanosecond},
		})
		srv := testServer(t, hub, PatchElements(`<ul id="messages"></ul>`))
		lobby := InCategory("lobby")
		n := 0
		var all []*twin
		// broadcast sends count chat lines to the lobby, but for exclude,
		// and waits until every stream that was sent them has them all.
		// A lobby's broadcasts come spaced in time: here each one that
		// follows what took a stream out of its group's step comes after
		// that stream has written what it was sent, and so asked its
		// group to flush.
		broadcast := func(count int, exclude Matcher) {
			t.Helper()
			for range count {
				n++
				if _, err := hub.Broadcast(lobby, exclude, chat(n)); err != nil {
					t.Fatal(err)
				}
				if n%10 == 0 || count == 1 {
					settle(t, all, exclude, fmt.Sprintf(`id="m%d"`, n))
				}
			}
			settle(t, all, exclude, fmt.Sprintf(`id="m%d"`, n))
		}
		// opened waits until the twins' streams are stored: their client
		// has the initial effects, or the first replayed event.
		opened := func(first string, tws ...*twin) {
			t.Helper()
			for _, tw := range tws {
				tw.zip.WaitSeen(waitLong, ssetest.Containing(first))
				tw.plain.WaitSeen(waitLong, ssetest.Containing(first))
			}
		}
		const initial = `<ul id="messages"></ul>`

		a, b := openTwin(t, srv, "a", false, ""), openTwin(t, srv, "b", false, "")
		slow := openTwin(t, srv, "slow", true, "")
		all = []*twin{a, b, slow}
		opened(initial, a, b, slow)
		broadcast(30, nil)

		late := openTwin(t, srv, "late", false, "") // joins mid-group
		all = append(all, late)
		opened(initial, late)
		broadcast(30, nil)

		broadcast(3, a.keys()) // a is excluded
		broadcast(1, nil)
		for _, k := range []Key{b.zkey, b.pkey} {
			if _, err := hub.Send(k, PatchSignals([]byte(sentToB))); err != nil {
				t.Fatal(err)
			}
		}
		broadcast(1, nil)
		NewHeartbeat(hub, lobby, time.Hour).Beat()
		broadcast(1, nil)
		broadcast(10, nil)
		visible, err := NewVisibleHeartbeat(hub, lobby, time.Hour, "_beat")
		if err != nil {
			t.Fatal(err)
		}
		visible.Beat()
		broadcast(1, nil)
		broadcast(30, nil)

		// A reconnect that replays from the middle of what was sent.
		from := late.plain.WaitSeen(waitLong, ssetest.Containing(`id="m40"`))
		replayed := openTwin(t, srv, "replayed", false, from.ID)
		all = append(all, replayed)
		opened(`id="m41"`, replayed)
		broadcast(30, nil)

		if _, err := hub.Broadcast(lobby, nil, CloseStream()); err != nil {
			t.Fatal(err)
		}
		for _, tw := range all {
			for _, c := range []*ssetest.Client{tw.zip, tw.plain} {
				if err := c.End(waitLong); err != nil {
					t.Errorf("%s: %v", tw.name, err)
				}
			}
			tw.check(t)
		}
		if ev := replayed.zip.Events(); len(ev) == 0 || !strings.Contains(ev[0].Text(), "m41") {
			t.Errorf("replayed stream does not start with the event after m40: %v", ev[:min(len(ev), 1)])
		}
		// The group's bytes reached them: a stream that spent most of its
		// life in step with its group is sent a fraction of the bytes (the
		// replayed stream was sent most of its events alone, as stored
		// blocks, unless its replay began where a segment did).
		for _, tw := range []*twin{a, b, slow, late} {
			z, p := tw.zip.WireBytes(), tw.plain.WireBytes()
			t.Logf("%s: %d bytes compressed, %d uncompressed", tw.name, z, p)
			if z*3 > p {
				t.Errorf("%s: %d bytes compressed, %d uncompressed: want a third or less", tw.name, z, p)
			}
		}
	})
}

// A stream's gzip member decodes to exactly the data of the messages it
// was written, in order, whatever mix of group bytes and stored blocks
// they took: two groups broadcast to, full flushes, messages the stream
// skipped (as an excluded stream does), messages of its own and
// heartbeat comments. With one group at most, the two take its
// compressor in turn.
func TestGzipStreamDecodes(t *testing.T) {
	for _, maxGroups := range []int{16, 1} {
		t.Run(fmt.Sprint("groups-", maxGroups), func(t *testing.T) {
			testGzipStreamDecodes(t, CompressionOptions{FlushBytes: 4 << 10, JoinDelay: time.Nanosecond, MaxGroups: maxGroups})
		})
	}
}

func testGzipStreamDecodes(t *testing.T, opts CompressionOptions) {
	rng := rand.New(rand.NewPCG(1, 2))
	gs := newGroups(opts)
	beat := &message{data: []byte(": heartbeat\n\n"), idAt: -1, heartbeat: true}
	for round := range 8 {
		var (
			z       gzipStream
			wire    []byte
			want    []byte
			inGroup int
		)
		for i := range 400 {
			m, err := render([]Effect{chat(i)})
			if err != nil {
				t.Fatal(err)
			}
			switch k := rng.IntN(20); {
			case k < 14: // a broadcast to group 0 or 1
				now := time.Now()
				g := gs.lock(Pattern{Scope: Exactly(fmt.Sprint(k % 2))}, now)
				g.pack(m, &gs.opts, now)
				g.mu.Unlock()
				if rng.IntN(10) == 0 {
					continue // the stream was excluded
				}
			case k < 16:
				wire = z.appendMessages(wire, []*message{beat})
				continue
			}
			before := len(wire)
			wire = z.appendMessages(wire, []*message{m})
			want = append(want, m.data...)
			if m.packed != nil && bytes.Equal(wire[before:], m.packed.data) {
				inGroup++
			}
		}
		wire = z.appendTrailer(wire)
		zr, err := gzip.NewReader(bytes.NewReader(wire))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("round %d: decode: %v", round, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: decoded %d bytes, want %d", round, len(got), len(want))
		}
		if inGroup == 0 {
			t.Fatalf("round %d: no message was written in step with its group", round)
		}
	}
}

// Writing a group's bytes to a stream in step allocates nothing: the
// compressed bytes are shared, the CRC is updated in place.
func TestGzipGroupDeliveryAllocatesNothing(t *testing.T) {
	gs := newGroups(CompressionOptions{})
	msgs := make([]*message, 64)
	for i := range msgs {
		m, err := render([]Effect{chat(i)})
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		g := gs.lock(InCategory("lobby"), now)
		g.pack(m, &gs.opts, now)
		g.mu.Unlock()
		msgs[i] = m
	}
	var z gzipStream
	buf := make([]byte, 0, 64<<10)
	one := make([]*message, 1)
	allocs := testing.AllocsPerRun(50, func() {
		for _, m := range msgs {
			one[0] = m
			buf = z.appendMessages(buf[:0], one)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run of %d deliveries, want 0", allocs, len(msgs))
	}
	if z.group == nil || z.seq != uint64(len(msgs)) {
		t.Errorf("the stream is not in step with its group after its outputs: group %p, output %d", z.group, z.seq)
	}
}

// Broadcasts from several goroutines at once reach every stream in one
// order, compressed or not (the group's lock orders them), and every
// compressed stream decodes to the same events as the uncompressed one.
func TestCompressedConcurrentBroadcasts(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub := NewHub(NewMemoryStore(MemoryOptions{}), HubOptions{
			NoHijack:    noHijack,
			Compression: &CompressionOptions{FlushBytes: 8 << 10, JoinDelay: time.Millisecond},
		})
		srv := testServer(t, hub, PatchElements(`<ul id="messages"></ul>`))
		plain := dialGzip(t, srv, "plain", "", nil)
		var zipped []*ssetest.Client
		for i := range 3 {
			zipped = append(zipped, dialGzip(t, srv, fmt.Sprint("zip", i), "gzip", nil))
		}
		for _, c := range append(zipped, plain) {
			c.WaitSeen(waitLong, ssetest.Containing(`<ul id="messages"></ul>`))
		}
		const senders, each = 4, 50
		done := make(chan error, senders)
		for g := range senders {
			go func() {
				for i := range each {
					_, err := hub.Broadcast(InCategory("lobby"), nil, chat(g*each+i))
					if err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
		}
		for range senders {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range append(zipped, plain) {
			ssetest.Eventually(t, waitLong, "every event", func() bool { return len(events(c)) == 1+senders*each })
		}
		want := events(plain)
		for i, c := range zipped {
			if got := events(c); !slices.Equal(got, want) {
				t.Errorf("compressed stream %d: its events differ from the uncompressed stream's", i)
			}
		}
	})
}

// A group makes a full flush (a new segment, whose first output any
// stream may take) at its first output, once FlushBytes of input were
// compressed, and when a stream waits to join and JoinDelay has passed
// since the last one; not otherwise.
func TestGroupFullFlushes(t *testing.T) {
	opts := CompressionOptions{FlushBytes: 1000, JoinDelay: time.Second}.withDefaults()
	gs := newGroups(opts)
	t0 := time.Unix(1_700_000_000, 0)
	i := 0
	pack := func(at time.Duration) *packed {
		t.Helper()
		m, err := render([]Effect{chat(i)})
		if err != nil {
			t.Fatal(err)
		}
		i++
		g := gs.lock(All, t0.Add(at))
		defer g.mu.Unlock()
		g.pack(m, &gs.opts, t0.Add(at))
		return m.packed
	}
	want := func(p *packed, seg, seq uint64) {
		t.Helper()
		if p.seg != seg || p.seq != seq {
			t.Fatalf("output %d of segment %d, want %d of %d", p.seq, p.seg, seq, seg)
		}
	}
	want(pack(0), 1, 1)
	want(pack(time.Millisecond), 1, 2)
	g := gs.lock(All, t0)
	g.waiting.Store(true) // a stream fell out of step
	g.mu.Unlock()
	want(pack(500*time.Millisecond), 1, 3) // too soon after the last full flush
	want(pack(time.Second), 2, 1)          // JoinDelay passed: the stream may join here
	want(pack(1100*time.Millisecond), 2, 2)
	// No stream waits: only the input size makes the next one.
	seq := uint64(2)
	for p := pack(5 * time.Second); p.seg == 2; p = pack(5 * time.Second) {
		seq++
		want(p, 2, seq)
		if seq > 10 {
			t.Fatal("no full flush after FlushBytes of input")
		}
	}
}

// Past MaxGroups, the group used least recently is dropped and its
// compressor goes to the new group.
func TestGroupsBounded(t *testing.T) {
	gs := newGroups(CompressionOptions{MaxGroups: 2})
	t0 := time.Unix(1_700_000_000, 0)
	use := func(p Pattern, at time.Duration) *group {
		g := gs.lock(p, t0.Add(at))
		g.mu.Unlock()
		return g
	}
	a := use(InCategory("a"), 0)
	fw := a.fw
	use(InCategory("b"), time.Second)
	c := use(InCategory("c"), 2*time.Second)
	if len(gs.byPattern) != 2 {
		t.Fatalf("%d groups, want 2", len(gs.byPattern))
	}
	if c.fw != fw || a.fw != nil {
		t.Error("the new group did not take the compressor of the one used least recently")
	}
	if again := use(InCategory("a"), 3*time.Second); again == a || again.fw == nil {
		t.Error("a pattern whose group was dropped did not get a new one")
	}
}
