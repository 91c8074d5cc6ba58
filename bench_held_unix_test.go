//go:build unix

package sfere

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
)

// Fan-out of one rendered chat line to N held streams over real sockets
// (Unix socket pairs): queuing, the writers, and one write per stream,
// until every stream has written it. The peers are drained between
// rounds, off the clock.
func BenchmarkHeldFanout(b *testing.B) { benchHeldFanout(b, false) }

// BenchmarkHeldFanoutGzip is BenchmarkHeldFanout with every stream
// compressed: one group compresses each broadcast once, and every stream
// writes the same compressed bytes (with its own CRC). wire-B/delivery
// is what each stream's socket is written per broadcast.
func BenchmarkHeldFanoutGzip(b *testing.B) { benchHeldFanout(b, true) }

func benchHeldFanout(b *testing.B, gzip bool) {
	for _, n := range []int{100, 1_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			st := NewMemoryStore(MemoryOptions{})
			opts := HubOptions{}
			if gzip {
				opts.Compression = &CompressionOptions{}
			}
			hub := NewHub(st, opts)
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			peers := make([]int, n)
			for i := range n {
				s, peer := heldPair(b, hub, lobbyKey(fmt.Sprint(i)))
				if gzip {
					s.sink.(*connSink).gz = new(gzipStream)
					s.compressed = true
				}
				st.Put(s)
				peers[i] = peer
			}
			// Lobby-like chat lines, a new one each round (a group
			// compresses each one; the same bytes again would compress
			// to almost nothing).
			ring := make([]*message, 256)
			for i := range ring {
				m, err := render([]Effect{chat(i)})
				if err != nil {
					b.Fatal(err)
				}
				ring[i] = m
			}
			sink := make([]byte, 64<<10)
			drain := func() (wire int64) {
				for _, fd := range peers {
					for {
						k, _ := syscall.Read(fd, sink)
						wire += int64(max(k, 0))
						if k < len(sink) {
							break
						}
					}
				}
				return wire
			}
			// A first broadcast (a compressed stream writes its gzip
			// header with it), then what the streams hold: the heap the
			// hub, the streams and their connections hold, over n.
			written := make(chan int64, 1)
			m := ring[len(ring)-1]
			m.track = newTracker(func(w, _ int64) { written <- w })
			hub.publish(All, nil, m, 0)
			m.track.release()
			<-written
			drain()
			runtime.GC()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			var wire int64
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				written := make(chan int64, 1)
				m := ring[i%len(ring)]
				m.track = newTracker(func(w, _ int64) { written <- w })
				hub.publish(All, nil, m, 0)
				m.track.release()
				if w := <-written; w != int64(n) {
					b.Fatalf("%d of %d streams wrote", w, n)
				}
				b.StopTimer()
				wire += drain()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
			b.ReportMetric(float64(wire)/float64(b.N*n), "wire-B/delivery")
			b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/float64(n), "heap-B/stream")
			runtime.KeepAlive(st)
		})
	}
}

// socketPair returns one end of a Unix socket pair as a connection and
// the other end's descriptor, non-blocking, for reading. Both close when
// b ends.
func socketPair(b *testing.B, name string) (net.Conn, int) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		b.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), name)
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	if err := syscall.SetNonblock(fds[1], true); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		nc.Close()
		syscall.Close(fds[1])
	})
	return nc, fds[1]
}

// heldPair returns a held stream (not stored) over one end of a Unix
// socket pair, and the other end's descriptor, non-blocking, for reading.
// Both close when b ends.
func heldPair(b *testing.B, hub *Hub, key Key) (*Stream, int) {
	nc, peer := socketPair(b, "held")
	raw, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	c := &connSink{nc: nc, raw: raw, writers: &hub.writers}
	c.s = newStream(key, 0, c)
	return c.s, peer
}
