package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sfere-go/sfere/bench/internal/history"
)

// The fault kinds (-faults).
const (
	faultKill     = "kill"      // kill -9 a lobby node, restart it after 0.5-3 s
	faultNATSWipe = "nats-wipe" // kill -9 a NATS server (half the time the event log's leader), restart it after 1-3 s with an empty store
	faultCut      = "cut"       // drop a lobby node's packets to and from NATS for 2-10 s
	faultDrop     = "drop"      // drop one person's packets for 1-10 s
	faultPause    = "pause"     // SIGSTOP a lobby node or NATS server for 1-5 s
	faultRolling  = "rolling"   // restart every lobby node in turn (SIGTERM, start, ready)
	faultStorm    = "storm"     // break every stream at once: every client retries
)

// allFaults are the kinds in cluster mode; singleFaults those that apply
// to one node without NATS.
var (
	allFaults    = []string{faultKill, faultNATSWipe, faultCut, faultDrop, faultPause, faultRolling, faultStorm}
	singleFaults = []string{faultKill, faultDrop, faultPause, faultRolling, faultStorm}
)

// packetFaults need nftables.
var packetFaults = map[string]bool{faultCut: true, faultDrop: true}

// fault is one planned fault.
type fault struct {
	kind, target   string
	offset, length time.Duration
}

// span is a random duration in [lo, hi).
func span(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}

// plan draws the schedule: from 3 s on, a fault every 1-6 s until the
// duration is over, each of a random kind on a random target. Faults
// overlap: a fault is not waited for before the next starts.
func plan(rng *rand.Rand, duration time.Duration, kinds []string, c *cluster, people []*person) []fault {
	var out []fault
	if len(kinds) == 0 {
		return nil
	}
	for at := 3 * time.Second; at < duration; at += span(rng, time.Second, 6*time.Second) {
		f := fault{kind: kinds[rng.IntN(len(kinds))], offset: at}
		node := c.nodes[rng.IntN(len(c.nodes))].name
		switch f.kind {
		case faultKill:
			f.target, f.length = node, span(rng, 500*time.Millisecond, 3*time.Second)
		case faultNATSWipe:
			// Half of them hit the server that leads the event log.
			f.target, f.length = c.nats[rng.IntN(len(c.nats))].name, span(rng, time.Second, 3*time.Second)
			if rng.IntN(2) == 0 {
				f.target = logHost
			}
		case faultCut:
			f.target, f.length = node, span(rng, 2*time.Second, 10*time.Second)
		case faultDrop:
			f.target, f.length = people[rng.IntN(len(people))].name, span(rng, time.Second, 10*time.Second)
		case faultPause:
			procs := []string{node}
			for _, s := range c.nats {
				procs = append(procs, s.name)
			}
			f.target, f.length = procs[rng.IntN(len(procs))], span(rng, time.Second, 5*time.Second)
		case faultRolling:
			f.target = "lobby"
		case faultStorm:
			f.target = "everyone"
		}
		out = append(out, f)
	}
	return out
}

// nemesis runs a schedule against the cluster and the people, recording
// each fault's start and end. Faults on the same thing do not overlap (a
// fault whose target is busy is skipped, and recorded so); in cluster mode
// at most one NATS server and one lobby node are down at a time: more
// would be an outage no design of three survives, not a fault.
type nemesis struct {
	c      *cluster
	people map[string]*person
	fw     *firewall
	log    *history.Log
	single bool

	mu   sync.Mutex
	busy map[string]bool
}

// lock takes every key, or none if one is busy.
func (n *nemesis) lock(keys ...string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, k := range keys {
		if n.busy[k] {
			return false
		}
	}
	for _, k := range keys {
		n.busy[k] = true
	}
	return true
}

func (n *nemesis) unlock(keys ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, k := range keys {
		delete(n.busy, k)
	}
}

// run carries out the schedule and returns when every fault has ended.
// Errors of a fault (a process that does not come back) are returned
// together; the schedule goes on.
func (n *nemesis) run(ctx context.Context, faults []fault) error {
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(faults))
	for _, f := range faults {
		select {
		case <-time.After(time.Until(start.Add(f.offset))):
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			if err := n.one(ctx, f); err != nil {
				errs <- fmt.Errorf("%s %s: %w", f.kind, f.target, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if len(all) > 0 {
		return fmt.Errorf("nemesis: %d faults failed, first: %w", len(all), all[0])
	}
	return nil
}

// keys are the locks a fault takes.
func (n *nemesis) keys(f fault) []string {
	switch f.kind {
	case faultNATSWipe:
		return []string{"nats"}
	case faultPause:
		if strings.HasPrefix(f.target, "nats") {
			return []string{"nats"}
		}
		return []string{f.target}
	case faultKill:
		if n.single {
			return []string{f.target}
		}
		return []string{f.target, "lobby-down"}
	case faultRolling:
		keys := []string{"lobby-down"}
		for _, node := range n.c.nodes {
			keys = append(keys, node.name)
		}
		return keys
	}
	return []string{f.kind + ":" + f.target}
}

func (n *nemesis) one(ctx context.Context, f fault) error {
	rec := history.Record{Kind: history.KindFault, Fault: f.kind, Target: f.target, Length: f.length}
	keys := n.keys(f)
	if !n.lock(keys...) {
		rec.Phase = "skipped"
		n.log.Add(rec)
		return nil
	}
	defer n.unlock(keys...)
	rec.Phase = history.PhaseStart
	n.log.Add(rec)
	err := n.inject(ctx, f)
	rec.Phase, rec.At = history.PhaseEnd, time.Time{}
	if err != nil {
		rec.Err = err.Error()
	}
	n.log.Add(rec)
	return err
}

func (n *nemesis) node(name string) *lobbyNode {
	for _, x := range n.c.nodes {
		if x.name == name {
			return x
		}
	}
	return nil
}

func (n *nemesis) proc(name string) *proc {
	if x := n.node(name); x != nil {
		return x.proc
	}
	for _, s := range n.c.nats {
		if s.name == name {
			return s.proc
		}
	}
	return nil
}

func chainName(kind, target string) string {
	return strings.NewReplacer("-", "_", ".", "_").Replace(kind + "_" + target)
}

// inject carries out one fault, to its end.
func (n *nemesis) inject(ctx context.Context, f fault) error {
	wait := func() { sleep(ctx, f.length) }
	// A fault's restarts use a context of their own: a campaign that is
	// stopping still brings its processes back for the quiet period.
	bg := context.WithoutCancel(ctx)
	switch f.kind {
	case faultKill:
		p := n.proc(f.target)
		p.kill()
		wait()
		return p.start(bg)
	case faultNATSWipe:
		if f.target == logHost {
			s := n.c.logLeader(ctx)
			if s == nil {
				return errors.New("no NATS server leads the event log")
			}
			n.log.Add(history.Record{Kind: history.KindFault, Fault: f.kind, Target: s.name, Phase: "resolved"})
			f.target = s.name
		}
		for _, s := range n.c.nats {
			if s.name == f.target {
				s.kill()
				if err := s.wipeStore(); err != nil {
					return err
				}
				wait()
				return s.start(bg)
			}
		}
	case faultCut:
		set := portSet(n.node(f.target).natsPorts)
		chain := chainName(f.kind, f.target)
		if err := n.fw.block(chain, "tcp dport "+set, "tcp sport "+set); err != nil {
			return err
		}
		wait()
		return n.fw.unblock(chain)
	case faultDrop:
		ip := n.people[f.target].ip.String()
		chain := chainName(f.kind, f.target)
		if err := n.fw.block(chain, "ip saddr "+ip, "ip daddr "+ip); err != nil {
			return err
		}
		wait()
		return n.fw.unblock(chain)
	case faultPause:
		p := n.proc(f.target)
		if err := p.signal(syscall.SIGSTOP); err != nil {
			return err
		}
		wait()
		return p.signal(syscall.SIGCONT)
	case faultRolling:
		for _, node := range n.c.nodes {
			node.stop(syscall.SIGTERM, 10*time.Second)
			if err := node.start(bg); err != nil {
				return err
			}
			sleep(ctx, time.Second)
		}
		return nil
	case faultStorm:
		for _, p := range n.people {
			p.storm()
		}
		return nil
	}
	return fmt.Errorf("unknown fault %q", f.kind)
}
