// Command sfere-bench-server holds many SSE streams in one process and
// broadcasts to them on request, in one of four modes:
//
//	sfere       sfere.Hub over a MemoryStore, streams served by Hub.Serve
//	centrifuge  the centrifuge library's SSE handler, one server-side channel
//	naive       datastar-go alone: a mutex-guarded map of generators, one
//	            synchronous write per stream per broadcast
//	raw         plain TCP, no HTTP or SSE: the same frames written to
//	            accepted sockets (the physical ceiling)
//
// A control API on a second port lets the load tool (sfere-load) trigger
// broadcasts and heartbeat sweeps and read the server's memory. The server
// prints one line, "READY {json}", once both listeners are up, and exits on
// SIGINT/SIGTERM or POST /quit. Everything listens on 127.0.0.1 only.
//
// With -nats (mode sfere only) the hub joins a natscluster on that NATS
// server, and a broadcast on this node reaches the streams of every node;
// without it nothing changes.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof" // profiles on the control port
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/dashboard"

	"github.com/sfere-go/sfere/bench/internal/host"
	"github.com/sfere-go/sfere/bench/internal/wire"
)

// mode is one way of holding streams and broadcasting to them.
type mode interface {
	// serve serves streams on ln until it is closed.
	serve(ln net.Listener) error
	// streams counts the streams ready to receive broadcasts.
	streams() int
	// broadcast sends html (appended at selector) to every stream.
	broadcast(selector, html string) (delivered, failed int)
	// sweep writes one heartbeat to every stream and returns once every
	// stream wrote it or failed.
	sweep() (wire.SweepResult, error)
	// close ends every stream.
	close()
	// ended counts ended streams by reason (nil if the mode does not know).
	ended() map[string]int64
}

var errNoSweep = errors.New("this mode has no heartbeat sweep")

func main() {
	var (
		modeName   = flag.String("mode", wire.ModeSfere, "sfere (Hub.Detach), centrifuge, naive, raw, or sfere-serve (Hub.Serve), sfere-nethttp (HubOptions.NoHijack), sfere-gzip (HubOptions.Compression), naive-gzip (datastar-go's per-stream gzip)")
		streamAddr = flag.String("addr", "127.0.0.1:0", "stream listener address (loopback only)")
		ctlAddr    = flag.String("ctl", "127.0.0.1:0", "control API address (loopback only)")
		rawWriters = flag.Int("raw-writers", 4, "raw mode: writer goroutines, each owning a shard of the sockets")
		gogc       = flag.Int("gogc", 0, "GOGC percent (0: leave the runtime's setting)")
		memLimit   = flag.String("memlimit", "", "GOMEMLIMIT, e.g. 512MiB (empty: leave the runtime's setting)")
		maxLife    = flag.Duration("max-life", 30*time.Minute, "exit after this long whatever happens")
		userTO     = flag.Duration("user-timeout", 0, "sfere mode: ListenOptions.UserTimeout (TCP_USER_TIMEOUT; 0: sfere's default, negative: none)")
		natsURL    = flag.String("nats", "", "sfere mode: join a natscluster on these NATS servers (nats://127.0.0.1:port,...: one NATS cluster); broadcasts then reach every node's streams")
		nodeID     = flag.String("node", "", "sfere mode with -nats: this node's id (empty: random)")
		history    = flag.Int("history", 0, "sfere mode with -nats: keep a history of this many events, so every broadcast goes through the cluster's JetStream log (0: none)")
		payload    = flag.String("payload", "dots", "broadcast payload: dots (the stamp padded with dots to the load tool's -size, appended at #feed) or lobby (what the lobby sends for a chat line: its template and escaping, chat-like text ending with the stamp, appended at #messages, and in the sfere modes the lobby's history, so each event carries its id and a position-signal patch; -size does not apply; see package bench/internal/chat). Compare compressed modes with lobby: dots compress to nothing")
		callers    = flag.Int("callers", 1, "broadcasts in flight at once: 1 issues each after the previous returned; more model an app's concurrent request handlers (a broadcast through a JetStream log returns only once the log has it)")
		replicas   = flag.Int("replicas", 0, "sfere mode with -nats and -history: replicas of the JetStream log (0: 3 where the NATS cluster can place them, else 1)")
		dash       = flag.Bool("dashboard", false, "sfere modes: serve the live dashboard (package dashboard) of the hub at /debug/dashboard on the control port, so that a client can watch it while broadcasts run")
	)
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("sfere-bench-server: ")
	for _, a := range []string{*streamAddr, *ctlAddr} {
		if !loopback(a) {
			log.Fatalf("%s: only loopback addresses are allowed", a)
		}
	}
	if *gogc != 0 {
		debug.SetGCPercent(*gogc)
	}
	if *memLimit != "" {
		n, err := parseBytes(*memLimit)
		if err != nil {
			log.Fatalf("-memlimit: %v", err)
		}
		debug.SetMemoryLimit(n)
	}
	if *natsURL != "" {
		if *modeName != wire.ModeSfere {
			log.Fatalf("-nats: only mode %s can join a cluster, not %s", wire.ModeSfere, *modeName)
		}
		for _, one := range strings.Split(*natsURL, ",") {
			u, err := url.Parse(one)
			if err != nil || !loopback(u.Host) {
				log.Fatalf("-nats %s: want nats://<loopback address>:port,...", *natsURL)
			}
		}
	}
	if *history < 0 || *replicas < 0 || *replicas > 5 || (*history > 0 || *replicas > 0) && *natsURL == "" {
		log.Fatalf("-history (>= 0) and -replicas (0 to 5) go with -nats")
	}
	raiseFileLimit()

	pl, err := newPayload(*payload)
	if err != nil {
		log.Fatalf("-payload: %v", err)
	}
	var m mode
	switch *modeName {
	case wire.ModeSfere:
		m, err = newSfereMode(*natsURL, *nodeID, pathDetach, clusterLog{history: *history, replicas: *replicas}, pl.history)
	case wire.ModeSfereServe:
		m, err = newSfereMode("", "", pathServe, clusterLog{}, pl.history)
	case wire.ModeSfereNetHTTP:
		m, err = newSfereMode("", "", pathNetHTTP, clusterLog{}, pl.history)
	case wire.ModeCentrifuge:
		m, err = newCentrifugeMode()
	case wire.ModeSfereGzip:
		m, err = newSfereMode("", "", pathGzip, clusterLog{}, pl.history)
	case wire.ModeNaive:
		m = newNaiveMode(false)
	case wire.ModeNaiveGzip:
		m = newNaiveMode(true)
	case wire.ModeRaw:
		m = newRawMode(*rawWriters)
	default:
		err = fmt.Errorf("unknown mode %q", *modeName)
	}
	if err != nil {
		log.Fatal(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *maxLife)
	defer cancel()

	ln, err := listen(ctx, *modeName, *streamAddr, *userTO)
	if err != nil {
		log.Fatal(err)
	}
	cln, err := plainListenConfig().Listen(ctx, "tcp", *ctlAddr)
	if err != nil {
		log.Fatal(err)
	}
	quit := make(chan struct{})
	var quitOnce sync.Once
	cmux := controlMux(*modeName, m, max(*callers, 1), pl, func() { quitOnce.Do(func() { close(quit) }) })
	if *dash {
		sm, ok := m.(*sfereMode)
		if !ok {
			log.Fatalf("-dashboard: mode %s has no sfere hub", *modeName)
		}
		d, err := dashboard.New(sm.hub, dashboard.Options{Heartbeat: sm.beat, Node: sm.node, NATS: sm.nc})
		if err != nil {
			log.Fatal(err)
		}
		cmux.Handle(dashboard.DefaultPath, d)
		cmux.Handle(dashboard.DefaultPath+"/", d)
	}
	ctl := &http.Server{Handler: cmux, ReadHeaderTimeout: 10 * time.Second, ConnContext: sfere.ConnContext}
	go func() { _ = ctl.Serve(cln) }()
	served := make(chan error, 1)
	go func() { served <- m.serve(ln) }()

	ready, _ := json.Marshal(wire.Ready{Mode: *modeName, Streams: ln.Addr().String(), Control: cln.Addr().String(), PID: os.Getpid()})
	fmt.Println(wire.ReadyPrefix + string(ready))

	select {
	case <-ctx.Done():
	case <-quit:
	case err := <-served:
		log.Printf("stream listener: %v", err)
	}
	_ = ln.Close()
	m.close()
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer scancel()
	_ = ctl.Shutdown(sctx)
}

// controlMux is the control API: GET /stats, POST /broadcast,
// POST /heartbeat, POST /gc, POST and GET /latency (sfere modes: mark,
// then read the hub's delivery latencies since the mark), POST /quit,
// and /debug/pprof/.
func controlMux(name string, m mode, callers int, pl payload, quit func()) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/debug/pprof/", http.DefaultServeMux)
	var busy sync.Mutex // one broadcast run at a time
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, stats(name, m))
	})
	mux.HandleFunc("POST /gc", func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
		debug.FreeOSMemory()
		writeJSON(w, stats(name, m))
	})
	mux.HandleFunc("POST /broadcast", func(w http.ResponseWriter, r *http.Request) {
		var req wire.BroadcastRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Count < 1 || req.Count > 1_000_000 || req.Size < 1 || req.Size > 1<<20 {
			http.Error(w, "bad broadcast request", http.StatusBadRequest)
			return
		}
		busy.Lock()
		defer busy.Unlock()
		writeJSON(w, runBroadcasts(m, req, callers, pl))
	})
	mux.HandleFunc("POST /heartbeat", func(w http.ResponseWriter, r *http.Request) {
		res, err := m.sweep()
		if errors.Is(err, errNoSweep) {
			http.Error(w, err.Error(), http.StatusNotImplemented)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, res)
	})
	var (
		latMu   sync.Mutex
		latMark sfere.Latencies
	)
	mux.HandleFunc("POST /latency", func(w http.ResponseWriter, r *http.Request) {
		sm, ok := m.(*sfereMode)
		if !ok {
			http.Error(w, "this mode keeps no delivery latencies", http.StatusNotImplemented)
			return
		}
		latMu.Lock()
		latMark = sm.hub.Stats().Latency
		latMu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /latency", func(w http.ResponseWriter, r *http.Request) {
		sm, ok := m.(*sfereMode)
		if !ok {
			http.Error(w, "this mode keeps no delivery latencies", http.StatusNotImplemented)
			return
		}
		latMu.Lock()
		l := sm.hub.Stats().Latency.Sub(latMark)
		latMu.Unlock()
		writeJSON(w, wire.WriteLatency{Count: l.Count(), P50ns: int64(l.Quantile(0.5)), P99ns: int64(l.Quantile(0.99)), Maxns: int64(l.Quantile(1))})
	})
	mux.HandleFunc("POST /quit", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
		quit()
	})
	return mux
}

// runBroadcasts issues req.Count broadcasts paced at req.Rate per second,
// at most callers of them in flight at once. Each payload carries its
// sequence number and the time it was handed to the mode, so clients
// measure send-to-receive latency.
func runBroadcasts(m mode, req wire.BroadcastRequest, callers int, pl payload) wire.BroadcastResult {
	if callers > 1 {
		return runBroadcastsConcurrently(m, req, callers, pl)
	}
	var res wire.BroadcastResult
	start := time.Now()
	for i := range req.Count {
		if req.Rate > 0 {
			due := start.Add(time.Duration(float64(i) / req.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		ts := time.Now().UnixNano()
		if i == 0 {
			res.FirstSend = ts
		}
		res.LastSend = ts
		d, f := m.broadcast(pl.selector, pl.html(req.Seq0+uint64(i), ts, req.Size))
		res.Delivered += int64(d)
		res.Failed += int64(f)
		res.Issued++
	}
	res.Done = time.Now().UnixNano()
	return res
}

// runBroadcastsConcurrently is runBroadcasts with each broadcast issued on
// its own goroutine at its time, as concurrent request handlers would:
// a broadcast that waits (for a JetStream acknowledgement) does not hold
// up the next. Broadcasts in flight together may reach a stream in
// either order.
func runBroadcastsConcurrently(m mode, req wire.BroadcastRequest, callers int, pl payload) wire.BroadcastResult {
	var (
		res   wire.BroadcastResult
		mu    sync.Mutex
		wg    sync.WaitGroup
		slots = make(chan struct{}, callers)
	)
	start := time.Now()
	for i := range req.Count {
		if req.Rate > 0 {
			due := start.Add(time.Duration(float64(i) / req.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		slots <- struct{}{}
		ts := time.Now().UnixNano()
		if i == 0 {
			res.FirstSend = ts
		}
		res.LastSend = ts
		wg.Go(func() {
			defer func() { <-slots }()
			d, f := m.broadcast(pl.selector, pl.html(req.Seq0+uint64(i), ts, req.Size))
			mu.Lock()
			res.Delivered += int64(d)
			res.Failed += int64(f)
			res.Issued++
			mu.Unlock()
		})
	}
	wg.Wait()
	res.Done = time.Now().UnixNano()
	return res
}

func stats(name string, m mode) wire.Stats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return wire.Stats{
		Mode:       name,
		Streams:    m.streams(),
		RSSBytes:   rss(),
		Goroutines: runtime.NumGoroutine(),
		HeapInuse:  ms.HeapInuse,
		StackInuse: ms.StackInuse,
		Sys:        ms.Sys,
		NumGC:      ms.NumGC,
		Ended:      m.ended(),
		Cluster:    cluster(m),
	}
}

// cluster is the mode's cluster view, if it is a cluster node.
func cluster(m mode) *wire.Cluster {
	if c, ok := m.(interface{ cluster() *wire.Cluster }); ok {
		return c.cluster()
	}
	return nil
}

// rss reads VmRSS from /proc/self/status, in bytes (-1 if unavailable).
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return -1
			}
			return kb * 1024
		}
	}
	return -1
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// listen opens the stream listener: sfere's own (TCP_USER_TIMEOUT and
// keepalive, as its README recommends) for sfere, a plain TCP one otherwise.
func listen(ctx context.Context, modeName, addr string, userTimeout time.Duration) (net.Listener, error) {
	if modeName == wire.ModeSfere {
		return sfereListen(ctx, addr, userTimeout)
	}
	return plainListenConfig().Listen(ctx, "tcp", addr)
}

func plainListenConfig() *net.ListenConfig {
	lc := &net.ListenConfig{}
	lc.SetMultipathTCP(false) // same plain TCP as sfere.Listen, so modes differ only above TCP
	return lc
}

// newHTTPServer is the http.Server every HTTP mode uses.
func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// raiseFileLimit lifts the soft open-file limit to the hard one (Go does
// this at start-up too; doing it here makes it explicit and logged).
func raiseFileLimit() {
	if _, _, err := host.RaiseFileLimit(); err != nil {
		log.Printf("cannot raise open-file limit: %v", err)
	}
}

func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mul    int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			return v * u.mul, err
		}
	}
	return strconv.ParseInt(s, 10, 64)
}
