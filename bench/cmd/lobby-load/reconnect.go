package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sfere-go/sfere/bench/internal/host"
)

// ReconnectResult is one reconnect trial: N people join and hold a stream
// each while speakers chat; then every stream is broken at once and
// reconnects as the page's Datastar client does (see [runReconnect]).
type ReconnectResult struct {
	N        int       `json:"n"`
	Speakers int       `json:"speakers"`
	ChatRate float64   `json:"offered_chat_lines_per_s"`
	PreS     float64   `json:"pre_s"`  // chat before each break
	PostS    float64   `json:"post_s"` // chat after the last stream resumed, in the window
	Started  time.Time `json:"started"`
	LoadAvg  string    `json:"loadavg_before"`
	LoadEnd  string    `json:"loadavg_after"`

	Joined  int `json:"joined"`
	Arrived int `json:"arrived"` // saw their own arrival on their stream
	// AllInSec is the time the joins took, until the last person saw its
	// own arrival.
	AllInSec float64 `json:"all_in_s"`
	// Breaks: the storm with positions (Last-Event-ID), then, with
	// -contrast, the same storm without them.
	Breaks []BreakResult `json:"breaks"`

	ClientCPUSec float64  `json:"client_cpu_s"`
	Server       Server   `json:"server"` // the whole trial
	Errors       []string `json:"errors,omitempty"`
}

// BreakResult is one storm of reconnects: every stream broken at once.
type BreakResult struct {
	// Positions: the streams reconnected with Last-Event-ID set to the
	// last id they had read (false: without, as a contrast).
	Positions bool   `json:"positions"`
	LoadAvg   string `json:"loadavg_at_break"`
	Broken    int    `json:"broken"`
	// BreakMs: the loop that reset every connection; NoticedMs: from the
	// break until the last old stream's reader had seen its end (Go sends
	// the RST when the last user of the socket lets go of it: the reader).
	BreakMs   float64 `json:"break_ms"`
	NoticedMs float64 `json:"noticed_ms"`
	// Resumed counts the streams whose new connection delivered a live
	// line: one said after its reconnect request was sent (so, the order
	// checks passing, the replay of what it missed came before).
	Resumed int `json:"resumed"`
	// AllResumedSec: from the break (its first reset) until the last
	// stream resumed (0 if not all did); the target is 10 s.
	AllResumedSec float64 `json:"all_resumed_s"`
	// Resume: per stream, seconds from its own reset until it resumed
	// (Connect and Reopen too).
	Resume Percentiles `json:"resume_s"`
	// Connect: per stream, seconds from the break until its new TCP
	// connection was established; Reopen: until its new stream's response
	// headers arrived.
	Connect Percentiles `json:"connect_s"`
	Reopen  Percentiles `json:"reopen_s"`
	// RetryMs: the retry each stream had been sent (the wait before its
	// first reconnect attempt).
	RetryMs Percentiles `json:"retry_ms"`
	// Replayed: per stream, the lines its new stream delivered that were
	// said before the reconnect request (what it missed, replayed).
	Replayed Percentiles `json:"replayed_lines"`
	// Lists: per stream, how many participant lists (the snapshot of
	// everyone present, a patch of #participant-list) its new stream got.
	Lists Percentiles `json:"participant_lists"`
	// ReconnectFailures counts reconnect attempts that failed (each is
	// retried with Datastar's backoff).
	ReconnectFailures int `json:"reconnect_failures"`

	// The window: lines said from -pre before the break until -post after
	// the last stream resumed. Every accepted line of it must reach every
	// stream exactly once, in its speaker's order.
	WindowS   float64 `json:"window_s"`
	Lines     int     `json:"lines"`
	Refused   int     `json:"lines_refused"` // refused by the lobby or failed: not expected
	Expected  int64   `json:"expected"`      // lines × streams
	Delivered int64   `json:"delivered"`     // distinct lines delivered
	Lost      int64   `json:"lost"`
	// LostPerStream: lines of the window each stream never got (the
	// contrast's figure).
	LostPerStream Percentiles `json:"lost_per_stream"`
	StreamsLosing int         `json:"streams_losing"`
	// LostResumed: lines lost on the streams that resumed; Gaps: lost
	// lines that a later line of their speaker on the same stream came
	// after (a hole in what the stream delivered, which a replay must
	// never leave; the rest of Lost is the tail of streams that ended).
	LostResumed int64 `json:"lost_on_resumed"`
	Gaps        int64 `json:"gaps"`
	Doubled     int64 `json:"doubled"`      // deliveries beyond the first of a line
	OutOfOrder  int64 `json:"out_of_order"` // lines delivered after a later line of their speaker
	IDsBackward int64 `json:"ids_not_increasing"`
	// Streams that showed "could not be recovered", "left the lobby", or a
	// "joined the lobby" line after the break (the last is informative:
	// a person coming back within the grace is announced to no one).
	Unrecovered int `json:"streams_unrecovered"`
	LeftSeen    int `json:"streams_seeing_left"`
	JoinedSeen  int `json:"streams_seeing_joined"`
	// JoinAgain counts streams given the join form back ("… join again"):
	// the lobby no longer knew their session (its grace had run out).
	JoinAgain int `json:"streams_told_join_again"`
	// CutMidEvent counts streams broken after an event's id line but
	// before the event's end: Datastar takes the id when it reads the
	// line, so such a page asks to resume after an event it never applied.
	CutMidEvent int `json:"cut_mid_event"`

	// From the break until every stream resumed: CPU time, the stream
	// bytes the tool read (chunking decoded), network counters.
	LobbyCPUSec  float64       `json:"lobby_cpu_s"`
	ReadMiB      float64       `json:"read_mib"`
	ClientCPUSec float64       `json:"client_cpu_s"`
	Net          host.Counters `json:"net"`
	Errors       []string      `json:"errors,omitempty"`
}

// Marks the readers look for in data lines.
var (
	lobbyLine      = []byte(" the lobby<") // prefilter of the two below
	leftLine       = []byte(" left the lobby<")
	joinedLine     = []byte(" joined the lobby<")
	unrecoveredMsg = []byte("could not be recovered")
	listPatch      = []byte(`data: elements <ul id="participant-list">`)
	joinAgain      = []byte("join again") // the join form's notices: the lobby does not know the session
)

// rcPerson is one person of the reconnect trial: its session, its current
// stream and what its streams delivered. mu guards everything after it;
// the reader of the current stream writes, the trial reads.
type rcPerson struct {
	name        string
	sid, member string
	port        int
	arrivedMark []byte
	arrivedAt   atomic.Int64

	cur     atomic.Pointer[rcConn] // the current stream's connection
	brokeAt atomic.Int64           // unix nanos: just before the trial reset it

	mu       sync.Mutex
	lastID   string
	retry    time.Duration
	got      []uint8 // deliveries per line seq
	lastSeq  []int   // per speaker: the latest line seq delivered
	epoch    string
	offset   uint64
	part     uint64 // of the last id: its Part, or math.MaxUint64 for a message's last event
	idBack   int64
	outOrder int64
	unrecov  int
	left     int
	joined   int // "joined" lines seen after the break started
	again    int // join forms: the lobby no longer knew the session
	b        rcBreak
}

// rcConn is one stream's connection; broken says the trial broke it.
type rcConn struct {
	c      net.Conn
	broken atomic.Bool
}

// rcBreak is a person's part of the current break.
type rcBreak struct {
	at        int64 // unix nanos of the break (0: no break under way)
	connAt    int64 // the reconnect's TCP connection was established
	reqAt     int64 // the reconnect request was sent
	openAt    int64 // its response headers arrived
	resumedAt int64
	replayed  int
	retry     time.Duration
	mid       bool
	failures  int
	lists     int
}

// rcLines are the speakers' lines, by seq: when each was said (just before
// its POST) and what the lobby answered.
type rcLines struct {
	mu     sync.Mutex
	ts     []int64
	status []uint8
}

const (
	linePending uint8 = iota
	lineAccepted
	lineRefused
)

func (l *rcLines) said(seq int, ts int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.ts) <= seq {
		l.ts = append(l.ts, 0)
		l.status = append(l.status, linePending)
	}
	l.ts[seq] = ts
}

func (l *rcLines) answered(seq int, st uint8) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.status[seq] = st
}

// window returns the seqs of the accepted lines said in [from, to), the
// number refused or failed, and whether every line said before to has
// been answered.
func (l *rcLines) window(from, to int64) (seqs []int, refused int, settled bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	settled = true
	for s, ts := range l.ts {
		if ts == 0 || ts < from || ts >= to {
			continue
		}
		switch l.status[s] {
		case lineAccepted:
			seqs = append(seqs, s)
		case lineRefused:
			refused++
		default:
			settled = false
		}
	}
	return seqs, refused, settled
}

// rcTrial is the state shared by the trial's goroutines.
type rcTrial struct {
	cfg      config
	c        *client
	addr     string // host:port of the lobby
	ctx      context.Context
	people   []*rcPerson
	speakers int
	lines    rcLines
	errs     tally
	readers  sync.WaitGroup
	ending   atomic.Bool
	// positions: reconnects send Last-Event-ID (the current break's mode)
	positions atomic.Bool
	arrived   atomic.Int64
	bytesRead atomic.Int64 // stream bytes read
	noticed   atomic.Int64 // unix nanos: the latest reader that returned after the break
}

// runReconnect runs one reconnect trial against l with n people:
//
//  1. n people join and open a stream each (-conc at a time), and wait
//     until each has seen its own arrival;
//  2. -speakers of them chat, -chat-rate lines a second in all, each line
//     stamped ^seq:unixnano^ (each speaker sends its lines one after the
//     other, so its order is the lobby's order), until the end;
//  3. after -pre, every stream is broken at once from the client side;
//     each reconnects as the page's Datastar client does, after the retry
//     the lobby sent it, with Last-Event-ID set to the last id it read;
//  4. once every stream is live again (or -resume-timeout), -post more of
//     chat closes the window, and every line of it is checked on every
//     stream: exactly once, in order, nothing lost across the break;
//  5. with -contrast, steps 3 and 4 again without Last-Event-ID.
func runReconnect(cfg config, l *lobbyProc, n int) (res ReconnectResult) {
	res = ReconnectResult{N: n, Speakers: cfg.speakers, ChatRate: cfg.chatRate, PreS: cfg.pre.Seconds(), PostS: cfg.post.Seconds(),
		Started: time.Now().UTC(), LoadAvg: host.LoadAvg()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	u, err := url.Parse(l.url)
	if err != nil {
		res.Errors = []string{"lobby url: " + err.Error()}
		return res
	}
	t := &rcTrial{cfg: cfg, c: newClient(l.url, cfg.conc, cfg.timeout), addr: u.Host, ctx: ctx, speakers: min(cfg.speakers, n)}
	tag := strconv.FormatInt(time.Now().UnixNano()%1e6, 36)
	t.people = make([]*rcPerson, n)
	for i := range t.people {
		name := fmt.Sprintf("rc%s-%05d", tag, i)
		p := &rcPerson{name: name, arrivedMark: []byte(">" + name + " joined the lobby<"),
			lastSeq: make([]int, t.speakers)}
		for k := range p.lastSeq {
			p.lastSeq[k] = -1
		}
		if cfg.srcPort > 0 {
			p.port = cfg.srcPort + i
		}
		t.people[i] = p
	}
	cpu0, srv0 := cpuTime(), l.server()
	defer func() {
		res.Server = l.server()
		res.Server.CPUSec -= srv0.CPUSec
		res.ClientCPUSec = seconds(cpuTime() - cpu0)
		res.LoadEnd = host.LoadAvg()
		res.Errors = append(res.Errors, t.errs.lines()...)
		t.ending.Store(true)
		cancel()
		for _, p := range t.people {
			if rc := p.cur.Load(); rc != nil {
				_ = rc.c.Close()
			}
		}
		t.readers.Wait()
	}()

	// 1. Everyone joins and sees its own arrival.
	t0 := time.Now()
	jobs := make(chan *rcPerson)
	var workers sync.WaitGroup
	var joined atomic.Int64
	jctx, jcancel := context.WithTimeout(ctx, cfg.timeout)
	defer jcancel()
	for range cfg.conc {
		workers.Go(func() {
			for p := range jobs {
				sid, member, err := t.c.joinMember(jctx, p.name)
				if err != nil {
					t.errs.add(errKind(err))
					continue
				}
				p.sid, p.member = sid, member
				joined.Add(1)
				if err := t.open(jctx, p, ""); err != nil {
					t.errs.add(errKind(err))
				}
			}
		})
	}
	for _, p := range t.people {
		jobs <- p
	}
	close(jobs)
	workers.Wait()
	lastLog := time.Now()
	for t.arrived.Load() < int64(n) && jctx.Err() == nil && t.errs.total() == 0 {
		time.Sleep(10 * time.Millisecond)
		if cfg.progress && time.Since(lastLog) > 5*time.Second {
			lastLog = time.Now()
			logf("reconnect %d: joining, %d in", n, t.arrived.Load())
		}
	}
	res.Joined, res.Arrived = int(joined.Load()), int(t.arrived.Load())
	if res.Arrived < n {
		t.errs.add(fmt.Sprintf("%d of %d people saw their own arrival", res.Arrived, n))
		return res
	}
	res.AllInSec = time.Since(t0).Seconds()
	logf("reconnect %d: everyone in after %.1f s; %d speakers chat %.0f lines/s", n, res.AllInSec, t.speakers, cfg.chatRate)

	// 2. The chat, until the trial ends.
	stopChat := make(chan struct{})
	var chat sync.WaitGroup
	chatStart := time.Now()
	for k := range t.speakers {
		chat.Go(func() { t.speak(k, chatStart, stopChat) })
	}
	defer func() {
		close(stopChat)
		chat.Wait()
	}()

	// 3–5. The breaks.
	from := chatStart.UnixNano()
	modes := []bool{true}
	switch {
	case !cfg.positions:
		modes = []bool{false}
	case cfg.contrast:
		modes = append(modes, false)
	}
	for _, positions := range modes {
		time.Sleep(time.Until(time.Unix(0, from).Add(cfg.pre)))
		br, to := t.storm(l, positions, from)
		res.Breaks = append(res.Breaks, br)
		if br.AllResumedSec == 0 {
			break // the people are not all back: no second storm
		}
		from = to
	}
	return res
}

// speak says speaker k's lines (seq k, k+S, k+2S, …) at its share of the
// chat rate, one after the other, until stop.
func (t *rcTrial) speak(k int, start time.Time, stop <-chan struct{}) {
	p := t.people[k]
	interval := time.Duration(float64(t.speakers) / t.cfg.chatRate * float64(time.Second))
	next := start.Add(time.Duration(k) * interval / time.Duration(t.speakers))
	for j := 0; ; j++ {
		select {
		case <-stop:
			return
		case <-time.After(time.Until(next)):
		}
		// A late line (a slow answer) moves the schedule on rather than
		// bursting to catch up: the lobby limits each session's rate.
		if next = next.Add(interval); next.Before(time.Now()) {
			next = time.Now()
		}
		seq := j*t.speakers + k
		ts := time.Now().UnixNano()
		t.lines.said(seq, ts)
		ctx, cancel := context.WithTimeout(t.ctx, 30*time.Second)
		err := t.c.say(ctx, p.sid, "^"+strconv.Itoa(seq)+":"+strconv.FormatInt(ts, 10)+"^")
		cancel()
		if err != nil {
			t.lines.answered(seq, lineRefused)
			if !t.ending.Load() {
				t.errs.add("chat " + errKind(err))
			}
			continue
		}
		t.lines.answered(seq, lineAccepted)
	}
}

// open opens p's stream as the page does (POST /sse with its cookies, and
// Last-Event-ID if lastID is set) on a connection of its own, from p's
// port, and starts its reader. The connection is the tool's own (not an
// http.Transport's), so that the trial can break it.
func (t *rcTrial) open(ctx context.Context, p *rcPerson, lastID string) error {
	conn, err := dialer(withPort(ctx, p.port), "tcp", t.addr)
	if err != nil {
		return fmt.Errorf("/sse: %w", err)
	}
	connAt := time.Now().UnixNano()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+t.addr+"/sse", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Datastar-Request", "true")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: p.sid})
	if p.member != "" {
		req.AddCookie(&http.Cookie{Name: memberCookie, Value: p.member})
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	reqAt := time.Now().UnixNano()
	_ = conn.SetDeadline(time.Now().Add(t.cfg.timeout))
	br := bufio.NewReaderSize(conn, 16<<10)
	var resp *http.Response
	if err = req.Write(conn); err == nil {
		resp, err = http.ReadResponse(br, req)
	}
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("/sse: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		_ = conn.Close()
		return &statusError{route: "/sse", status: resp.StatusCode, msg: resp.Header.Get("X-Lobby-Error")}
	}
	_ = conn.SetDeadline(time.Time{})
	rc := &rcConn{c: conn}
	p.cur.Store(rc)
	p.mu.Lock()
	if p.b.at != 0 {
		p.b.connAt, p.b.reqAt, p.b.openAt = connAt, reqAt, time.Now().UnixNano()
	}
	p.mu.Unlock()
	t.readers.Go(func() {
		err := t.read(p, resp.Body, rc)
		_ = conn.Close()
		switch {
		case t.ending.Load():
		case rc.broken.Load():
			t.noticed.Store(max(t.noticed.Load(), time.Now().UnixNano())) // racy max: good enough for a spread
			t.readers.Go(func() { t.reconnect(p) })
		default:
			t.errs.add("stream ended before the trial did: " + errKind(err))
		}
	})
	return nil
}

// reconnect opens p's stream again as Datastar does after a network
// error: it waits the retry the lobby sent (1 s if none), then tries, and
// after each failed try waits twice as long (at most 30 s, 10 tries). A
// refusal (an HTTP error status) is final: Datastar does not retry it.
func (t *rcTrial) reconnect(p *rcPerson) {
	p.mu.Lock()
	wait, lastID := p.retry, p.lastID
	p.mu.Unlock()
	if wait <= 0 {
		wait = time.Second
	}
	if !t.positions.Load() {
		lastID = ""
	}
	for try := 0; try < 10; try++ {
		select {
		case <-time.After(wait):
		case <-t.ctx.Done():
			return
		}
		err := t.open(t.ctx, p, lastID)
		if err == nil || t.ending.Load() {
			return
		}
		t.errs.add("reconnect: " + errKind(err))
		p.mu.Lock()
		p.b.failures++
		p.mu.Unlock()
		if se := (*statusError)(nil); errors.As(err, &se) {
			return
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// read reads one stream of p as the Datastar client parses it: line by
// line, taking an id or retry field as soon as its line is read, and
// applying an event's data when the blank line that ends it arrives. The
// participant list (names only) is counted, not scanned; any other data
// line longer than the buffer is scanned in pieces for the lobby's system
// lines only (chat lines are short).
func (t *rcTrial) read(p *rcPerson, body io.Reader, rc *rcConn) error {
	br := bufio.NewReaderSize(body, 64<<10)
	var (
		long   bool // the line goes on (longer than the buffer)
		field  byte // the current line's field: 'd' data, 'o' other
		ev     rcEvent
		stamps [][2]int64
	)
	for {
		chunk, err := br.ReadSlice('\n')
		t.bytesRead.Add(int64(len(chunk)))
		if err != nil && err != bufio.ErrBufferFull {
			if rc.broken.Load() {
				p.mu.Lock()
				p.b.mid = ev.id != ""
				p.mu.Unlock()
			}
			return err // a partial line is never applied
		}
		complete := err == nil
		line := chunk
		if complete {
			line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		}
		if !long {
			switch {
			case complete && len(line) == 0:
				t.apply(p, &ev, stamps, time.Now())
				ev, stamps = rcEvent{}, stamps[:0]
				continue
			case bytes.HasPrefix(line, listPatch):
				field = 'o' // the participant list: names only, nothing to find
				ev.list = true
			case bytes.HasPrefix(line, []byte("data:")):
				field = 'd'
			case complete && bytes.HasPrefix(line, []byte("id:")):
				id := string(bytes.TrimPrefix(bytes.TrimPrefix(line, []byte("id:")), []byte(" ")))
				ev.id = id
				p.mu.Lock()
				p.lastID = id // Datastar sets Last-Event-ID as it reads the line
				p.mu.Unlock()
				field = 'o'
			case complete && bytes.HasPrefix(line, []byte("retry:")):
				if ms, err := strconv.Atoi(strings.TrimSpace(string(line[len("retry:"):]))); err == nil {
					p.mu.Lock()
					p.retry = time.Duration(ms) * time.Millisecond
					p.mu.Unlock()
				}
				field = 'o'
			default:
				field = 'o'
			}
		}
		long = !complete
		if field != 'd' {
			continue
		}
		// Marks may be split between two pieces of a long line: the
		// piece is searched with the end of the one before (marks are
		// flags, so finding one twice does no harm).
		if bytes.Contains(line, lobbyLine) || long || ev.carry != nil {
			hay := line
			if ev.carry != nil {
				hay = append(ev.carry, line...)
			}
			ev.left = ev.left || bytes.Contains(hay, leftLine)
			ev.joined = ev.joined || bytes.Contains(hay, joinedLine)
			ev.own = ev.own || bytes.Contains(hay, p.arrivedMark)
			ev.carry = nil
			if long {
				ev.carry = append([]byte(nil), line[max(0, len(line)-64):]...)
			}
		}
		ev.unrecov = ev.unrecov || bytes.Contains(line, unrecoveredMsg)
		ev.again = ev.again || bytes.Contains(line, joinAgain)
		if long {
			continue
		}
		for from := 0; ; {
			j := bytes.IndexByte(line[from:], '^')
			if j < 0 {
				break
			}
			seq, ts, end, ok := parseStamp(line[from+j:])
			if ok {
				stamps = append(stamps, [2]int64{int64(seq), ts})
				from += j + end
			} else {
				from += j + 1
			}
		}
	}
}

// parseID splits an event id, epoch-offset or epoch-offset.k (the k-th
// event of a message whose last event carries epoch-offset), into what
// orders ids on a stream: offset, then part, a message's last event
// (no part) after its other events.
func parseID(id string) (epoch string, offset, part uint64, ok bool) {
	i := strings.LastIndexByte(id, '-')
	if i <= 0 {
		return "", 0, 0, false
	}
	text, k, hasPart := strings.Cut(id[i+1:], ".")
	offset, err := strconv.ParseUint(text, 10, 64)
	if err != nil {
		return "", 0, 0, false
	}
	part = math.MaxUint64
	if hasPart {
		if part, err = strconv.ParseUint(k, 10, 64); err != nil {
			return "", 0, 0, false
		}
	}
	return id[:i], offset, part, true
}

// rcEvent is what one event of a stream carried.
type rcEvent struct {
	id                         string
	own, left, joined, unrecov bool
	list, again                bool
	carry                      []byte
}

// apply applies a whole event to p: its id, its chat lines, its marks.
func (t *rcTrial) apply(p *rcPerson, ev *rcEvent, stamps [][2]int64, now time.Time) {
	if ev.own && p.arrivedAt.Load() == 0 {
		p.arrivedAt.Store(now.UnixNano())
		t.arrived.Add(1)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if epoch, off, part, ok := parseID(ev.id); ok {
		if epoch == p.epoch && (off < p.offset || off == p.offset && part <= p.part) {
			p.idBack++
		}
		p.epoch, p.offset, p.part = epoch, off, part
	}
	if ev.unrecov {
		p.unrecov++
	}
	if ev.left {
		p.left++
	}
	if ev.joined && p.b.at != 0 {
		p.joined++
	}
	if ev.list && p.b.at != 0 {
		p.b.lists++
	}
	if ev.again {
		p.again++
	}
	for _, st := range stamps {
		seq, ts := int(st[0]), st[1]
		for len(p.got) <= seq {
			p.got = append(p.got, 0)
		}
		k := seq % len(p.lastSeq)
		if p.got[seq] == 0 && seq < p.lastSeq[k] {
			p.outOrder++
		}
		if p.got[seq] < 255 {
			p.got[seq]++
		}
		p.lastSeq[k] = max(p.lastSeq[k], seq)
		if p.b.reqAt != 0 && p.b.resumedAt == 0 {
			if ts > p.b.reqAt {
				p.b.resumedAt = now.UnixNano()
			} else {
				p.b.replayed++
			}
		}
	}
}

// storm breaks every stream at once, waits until all are live again, closes
// the window and checks it. from is the window's start.
func (t *rcTrial) storm(l *lobbyProc, positions bool, from int64) (BreakResult, int64) {
	n := len(t.people)
	res := BreakResult{Positions: positions, LoadAvg: host.LoadAvg()}
	t.positions.Store(positions)
	mode := "with positions"
	if !positions {
		mode = "without positions"
	}
	var errs0 = t.errs.total()
	srv0, cpu0, net0, read0 := l.server(), cpuTime(), host.Read(), t.bytesRead.Load()
	at := t.breakAll(&res)
	logf("reconnect %d: broke every stream in %v; reconnecting %s", n, time.Since(at).Round(time.Millisecond), mode)

	t.waitResumed(at)
	allAt := time.Now()
	srv := l.server()
	res.LobbyCPUSec = max(0, srv.CPUSec-srv0.CPUSec)
	if srv.Exited {
		t.errs.add(fmt.Sprintf("the lobby process died during the storm: %s", strings.Join(srv.Crash, " | ")))
	}
	res.ClientCPUSec = seconds(cpuTime() - cpu0)
	res.Net = host.Read().Sub(net0)
	res.ReadMiB = float64(t.bytesRead.Load()-read0) / (1 << 20)
	res.Resumed = t.resumed()
	if nt := t.noticed.Load(); nt != 0 {
		res.NoticedMs = float64(nt-at.UnixNano()) / 1e6
	}
	if res.Resumed == n {
		var last int64
		for _, p := range t.people {
			p.mu.Lock()
			last = max(last, p.b.resumedAt)
			p.mu.Unlock()
		}
		res.AllResumedSec = float64(last-at.UnixNano()) / 1e9
		logf("reconnect %d: all resumed %.2f s after the break", n, res.AllResumedSec)
	} else {
		t.errs.add(fmt.Sprintf("%s: %d of %d streams resumed within %v", mode, res.Resumed, n, t.cfg.resumeTimeout))
	}

	seqs, to := t.closeWindow(&res, allAt, from)
	t.checkStreams(&res, seqs)
	t.judge(&res, srv, errs0)
	return res, to
}

// breakAll breaks every stream at once and returns when the break began.
//
// The break: every connection reset at once, from the client side.
// An abortive close (SO_LINGER 0: the socket sends RST and is gone)
// models a network break better than a plain close. A break is what a
// proxy, NAT or load balancer dropping the connection does, or the
// client's OS tearing its sockets down on a network change: abortive,
// nothing more is delivered, no orderly FIN exchange as a closing tab
// makes (a plain close would also leave the client's end in
// TIME_WAIT, holding the fixed local port the reconnect binds again).
// The lobby sees either end at once, as a closed tab (not a vanished
// peer, which departs at once), so the person's grace starts at the
// break: the strictest case. A silent break (packets dropped, the
// lobby learns only from its heartbeat and TCP user timeout) would
// need nftables (root), as the lobby's vanished-peer tests use.
//
// Go resets the socket when its last user lets go of it: the reader
// goroutine, woken by Close. A busy tool spreads the resets over the
// loop's time (BreakMs); each stream is timed from its own reset.
// First each person's break state (under the locks the readers take),
// then the break itself, without a lock.
func (t *rcTrial) breakAll(res *BreakResult) time.Time {
	for _, p := range t.people {
		p.mu.Lock()
		p.b = rcBreak{at: 1, retry: p.retry}
		p.mu.Unlock()
	}
	t.noticed.Store(0)
	at := time.Now()
	for _, p := range t.people {
		rc := p.cur.Load()
		p.brokeAt.Store(time.Now().UnixNano())
		rc.broken.Store(true)
		if tc, ok := rc.c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = rc.c.Close()
	}
	res.Broken = len(t.people)
	res.BreakMs = ms(time.Since(at))
	for _, p := range t.people {
		p.mu.Lock()
		p.b.at = p.brokeAt.Load()
		p.mu.Unlock()
	}
	return at
}

// resumed counts the streams live again since the break.
func (t *rcTrial) resumed() int {
	k := 0
	for _, p := range t.people {
		p.mu.Lock()
		if p.b.resumedAt != 0 {
			k++
		}
		p.mu.Unlock()
	}
	return k
}

// waitResumed waits until every stream is live again, or -resume-timeout
// after the break at at.
func (t *rcTrial) waitResumed(at time.Time) {
	n := len(t.people)
	deadline := at.Add(t.cfg.resumeTimeout)
	lastLog := time.Now()
	for t.resumed() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		if t.cfg.progress && time.Since(lastLog) > 2*time.Second {
			lastLog = time.Now()
			logf("reconnect %d: %.0f s after the break, %d resumed", n, time.Since(at).Seconds(), t.resumed())
		}
	}
}

// closeWindow closes the window after -post more chat from allAt, and
// lets its lines arrive; it returns the window's lines and its end.
func (t *rcTrial) closeWindow(res *BreakResult, allAt time.Time, from int64) ([]int, int64) {
	time.Sleep(time.Until(allAt.Add(t.cfg.post)))
	to := time.Now().UnixNano()
	res.WindowS = float64(to-from) / 1e9
	var seqs []int
	for wait := time.Now().Add(30 * time.Second); ; {
		s, refused, settled := t.lines.window(from, to)
		seqs, res.Refused = s, refused
		if settled || time.Now().After(wait) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	res.Lines = len(seqs)
	if len(seqs) > 0 && res.Resumed == len(t.people) {
		// Lines of one speaker arrive in order: once every stream has the
		// window's last line of every speaker, no line of it is on its way.
		lastOf := make(map[int]int)
		for _, s := range seqs {
			lastOf[s%t.speakers] = s
		}
		for wait := time.Now().Add(30 * time.Second); time.Now().Before(wait); {
			all := true
			for _, p := range t.people {
				p.mu.Lock()
				for _, s := range lastOf {
					if s >= len(p.got) || p.got[s] == 0 {
						all = false
					}
				}
				p.mu.Unlock()
				if !all {
					break
				}
			}
			if all {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return seqs, to
}

// checkStreams checks the window's lines seqs on every stream, and
// resets each stream's break record.
func (t *rcTrial) checkStreams(res *BreakResult, seqs []int) {
	var resume, connect, reopen, retry, replayed, lost, lists []float64
	res.Expected = int64(len(seqs)) * int64(len(t.people))
	for _, p := range t.people {
		p.mu.Lock()
		var pl int64
		for _, s := range seqs {
			g := 0
			if s < len(p.got) {
				g = int(p.got[s])
			}
			if g == 0 {
				pl++
				if s < p.lastSeq[s%t.speakers] {
					res.Gaps++
				}
			} else {
				res.Delivered++
				res.Doubled += int64(g - 1)
			}
		}
		res.Lost += pl
		if p.b.resumedAt != 0 {
			res.LostResumed += pl
		}
		lost = append(lost, float64(pl))
		if pl > 0 {
			res.StreamsLosing++
		}
		res.OutOfOrder += p.outOrder
		res.IDsBackward += p.idBack
		p.outOrder, p.idBack = 0, 0
		if p.unrecov > 0 {
			res.Unrecovered++
		}
		if p.left > 0 {
			res.LeftSeen++
		}
		if p.joined > 0 {
			res.JoinedSeen++
		}
		if p.again > 0 {
			res.JoinAgain++
		}
		p.unrecov, p.left, p.joined, p.again = 0, 0, 0, 0
		b := p.b
		if b.resumedAt != 0 {
			resume = append(resume, float64(b.resumedAt-b.at)/1e9)
			replayed = append(replayed, float64(b.replayed))
			lists = append(lists, float64(b.lists))
		}
		if b.connAt != 0 {
			connect = append(connect, float64(b.connAt-b.at)/1e9)
		}
		if b.openAt != 0 {
			reopen = append(reopen, float64(b.openAt-b.at)/1e9)
		}
		retry = append(retry, ms(b.retry))
		if b.mid {
			res.CutMidEvent++
		}
		res.ReconnectFailures += b.failures
		p.b = rcBreak{}
		p.mu.Unlock()
	}
	res.Lists = percentiles(lists)
	res.Resume, res.Connect, res.Reopen, res.RetryMs, res.Replayed, res.LostPerStream =
		percentiles(resume), percentiles(connect), percentiles(reopen), percentiles(retry), percentiles(replayed), percentiles(lost)
}

// judge turns what the checks found into the break's errors.
func (t *rcTrial) judge(res *BreakResult, srv Server, errs0 int) {
	n := len(t.people)
	positions := res.Positions
	fail := func(format string, args ...any) { res.Errors = append(res.Errors, fmt.Sprintf(format, args...)) }
	if positions && res.Gaps > 0 {
		fail("%d lines missing between lines a stream delivered (gaps)", res.Gaps)
	}
	if positions && res.Lost > 0 {
		fail("%d lines lost on %d streams (of %d lines × %d streams)", res.Lost, res.StreamsLosing, res.Lines, n)
	}
	if res.Doubled > 0 {
		fail("%d lines delivered twice or more", res.Doubled)
	}
	if res.OutOfOrder > 0 {
		fail("%d lines delivered after a later line of their speaker", res.OutOfOrder)
	}
	if res.IDsBackward > 0 {
		fail("%d events whose id was not above the one before on the stream", res.IDsBackward)
	}
	if positions && res.Unrecovered > 0 {
		fail("%d streams were told that lines could not be recovered", res.Unrecovered)
	}
	if res.JoinAgain > 0 {
		fail("%d streams were given the join form back (the lobby no longer knew them)", res.JoinAgain)
	}
	if res.LeftSeen > 0 {
		fail("%d streams saw a \"left the lobby\" line", res.LeftSeen)
	}
	if res.Resumed < n {
		fail("%d of %d streams resumed", res.Resumed, n)
	}
	if srv.Exited {
		fail("the lobby process died (%s)", strings.Join(srv.Crash[:min(len(srv.Crash), 3)], " | "))
	}
	if res.Lines == 0 {
		fail("no chat line was said in the window")
	}
	if e := t.errs.total() - errs0; e > 0 {
		fail("%d errors during the storm (see the trial's errors)", e)
	}
}

func printReconnect(r ReconnectResult) {
	fmt.Printf("\nreconnect N=%d: %d joined, %d in after %.1f s; %d speakers at %.0f lines/s\n", r.N, r.Joined, r.Arrived, r.AllInSec, r.Speakers, r.ChatRate)
	for _, b := range r.Breaks {
		mode := "with positions (Last-Event-ID)"
		if !b.Positions {
			mode = "without positions"
		}
		fmt.Printf("  break %s, load %s: %d broken, %d resumed, all after %.2f s\n", mode, b.LoadAvg, b.Broken, b.Resumed, b.AllResumedSec)
		fmt.Printf("    break loop %.0f ms, every old reader done after %.0f ms\n", b.BreakMs, b.NoticedMs)
		fmt.Printf("    resume s:    %v\n", b.Resume)
		fmt.Printf("    connect s:   %v\n", b.Connect)
		fmt.Printf("    reopen s:    %v\n", b.Reopen)
		fmt.Printf("    retry ms:    %v\n", b.RetryMs)
		fmt.Printf("    replayed:    %v\n", b.Replayed)
		fmt.Printf("    lists:       %v\n", b.Lists)
		fmt.Printf("    window %.1f s: %d lines (%d refused), %d of %d delivered, lost %d on %d streams (%d on the resumed, %d in gaps; per stream %v), doubled %d, out of order %d, ids not increasing %d\n",
			b.WindowS, b.Lines, b.Refused, b.Delivered, b.Expected, b.Lost, b.StreamsLosing, b.LostResumed, b.Gaps, b.LostPerStream, b.Doubled, b.OutOfOrder, b.IDsBackward)
		fmt.Printf("    streams told unrecovered %d, told to join again %d, seeing left %d, seeing joined %d; cut mid-event %d; reconnect failures %d\n",
			b.Unrecovered, b.JoinAgain, b.LeftSeen, b.JoinedSeen, b.CutMidEvent, b.ReconnectFailures)
		fmt.Printf("    break → all resumed: lobby CPU %.2f s, tool CPU %.2f s, %.0f MiB read; softnet drops %d, TCP retransmissions %d (SYNs %d), listen overflows %d\n",
			b.LobbyCPUSec, b.ClientCPUSec, b.ReadMiB, b.Net.SoftnetDrops, b.Net.RetransSegs, b.Net.SynRetrans, b.Net.ListenOverflows)
		for _, e := range b.Errors {
			fmt.Printf("    violation: %s\n", e)
		}
	}
	fmt.Printf("  trial: lobby CPU %.1f s, peak RSS %.0f MiB; tool CPU %.1f s; load before %s, after %s\n", r.Server.CPUSec, r.Server.PeakRSSMiB, r.ClientCPUSec, r.LoadAvg, r.LoadEnd)
	for _, e := range r.Errors {
		fmt.Printf("  error: %s\n", e)
	}
}
