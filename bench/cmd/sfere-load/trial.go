package main

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sfere-go/sfere/bench/internal/host"
	"github.com/sfere-go/sfere/bench/internal/wire"
)

// Trial is everything measured for one mode at one N in one run.
type Trial struct {
	Mode string `json:"mode"`
	N    int    `json:"n"`
	Run  int    `json:"run"`
	// Nodes is how many server processes held the N streams (natscluster
	// nodes when > 1; every broadcast is triggered on node 0). Memory and
	// goroutine figures are sums over the nodes.
	Nodes int `json:"nodes,omitempty"`

	Held int `json:"held"` // streams open and known to the server
	// DecodeEvery > 1: only every DecodeEvery-th stream was scanned for
	// stamps (and decoded); deliveries, latencies and wire bytes are
	// theirs, the others were read and dropped.
	DecodeEvery int     `json:"decode_every,omitempty"`
	Refused     string  `json:"refused,omitempty"` // why fewer than N: the OS's words
	ConnectSec  float64 `json:"connect_s"`

	RSSBase         int64   `json:"rss_base"`    // server RSS before any stream
	RSSIdle         int64   `json:"rss_idle"`    // with Held idle streams
	RSSIdleGC       int64   `json:"rss_idle_gc"` // same, after a forced GC and FreeOSMemory
	RSSAfter        int64   `json:"rss_after"`   // after the sustained phase
	RSSPerStreamKiB float64 `json:"rss_per_stream_kib"`
	GCPerStreamKiB  float64 `json:"rss_per_stream_gc_kib"`
	Goroutines      int     `json:"goroutines_idle"`
	StackInuse      uint64  `json:"stack_inuse_idle"`
	HeapInuse       uint64  `json:"heap_inuse_idle"`

	Single    Phase     `json:"single"`              // one broadcast to all, median over reps
	SingleAll []Phase   `json:"single_reps"`         // every rep
	SweepMs   float64   `json:"sweep_ms,omitempty"`  // heartbeat sweep, median over reps (0: the mode has none)
	SweepAll  []float64 `json:"sweep_reps_ms"`       // every rep
	Sustained Phase     `json:"sustained"`           // M broadcasts at a rate
	HBImpact  *HBImpact `json:"hb_impact,omitempty"` // broadcasts with and without sweeps running

	// DashboardBytes is what the dashboard stream sent during the trial
	// (with -dashboard, label <mode>+dash).
	DashboardBytes int64 `json:"dashboard_bytes,omitempty"`

	Closed  int64            `json:"closed_by_server"` // streams that ended while the tool held them
	Ended   map[string]int64 `json:"ended_at_server,omitempty"`
	LoadAvg string           `json:"loadavg_at_start"` // other work on the machine
	LoadEnd string           `json:"loadavg_at_end"`
	Errors  []string         `json:"errors,omitempty"`
}

// Phase is one measured burst of broadcasts.
type Phase struct {
	Broadcasts int     `json:"broadcasts"`
	Rate       float64 `json:"rate"` // offered broadcasts per second (0: as fast as possible)
	Expected   int64   `json:"expected"`
	Delivered  int64   `json:"delivered"`
	Missing    int64   `json:"missing"`
	Short      int     `json:"short_streams"` // streams that missed at least one
	Reordered  int64   `json:"reordered"`
	Failed     int64   `json:"failed_at_server"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	Maxms      float64 `json:"max_ms"`
	PerSec     float64 `json:"deliveries_per_s"` // delivered / (last receipt - first send)
	IssueSec   float64 `json:"issue_s"`          // first send to the last broadcast issued
	TotalSec   float64 `json:"total_s"`          // first send to last receipt

	Net host.Counters `json:"net"` // kernel drops and retransmissions during the phase

	// WireBytes is what the client read from every socket during the
	// phase, as it came (compressed or not, HTTP framing included);
	// WirePerDelivery is that over Delivered.
	WireBytes       int64   `json:"wire_bytes"`
	WirePerDelivery float64 `json:"wire_bytes_per_delivery"`
	// ClientCPUSec is the CPU time (user and system) this tool spent
	// during the phase: its readers share the machine with the server.
	ClientCPUSec float64 `json:"client_cpu_s"`
	// ServerWrite is the server's own latency of the same deliveries
	// (sfere modes): from the broadcast's rendering to the end of the
	// write that carried it, so the rest of P50ms and P99ms is the
	// kernel's and the client's.
	ServerWrite *wire.WriteLatency `json:"server_write,omitempty"`

	// With -nodes > 1: latency of the streams on node 0, where the
	// broadcasts are issued (Local), on every other node together
	// (Remote, reached through NATS), and on each node.
	Local   *NodeLat  `json:"local,omitempty"`
	Remote  *NodeLat  `json:"remote,omitempty"`
	PerNode []NodeLat `json:"per_node,omitempty"`
}

// NodeLat is the latency of one phase on some of the nodes' streams.
type NodeLat struct {
	Nodes     []int   `json:"nodes"`
	Streams   int     `json:"streams"`
	Delivered int64   `json:"delivered"`
	Missing   int64   `json:"missing"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
	Maxms     float64 `json:"max_ms"`
}

// HBImpact compares broadcast latency at a light rate without and with
// heartbeat sweeps running at the same time.
type HBImpact struct {
	Without Phase   `json:"without"`
	With    Phase   `json:"with"`
	Sweeps  int     `json:"sweeps"`
	DeltaMs float64 `json:"p99_delta_ms"`
}

type trialConfig struct {
	size, singles, sweeps  int
	duration               time.Duration
	rate, offered          float64
	conc, readBuf, srcPort int
	clientHop              bool // every body through a decoder goroutine (see fleet.hop)
	decodeEvery            int  // scan (and decode) every decodeEvery-th stream only
	settle                 time.Duration
	serverArgs             []string
	natsServers            int     // NATS servers under k > 1 nodes
	natsBin                string  // run them as processes of this nats-server binary
	log                    logSpec // the cluster's event log under k > 1 nodes
	profileDir             string
	profileModes           []string
	hbImpact               bool
	progress               bool
	dashboard              bool // one live dashboard open on node 0 (dashboard.go)
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }

// runTrial measures one server mode (shown as label) at N streams spread
// over k server processes (k > 1: natscluster nodes, mode sfere).
func runTrial(cfg trialConfig, bin, label, serverMode string, n, k, run int) (t Trial) {
	mode := label
	t = Trial{Mode: label, N: n, Run: run, Nodes: k}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		t.LoadAvg = strings.TrimSpace(string(b))
	}
	fail := func(err error) { t.Errors = append(t.Errors, err.Error()); logf("  %s N=%d: %v", mode, n, err) }

	args := cfg.serverArgs
	if cfg.dashboard {
		args = append(slices.Clone(args), "-dashboard")
	}
	cl, err := startNodes(bin, serverMode, args, k, cfg.natsServers, cfg.natsBin, cfg.log)
	if err != nil {
		fail(err)
		return t
	}
	defer cl.stop()
	srv := cl.srvs[0] // broadcasts, sweeps and profiles go to node 0
	time.Sleep(300 * time.Millisecond)
	if st, err := cl.stats(); err == nil {
		t.RSSBase = st.RSSBytes
	}

	// Connect: stream i to node i mod k.
	start := time.Now()
	f, refused := connect(cl.streamAddrs(), serverMode, n, cfg.conc, cfg.readBuf, cfg.srcPort, cfg.decodeEvery, cfg.clientHop, cfg.progress)
	t.DecodeEvery = cfg.decodeEvery
	defer f.closeAll()
	t.Held, t.Refused = len(f.conns), refused
	if refused != "" {
		logf("  %s: %s", mode, refused)
	}
	if err := waitHeld(cl, t.Held); err != nil {
		fail(err)
	}
	t.ConnectSec = time.Since(start).Seconds()
	logf("  %s N=%d: %d streams held, connected in %.2fs", mode, n, t.Held, t.ConnectSec)
	if t.Held == 0 {
		return t
	}

	if cfg.dashboard {
		d, err := openDashboard(srv.ready.Control)
		if err != nil {
			fail(err)
			return t
		}
		defer func() { t.DashboardBytes = d.close() }()
	}
	time.Sleep(cfg.settle)
	idleMemory(cfg, cl, srv, &t)
	seq := uint64(1)
	seq = singleBroadcasts(cfg, srv, f, &t, seq)
	if err := sweepTimes(cfg, srv, k, &t); err != nil {
		fail(err)
	}
	seq = sustained(cfg, srv, f, &t, seq)
	heartbeatImpact(cfg, srv, f, &t, seq)

	if st, err := cl.stats(); err == nil {
		t.RSSAfter = st.RSSBytes
		t.Ended = st.Ended
		if len(st.Ended) > 0 {
			logf("  %s N=%d: streams ended at the server: %v", mode, n, st.Ended)
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		t.LoadEnd = strings.TrimSpace(string(b))
	}
	t.Closed = f.closed.Load()
	if t.Closed > 0 {
		fail(fmt.Errorf("%d streams were closed by the server", t.Closed))
	}
	return t
}

// waitHeld waits (up to 20 s) until the nodes hold held streams in all.
func waitHeld(cl *nodes, held int) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := cl.stats()
		if err == nil && st.Streams >= held {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server holds %d of %d streams after 20s", st.Streams, held)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// idleMemory records the nodes' memory with every stream held and idle,
// before and after a GC, and a heap profile if asked for.
func idleMemory(cfg trialConfig, cl *nodes, srv *server, t *Trial) {
	if st, err := cl.stats(); err == nil {
		t.RSSIdle, t.Goroutines, t.StackInuse, t.HeapInuse = st.RSSBytes, st.Goroutines, st.StackInuse, st.HeapInuse
		t.RSSPerStreamKiB = float64(st.RSSBytes-t.RSSBase) / float64(t.Held) / 1024
	}
	if st, err := cl.gc(); err == nil {
		t.RSSIdleGC = st.RSSBytes
		t.GCPerStreamKiB = float64(st.RSSBytes-t.RSSBase) / float64(t.Held) / 1024
	}
	if cfg.profileDir != "" && slices.Contains(cfg.profileModes, t.Mode) {
		path := filepath.Join(cfg.profileDir, fmt.Sprintf("heap-idle-%s-%d-run%d.pprof", t.Mode, t.Held, t.Run))
		if err := srv.heapProfile(path); err != nil {
			logf("  heap profile: %v", err)
		}
	}
}

// singleBroadcasts times one broadcast to every stream, several times; it
// returns the next sequence number.
func singleBroadcasts(cfg trialConfig, srv *server, f *fleet, t *Trial, seq uint64) uint64 {
	mode, n, want := t.Mode, t.N, int64(f.sampled())
	for range cfg.singles {
		ph := measure(srv, f, wire.BroadcastRequest{Count: 1, Size: cfg.size, Seq0: seq}, want, false, nil)
		seq++
		t.SingleAll = append(t.SingleAll, ph)
		time.Sleep(200 * time.Millisecond)
	}
	t.Single = medianPhase(t.SingleAll)
	logNodes(mode, n, "one broadcast", t.Single)
	logf("  %s N=%d: one broadcast: p50 %.1fms p99 %.1fms max %.1fms%s (median of %d), missing %d, kernel drops %d, retransmits %d",
		mode, n, t.Single.P50ms, t.Single.P99ms, t.Single.Maxms, serverPart(t.Single), len(t.SingleAll), t.Single.Missing, t.Single.Net.SoftnetDrops, t.Single.Net.RetransSegs)
	return seq
}

// sweepTimes times heartbeat sweeps (one node only: a sweep is a node's
// own business, and the cross-node figures are about broadcasts).
func sweepTimes(cfg trialConfig, srv *server, k int, t *Trial) error {
	sweeps := cfg.sweeps
	if k > 1 {
		sweeps = 0
	}
	var ferr error
	for range sweeps {
		res, err := srv.sweep()
		if errors.Is(err, errNotImplemented) {
			break
		}
		if err != nil {
			ferr = err
			break
		}
		t.SweepAll = append(t.SweepAll, float64(res.SweepNS)/1e6)
		time.Sleep(100 * time.Millisecond)
	}
	if len(t.SweepAll) > 0 {
		t.SweepMs = median(t.SweepAll)
		logf("  %s N=%d: heartbeat sweep %.1fms (median of %d)", t.Mode, t.N, t.SweepMs, len(t.SweepAll))
	}
	return ferr
}

// sustained measures sustained broadcasts for cfg.duration (if any); it
// returns the next sequence number.
func sustained(cfg trialConfig, srv *server, f *fleet, t *Trial, seq uint64) uint64 {
	if cfg.duration <= 0 {
		return seq
	}
	mode, n, want := t.Mode, t.N, int64(f.sampled())
	rate := cfg.rate
	if rate <= 0 {
		rate = math.Max(1, math.Round(cfg.offered/float64(t.Held)))
	}
	count := max(1, int(math.Round(rate*cfg.duration.Seconds())))
	req := wire.BroadcastRequest{Count: count, Size: cfg.size, Rate: rate, Seq0: seq}
	seq += uint64(count)
	var prof func() error
	if cfg.profileDir != "" && slices.Contains(cfg.profileModes, mode) {
		path := filepath.Join(cfg.profileDir, fmt.Sprintf("cpu-%s-%d-run%d.pprof", mode, t.Held, t.Run))
		client := filepath.Join(cfg.profileDir, fmt.Sprintf("cpu-client-%s-%d-run%d.pprof", mode, t.Held, t.Run))
		prof = func() error {
			// This tool's own profile beside the server's: its readers
			// and decoders share the machine with the server.
			stop, err := profileSelf(client)
			if err != nil {
				return err
			}
			err = srv.profile(path, cfg.duration)
			return errors.Join(err, stop())
		}
	}
	t.Sustained = measure(srv, f, req, want*int64(count), cfg.progress, prof)
	logf("  %s N=%d: sustained %d x %.0f/s: %.0f deliveries/s, p50 %.1fms p99 %.1fms max %.1fms%s, missing %d, kernel drops %d, retransmits %d, client CPU %.1fs, %.1f wire B/delivery",
		mode, n, count, rate, t.Sustained.PerSec, t.Sustained.P50ms, t.Sustained.P99ms, t.Sustained.Maxms, serverPart(t.Sustained), t.Sustained.Missing, t.Sustained.Net.SoftnetDrops, t.Sustained.Net.RetransSegs, t.Sustained.ClientCPUSec, t.Sustained.WirePerDelivery)
	logNodes(mode, n, "sustained", t.Sustained)
	return seq
}

// serverPart says what the server's own latency was in a phase, if it
// keeps one.
func serverPart(ph Phase) string {
	if ph.ServerWrite == nil || ph.ServerWrite.Count == 0 {
		return ""
	}
	return fmt.Sprintf(" (server's writes: p50 %.1fms p99 %.1fms)", float64(ph.ServerWrite.P50ns)/1e6, float64(ph.ServerWrite.P99ns)/1e6)
}

// heartbeatImpact measures a light broadcast rate (a fifth of the offered
// load), without and then with a sweep every 500 ms, if asked for and if
// the server sweeps.
func heartbeatImpact(cfg trialConfig, srv *server, f *fleet, t *Trial, seq uint64) {
	if !cfg.hbImpact || len(t.SweepAll) == 0 {
		return
	}
	want := int64(f.sampled())
	rate := math.Max(1, math.Round(cfg.offered/5/float64(t.Held)))
	count := max(1, int(math.Round(rate*10)))
	imp := &HBImpact{}
	req := wire.BroadcastRequest{Count: count, Size: cfg.size, Rate: rate, Seq0: seq}
	seq += uint64(count)
	imp.Without = measure(srv, f, req, want*int64(count), false, nil)
	req.Seq0 = seq
	stop := make(chan struct{})
	var sweeps atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := srv.sweep(); err == nil {
					sweeps.Add(1)
				}
			}
		}
	})
	imp.With = measure(srv, f, req, want*int64(count), false, nil)
	close(stop)
	wg.Wait()
	imp.Sweeps = int(sweeps.Load())
	imp.DeltaMs = imp.With.P99ms - imp.Without.P99ms
	t.HBImpact = imp
	logf("  %s N=%d: heartbeat impact at %.0f/s: p99 %.1fms without, %.1fms with %d sweeps (+%.1fms)",
		t.Mode, t.N, rate, imp.Without.P99ms, imp.With.P99ms, imp.Sweeps, imp.DeltaMs)
}

// measure runs one broadcast request and waits until every expected stamp
// arrived, or none arrived for 10 s, or a hard bound passed.
func measure(srv *server, f *fleet, req wire.BroadcastRequest, expected int64, progress bool, prof func() error) Phase {
	ph := Phase{Broadcasts: req.Count, Rate: req.Rate, Expected: expected}
	f.window(req.Seq0, uint64(req.Count))
	serverLat := srv.markLatency() == nil
	net0 := host.Read()
	wire0 := f.wire.Load()
	cpu0 := selfCPU()
	issueBound := 10*time.Minute + time.Duration(float64(req.Count)/math.Max(req.Rate, 1)*10*float64(time.Second))
	type answer struct {
		res wire.BroadcastResult
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := srv.broadcast(req, issueBound)
		done <- answer{res, err}
	}()
	profDone := make(chan error, 1)
	if prof != nil {
		go func() { profDone <- prof() }()
	}
	var (
		res      wire.BroadcastResult
		issued   bool
		last     = f.delivered.Load()
		lastMove = time.Now()
		lastLog  = time.Now()
		hard     = time.Now().Add(issueBound)
	)
	for {
		time.Sleep(5 * time.Millisecond)
		got := f.delivered.Load()
		if got != last {
			last, lastMove = got, time.Now()
		}
		if !issued {
			select {
			case a := <-done:
				issued = true
				res = a.res
				if a.err != nil {
					logf("  broadcast: %v", a.err)
				}
			default:
			}
		}
		if issued && got >= expected {
			break
		}
		if time.Since(lastMove) > 10*time.Second && (issued || got > 0) {
			logf("  no delivery for 10s: %d of %d delivered", got, expected)
			break
		}
		if time.Now().After(hard) {
			logf("  gave up after %v: %d of %d delivered", issueBound, got, expected)
			break
		}
		if progress && time.Since(lastLog) >= 2*time.Second {
			lastLog = time.Now()
			logf("    ... %d/%d deliveries (%.0f%%)", got, expected, 100*float64(got)/float64(expected))
		}
	}
	if prof != nil {
		if err := <-profDone; err != nil {
			logf("  profile: %v", err)
		}
	}
	ph.Net = host.Read().Sub(net0)
	if serverLat {
		if l, err := srv.latency(); err == nil {
			ph.ServerWrite = &l
		}
	}
	ph.Delivered = f.delivered.Load()
	ph.WireBytes = f.wire.Load() - wire0
	ph.ClientCPUSec = (selfCPU() - cpu0).Seconds()
	if ph.Delivered > 0 {
		ph.WirePerDelivery = float64(ph.WireBytes) / float64(ph.Delivered)
	}
	ph.Short, ph.Missing = f.short(uint32(req.Count))
	ph.Reordered = f.reorder.Load()
	ph.Failed = res.Failed
	_, q, mx := f.lat.summary(0.5, 0.99)
	ph.P50ms, ph.P99ms, ph.Maxms = float64(q[0])/1e6, float64(q[1])/1e6, float64(mx)/1e6
	if k := len(f.nodeLat); k > 1 {
		for i := range k {
			ph.PerNode = append(ph.PerNode, f.nodeLatency(uint32(req.Count), i))
		}
		local := f.nodeLatency(uint32(req.Count), 0)
		ph.Local = &local
		remote := f.nodeLatency(uint32(req.Count), span(1, k)...)
		ph.Remote = &remote
	}
	if res.FirstSend > 0 {
		ph.IssueSec = float64(res.LastSend-res.FirstSend) / 1e9
		if lr := f.lastReceive(); lr > res.FirstSend {
			ph.TotalSec = float64(lr-res.FirstSend) / 1e9
			ph.PerSec = float64(ph.Delivered) / ph.TotalSec
		}
	}
	return ph
}

// connect opens n streams with conc dialers at a time. It stops early, and
// says why, when the OS refuses more sockets.
//
// With srcPort > 0 stream i binds local port srcPort+i: below the kernel's
// ephemeral range, so that fault-injection rules other programs put on
// ephemeral loopback ports (nftables drops by port) cannot hit our streams.
//
// Stream i goes to addrs[i mod len(addrs)]: round-robin over the nodes.
//
// With every > 1 only every every-th stream (i mod every == 0) is scanned
// for stamps (and decoded); the others are sinks, read and dropped.
func connect(addrs []string, mode string, n, conc, readBuf, srcPort, every int, hop, progress bool) (*fleet, string) {
	f := &fleet{hop: hop}
	if len(addrs) > 1 {
		for range addrs {
			f.nodeLat = append(f.nodeLat, &hist{})
		}
	}
	slots := make([]*stream, n)
	jobs := make(chan int)
	var (
		refusedMu sync.Mutex
		refused   string
		stop      atomic.Bool
		errs      atomic.Int64
		done      atomic.Int64
	)
	refuse := func(msg string) {
		refusedMu.Lock()
		if refused == "" {
			refused = msg
		}
		refusedMu.Unlock()
		stop.Store(true)
	}
	dial := func(i int) (net.Conn, error) {
		d := net.Dialer{Timeout: 10 * time.Second}
		if srcPort > 0 {
			d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: srcPort + i}
			d.Control = reuseAddr
		}
		return d.Dial("tcp", addrs[i%len(addrs)])
	}
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for i := range jobs {
				if stop.Load() {
					continue
				}
				c, err := dial(i)
				if err != nil {
					switch {
					case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
						refuse(fmt.Sprintf("the OS refused more streams after %d: %v (open-file limit %d per process)", done.Load(), err, host.FileLimit()))
					case errors.Is(err, syscall.EADDRNOTAVAIL):
						refuse(fmt.Sprintf("the OS refused more streams after %d: %v (out of ephemeral ports)", done.Load(), err))
					default:
						if errs.Add(1) > 100 {
							refuse(fmt.Sprintf("gave up after %d failed connects; last: %v", errs.Load(), err))
						}
					}
					continue
				}
				s := newStream(i, i%len(addrs), c, mode != wire.ModeRaw)
				s.sink = every > 1 && i%every != 0
				f.wg.Add(1)
				go f.read(s, readBuf)
				if s.http {
					_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
					if _, err := c.Write(requestFor(mode, i)); err != nil {
						_ = c.Close()
						errs.Add(1)
						continue
					}
					select {
					case <-s.ready:
					case <-time.After(10 * time.Second):
					}
					if !s.ok {
						_ = c.Close()
						if errs.Add(1) > 100 {
							refuse("gave up after 100 failed stream requests")
						}
						continue
					}
				}
				slots[i] = s
				done.Add(1)
			}
		})
	}
	stopProgress := make(chan struct{})
	var pwg sync.WaitGroup
	if progress {
		pwg.Go(func() {
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-stopProgress:
					return
				case <-tick.C:
					logf("    ... %d/%d streams", done.Load(), n)
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(stopProgress)
	pwg.Wait()
	for _, s := range slots {
		if s != nil {
			f.conns = append(f.conns, s)
		}
	}
	if refused == "" && len(f.conns) < n {
		refused = fmt.Sprintf("%d of %d streams failed to open (%d errors)", n-len(f.conns), n, errs.Load())
	}
	return f, refused
}

// selfCPU is the CPU time this process has used (user and system).
// profileSelf starts a CPU profile of this tool into path; stop ends it.
func profileSelf(path string) (stop func() error, err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// requestFor is the HTTP request that opens stream i in mode.
func requestFor(mode string, i int) []byte {
	path := fmt.Sprintf("/sse?id=%d", i)
	if mode == wire.ModeCentrifuge {
		// {"id":1,"connect":{}} — a connect command in centrifuge's JSON protocol.
		path = "/sse?cf_connect=%7B%22id%22%3A1%2C%22connect%22%3A%7B%7D%7D"
	}
	accept := ""
	if wire.Gzipped(mode) {
		accept = "Accept-Encoding: gzip\r\n"
	}
	return []byte("GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n" + accept + "\r\n")
}

// reuseAddr sets SO_REUSEADDR, so that a fixed local port still in
// TIME_WAIT from an earlier trial can be bound again.
func reuseAddr(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

func median(v []float64) float64 {
	var ok []float64
	for _, x := range v {
		if !math.IsNaN(x) {
			ok = append(ok, x)
		}
	}
	if len(ok) == 0 {
		return math.NaN()
	}
	slices.Sort(ok)
	m := len(ok) / 2
	if len(ok)%2 == 1 {
		return ok[m]
	}
	return (ok[m-1] + ok[m]) / 2
}

// medianPhase takes the median of each figure over phases; counts of
// missing deliveries are summed (any loss must show).
// serverWrite is ph's server-side latency, zero if it has none.
func serverWrite(ph Phase) wire.WriteLatency {
	if ph.ServerWrite == nil {
		return wire.WriteLatency{}
	}
	return *ph.ServerWrite
}

func medianPhase(ps []Phase) Phase {
	if len(ps) == 0 {
		return Phase{}
	}
	pick := func(fn func(Phase) float64) float64 {
		v := make([]float64, len(ps))
		for i, p := range ps {
			v[i] = fn(p)
		}
		return median(v)
	}
	out := ps[0]
	out.P50ms = pick(func(p Phase) float64 { return p.P50ms })
	out.P99ms = pick(func(p Phase) float64 { return p.P99ms })
	out.Maxms = pick(func(p Phase) float64 { return p.Maxms })
	out.PerSec = pick(func(p Phase) float64 { return p.PerSec })
	out.TotalSec = pick(func(p Phase) float64 { return p.TotalSec })
	out.IssueSec = pick(func(p Phase) float64 { return p.IssueSec })
	out.WirePerDelivery = pick(func(p Phase) float64 { return p.WirePerDelivery })
	out.WireBytes = int64(pick(func(p Phase) float64 { return float64(p.WireBytes) }))
	out.Expected, out.Delivered, out.Missing, out.Short, out.Reordered, out.Failed = 0, 0, 0, 0, 0, 0
	if ps[0].ServerWrite != nil {
		w := *ps[0].ServerWrite
		w.P50ns = int64(pick(func(p Phase) float64 { return float64(serverWrite(p).P50ns) }))
		w.P99ns = int64(pick(func(p Phase) float64 { return float64(serverWrite(p).P99ns) }))
		w.Maxns = int64(pick(func(p Phase) float64 { return float64(serverWrite(p).Maxns) }))
		out.ServerWrite = &w
	}
	if ps[0].Local != nil {
		lats := func(fn func(Phase) *NodeLat) *NodeLat {
			var ls []NodeLat
			for _, p := range ps {
				if l := fn(p); l != nil {
					ls = append(ls, *l)
				}
			}
			m := medianLat(ls)
			return &m
		}
		out.Local = lats(func(p Phase) *NodeLat { return p.Local })
		out.Remote = lats(func(p Phase) *NodeLat { return p.Remote })
		out.PerNode = nil
		for i := range ps[0].PerNode {
			out.PerNode = append(out.PerNode, *lats(func(p Phase) *NodeLat {
				if i < len(p.PerNode) {
					return &p.PerNode[i]
				}
				return nil
			}))
		}
	}
	out.Net = host.Counters{}
	for _, p := range ps {
		out.Net.SoftnetDrops += p.Net.SoftnetDrops
		out.Net.RetransSegs += p.Net.RetransSegs
		out.Expected += p.Expected
		out.Delivered += p.Delivered
		out.Missing += p.Missing
		out.Short += p.Short
		out.Reordered += p.Reordered
		out.Failed += p.Failed
	}
	return out
}

// medianLat takes the median of each latency over phases and sums the
// delivered and missing counts.
func medianLat(ls []NodeLat) NodeLat {
	if len(ls) == 0 {
		return NodeLat{}
	}
	pick := func(fn func(NodeLat) float64) float64 {
		v := make([]float64, len(ls))
		for i, l := range ls {
			v[i] = fn(l)
		}
		return median(v)
	}
	out := NodeLat{Nodes: ls[0].Nodes, Streams: ls[0].Streams}
	out.P50ms = pick(func(l NodeLat) float64 { return l.P50ms })
	out.P99ms = pick(func(l NodeLat) float64 { return l.P99ms })
	out.Maxms = pick(func(l NodeLat) float64 { return l.Maxms })
	for _, l := range ls {
		out.Delivered += l.Delivered
		out.Missing += l.Missing
	}
	return out
}

// nodeLatency summarizes the window's latency on the streams of the given
// nodes; want is the stamps each stream should have got.
func (f *fleet) nodeLatency(want uint32, nodes ...int) NodeLat {
	l := NodeLat{Nodes: nodes}
	hs := make([]*hist, 0, len(nodes))
	for _, i := range nodes {
		hs = append(hs, f.nodeLat[i])
		_, missing := f.shortOn(want, i)
		l.Missing += missing
	}
	for _, s := range f.conns {
		if !s.sink && slices.Contains(nodes, s.node) {
			l.Streams++
			l.Delivered += int64(s.got.Load())
		}
	}
	_, q, mx := mergedSummary(hs, 0.5, 0.99)
	l.P50ms, l.P99ms, l.Maxms = float64(q[0])/1e6, float64(q[1])/1e6, float64(mx)/1e6
	return l
}

// span returns lo, lo+1, ..., hi-1.
func span(lo, hi int) []int {
	out := make([]int, 0, max(0, hi-lo))
	for i := lo; i < hi; i++ {
		out = append(out, i)
	}
	return out
}

// logNodes logs a multi-node phase's local and remote latency.
func logNodes(mode string, n int, what string, ph Phase) {
	if ph.Local == nil || ph.Remote == nil {
		return
	}
	logf("  %s N=%d: %s, node 0 (local, %d streams): p50 %.1fms p99 %.1fms max %.1fms; other nodes (remote, %d streams): p50 %.1fms p99 %.1fms max %.1fms, missing %d",
		mode, n, what, ph.Local.Streams, ph.Local.P50ms, ph.Local.P99ms, ph.Local.Maxms,
		ph.Remote.Streams, ph.Remote.P50ms, ph.Remote.P99ms, ph.Remote.Maxms, ph.Remote.Missing)
}
