package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sfere-go/sfere/bench/internal/host"
)

// StormResult is one join storm.
type StormResult struct {
	N       int       `json:"n"`
	Conc    int       `json:"conc"`
	Started time.Time `json:"started"`
	LoadAvg string    `json:"loadavg_before"`
	LoadEnd string    `json:"loadavg_after"`

	Joined  int `json:"joined"`  // /join answered 200
	Streams int `json:"streams"` // /sse answered 200
	Arrived int `json:"arrived"` // saw their own arrival on their stream
	// AllInSec is the time from the storm's first request until the last
	// person saw its own arrival (0 if not everyone did).
	AllInSec float64 `json:"all_in_s"`
	// Arrival: per person, seconds from the storm's first request until
	// its stream showed its own "joined" line (the target).
	Arrival Percentiles `json:"arrival_since_storm_s"`
	// OwnWait: per person, seconds from its own /join request until then.
	OwnWait Percentiles `json:"arrival_since_own_join_s"`
	JoinMs  Percentiles `json:"join_answer_ms"`
	Chat    StormChat   `json:"chat"`

	ClientCPUSec float64       `json:"client_cpu_s"`
	Net          host.Counters `json:"net"` // over the trial, machine-wide
	Server       Server        `json:"server"`
	Errors       []string      `json:"errors,omitempty"`
}

// StormChat is the chat line said during the storm.
type StormChat struct {
	// SaidAtSec is when it was said, seconds after the storm's first
	// request; Present is how many people had seen their own arrival by
	// then (the ones that must receive it), Reached how many did.
	SaidAtSec float64 `json:"said_at_s"`
	Present   int     `json:"present"`
	Reached   int     `json:"reached"`
	// Delivery is milliseconds from just before the POST /message until
	// each present person's stream showed it.
	Delivery Percentiles `json:"delivery_ms"`
	PostMs   float64     `json:"post_answer_ms"`
}

// stormPerson is one person of the storm; the times are unix nanos, set
// once (0: not yet).
type stormPerson struct {
	name      string
	sid       string
	joinStart int64
	joinDone  int64
	arrived   atomic.Int64
	chat      atomic.Int64
}

// runStorm makes n people join l at once, cfg.conc requests in flight: each
// posts /join, then opens its stream (the /sse request counts as in flight
// until its headers arrive), then the next person's turn comes.
func runStorm(cfg config, l *lobbyProc, n int) StormResult {
	res := StormResult{N: n, Conc: cfg.conc, Started: time.Now().UTC(), LoadAvg: host.LoadAvg()}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	t := newStormTrial(ctx, cfg, l, n)
	cpu0, net0, srv0 := cpuTime(), host.Read(), l.server()
	t.startWorkers()
	go t.sayChatLine()
	t.t0 = time.Now()
	go func() {
		defer close(t.jobs)
		for i := range n {
			select {
			case t.jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	t.waitAllIn()
	res.Server = l.server()
	res.Server.CPUSec -= srv0.CPUSec
	res.LoadEnd = host.LoadAvg()
	res.Net = host.Read().Sub(net0)
	res.ClientCPUSec = seconds(cpuTime() - cpu0)

	t.ending.Store(true)
	cancel() // ends every stream
	t.workers.Wait()
	t.readers.Wait()
	<-t.chatDone
	t.results(&res)
	return res
}

// stormTrial is one join storm under way.
type stormTrial struct {
	cfg      config
	ctx      context.Context
	c        *client
	n        int
	people   []*stormPerson
	chatText string
	errs     tally
	joined   atomic.Int64
	streams  atomic.Int64
	arrived  atomic.Int64
	arrivals chan int // people who saw their own arrival, in turn
	readers  sync.WaitGroup
	ending   atomic.Bool
	jobs     chan int // the people whose turn came
	workers  sync.WaitGroup
	t0       time.Time // the storm's first request

	// The chat line: said by the first person in, once -chat-at of the
	// people are in, to everyone who is in at that moment.
	threshold   int
	chatSent    atomic.Int64 // unix nanos just before the POST
	chatPresent []int
	chatPostMs  float64
	chatDone    chan struct{}
}

func newStormTrial(ctx context.Context, cfg config, l *lobbyProc, n int) *stormTrial {
	tag := strconv.FormatInt(time.Now().UnixNano()%1e6, 36)
	t := &stormTrial{cfg: cfg, ctx: ctx, c: newClient(l.url, cfg.conc, cfg.timeout), n: n,
		people: make([]*stormPerson, n), chatText: "storm-chat-" + tag,
		arrivals: make(chan int, n), jobs: make(chan int), chatDone: make(chan struct{}),
		threshold: max(2, int(math.Ceil(cfg.chatAt*float64(n))))}
	for i := range t.people {
		t.people[i] = &stormPerson{name: fmt.Sprintf("st%s-%05d", tag, i)}
	}
	return t
}

// startWorkers starts cfg.conc workers that take the people from t.jobs:
// each joins, opens its stream and hands it to a reader.
func (t *stormTrial) startWorkers() {
	for range t.cfg.conc {
		t.workers.Go(func() {
			for i := range t.jobs {
				p := t.people[i]
				p.joinStart = time.Now().UnixNano()
				sid, err := t.c.join(t.ctx, p.name)
				p.joinDone = time.Now().UnixNano()
				if err != nil {
					t.errs.add(errKind(err))
					continue
				}
				p.sid = sid
				t.joined.Add(1)
				port := 0
				if t.cfg.srcPort > 0 {
					port = t.cfg.srcPort + i
				}
				body, err := t.c.openStream(t.ctx, sid, port)
				if err != nil {
					t.errs.add(errKind(err))
					continue
				}
				t.streams.Add(1)
				t.readers.Add(1)
				go t.read(i, body)
			}
		})
	}
}

// read reads person i's stream for its own arrival and the chat line.
func (t *stormTrial) read(i int, body io.ReadCloser) {
	defer t.readers.Done()
	defer body.Close()
	p := t.people[i]
	marks := [][]byte{[]byte(">" + p.name + " joined the lobby<"), []byte(t.chatText)}
	s := newScanner(16<<10, marks, func(m int, at time.Time) {
		switch m {
		case 0:
			p.arrived.Store(at.UnixNano())
			t.arrived.Add(1)
			t.arrivals <- i
		case 1:
			p.chat.Store(at.UnixNano())
		}
	}, nil)
	err := s.run(body)
	if !t.ending.Load() {
		t.errs.add("stream ended before the trial did: " + errKind(err))
	}
}

// sayChatLine counts the arrivals and has the first person in say the
// chat line once t.threshold people are in; it closes t.chatDone once
// everyone is in, the line said, or the trial's context is done.
func (t *stormTrial) sayChatLine() {
	defer close(t.chatDone)
	first, count := -1, 0
	for {
		select {
		case i := <-t.arrivals:
			count++
			if first < 0 {
				first = i
			}
		case <-t.ctx.Done():
			return
		}
		if count < t.threshold || t.chatSent.Load() != 0 {
			if count == t.n {
				return
			}
			continue
		}
		for j, p := range t.people {
			if p.arrived.Load() != 0 {
				t.chatPresent = append(t.chatPresent, j)
			}
		}
		start := time.Now()
		t.chatSent.Store(start.UnixNano())
		if err := t.c.say(t.ctx, t.people[first].sid, t.chatText); err != nil {
			t.errs.add("chat line: " + errKind(err))
		}
		t.chatPostMs = ms(time.Since(start))
		if count == t.n {
			return
		}
	}
}

// waitAllIn waits until everyone is in and everyone present got the chat
// line, or the timeout.
func (t *stormTrial) waitAllIn() {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	lastLog := time.Now()
	chatReached := func() bool {
		if t.chatSent.Load() == 0 {
			return t.n < t.threshold
		}
		for _, j := range t.chatPresent {
			if t.people[j].chat.Load() == 0 {
				return false
			}
		}
		return true
	}
	for {
		select {
		case <-t.ctx.Done():
			t.errs.add(fmt.Sprintf("timeout after %v: %d of %d people saw their own arrival", t.cfg.timeout, t.arrived.Load(), t.n))
			return
		case <-tick.C:
		}
		if t.arrived.Load() == int64(t.n) {
			<-t.chatDone
			if chatReached() {
				return
			}
		}
		if t.cfg.progress && time.Since(lastLog) > 5*time.Second {
			lastLog = time.Now()
			logf("storm %d: %.0f s, %d joined, %d streams, %d in", t.n, time.Since(t.t0).Seconds(), t.joined.Load(), t.streams.Load(), t.arrived.Load())
		}
	}
}

// results fills res with the counts, the times and the chat line's
// delivery, once the trial has ended.
func (t *stormTrial) results(res *StormResult) {
	res.Joined, res.Streams, res.Arrived = int(t.joined.Load()), int(t.streams.Load()), int(t.arrived.Load())
	var since, own, join []float64
	t0n := t.t0.UnixNano()
	for _, p := range t.people {
		if p.joinDone != 0 {
			join = append(join, float64(p.joinDone-p.joinStart)/1e6)
		}
		if a := p.arrived.Load(); a != 0 {
			since = append(since, float64(a-t0n)/1e9)
			own = append(own, float64(a-p.joinStart)/1e9)
		}
	}
	res.Arrival, res.OwnWait, res.JoinMs = percentiles(since), percentiles(own), percentiles(join)
	if res.Arrived == t.n {
		res.AllInSec = res.Arrival.Max
	}
	if sent := t.chatSent.Load(); sent != 0 {
		var d []float64
		for _, j := range t.chatPresent {
			if got := t.people[j].chat.Load(); got != 0 {
				d = append(d, float64(got-sent)/1e6)
			}
		}
		res.Chat = StormChat{SaidAtSec: float64(sent-t0n) / 1e9, Present: len(t.chatPresent), Reached: len(d), Delivery: percentiles(d), PostMs: t.chatPostMs}
		if len(d) < len(t.chatPresent) {
			t.errs.add(fmt.Sprintf("the chat line reached %d of the %d people present", len(d), len(t.chatPresent)))
		}
	} else if t.n >= t.threshold {
		t.errs.add("the chat line was never said")
	}
	res.Errors = t.errs.lines()
}

func printStorm(r StormResult) {
	fmt.Printf("\nstorm N=%d (%d in flight): %d joined, %d streams, %d saw their own arrival\n", r.N, r.Conc, r.Joined, r.Streams, r.Arrived)
	fmt.Printf("  arrival since the storm's first request, s: %v\n", r.Arrival)
	fmt.Printf("  arrival since the person's own /join, s:    %v\n", r.OwnWait)
	fmt.Printf("  /join answer, ms:                           %v\n", r.JoinMs)
	fmt.Printf("  chat line said at %.2f s to %d present: reached %d; delivery ms: %v\n", r.Chat.SaidAtSec, r.Chat.Present, r.Chat.Reached, r.Chat.Delivery)
	fmt.Printf("  lobby CPU %.1f s, peak RSS %.0f MiB; tool CPU %.1f s; load before %s, after %s; softnet drops %d, TCP retransmissions %d\n", r.Server.CPUSec, r.Server.PeakRSSMiB, r.ClientCPUSec, r.LoadAvg, r.LoadEnd, r.Net.SoftnetDrops, r.Net.RetransSegs)
	for _, e := range r.Errors {
		fmt.Printf("  error: %s\n", e)
	}
}
