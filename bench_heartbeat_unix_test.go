//go:build unix

package sfere

import (
	"fmt"
	"syscall"
	"testing"
	"time"
)

// One heartbeat sweep over 10,000 held streams: the comment against the
// visible beat (a signal patch with the time), and the visible beat with
// the history's position. Each sweep queues the beat to every stream and
// ends when every stream has written it to its socket (the beat's
// tracker); the peers are drained between sweeps, off the clock.
//
// This process may hold 20,000 descriptors, so the 10,000 streams are
// held over 5,000 Unix socket pairs, two streams on each: every stream
// still has its own queue and writes its own beat with one system call.
//
// Besides ns/op it reports ns/stream (wall time of a sweep per stream),
// cpu-ns/stream (the process's user and system CPU time during the
// sweep, per stream: what the sweep costs the machine) and B/beat (the
// bytes one stream's socket receives for one beat, HTTP chunk framing
// included).
func BenchmarkHeartbeatSweep(b *testing.B) {
	const streams = 10_000
	for _, tc := range []struct {
		name              string
		visible, position bool
	}{
		{"comment", false, false},
		{"visible", true, false},
		{"visible+position", true, true},
	} {
		b.Run(fmt.Sprintf("%s/%d", tc.name, streams), func(b *testing.B) {
			opts := HubOptions{}
			if tc.position {
				opts.History = HistoryOptions{Size: 1024, PositionSignal: "_pos"}
			}
			st := NewMemoryStore(MemoryOptions{})
			hub := NewHub(st, opts)
			if tc.position {
				// A position with a realistic offset.
				for i := range 1500 {
					hub.Broadcast(NewPattern(Exactly("nobody"), Any, Any), nil, AppendElements("#m", fmt.Sprint(i)))
				}
			}
			peers := make([]int, 0, streams/2)
			for i := 0; i < streams; i += 2 {
				pair, peer := heldStreamsOnOnePair(b, hub, lobbyKey(fmt.Sprint(i)), lobbyKey(fmt.Sprint(i+1)))
				for _, s := range pair {
					st.Put(s)
				}
				peers = append(peers, peer)
			}
			hb := NewHeartbeat(hub, All, time.Hour)
			if tc.visible {
				var err error
				if hb, err = NewVisibleHeartbeat(hub, All, time.Hour, "_beat"); err != nil {
					b.Fatal(err)
				}
			}
			sink := make([]byte, 64<<10)
			drain := func() (bytes int) {
				for _, fd := range peers {
					for {
						k, _ := syscall.Read(fd, sink)
						if k > 0 {
							bytes += k
						}
						if k < len(sink) {
							break
						}
					}
				}
				return bytes
			}
			sweep := func() {
				done := make(chan struct{})
				before := hb.Stats()
				hb.beatThen(0, func() { close(done) })
				<-done
				if st := hb.Stats(); st.Writes-before.Writes != streams || st.Failures != 0 {
					b.Fatalf("a sweep wrote %d of %d streams (stats %+v)", st.Writes-before.Writes, streams, st)
				}
			}
			sweep() // warm: goroutines, buffers
			perBeat := float64(drain()) / streams
			var cpu time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				c0 := cpuTime(b)
				sweep()
				cpu += cpuTime(b) - c0
				b.StopTimer()
				drain()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*streams), "ns/stream")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*streams), "cpu-ns/stream")
			b.ReportMetric(perBeat, "B/beat")
		})
	}
}

// heldStreamsOnOnePair returns held streams (not stored), one per key,
// all over one end of one Unix socket pair, and the other end's
// descriptor, non-blocking, for reading. Both close when b ends.
func heldStreamsOnOnePair(b *testing.B, hub *Hub, keys ...Key) ([]*Stream, int) {
	nc, peer := socketPair(b, "held")
	raw, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	var out []*Stream
	for _, key := range keys {
		c := &connSink{nc: nc, raw: raw, writers: &hub.writers}
		c.s = newStream(key, 0, c)
		out = append(out, c.s)
	}
	return out, peer
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// What the position signal costs a broadcast: one chat line to 1,000
// held streams on a hub with a history, its events carrying ids only,
// and ids with the position signal's patch (HistoryOptions.PositionSignal).
// The patch is rendered once per event, so the difference is the bytes
// every stream writes. Reports ns/delivery and B/delivery.
func BenchmarkHeldFanoutPositionSignal(b *testing.B) {
	const n = 1_000
	for _, signal := range []string{"", "_pos"} {
		name := "ids"
		if signal != "" {
			name = "ids+signal"
		}
		b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
			st := NewMemoryStore(MemoryOptions{})
			hub := NewHub(st, HubOptions{History: HistoryOptions{Size: 1024, PositionSignal: signal}})
			peers := make([]int, n)
			for i := range n {
				s, peer := heldPair(b, hub, lobbyKey(fmt.Sprint(i)))
				st.Put(s)
				peers[i] = peer
			}
			line, err := render([]Effect{AppendElements("#messages", `<p class="chat-message"><strong>phil</strong>: a chat line of about a hundred bytes, as people type them....</p>`)})
			if err != nil {
				b.Fatal(err)
			}
			sink := make([]byte, 64<<10)
			var bytes int
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				written := make(chan int64, 1)
				m := *line
				m.track = newTracker(func(w, _ int64) { written <- w })
				hub.publish(All, nil, &m, 0)
				m.track.release()
				if w := <-written; w != int64(n) {
					b.Fatalf("%d of %d streams wrote", w, n)
				}
				b.StopTimer()
				for _, fd := range peers {
					for {
						k, _ := syscall.Read(fd, sink)
						if k > 0 {
							bytes += k
						}
						if k < len(sink) {
							break
						}
					}
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
			b.ReportMetric(float64(bytes)/float64(b.N*n), "B/delivery")
		})
	}
}
