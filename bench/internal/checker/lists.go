package checker

import (
	"slices"

	"github.com/sfere-go/sfere/bench/internal/history"
)

// finalLists compares every page's final participant list with who is
// really there.
func (c *check) finalLists() {
	truth := slices.Sorted(slices.Values(c.truth))
	c.r.Lists.Truth = truth
	for _, p := range c.order {
		if !p.hasFinal {
			continue
		}
		c.r.Lists.Pages++
		got := slices.Sorted(slices.Values(p.final))
		if !c.haveTru || !slices.Equal(got, truth) {
			c.finding(&c.r.Lists.Wrong, "page %s ends with list %v, but %v are there", p.key, got, truth)
		}
	}
}

// Slack of the process check: a process has come back when its goroutines
// are at most procGoroutineSlack above its baseline's (plus a fifth) and its
// resident memory at most twice its baseline's plus procRSSSlack.
const (
	procGoroutineSlack = 20
	procRSSSlack       = 64 << 20
)

// procBack reports whether a process came back to its baseline.
func procBack(base, final history.Record) bool {
	return final.Goroutines <= base.Goroutines+base.Goroutines/5+procGoroutineSlack &&
		final.RSS <= 2*base.RSS+procRSSSlack
}

// procs pairs each process's baseline with its final sample (the same
// target and PID: a process restarted meanwhile has no baseline to compare).
func (c *check) procs() {
	type id struct {
		target string
		pid    int
	}
	base := make(map[id]history.Record)
	for _, rec := range c.recs {
		if rec.Kind != history.KindProc {
			continue
		}
		k := id{rec.Target, rec.PID}
		switch rec.Phase {
		case history.PhaseBaseline:
			base[k] = rec
		case history.PhaseFinal:
			b, ok := base[k]
			if !ok {
				c.r.Procs = append(c.r.Procs, Proc{Target: rec.Target, PID: rec.PID, FinalRSS: rec.RSS,
					FinalGoroutine: rec.Goroutines, Restarted: true})
				continue
			}
			pr := Proc{Target: rec.Target, PID: rec.PID, BaseRSS: b.RSS, FinalRSS: rec.RSS,
				BaseGoroutines: b.Goroutines, FinalGoroutine: rec.Goroutines, NotBack: !procBack(b, rec)}
			if pr.NotBack {
				var n int
				c.finding(&n, "%s (pid %d) did not come back: %d goroutines (baseline %d), RSS %d MiB (baseline %d MiB)",
					rec.Target, rec.PID, rec.Goroutines, b.Goroutines, rec.RSS>>20, b.RSS>>20)
			}
			c.r.Procs = append(c.r.Procs, pr)
		}
	}
}
