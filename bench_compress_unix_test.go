//go:build unix

package sfere

import (
	"fmt"
	"net"
	"net/http"
	"runtime"
	"syscall"
	"testing"

	"github.com/starfederation/datastar-go/datastar"
)

// datastar-go's own per-stream gzip, beside BenchmarkHeldFanoutGzip: what
// a Datastar Go app writes without sfere, each stream a generator with
// datastar.WithCompression over a real socket (one end of a Unix socket
// pair), a broadcast a loop of PatchElements (each compresses and flushes
// its own stream). The chat lines are those of the sfere benchmarks;
// gzip level 5, sfere's default. wire-B/delivery is what each socket is
// written per broadcast; heap-B/stream what a stream holds.
func BenchmarkDatastarGoGzipFanout(b *testing.B) {
	for _, n := range []int{100, 1_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			gens := make([]*datastar.ServerSentEventGenerator, n)
			peers := make([]int, n)
			for i := range n {
				w, peer := socketResponse(b)
				r := (&http.Request{ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{"Accept-Encoding": {"gzip"}}}).WithContext(b.Context())
				gens[i] = datastar.NewSSE(w, r, datastar.WithCompression(datastar.WithGzip(datastar.WithGzipLevel(5))))
				peers[i] = peer
			}
			lines := make([]string, 256)
			for i := range lines {
				lines[i] = chat(i).Elements
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
			// A first event: each stream's compressor is made when it
			// first writes. Then what the streams hold.
			for _, g := range gens {
				if err := g.PatchElements(lines[0], datastar.WithSelector("#messages"), datastar.WithModeAppend()); err != nil {
					b.Fatal(err)
				}
			}
			drain()
			runtime.GC()
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			var wire int64
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				for _, g := range gens {
					if err := g.PatchElements(lines[i%len(lines)], datastar.WithSelector("#messages"), datastar.WithModeAppend()); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				wire += drain()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
			b.ReportMetric(float64(wire)/float64(b.N*n), "wire-B/delivery")
			b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/float64(n), "heap-B/stream")
			runtime.KeepAlive(gens)
		})
	}
}

// socketResponse is a response writer over one end of a Unix socket pair
// (bytes as written: no chunking, which the comparison leaves out on
// both sides' bytes alike), and the other end's descriptor, non-blocking,
// for reading. Both close when b ends.
func socketResponse(b *testing.B) (http.ResponseWriter, int) {
	nc, peer := socketPair(b, "response")
	return &connResponse{nc: nc, header: http.Header{}}, peer
}

type connResponse struct {
	nc     net.Conn
	header http.Header
}

func (w *connResponse) Header() http.Header         { return w.header }
func (w *connResponse) WriteHeader(int)             {}
func (w *connResponse) Write(p []byte) (int, error) { return w.nc.Write(p) }
func (w *connResponse) Flush()                      {}
