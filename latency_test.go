package sfere

import (
	"net/http"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
)

// Every latency falls in a bucket whose bounds hold it, and the buckets
// are within a quarter of their lower bound from 1 µs up.
func TestLatencyBucketsHoldTheirLatencies(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 255, 256, 1023, 1024, 1500, 10 * time.Microsecond,
		123456789, time.Second, 59 * time.Minute, 70 * time.Minute, 100 * time.Hour} {
		b := latencyBucket(d)
		if b < 0 || b >= latencyBuckets {
			t.Fatalf("bucket of %v = %d, out of range", d, b)
		}
		lower := time.Duration(0)
		if b > 0 {
			lower = latencyUpper(b - 1)
		}
		if d < lower {
			t.Errorf("%v in bucket %d, which starts at %v", d, b, lower)
		}
		if b < latencyBuckets-1 && d >= latencyUpper(b) {
			t.Errorf("%v in bucket %d, which ends at %v", d, b, latencyUpper(b))
		}
		if b < latencyBuckets-1 && d >= time.Microsecond && float64(latencyUpper(b)) > 1.25*float64(d)+1 {
			t.Errorf("%v: bucket %d ends at %v, more than a quarter above", d, b, latencyUpper(b))
		}
	}
	for b := 1; b < latencyBuckets-1; b++ {
		if latencyUpper(b) <= latencyUpper(b-1) {
			t.Fatalf("bucket %d ends at %v, not after bucket %d (%v)", b, latencyUpper(b), b-1, latencyUpper(b-1))
		}
	}
}

// Quantiles give the upper edge of the bucket holding their rank, and a
// difference of two readings holds what came between them.
func TestLatencyQuantiles(t *testing.T) {
	var c latencyCounts
	record := func(d time.Duration, n int) {
		for range n {
			c.counts[latencyBucket(d)].Add(1)
		}
	}
	record(10*time.Microsecond, 90)
	record(time.Millisecond, 9)
	before := c.read()
	record(time.Second, 1)
	l := c.read()
	if l.Count() != 100 {
		t.Fatalf("count %d, want 100", l.Count())
	}
	for _, tc := range []struct {
		q       float64
		atLeast time.Duration
	}{{0.5, 10 * time.Microsecond}, {0.9, 10 * time.Microsecond}, {0.91, time.Millisecond}, {0.99, time.Millisecond}, {1, time.Second}} {
		got := l.Quantile(tc.q)
		if got <= tc.atLeast || float64(got) > 1.25*float64(tc.atLeast) {
			t.Errorf("Quantile(%v) = %v, want just above %v", tc.q, got, tc.atLeast)
		}
	}
	for _, q := range []float64{0, -1, 1.5} {
		if got := l.Quantile(q); got != 0 {
			t.Errorf("Quantile(%v) = %v, want 0", q, got)
		}
	}
	last := l.Sub(before)
	if last.Count() != 1 || last.Quantile(0.5) <= time.Second {
		t.Errorf("the stretch after the first reading: %d deliveries, median %v; want the one of 1s", last.Count(), last.Quantile(0.5))
	}
	if got := (Latencies{}).Quantile(0.5); got != 0 {
		t.Errorf("empty histogram's median %v", got)
	}
	if got := before.Sub(l); got.Count() != 0 {
		t.Errorf("a later reading taken from an earlier one leaves %d", got.Count())
	}
}

// The hub counts one latency per event written to a stream, over real
// connections on both paths: not the streams' openings, nor heartbeats,
// nor events replayed to a stream that resumed.
func TestHubStatsCountDeliveryLatencies(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, _ := newMemoryHub(t, HubOptions{NoHijack: noHijack, History: HistoryOptions{Size: 64}})
		srv := testServer(t, hub, AppendElements("#m", "<p>initial</p>"))
		a, b := dial(t, srv, "a"), dial(t, srv, "b")
		a.Wait(waitLong, ssetest.Containing("initial"))
		b.Wait(waitLong, ssetest.Containing("initial"))
		if n := hub.Stats().Latency.Count(); n != 0 {
			t.Fatalf("%d latencies counted for two openings", n)
		}
		from := hub.Position()
		const events = 5
		for i := 1; i <= events; i++ {
			if _, err := hub.Broadcast(All, nil, numbered(i)); err != nil {
				t.Fatal(err)
			}
		}
		a.Wait(waitLong, ssetest.Containing("<p>5</p>"))
		b.Wait(waitLong, ssetest.Containing("<p>5</p>"))
		// The write is recorded after the client may have read it.
		ssetest.Eventually(t, waitLong, "a latency per event and stream", func() bool {
			return hub.Stats().Latency.Count() == 2*events
		})
		l := hub.Stats().Latency
		if p50, p100 := l.Quantile(0.5), l.Quantile(1); p50 <= 0 || p100 < p50 {
			t.Fatalf("median %v, top %v", p50, p100)
		}

		hb := NewHeartbeat(hub, All, time.Hour)
		if res := hb.Beat(); res.Delivered != 2 {
			t.Fatalf("beat delivered to %d streams, want 2", res.Delivered)
		}
		// A resuming stream is sent the 5 events again, from the history.
		req, _ := http.NewRequest("POST", srv.URL+"/sse?id=c", nil)
		req.Header.Set("Last-Event-ID", from.String())
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		c := ssetest.FromResponse(t, resp)
		c.Wait(waitLong, ssetest.Containing("<p>5</p>"))
		// Then one more event for all three: counted 3 times, after the
		// beats and the replay were written (each stream writes in order).
		if _, err := hub.Broadcast(All, nil, numbered(6)); err != nil {
			t.Fatal(err)
		}
		for _, cl := range []*ssetest.Client{a, b, c} {
			cl.Wait(waitLong, ssetest.Containing("<p>6</p>"))
		}
		ssetest.Eventually(t, waitLong, "the last event's 3 latencies", func() bool {
			return hub.Stats().Latency.Count() >= 2*events+3
		})
		if n := hub.Stats().Latency.Count(); n != 2*events+3 {
			t.Fatalf("%d latencies, want %d: beats or replayed events counted", n, 2*events+3)
		}
	})
}
