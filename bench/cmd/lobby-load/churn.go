package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sfere-go/sfere/bench/internal/host"
)

// ChurnResult is one churn run.
type ChurnResult struct {
	Churners    int        `json:"churners"`
	Chatters    int        `json:"chatters"`
	OfferedRate float64    `json:"offered_cycles_per_s"`
	ChatRate    float64    `json:"offered_chat_lines_per_s"`
	HoldS       [2]float64 `json:"hold_s"`
	WarmupS     float64    `json:"warmup_s"`
	DurationS   float64    `json:"measured_s"`
	Started     time.Time  `json:"started"`
	LoadAvg     string     `json:"loadavg_before"`
	LoadEnd     string     `json:"loadavg_after"`

	// Cycles is how many join → own arrival seen → leave cycles ended in
	// the measured window, AchievedRate that per second; Skipped counts
	// the pacer's turns in the window that found every churner busy.
	Cycles       int     `json:"cycles"`
	AchievedRate float64 `json:"achieved_cycles_per_s"`
	Skipped      int     `json:"skipped_turns"`
	Failed       int     `json:"failed_cycles"`
	// CycleArrivalMs: a churner's /join request until its stream showed
	// its own arrival, for the cycles of the window.
	CycleArrivalMs Percentiles `json:"cycle_arrival_ms"`

	// Chat lines said in the window, and their deliveries to the chatters'
	// streams (every chatter must get every line, its own included).
	Lines     int         `json:"lines"`
	Refused   int         `json:"lines_refused"`
	Expected  int64       `json:"expected"`
	Delivered int64       `json:"delivered"`
	Missing   int64       `json:"missing"`
	Delivery  Percentiles `json:"delivery_ms"`

	// Announced counts the churners' arrivals (each seen on the churner's
	// own stream); every chatter must have seen exactly one "joined" and,
	// after the churner's /leave, one "left" line for each (and for each
	// failed cycle whose arrival the lobby announced). JoinedLines and
	// LeftLines are the fewest and most such lines a chatter saw.
	Announced   int64    `json:"arrivals_announced"`
	JoinedLines [2]int64 `json:"joined_lines_min_max"`
	LeftLines   [2]int64 `json:"left_lines_min_max"`

	ClientCPUSec float64       `json:"client_cpu_s"`
	Net          host.Counters `json:"net"` // over the trial, machine-wide
	Server       Server        `json:"server"`
	Errors       []string      `json:"errors,omitempty"`
}

// chatter is a person who stays and chats; its stream's deliveries of the
// window's lines are counted and timed by its own reader.
type chatter struct {
	name      string
	sid       string
	arrived   chan struct{}
	delivered atomic.Int64
	lat       []float64 // ms; written by the reader only
	scan      *scanner  // counts the churners' "joined" and "left" lines
}

// runChurn runs the churn scenario: chatters who stay and chat, churners
// who come and go at cfg.rate cycles a second; every chatter must get
// every line and see each churner arrive and leave once.
func runChurn(cfg config, l *lobbyProc) ChurnResult {
	res := ChurnResult{
		Churners: cfg.churners, Chatters: cfg.chatters, OfferedRate: cfg.rate, ChatRate: cfg.chatRate,
		HoldS: [2]float64{cfg.hold[0].Seconds(), cfg.hold[1].Seconds()}, WarmupS: cfg.warmup.Seconds(), DurationS: cfg.duration.Seconds(),
		Started: time.Now().UTC(), LoadAvg: host.LoadAvg(),
	}
	// Everything below is bounded by this context; the phases end sooner.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute+cfg.warmup+cfg.duration)
	defer cancel()
	t := newChurnTrial(ctx, cfg, l)
	if !t.seatChatters() {
		res.Errors = t.errs.lines()
		t.end(cancel)
		return res
	}
	logf("churn: %d chatters in; churning", len(t.chatters))
	cpu0, srv0, net0 := cpuTime(), l.server(), host.Read()
	t.churnAndChat()
	res.Server = l.server()
	res.Server.CPUSec -= srv0.CPUSec
	res.LoadEnd = host.LoadAvg()
	res.Net = host.Read().Sub(net0)
	res.ClientCPUSec = seconds(cpuTime() - cpu0)

	// Let the cycles under way end and the last lines arrive (bounded).
	done := make(chan struct{})
	go func() { t.active.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.errs.add("cycles still under way a minute after the run")
	}
	t.sentMu.Lock()
	res.Lines, res.Refused = len(t.sent), t.refused
	t.sentMu.Unlock()
	res.Expected = int64(res.Lines) * int64(len(t.chatters))
	t.settle(&res)
	t.end(cancel)

	res.Cycles = int(t.cycles.Load())
	res.AchievedRate = float64(res.Cycles) / cfg.duration.Seconds()
	res.Skipped, res.Failed = int(t.skipped.Load()), int(t.failed.Load())
	res.CycleArrivalMs = percentiles(t.cycleArrival)
	var lat []float64
	for _, ch := range t.chatters {
		res.Delivered += ch.delivered.Load()
		lat = append(lat, ch.lat...)
	}
	res.Missing = res.Expected - res.Delivered
	res.Delivery = percentiles(lat)
	if res.Missing != 0 {
		t.errs.add(fmt.Sprintf("%d chat deliveries missing (or extra, if negative) of %d", res.Missing, res.Expected))
	}
	res.Errors = t.errs.lines()
	return res
}

// churnTrial is one churn run under way: its chatters and churners, and
// what they counted.
type churnTrial struct {
	cfg     config
	ctx     context.Context
	c       *client
	tag     string
	errs    tally
	readers sync.WaitGroup
	ending  atomic.Bool

	// The window: lines sent and cycles ended between from and to count.
	from, to atomic.Int64
	sentMu   sync.Mutex
	sent     map[uint64]int64 // seq -> send time, lines of the window that the lobby took
	refused  int              // lines of the window the lobby refused

	// Churners are named NNNN-cuTAG, so that the chatters can count their
	// system lines by a fixed pattern.
	joinedLine, leftLine []byte
	chatters             []*chatter

	cycles, skipped, failed atomic.Int64
	announced               atomic.Int64
	cycleMu                 sync.Mutex
	cycleArrival            []float64
	active                  sync.WaitGroup // cycles and chat lines under way
	idle                    chan int       // churners free for a cycle
}

func newChurnTrial(ctx context.Context, cfg config, l *lobbyProc) *churnTrial {
	t := &churnTrial{cfg: cfg, ctx: ctx, c: newClient(l.url, cfg.conc, time.Minute),
		tag: strconv.FormatInt(time.Now().UnixNano()%1e6, 36), sent: map[uint64]int64{}}
	t.from.Store(1 << 62)
	t.joinedLine = []byte("-cu" + t.tag + " joined the lobby<")
	t.leftLine = []byte("-cu" + t.tag + " left the lobby<")
	return t
}

func (t *churnTrial) inWindow(ts int64) bool { return ts >= t.from.Load() && ts < t.to.Load() }

// end stops the streams' readers and waits for them.
func (t *churnTrial) end(cancel context.CancelFunc) {
	t.ending.Store(true)
	cancel()
	t.readers.Wait()
}

// seatChatters has the chatters join, cfg.conc at a time, and waits for
// each to see its own arrival; it reports whether all did.
func (t *churnTrial) seatChatters() bool {
	cfg := t.cfg
	t.chatters = make([]*chatter, cfg.chatters)
	var setup sync.WaitGroup
	sem := make(chan struct{}, cfg.conc)
	for i := range t.chatters {
		ch := &chatter{name: fmt.Sprintf("ch%s-%03d", t.tag, i), arrived: make(chan struct{})}
		t.chatters[i] = ch
		ch.scan = newScanner(16<<10, [][]byte{[]byte(">" + ch.name + " joined the lobby<")},
			func(int, time.Time) { close(ch.arrived) },
			func(seq uint64, ts int64, at time.Time) {
				if t.inWindow(ts) {
					ch.delivered.Add(1)
					ch.lat = append(ch.lat, float64(at.UnixNano()-ts)/1e6)
				}
			})
		ch.scan.count(t.joinedLine, t.leftLine)
		setup.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			sid, err := t.c.join(t.ctx, ch.name)
			if err != nil {
				t.errs.add("chatter " + errKind(err))
				return
			}
			ch.sid = sid
			port := 0
			if cfg.srcPort > 0 {
				port = cfg.srcPort + i
			}
			body, err := t.c.openStream(t.ctx, sid, port)
			if err != nil {
				t.errs.add("chatter " + errKind(err))
				return
			}
			t.readers.Go(func() {
				defer body.Close()
				err := ch.scan.run(body)
				if !t.ending.Load() {
					t.errs.add("chatter stream ended before the trial did: " + errKind(err))
				}
			})
		})
	}
	setup.Wait()
	for _, ch := range t.chatters {
		select {
		case <-ch.arrived:
		case <-time.After(time.Minute):
			t.errs.add("a chatter did not see its own arrival within a minute")
		}
	}
	return t.errs.total() == 0
}

// churnAndChat runs the warm-up and the measured window: a pacer hands a
// cycle to an idle churner -rate times a second, another says a line
// -chat-rate times a second. It returns once both pacers stopped; cycles
// and lines may still be under way (t.active).
func (t *churnTrial) churnAndChat() {
	cfg := t.cfg
	t.idle = make(chan int, cfg.churners)
	for i := range cfg.churners {
		t.idle <- i
	}
	start := time.Now()
	t.from.Store(start.Add(cfg.warmup).UnixNano())
	t.to.Store(start.Add(cfg.warmup + cfg.duration).UnixNano())
	stopAt := start.Add(cfg.warmup + cfg.duration)
	// Each pacer wakes every 5 ms and starts what is due since start, so a
	// late wake-up (a busy machine) is made up for, not lost.
	pace := func(rate float64, fire func(now time.Time)) {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		fired := 0
		for now := range tick.C {
			if now.After(stopAt) {
				return
			}
			for due := int(now.Sub(start).Seconds() * rate); fired < due; fired++ {
				fire(now)
			}
		}
	}
	var pacers sync.WaitGroup
	pacers.Go(func() {
		pace(cfg.rate, func(now time.Time) {
			select {
			case i := <-t.idle:
				t.active.Go(func() { t.cycle(i) })
			default:
				if t.inWindow(now.UnixNano()) {
					t.skipped.Add(1)
				}
			}
		})
	})
	pacers.Go(func() {
		var seq uint64
		pace(cfg.chatRate, func(time.Time) {
			seq++
			s := seq
			t.active.Go(func() { t.chat(s) })
		})
	})
	for p := time.Now(); time.Now().Before(stopAt); {
		time.Sleep(100 * time.Millisecond)
		if cfg.progress && time.Since(p) >= 5*time.Second {
			p = time.Now()
			logf("churn: %.0f s, %d cycles in the window, %d failed, %d skipped", time.Since(start).Seconds(), t.cycles.Load(), t.failed.Load(), t.skipped.Load())
		}
	}
	pacers.Wait()
}

// cycle is one churner's cycle: a new browser session joins under the
// churner's name, opens its stream, sees its own arrival, stays a moment,
// and posts /leave; the cycle ends when the lobby has closed its stream.
func (t *churnTrial) cycle(i int) {
	defer func() { t.idle <- i }()
	ctx, c := t.ctx, t.c
	name := fmt.Sprintf("%04d-cu%s", i, t.tag)
	start := time.Now()
	sid, err := c.join(ctx, name)
	if err != nil {
		t.failed.Add(1)
		t.errs.add("churn " + errKind(err))
		time.Sleep(100 * time.Millisecond)
		return
	}
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	body, err := c.openStream(sctx, sid, 0)
	if err != nil {
		t.failed.Add(1)
		t.errs.add("churn " + errKind(err))
		_ = c.leave(ctx, sid) // free the name for the next cycle
		return
	}
	arrived, ended := make(chan time.Time, 1), make(chan struct{})
	t.readers.Go(func() {
		defer close(ended)
		defer body.Close()
		s := newScanner(16<<10, [][]byte{[]byte(">" + name + " joined the lobby<")},
			func(_ int, at time.Time) { arrived <- at }, nil)
		_ = s.run(body)
	})
	select {
	case at := <-arrived:
		t.announced.Add(1)
		t.cycleMu.Lock()
		if t.inWindow(at.UnixNano()) {
			t.cycleArrival = append(t.cycleArrival, ms(at.Sub(start)))
		}
		t.cycleMu.Unlock()
	case <-ended:
		t.failed.Add(1)
		t.errs.add("churn stream ended before it showed its own arrival")
		_ = c.leave(ctx, sid)
		return
	case <-time.After(30 * time.Second):
		t.failed.Add(1)
		t.errs.add("churn arrival not seen within 30 s")
		_ = c.leave(ctx, sid)
		return
	}
	hold := t.cfg.hold[0] + time.Duration(rand.Int64N(int64(t.cfg.hold[1]-t.cfg.hold[0])+1))
	select {
	case <-time.After(hold):
	case <-ctx.Done():
		return
	}
	if err := c.leave(ctx, sid); err != nil {
		t.failed.Add(1)
		t.errs.add("churn " + errKind(err))
		return
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.failed.Add(1)
		t.errs.add("churn stream still open 10 s after /leave")
		return
	}
	if t.inWindow(time.Now().UnixNano()) {
		t.cycles.Add(1)
	}
}

// chat says line seq: the chatters in turn, each line stamped with its
// sequence number and the time just before its POST.
func (t *churnTrial) chat(seq uint64) {
	ch := t.chatters[seq%uint64(len(t.chatters))]
	ts := time.Now().UnixNano()
	counted := t.inWindow(ts)
	if counted {
		t.sentMu.Lock()
		t.sent[seq] = ts
		t.sentMu.Unlock()
	}
	err := t.c.say(t.ctx, ch.sid, "^"+strconv.FormatUint(seq, 10)+":"+strconv.FormatInt(ts, 10)+"^")
	if err != nil && counted {
		t.sentMu.Lock()
		delete(t.sent, seq)
		t.refused++
		t.sentMu.Unlock()
		t.errs.add("chat " + errKind(err))
	}
}

// lines returns the fewest and most "joined" and "left" lines of
// churners a chatter saw.
func (t *churnTrial) lines() (joined, left [2]int64) {
	joined, left = [2]int64{1 << 62, 0}, [2]int64{1 << 62, 0}
	for _, ch := range t.chatters {
		j, l := ch.scan.counted[0].Load(), ch.scan.counted[1].Load()
		joined = [2]int64{min(joined[0], j), max(joined[1], j)}
		left = [2]int64{min(left[0], l), max(left[1], l)}
	}
	return joined, left
}

// settle waits (up to 10 s) for every expected delivery and for the
// chatters' counts of arrivals and departures to agree, and records them
// in res. Every chatter must see as many "joined" as "left" lines, the
// same number as every other chatter: the arrivals the churners saw, plus
// at most one for each failed cycle (whose arrival the lobby may have
// announced although its churner never saw it; the churner's /leave then
// makes it depart).
func (t *churnTrial) settle(res *ChurnResult) {
	total := func() int64 {
		var n int64
		for _, ch := range t.chatters {
			n += ch.delivered.Load()
		}
		return n
	}
	settled := func() bool {
		a, f := t.announced.Load(), t.failed.Load()
		j, l := t.lines()
		return j[0] == j[1] && l == j && j[0] >= a && j[0] <= a+f
	}
	for deadline := time.Now().Add(10 * time.Second); (total() < res.Expected || !settled()) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	res.Announced, res.Failed = t.announced.Load(), int(t.failed.Load())
	res.JoinedLines, res.LeftLines = t.lines()
	if !settled() {
		t.errs.add(fmt.Sprintf("churners saw %d arrivals (%d cycles failed), but the chatters saw %d–%d joined and %d–%d left lines of churners (want one number for both, from %d to %d)",
			res.Announced, res.Failed, res.JoinedLines[0], res.JoinedLines[1], res.LeftLines[0], res.LeftLines[1], res.Announced, res.Announced+int64(res.Failed)))
	}
}

func printChurn(r ChurnResult) {
	fmt.Printf("\nchurn: %d churners offered %.0f cycles/s, %d chatters saying %.0f lines/s, %.0f s measured after %.0f s warm-up\n",
		r.Churners, r.OfferedRate, r.Chatters, r.ChatRate, r.DurationS, r.WarmupS)
	fmt.Printf("  cycles: %d in the window = %.1f/s achieved; %d failed; %d turns skipped (every churner busy)\n", r.Cycles, r.AchievedRate, r.Failed, r.Skipped)
	fmt.Printf("  cycle: /join until own arrival shown, ms: %v\n", r.CycleArrivalMs)
	fmt.Printf("  chat: %d lines (%d refused), %d of %d deliveries, missing %d; delivery ms: %v\n", r.Lines, r.Refused, r.Delivered, r.Expected, r.Missing, r.Delivery)
	fmt.Printf("  churner arrivals announced: %d; every chatter saw %d–%d joined and %d–%d left lines of churners\n",
		r.Announced, r.JoinedLines[0], r.JoinedLines[1], r.LeftLines[0], r.LeftLines[1])
	fmt.Printf("  lobby CPU %.1f s, peak RSS %.0f MiB; tool CPU %.1f s; load before %s, after %s; softnet drops %d, TCP retransmissions %d\n", r.Server.CPUSec, r.Server.PeakRSSMiB, r.ClientCPUSec, r.LoadAvg, r.LoadEnd, r.Net.SoftnetDrops, r.Net.RetransSegs)
	for _, e := range r.Errors {
		fmt.Printf("  error: %s\n", e)
	}
}
