//go:build unix

package dashboard

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/sfere-go/sfere"
)

// The cost of one update of the open pages (sample, render, broadcast)
// over a hub holding N idle streams on real loopback connections: what
// an open dashboard costs the server once per interval. %core is that
// share of one core at the default interval.
func BenchmarkTick(b *testing.B) {
	for _, n := range []int{100, 1_000, 5_000} { // 10k streams take more descriptors than a process here may open
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var lim syscall.Rlimit
			if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(3*n) {
				b.Skipf("%d streams need %d file descriptors (client and server side); the limit is %d", n, 2*n, lim.Cur)
			}
			hub := sfere.NewHub(sfere.NewMemoryStore(sfere.MemoryOptions{}), sfere.HubOptions{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = hub.Detach(w, r, sfere.NewKey(sfere.DefaultScope, "lobby", r.URL.Query().Get("id")))
			}))
			defer srv.Close()
			defer hub.Shutdown(b.Context())
			for i := range n {
				c, err := net.Dial("tcp", srv.Listener.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				if _, err := fmt.Fprintf(c, "GET /?id=%d HTTP/1.1\r\nHost: x\r\n\r\n", i); err != nil {
					b.Fatal(err)
				}
			}
			for deadline := time.Now().Add(30 * time.Second); hub.Count(sfere.All) < n; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatalf("%d of %d streams stored", hub.Count(sfere.All), n)
				}
			}
			d, err := New(hub, Options{})
			if err != nil {
				b.Fatal(err)
			}
			d.mu.Lock()
			d.conns[newConnID()] = "" // a page, as if its stream were open
			d.mu.Unlock()
			b.ReportAllocs()
			for b.Loop() {
				d.tick(time.Now())
			}
			perTick := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(perTick/float64(DefaultInterval.Nanoseconds())*100, "%core")
		})
	}
}
