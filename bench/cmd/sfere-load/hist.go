package main

import (
	"math/bits"
	"sync/atomic"
)

// hist is a log-linear latency histogram (128 buckets per power of two:
// under 0.8% error), sharded so that readers on different connections
// rarely touch the same cache lines. Recording is one atomic add.
type hist struct {
	shards [histShards]histShard
}

const (
	histShards  = 16
	histSubBits = 7
	histSub     = 1 << histSubBits
	histBuckets = (64 - histSubBits + 1) * histSub
)

type histShard struct {
	counts [histBuckets]atomic.Uint64
	max    atomic.Int64
	_      [64]byte
}

func histIndex(v int64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - histSubBits - 1
	return (e+1)*histSub + int(uint64(v)>>e) - histSub
}

// histValue is the middle of bucket i.
func histValue(i int) int64 {
	if i < histSub {
		return int64(i)
	}
	e := i/histSub - 1
	m := int64(i%histSub + histSub)
	return m<<e + (int64(1)<<e)/2
}

func (h *hist) record(shard int, v int64) {
	if v < 0 {
		v = 0
	}
	s := &h.shards[shard%histShards]
	s.counts[histIndex(v)].Add(1)
	for {
		m := s.max.Load()
		if v <= m || s.max.CompareAndSwap(m, v) {
			return
		}
	}
}

func (h *hist) reset() {
	for i := range h.shards {
		s := &h.shards[i]
		for j := range s.counts {
			s.counts[j].Store(0)
		}
		s.max.Store(0)
	}
}

// summary returns the count, the given quantiles (0..1) and the exact max.
func (h *hist) summary(qs ...float64) (n uint64, out []int64, max int64) {
	return mergedSummary([]*hist{h}, qs...)
}

// mergedSummary is summary over several histograms at once.
func mergedSummary(hs []*hist, qs ...float64) (n uint64, out []int64, max int64) {
	var merged [histBuckets]uint64
	for _, h := range hs {
		for i := range h.shards {
			s := &h.shards[i]
			for j := range s.counts {
				c := s.counts[j].Load()
				merged[j] += c
				n += c
			}
			if m := s.max.Load(); m > max {
				max = m
			}
		}
	}
	out = make([]int64, len(qs))
	if n == 0 {
		return 0, out, 0
	}
	for k, q := range qs {
		rank := uint64(q * float64(n))
		if rank >= n {
			rank = n - 1
		}
		var cum uint64
		for j, c := range merged {
			cum += c
			if cum > rank {
				out[k] = min(histValue(j), max)
				break
			}
		}
	}
	return n, out, max
}
