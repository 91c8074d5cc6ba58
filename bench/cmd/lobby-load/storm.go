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
	c := newClient(l.url, cfg.conc, cfg.timeout)
	tag := strconv.FormatInt(time.Now().UnixNano()%1e6, 36)
	chatText := "storm-chat-" + tag
	people := make([]*stormPerson, n)
	for i := range people {
		people[i] = &stormPerson{name: fmt.Sprintf("st%s-%05d", tag, i)}
	}
	var (
		errs     tally
		joined   atomic.Int64
		streams  atomic.Int64
		arrived  atomic.Int64
		arrivals = make(chan int, n)
		readers  sync.WaitGroup
		ending   atomic.Bool
		cpu0     = cpuTime()
		net0     = host.Read()
		srv0     = l.server()
		jobs     = make(chan int)
		workers  sync.WaitGroup
		t0       time.Time
	)
	read := func(i int, body io.ReadCloser) {
		defer readers.Done()
		defer body.Close()
		p := people[i]
		marks := [][]byte{[]byte(">" + p.name + " joined the lobby<"), []byte(chatText)}
		s := newScanner(16<<10, marks, func(m int, at time.Time) {
			switch m {
			case 0:
				p.arrived.Store(at.UnixNano())
				arrived.Add(1)
				arrivals <- i
			case 1:
				p.chat.Store(at.UnixNano())
			}
		}, nil)
		err := s.run(body)
		if !ending.Load() {
			errs.add("stream ended before the trial did: " + errKind(err))
		}
	}
	for range cfg.conc {
		workers.Go(func() {
			for i := range jobs {
				p := people[i]
				p.joinStart = time.Now().UnixNano()
				sid, err := c.join(ctx, p.name)
				p.joinDone = time.Now().UnixNano()
				if err != nil {
					errs.add(errKind(err))
					continue
				}
				p.sid = sid
				joined.Add(1)
				port := 0
				if cfg.srcPort > 0 {
					port = cfg.srcPort + i
				}
				body, err := c.openStream(ctx, sid, port)
				if err != nil {
					errs.add(errKind(err))
					continue
				}
				streams.Add(1)
				readers.Add(1)
				go read(i, body)
			}
		})
	}

	// The chat line: said by the first person in, once -chat-at of the
	// people are in, to everyone who is in at that moment.
	var (
		chatSent    atomic.Int64 // unix nanos just before the POST
		chatPresent []int
		chatPostMs  float64
		chatDone    = make(chan struct{})
	)
	threshold := max(2, int(math.Ceil(cfg.chatAt*float64(n))))
	go func() {
		defer close(chatDone)
		first, count := -1, 0
		for {
			select {
			case i := <-arrivals:
				count++
				if first < 0 {
					first = i
				}
			case <-ctx.Done():
				return
			}
			if count < threshold || chatSent.Load() != 0 {
				if count == n {
					return
				}
				continue
			}
			for j, p := range people {
				if p.arrived.Load() != 0 {
					chatPresent = append(chatPresent, j)
				}
			}
			start := time.Now()
			chatSent.Store(start.UnixNano())
			if err := c.say(ctx, people[first].sid, chatText); err != nil {
				errs.add("chat line: " + errKind(err))
			}
			chatPostMs = ms(time.Since(start))
			if count == n {
				return
			}
		}
	}()

	t0 = time.Now()
	go func() {
		defer close(jobs)
		for i := range n {
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()

	// Wait until everyone is in and everyone present got the chat line, or
	// the timeout.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	lastLog := time.Now()
	chatReached := func() bool {
		if chatSent.Load() == 0 {
			return n < threshold
		}
		for _, j := range chatPresent {
			if people[j].chat.Load() == 0 {
				return false
			}
		}
		return true
	}
wait:
	for {
		select {
		case <-ctx.Done():
			errs.add(fmt.Sprintf("timeout after %v: %d of %d people saw their own arrival", cfg.timeout, arrived.Load(), n))
			break wait
		case <-tick.C:
		}
		if arrived.Load() == int64(n) {
			<-chatDone
			if chatReached() {
				break wait
			}
		}
		if cfg.progress && time.Since(lastLog) > 5*time.Second {
			lastLog = time.Now()
			logf("storm %d: %.0f s, %d joined, %d streams, %d in", n, time.Since(t0).Seconds(), joined.Load(), streams.Load(), arrived.Load())
		}
	}
	res.Server = l.server()
	res.Server.CPUSec -= srv0.CPUSec
	res.LoadEnd = host.LoadAvg()
	res.Net = host.Read().Sub(net0)
	res.ClientCPUSec = seconds(cpuTime() - cpu0)

	ending.Store(true)
	cancel() // ends every stream
	workers.Wait()
	readers.Wait()
	<-chatDone

	res.Joined, res.Streams, res.Arrived = int(joined.Load()), int(streams.Load()), int(arrived.Load())
	var since, own, join []float64
	t0n := t0.UnixNano()
	for _, p := range people {
		if p.joinDone != 0 {
			join = append(join, float64(p.joinDone-p.joinStart)/1e6)
		}
		if a := p.arrived.Load(); a != 0 {
			since = append(since, float64(a-t0n)/1e9)
			own = append(own, float64(a-p.joinStart)/1e9)
		}
	}
	res.Arrival, res.OwnWait, res.JoinMs = percentiles(since), percentiles(own), percentiles(join)
	if res.Arrived == n {
		res.AllInSec = res.Arrival.Max
	}
	if sent := chatSent.Load(); sent != 0 {
		var d []float64
		for _, j := range chatPresent {
			if got := people[j].chat.Load(); got != 0 {
				d = append(d, float64(got-sent)/1e6)
			}
		}
		res.Chat = StormChat{SaidAtSec: float64(sent-t0n) / 1e9, Present: len(chatPresent), Reached: len(d), Delivery: percentiles(d), PostMs: chatPostMs}
		if len(d) < len(chatPresent) {
			errs.add(fmt.Sprintf("the chat line reached %d of the %d people present", len(d), len(chatPresent)))
		}
	} else if n >= threshold {
		errs.add("the chat line was never said")
	}
	res.Errors = errs.lines()
	return res
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
