package sfere

import (
	"fmt"
	"testing"
)

// fillStore stores n streams spread over categories; category "lobby"
// holds lobby of them.
func fillStore(b *testing.B, st Store, n, lobby int) []*Stream {
	b.Helper()
	streams := make([]*Stream, 0, n)
	for i := range n {
		cat := fmt.Sprint("room-", i%97)
		if i < lobby {
			cat = "lobby"
		}
		s := newStream(NewKey(DefaultScope, cat, fmt.Sprint(i)), 0, nil)
		st.Put(s)
		streams = append(streams, s)
	}
	return streams
}

func benchStores(b *testing.B, fn func(b *testing.B, st Store)) {
	b.Run("memory", func(b *testing.B) { fn(b, NewMemoryStore(MemoryOptions{})) })
	b.Run("ttl", func(b *testing.B) {
		st, err := NewTTLStore(TTLOptions{MaxSize: 200_000})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		fn(b, st)
	})
}

// List and count over 100k keys: a fixed category visits only its keys.
func BenchmarkKeys100k(b *testing.B) {
	benchStores(b, func(b *testing.B, st Store) {
		fillStore(b, st, 100_000, 1_000)
		b.Run("category-1k-of-100k", func(b *testing.B) {
			for b.Loop() {
				if len(st.Keys(InCategory("lobby"))) != 1_000 {
					b.Fatal("wrong count")
				}
			}
		})
		b.Run("scope-all-100k", func(b *testing.B) {
			for b.Loop() {
				if len(st.Keys(InScope(DefaultScope))) != 100_000 {
					b.Fatal("wrong count")
				}
			}
		})
		b.Run("count-category", func(b *testing.B) {
			for b.Loop() {
				if st.Count(InCategory("lobby")) != 1_000 {
					b.Fatal("wrong count")
				}
			}
		})
		b.Run("count-id-any-category", func(b *testing.B) {
			p := NewPattern(Any, Any, Exactly("42"))
			for b.Loop() {
				if st.Count(p) != 1 {
					b.Fatal("wrong count")
				}
			}
		})
	})
}

func BenchmarkPurgeStream100k(b *testing.B) {
	benchStores(b, func(b *testing.B, st Store) {
		streams := fillStore(b, st, 100_000, 0)
		i := 0
		for b.Loop() {
			s := streams[i%len(streams)]
			if !st.PurgeStream(s, CauseClosed, nil) {
				b.Fatal("not purged")
			}
			fresh := newStream(s.key, 0, nil)
			st.Put(fresh)
			streams[i%len(streams)] = fresh
			i++
		}
	})
}

func BenchmarkRender(b *testing.B) {
	effects := []Effect{
		AppendElements("#messages", `<div class="message"><strong>brian</strong>: hello everyone, how is it going?</div>`),
		PatchSignals([]byte(`{"message":""}`)),
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := render(effects); err != nil {
			b.Fatal(err)
		}
	}
}

// Fan-out of one rendered message to N streams: the queuing cost per
// delivery, which must not allocate.
func BenchmarkFanout(b *testing.B) { benchFanout(b, HubOptions{}) }

// benchFanout is BenchmarkFanout on a hub with opts.
func benchFanout(b *testing.B, opts HubOptions) {
	for _, n := range []int{1_000, 10_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			st := NewMemoryStore(MemoryOptions{})
			hub := NewHub(st, opts)
			streams := fillStore(b, st, n, n)
			m, err := render([]Effect{AppendElements("#messages", "<div>200 bytes of chat..........................................................................................................................................................</div>")})
			if err != nil {
				b.Fatal(err)
			}
			spare := make([][]*message, n)
			b.ReportAllocs()
			for b.Loop() {
				if res, _ := hub.publish(InCategory("lobby"), nil, m, 0); res.Delivered != n {
					b.Fatalf("delivered %d", res.Delivered)
				}
				// Play the writers: empty each queue (these streams have
				// no sink: nothing else writes them).
				for i, s := range streams {
					batch, _ := s.take(spare[i])
					clear(batch)
					spare[i] = batch[:0]
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}

// A heartbeat sweep's queuing cost over N streams.
func BenchmarkHeartbeatBeat10k(b *testing.B) {
	st := NewMemoryStore(MemoryOptions{})
	hub := NewHub(st, HubOptions{})
	streams := fillStore(b, st, 10_000, 10_000)
	hb := NewHeartbeat(hub, InCategory("lobby"), 0)
	spare := make([][]*message, len(streams))
	b.ReportAllocs()
	for b.Loop() {
		hb.Beat()
		for i, s := range streams {
			batch, _ := s.take(spare[i])
			settleAll(batch, true)
			clear(batch)
			spare[i] = batch[:0]
		}
	}
}
