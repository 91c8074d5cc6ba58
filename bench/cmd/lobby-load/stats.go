package main

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Percentiles summarize samples (in the unit their field names say).
type Percentiles struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// percentiles sorts v and returns its summary (nearest rank).
func percentiles(v []float64) Percentiles {
	if len(v) == 0 {
		return Percentiles{}
	}
	slices.Sort(v)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(v)))) - 1
		return v[min(max(i, 0), len(v)-1)]
	}
	return Percentiles{Count: len(v), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: v[len(v)-1]}
}

func (p Percentiles) String() string {
	return fmt.Sprintf("p50 %.3g  p90 %.3g  p99 %.3g  max %.3g  (%d)", p.P50, p.P90, p.P99, p.Max, p.Count)
}

// tally counts errors by kind.
type tally struct {
	mu sync.Mutex
	m  map[string]int
}

func (t *tally) add(kind string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]int{}
	}
	t.m[kind]++
}

func (t *tally) total() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, c := range t.m {
		n += c
	}
	return n
}

// lines returns "count× kind" lines, most frequent first.
func (t *tally) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := slices.Collect(maps.Keys(t.m))
	slices.SortFunc(keys, func(a, b string) int { return t.m[b] - t.m[a] })
	var out []string
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%d× %s", t.m[k], k))
	}
	return out
}

// cpuTime is this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func seconds(d time.Duration) float64 { return d.Seconds() }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
