// Command sfere-load measures SSE fan-out: it starts sfere-bench-server
// in each mode (sfere, raw, centrifuge, naive), opens N real streams to it
// over loopback from this process, and reports streams held, connect time,
// send-to-receive latency of one broadcast and of sustained broadcasts,
// deliveries per second, missing deliveries, server RSS per stream and the
// heartbeat sweep time, with every mode's ratio to raw TCP in the same run.
//
//	go build -o bin/ ./cmd/... && bin/sfere-load -n 10000 -runs 3 -plot fanout.svg
//
// With -nodes k > 1 (mode sfere only) the tool also starts a NATS server in
// its own process and k sfere servers joined in a natscluster over it,
// spreads the streams round-robin over them, triggers every broadcast on
// node 0, and reports latency on node 0 (local) against the other nodes
// (remote, one NATS hop away):
//
//	bin/sfere-load -n 2000,6000 -modes sfere -nodes 1,3 -hb-impact=false
//
// The payload is the server's -payload (-server-args "-payload lobby"):
//
//   - dots (the default): a -size-byte <p> carrying the stamp ^seq:ts^,
//     padded with dots, appended at #feed. It compresses to almost
//     nothing: do not compare compressed modes with it.
//   - lobby: what the lobby (internal/lobby) sends for a chat line. The
//     element is the lobby's own "chat" template, <p class="chat-message">
//     <strong>name</strong>: text</p>, escaped by html/template, appended
//     at #messages. The name is one of 32 people (a Zipf draw: some talk
//     more); the text is 1 to 40 words (log-normal, median 5) drawn from
//     500 chat words by a Zipf-Mandelbrot law (s 1.1, q 2.7), with
//     capitals, commas and endings drawn too, and ends with the stamp
//     " ^seq:ts^" (decimal sequence number and send time in Unix
//     nanoseconds: about 30 bytes that no real line has). In the sfere
//     modes the hub keeps the lobby's history, so every event carries its
//     id and is followed by the lobby's position-signal patch, as the
//     lobby's are; naive-gzip (datastar-go alone) sends the element
//     without them. About 310 bytes per delivery on the wire uncompressed,
//     -size does not apply. See package bench/internal/chat.
//
// Every mode's client counts the bytes it reads from its sockets (wire
// B/deliv, HTTP framing included). The gzip modes' clients send
// Accept-Encoding: gzip and decode each stream with the standard gzip
// reader on the stream's reader goroutine; a stamp counts as received
// when it is decoded. The sfere modes also report the hub's own latency
// of the same deliveries, from each broadcast to the end of the write
// that carried it (server's writes): what is above it is the kernel's and
// this tool's. This tool reads every stream on the same machine as the
// server; -decode-every k scans (and decodes) only every k-th stream and
// reads and drops the rest, so that its own work takes less from the
// server (figures are then the sampled streams').
//
// All traffic goes to 127.0.0.1; every phase is bounded in time; the tool
// stops the servers it started and exits by itself.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sfere-go/sfere/bench/internal/host"
	"github.com/sfere-go/sfere/bench/internal/wire"
)

// variant is a mode served by another server binary (e.g. one built
// against a patched library).
type variant struct{ bin, mode string }

// Results is the JSON file the tool writes.
type Results struct {
	Started   time.Time    `json:"started"`
	Machine   host.Machine `json:"machine"`
	Args      []string     `json:"args"`
	Trials    []Trial      `json:"trials"`
	Summaries []*Summary   `json:"summaries"`
}

func main() {
	var (
		modesFlag   = flag.String("modes", strings.Join(wire.Modes, ","), "modes to run side by side")
		nFlag       = flag.String("n", "1000,2000,5000,10000", "stream counts")
		runs        = flag.Int("runs", 1, "runs of every mode and N; figures are medians over runs")
		size        = flag.Int("size", 200, "payload size in bytes (the HTML element carrying the stamp)")
		singles     = flag.Int("singles", 5, "single-broadcast repetitions per trial")
		sweeps      = flag.Int("sweeps", 5, "heartbeat sweeps per trial")
		duration    = flag.Duration("duration", 30*time.Second, "sustained phase: how long broadcasts are issued (0: skip)")
		rate        = flag.Float64("rate", 0, "sustained phase: broadcasts per second (0: -offered / N)")
		offered     = flag.Float64("offered", 120_000, "sustained phase: offered deliveries per second when -rate is 0")
		conc        = flag.Int("conc", 64, "connections opened at a time")
		srcPort     = flag.Int("src-port", 12000, "bind stream i to local port src-port+i, below the ephemeral range (0: kernel's choice)")
		readBuf     = flag.Int("readbuf", 8192, "read buffer per client connection, bytes")
		decodeEvery = flag.Int("decode-every", 1, "scan (and decode) every k-th stream only, reading and dropping the others: deliveries (and deliveries/s), latencies and wire bytes are then the sampled streams', and the tool's own work (decoding gzip) is k times less, so that it takes less CPU from the server on a shared machine; the server still writes to every stream")
		clientHop   = flag.Bool("client-hop", false, "hand every body (gzipped or not) to a goroutine of its own through a pipe, which decodes and scans it: how this tool read gzip before it decoded on each stream's reader goroutine, kept as a control for what the client adds to latency")
		settle      = flag.Duration("settle", 2*time.Second, "idle time before reading idle RSS")
		serverBin   = flag.String("server", "", "sfere-bench-server binary (default: next to this tool, on PATH, or go build)")
		serverArgs  = flag.String("server-args", "", "extra server flags, space separated (e.g. \"-gogc 200\")")
		jsonOut     = flag.String("json", "sfere-load.json", "results file")
		plotOut     = flag.String("plot", "", "write an SVG of latency and throughput against N")
		profileDir  = flag.String("profile", "", "save CPU profiles of the server's and of this tool's sustained phase (cpu-client-...) into this directory")
		profileMode = flag.String("profile-modes", "sfere", "modes to profile with -profile")
		hbImpact    = flag.Bool("hb-impact", true, "measure broadcast p99 with and without heartbeat sweeps running")
		quiet       = flag.Bool("quiet", false, "no progress lines")
		maxTime     = flag.Duration("max-time", 3*time.Hour, "exit after this long, whatever happens")
		variants    = flag.String("variants", "", "extra modes run by other server binaries: label=path[:mode],... (mode defaults to sfere), e.g. to compare library patches side by side")
		nodesFlag   = flag.String("nodes", "1", "server processes holding the streams; k > 1 runs k sfere nodes joined by natscluster over a NATS server embedded in this tool, broadcasts triggered on node 0 (mode sfere only); a list (1,3) runs each")
		clusterLog  = flag.String("cluster-log", "none", "with -nodes k > 1: none (broadcasts as NATS messages), r1 or r3 (the nodes keep a history, so every broadcast goes through the cluster's JetStream log with 1 or 3 replicas); a list (none,r1,r3) runs each, alternating within every run")
		natsServers = flag.Int("nats-servers", 1, "with -nodes k > 1: NATS servers, routed into one cluster (1 or 3; r3 needs 3), embedded in this tool unless -nats-bin")
		natsBin     = flag.String("nats-bin", "", "with -nodes k > 1: run the NATS servers as processes of this nats-server binary (go build github.com/nats-io/nats-server/v2), not inside this tool")
		dashFlag    = flag.Bool("dashboard", false, "also run every sfere mode with one live dashboard open (label <mode>+dash), right after it in each run: the server serves package dashboard on its control port and this tool reads one dashboard stream from before the first broadcast to the end of the trial; compare the two labels' figures")
		replot      = flag.String("replot", "", "run nothing: merge the trials of these result files (comma separated), print the table, write -json and -plot")
	)
	flag.Parse()
	if *replot != "" {
		replotFiles(strings.Split(*replot, ","), *jsonOut, *plotOut)
		return
	}
	modes := strings.Split(*modesFlag, ",")
	vars := map[string]variant{}
	if *variants != "" {
		for _, spec := range strings.Split(*variants, ",") {
			label, rest, ok := strings.Cut(spec, "=")
			path, mode, _ := strings.Cut(rest, ":")
			if mode == "" {
				mode = wire.ModeSfere
			}
			if !ok || label == "" || path == "" || !slices.Contains(wire.KnownModes, mode) || slices.Contains(wire.KnownModes, label) {
				fatalf("bad -variants entry %q (want label=path[:mode], label not a mode name)", spec)
			}
			vars[label] = variant{bin: path, mode: mode}
		}
	}
	for _, m := range modes {
		if _, ok := vars[m]; ok {
			continue
		}
		if !slices.Contains(wire.KnownModes, m) {
			fatalf("unknown mode %q (want some of %s)", m, strings.Join(wire.KnownModes, ","))
		}
	}
	var ns []int
	for _, s := range strings.Split(*nFlag, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || v < 1 {
			fatalf("bad -n %q", s)
		}
		if *srcPort > 0 && *srcPort+v > 65535 {
			fatalf("-src-port %d + N %d passes port 65535", *srcPort, v)
		}
		ns = append(ns, v)
	}
	var nodeCounts []int
	for _, s := range strings.Split(*nodesFlag, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || v < 1 || v > 16 {
			fatalf("bad -nodes %q (want 1 to 16)", s)
		}
		nodeCounts = append(nodeCounts, v)
	}
	serverMode := func(m string) string {
		if v, ok := vars[m]; ok {
			return v.mode
		}
		return m
	}
	if slices.Max(nodeCounts) > 1 {
		var others []string
		for _, m := range modes {
			if serverMode(m) != wire.ModeSfere {
				others = append(others, m)
			}
		}
		modesSet := false
		flag.Visit(func(f *flag.Flag) { modesSet = modesSet || f.Name == "modes" })
		switch {
		case !modesSet && slices.Min(nodeCounts) > 1:
			modes = []string{wire.ModeSfere} // the default list: keep what can run
			logf("-nodes %s: running mode sfere only; only sfere has a multi-node (natscluster) server", *nodesFlag)
		case len(others) > 0 && slices.Min(nodeCounts) > 1:
			fatalf("-nodes %s: only mode sfere runs on several nodes (natscluster); %s cannot. Use -modes sfere", *nodesFlag, strings.Join(others, ","))
		case len(others) > 0:
			logf("-nodes %s: %s run on one node only; only mode sfere runs on several (natscluster)", *nodesFlag, strings.Join(others, ","))
		}
	}
	var logs []logSpec
	for _, name := range strings.Split(*clusterLog, ",") {
		spec, ok := logSpecs[strings.TrimSpace(name)]
		if !ok {
			fatalf("bad -cluster-log %q (want none, r1 or r3)", name)
		}
		if spec.replicas > *natsServers {
			fatalf("-cluster-log %s needs -nats-servers %d or more", name, spec.replicas)
		}
		logs = append(logs, spec)
	}
	if *natsServers != 1 && *natsServers != 3 {
		fatalf("bad -nats-servers %d (want 1 or 3)", *natsServers)
	}
	time.AfterFunc(*maxTime, func() { fatalf("still running after -max-time %v; giving up", *maxTime) })

	cur, hard, err := host.RaiseFileLimit()
	if err != nil {
		logf("cannot raise the open-file limit: %v", err)
	}
	logf("open-file limit: %d (hard %d); net.core.netdev_max_backlog: %d", cur, hard, host.MaxBacklog())
	if maxN := slices.Max(ns); uint64(maxN)+64 > cur {
		logf("warning: N=%d needs more than the %d open files this process may have; the OS will refuse streams past about %d", maxN, cur, cur-64)
	}
	bin, err := findServer(*serverBin)
	if err != nil {
		fatalf("%v", err)
	}
	cfg := trialConfig{
		size: *size, singles: *singles, sweeps: *sweeps, duration: *duration, rate: *rate, offered: *offered,
		conc: *conc, readBuf: *readBuf, clientHop: *clientHop, decodeEvery: max(*decodeEvery, 1), srcPort: *srcPort, settle: *settle, serverArgs: strings.Fields(*serverArgs),
		profileDir: *profileDir, profileModes: strings.Split(*profileMode, ","), hbImpact: *hbImpact, progress: !*quiet,
		natsServers: *natsServers, natsBin: *natsBin,
	}
	if *profileDir != "" {
		if err := os.MkdirAll(*profileDir, 0o755); err != nil {
			fatalf("%v", err)
		}
	}

	res := Results{Started: time.Now().UTC(), Machine: host.Describe(), Args: os.Args[1:]}
	var labels []string // mode, or mode/kn for k nodes
	for run := 1; run <= *runs; run++ {
		for _, n := range ns {
			for _, k := range nodeCounts {
				for _, mode := range modes {
					v, ok := vars[mode]
					if !ok {
						v = variant{bin: bin, mode: mode}
					}
					if k > 1 && v.mode != wire.ModeSfere {
						continue // said so above
					}
					for li, spec := range logs {
						if k == 1 && li > 0 {
							break // one node has no cluster log
						}
						dashes := []bool{false}
						if *dashFlag && strings.HasPrefix(v.mode, wire.ModeSfere) {
							dashes = append(dashes, true)
						}
						for _, dash := range dashes {
							label := nodesLabel(mode, k)
							tc := cfg
							if k > 1 {
								label += spec.suffix()
								tc.log = spec
							}
							if dash {
								label += "+dash"
								tc.dashboard = true
							}
							if !slices.Contains(labels, label) {
								labels = append(labels, label)
							}
							logf("run %d/%d, N=%d, mode %s, %d node(s)%s", run, *runs, n, label, k, spec.suffix())
							res.Trials = append(res.Trials, runTrial(tc, v.bin, label, v.mode, n, k, run))
							if *jsonOut != "" {
								writeJSON(*jsonOut, &res) // partial results survive a crash
							}
						}
					}
				}
			}
		}
	}
	res.Summaries = summarize(res.Trials, labels, ns)
	if *jsonOut != "" {
		writeJSON(*jsonOut, &res)
		logf("results: %s", *jsonOut)
	}
	printTable(os.Stdout, res.Summaries, cfg)
	if *plotOut != "" {
		if err := plotResults(*plotOut, res.Summaries, modes, *size); err != nil {
			logf("plot: %v", err)
		} else {
			logf("plot: %s", *plotOut)
		}
	}
}

// replotFiles summarizes the trials of earlier runs, as if one run had made them.
func replotFiles(files []string, jsonOut, plotOut string) {
	var res Results
	var modes []string
	var ns []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			fatalf("%v", err)
		}
		var r Results
		if err := json.Unmarshal(b, &r); err != nil {
			fatalf("%s: %v", f, err)
		}
		if res.Started.IsZero() {
			res.Started, res.Machine = r.Started, r.Machine
		}
		res.Args = append(res.Args, "replot of "+f+": "+strings.Join(r.Args, " "))
		res.Trials = append(res.Trials, r.Trials...)
	}
	for _, t := range res.Trials {
		if !slices.Contains(modes, t.Mode) {
			modes = append(modes, t.Mode)
		}
		if !slices.Contains(ns, t.N) {
			ns = append(ns, t.N)
		}
	}
	slices.Sort(ns)
	res.Summaries = summarize(res.Trials, modes, ns)
	if jsonOut != "" {
		writeJSON(jsonOut, &res)
	}
	printTable(os.Stdout, res.Summaries, trialConfig{})
	if plotOut != "" {
		// The payload size is not in the trials; the title assumes the default.
		if err := plotResults(plotOut, res.Summaries, modes, 200); err != nil {
			fatalf("plot: %v", err)
		}
	}
}

// nodesLabel names a mode run on k nodes in results: mode itself for one
// node, "mode/kn" for more.
func nodesLabel(mode string, k int) string {
	if k <= 1 {
		return mode
	}
	return fmt.Sprintf("%s/%dn", mode, k)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "sfere-load: "+format+"\n", args...)
	os.Exit(1)
}

func writeJSON(path string, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		logf("json: %v", err)
		return
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		logf("json: %v", err)
	}
}

// Summary is the median over runs of one mode at one N, with its ratios
// to raw (each the median of the per-run ratios, raw from the same run).
type Summary struct {
	Mode  string `json:"mode"`
	N     int    `json:"n"`
	Runs  int    `json:"runs"`
	Nodes int    `json:"nodes,omitempty"`

	Held            int     `json:"held_min"`
	ConnectSec      float64 `json:"connect_s"`
	RSSPerStreamKiB float64 `json:"rss_per_stream_kib"`
	GCPerStreamKiB  float64 `json:"rss_per_stream_gc_kib"`
	SingleP50       float64 `json:"single_p50_ms"`
	SingleP99       float64 `json:"single_p99_ms"`
	SingleMax       float64 `json:"single_max_ms"`
	SweepMs         float64 `json:"sweep_ms,omitempty"`
	PerSec          float64 `json:"sustained_deliveries_per_s"`
	SustP50         float64 `json:"sustained_p50_ms"`
	SustP99         float64 `json:"sustained_p99_ms"`
	SustMax         float64 `json:"sustained_max_ms"`
	Missing         int64   `json:"missing_total"`
	Closed          int64   `json:"closed_by_server_total"`
	HBDeltaMs       float64 `json:"hb_p99_delta_ms,omitempty"`
	RSSIdleMiB      float64 `json:"rss_idle_mib"` // summed over the nodes
	// WirePerDelivery is the bytes the client read per delivery in the
	// sustained phase (one broadcast when there is none).
	WirePerDelivery float64 `json:"wire_bytes_per_delivery"`

	// With several nodes: node 0 (local) against the others (remote);
	// Cross is the median over runs of remote p99 / local p99.
	SingleLocalP99  float64 `json:"single_local_p99_ms,omitempty"`
	SingleRemoteP99 float64 `json:"single_remote_p99_ms,omitempty"`
	SingleLocalMax  float64 `json:"single_local_max_ms,omitempty"`
	SingleRemoteMax float64 `json:"single_remote_max_ms,omitempty"`
	SingleCross     float64 `json:"single_cross_p99_ratio,omitempty"`
	SustLocalP99    float64 `json:"sustained_local_p99_ms,omitempty"`
	SustRemoteP99   float64 `json:"sustained_remote_p99_ms,omitempty"`
	SustCross       float64 `json:"sustained_cross_p99_ratio,omitempty"`

	SingleMaxVsRaw float64 `json:"single_max_vs_raw,omitempty"`
	PerSecVsRaw    float64 `json:"deliveries_per_s_vs_raw,omitempty"`
	SweepVsRaw     float64 `json:"sweep_vs_raw_fanout,omitempty"`
}

func summarize(trials []Trial, modes []string, ns []int) []*Summary {
	find := func(mode string, n, run int) *Trial {
		for i := range trials {
			if t := &trials[i]; t.Mode == mode && t.N == n && t.Run == run {
				return t
			}
		}
		return nil
	}
	var out []*Summary
	for _, n := range ns {
		for _, mode := range modes {
			var ts []Trial
			for _, t := range trials {
				if t.Mode == mode && t.N == n {
					ts = append(ts, t)
				}
			}
			if len(ts) == 0 {
				continue
			}
			med := func(fn func(Trial) float64) float64 {
				v := make([]float64, 0, len(ts))
				for _, t := range ts {
					v = append(v, fn(t))
				}
				return median(v)
			}
			// ratio is the median over runs of fn(this)/fn(raw of that run).
			ratio := func(fn func(Trial) float64) float64 {
				var v []float64
				for _, t := range ts {
					if r := find(wire.ModeRaw, n, t.Run); r != nil && fn(*r) > 0 && fn(t) > 0 {
						v = append(v, fn(t)/fn(*r))
					}
				}
				r := median(v)
				if math.IsNaN(r) {
					return 0
				}
				return r
			}
			nan0 := func(x float64) float64 {
				if math.IsNaN(x) {
					return 0
				}
				return x
			}
			s := &Summary{Mode: mode, N: n, Runs: len(ts), Held: ts[0].Held, Nodes: max(1, ts[0].Nodes)}
			for _, t := range ts {
				s.Held = min(s.Held, t.Held)
				s.Missing += t.Single.Missing + t.Sustained.Missing
				s.Closed += t.Closed
			}
			s.ConnectSec = med(func(t Trial) float64 { return t.ConnectSec })
			s.RSSPerStreamKiB = med(func(t Trial) float64 { return t.RSSPerStreamKiB })
			s.GCPerStreamKiB = med(func(t Trial) float64 { return t.GCPerStreamKiB })
			s.SingleP50 = med(func(t Trial) float64 { return t.Single.P50ms })
			s.SingleP99 = med(func(t Trial) float64 { return t.Single.P99ms })
			s.SingleMax = med(func(t Trial) float64 { return t.Single.Maxms })
			s.SweepMs = nan0(med(func(t Trial) float64 {
				if t.SweepMs == 0 {
					return math.NaN()
				}
				return t.SweepMs
			}))
			s.PerSec = med(func(t Trial) float64 { return t.Sustained.PerSec })
			s.SustP50 = med(func(t Trial) float64 { return t.Sustained.P50ms })
			s.SustP99 = med(func(t Trial) float64 { return t.Sustained.P99ms })
			s.SustMax = med(func(t Trial) float64 { return t.Sustained.Maxms })
			s.HBDeltaMs = nan0(med(func(t Trial) float64 {
				if t.HBImpact == nil {
					return math.NaN()
				}
				return t.HBImpact.DeltaMs
			}))
			s.RSSIdleMiB = med(func(t Trial) float64 { return float64(t.RSSIdle) / (1 << 20) })
			s.WirePerDelivery = med(func(t Trial) float64 {
				if t.Sustained.WirePerDelivery > 0 {
					return t.Sustained.WirePerDelivery
				}
				return t.Single.WirePerDelivery
			})
			if ts[0].Single.Local != nil {
				lat := func(ph func(Trial) Phase, remote bool, fn func(NodeLat) float64) float64 {
					return nan0(med(func(t Trial) float64 {
						p := ph(t)
						l := p.Local
						if remote {
							l = p.Remote
						}
						if l == nil {
							return math.NaN()
						}
						return fn(*l)
					}))
				}
				single := func(t Trial) Phase { return t.Single }
				sust := func(t Trial) Phase { return t.Sustained }
				p99 := func(l NodeLat) float64 { return l.P99ms }
				maxL := func(l NodeLat) float64 { return l.Maxms }
				cross := func(ph func(Trial) Phase) float64 {
					return nan0(med(func(t Trial) float64 {
						p := ph(t)
						if p.Local == nil || p.Remote == nil || p.Local.P99ms <= 0 {
							return math.NaN()
						}
						return p.Remote.P99ms / p.Local.P99ms
					}))
				}
				s.SingleLocalP99, s.SingleRemoteP99 = lat(single, false, p99), lat(single, true, p99)
				s.SingleLocalMax, s.SingleRemoteMax = lat(single, false, maxL), lat(single, true, maxL)
				s.SingleCross = cross(single)
				s.SustLocalP99, s.SustRemoteP99 = lat(sust, false, p99), lat(sust, true, p99)
				s.SustCross = cross(sust)
			}
			s.SingleMaxVsRaw = ratio(func(t Trial) float64 { return t.Single.Maxms })
			s.PerSecVsRaw = ratio(func(t Trial) float64 { return t.Sustained.PerSec })
			// Both sweeps are timed by the server from the first write queued
			// (sfere) or started (raw) to the last one done.
			s.SweepVsRaw = ratio(func(t Trial) float64 { return t.SweepMs })
			out = append(out, s)
		}
	}
	return out
}
