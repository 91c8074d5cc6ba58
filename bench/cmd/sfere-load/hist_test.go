package main

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestHistIndexRoundTrip(t *testing.T) {
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1000, 12345, 1e6, 1e9, 3e10, 1 << 50} {
		got := histValue(histIndex(v))
		if d := float64(got-v) / float64(max(v, 1)); d > 0.01 || d < -0.01 {
			t.Errorf("v=%d: bucket value %d (%.2f%% off)", v, got, 100*d)
		}
	}
}

func TestHistQuantilesMatchSorted(t *testing.T) {
	var h hist
	vals := make([]int64, 100_000)
	for i := range vals {
		vals[i] = rand.Int64N(500_000_000)
		h.record(i, vals[i])
	}
	slices.Sort(vals)
	n, qs, max := h.summary(0.5, 0.99)
	if n != uint64(len(vals)) || max != vals[len(vals)-1] {
		t.Fatalf("n=%d max=%d", n, max)
	}
	for i, q := range []float64{0.5, 0.99} {
		want := vals[int(q*float64(len(vals)))]
		if d := float64(qs[i]-want) / float64(want); d > 0.01 || d < -0.01 {
			t.Errorf("q%.2f = %d, want ~%d", q, qs[i], want)
		}
	}
}
