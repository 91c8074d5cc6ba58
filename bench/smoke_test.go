package bench

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestSmokeAllModes builds the server and the load tool and runs the tool
// end to end at N=50 in every mode (and both other sfere paths): every stream
// opens, every broadcast arrives, nothing is lost.
func TestSmokeAllModes(t *testing.T) {
	bin := buildTools(t, "./cmd/sfere-bench-server", "./cmd/sfere-load")
	out := filepath.Join(t.TempDir(), "smoke.json")
	svg := filepath.Join(t.TempDir(), "smoke.svg")
	run := exec.Command(filepath.Join(bin, "sfere-load"),
		"-n", "50", "-modes", "sfere,raw,centrifuge,naive,sfere-serve,sfere-nethttp",
		"-singles", "2", "-sweeps", "2", "-duration", "1s", "-rate", "50",
		"-settle", "100ms", "-quiet", "-hb-impact=false", "-json", out, "-plot", svg, "-max-time", "2m")
	log, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("sfere-load: %v\n%s", err, log)
	}
	t.Logf("%s", log)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Trials []struct {
			Mode      string   `json:"mode"`
			Held      int      `json:"held"`
			Closed    int64    `json:"closed_by_server"`
			Errors    []string `json:"errors"`
			SweepMs   float64  `json:"sweep_ms"`
			Single    phase    `json:"single"`
			Sustained phase    `json:"sustained"`
		} `json:"trials"`
		Summaries []json.RawMessage `json:"summaries"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Trials) != 6 || len(res.Summaries) != 6 {
		t.Fatalf("want 6 trials and 6 summaries, got %d and %d", len(res.Trials), len(res.Summaries))
	}
	for _, tr := range res.Trials {
		if tr.Held != 50 || tr.Closed != 0 || len(tr.Errors) > 0 {
			t.Errorf("%s: held %d, closed %d, errors %v", tr.Mode, tr.Held, tr.Closed, tr.Errors)
		}
		for name, ph := range map[string]phase{"single": tr.Single, "sustained": tr.Sustained} {
			if ph.Expected == 0 || ph.Delivered != ph.Expected || ph.Missing != 0 || ph.PerSec <= 0 {
				t.Errorf("%s %s: delivered %d of %d, missing %d, %.0f/s", tr.Mode, name, ph.Delivered, ph.Expected, ph.Missing, ph.PerSec)
			}
		}
		if hasSweep := tr.Mode != "centrifuge"; hasSweep != (tr.SweepMs > 0) {
			t.Errorf("%s: sweep %.2f ms", tr.Mode, tr.SweepMs)
		}
	}
	if fi, err := os.Stat(svg); err != nil || fi.Size() == 0 {
		t.Errorf("plot not written: %v", err)
	}
}

// TestSmokeCompressed runs the compressed modes at N=50 on lobby-like
// payloads beside uncompressed sfere: every stream of sfere-gzip and
// naive-gzip is decoded with the standard gzip reader and gets every
// broadcast, and sfere-gzip's wire bytes per delivery, read at the
// client's sockets, are a fraction of uncompressed sfere's.
func TestSmokeCompressed(t *testing.T) {
	bin := buildTools(t, "./cmd/sfere-bench-server", "./cmd/sfere-load")
	out := filepath.Join(t.TempDir(), "gzip.json")
	run := exec.Command(filepath.Join(bin, "sfere-load"),
		"-n", "50", "-modes", "sfere,sfere-gzip,naive-gzip", "-server-args", "-payload lobby",
		"-singles", "2", "-sweeps", "1", "-duration", "1s", "-rate", "50", "-src-port", "0",
		"-settle", "100ms", "-quiet", "-hb-impact=false", "-json", out, "-max-time", "2m")
	log, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("sfere-load: %v\n%s", err, log)
	}
	t.Logf("%s", log)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Trials []struct {
			Mode      string `json:"mode"`
			Held      int    `json:"held"`
			Closed    int64  `json:"closed_by_server"`
			Sustained struct {
				phase
				WirePerDelivery float64 `json:"wire_bytes_per_delivery"`
				ServerWrite     *struct {
					Count int64 `json:"count"`
					P99ns int64 `json:"p99_ns"`
				} `json:"server_write"`
			} `json:"sustained"`
		} `json:"trials"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	wire := map[string]float64{}
	for _, tr := range res.Trials {
		ph := tr.Sustained
		if tr.Held != 50 || tr.Closed != 0 || ph.Expected == 0 || ph.Delivered != ph.Expected || ph.Missing != 0 {
			t.Errorf("%s: held %d, closed %d, delivered %d of %d, missing %d", tr.Mode, tr.Held, tr.Closed, ph.Delivered, ph.Expected, ph.Missing)
		}
		// The sfere modes also report the hub's own latency of the same
		// deliveries (to the end of each write); naive keeps none.
		switch sw := ph.ServerWrite; {
		case strings.HasPrefix(tr.Mode, "sfere") && (sw == nil || sw.Count != ph.Expected || sw.P99ns <= 0):
			t.Errorf("%s: server-side latency %+v, want %d deliveries counted", tr.Mode, sw, ph.Expected)
		case !strings.HasPrefix(tr.Mode, "sfere") && sw != nil:
			t.Errorf("%s: server-side latency %+v from a mode that keeps none", tr.Mode, sw)
		}
		wire[tr.Mode] = ph.WirePerDelivery
	}
	if len(wire) != 3 {
		t.Fatalf("trials of %v, want sfere, sfere-gzip and naive-gzip", wire)
	}
	if wire["sfere"] == 0 || wire["sfere-gzip"] == 0 || wire["sfere-gzip"]*2 > wire["sfere"] {
		t.Errorf("wire bytes per delivery: sfere %.1f, sfere-gzip %.1f: want gzip at most half", wire["sfere"], wire["sfere-gzip"])
	}
}

// TestSmokeNodes runs the load tool with -nodes 2 at N=40: an embedded
// NATS server, two sfere nodes in a natscluster, streams spread over both,
// broadcasts triggered on node 0 reach every stream on both nodes.
func TestSmokeNodes(t *testing.T) {
	bin := buildTools(t, "./cmd/sfere-bench-server", "./cmd/sfere-load")
	out := filepath.Join(t.TempDir(), "nodes.json")
	run := exec.Command(filepath.Join(bin, "sfere-load"),
		"-n", "40", "-modes", "sfere", "-nodes", "2", "-src-port", "13000",
		"-singles", "2", "-duration", "1s", "-rate", "50",
		"-settle", "100ms", "-quiet", "-hb-impact=false", "-json", out, "-max-time", "2m")
	log, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("sfere-load: %v\n%s", err, log)
	}
	t.Logf("%s", log)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Trials []struct {
			Mode      string    `json:"mode"`
			Nodes     int       `json:"nodes"`
			Held      int       `json:"held"`
			Closed    int64     `json:"closed_by_server"`
			Errors    []string  `json:"errors"`
			Single    nodePhase `json:"single"`
			Sustained nodePhase `json:"sustained"`
		} `json:"trials"`
		Summaries []struct {
			Nodes       int     `json:"nodes"`
			SingleCross float64 `json:"single_cross_p99_ratio"`
		} `json:"summaries"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Trials) != 1 || len(res.Summaries) != 1 {
		t.Fatalf("want 1 trial and 1 summary, got %d and %d", len(res.Trials), len(res.Summaries))
	}
	tr := res.Trials[0]
	if tr.Mode != "sfere/2n" || tr.Nodes != 2 || tr.Held != 40 || tr.Closed != 0 || len(tr.Errors) > 0 {
		t.Errorf("%s on %d nodes: held %d, closed %d, errors %v", tr.Mode, tr.Nodes, tr.Held, tr.Closed, tr.Errors)
	}
	for name, ph := range map[string]nodePhase{"single": tr.Single, "sustained": tr.Sustained} {
		if ph.Expected == 0 || ph.Delivered != ph.Expected || ph.Missing != 0 || ph.PerSec <= 0 {
			t.Errorf("%s: delivered %d of %d, missing %d, %.0f/s", name, ph.Delivered, ph.Expected, ph.Missing, ph.PerSec)
		}
		// Round-robin: 20 streams on each node, every one reached.
		if ph.Local == nil || ph.Remote == nil || len(ph.PerNode) != 2 {
			t.Fatalf("%s: no per-node breakdown", name)
		}
		for what, l := range map[string]*nodeLat{"local": ph.Local, "remote": ph.Remote} {
			if l.Streams != 20 || l.Missing != 0 || l.Delivered == 0 || l.P99ms <= 0 {
				t.Errorf("%s %s: %d streams, delivered %d, missing %d, p99 %.2f ms", name, what, l.Streams, l.Delivered, l.Missing, l.P99ms)
			}
		}
	}
	if s := res.Summaries[0]; s.Nodes != 2 || s.SingleCross <= 0 {
		t.Errorf("summary: %d nodes, cross-node ratio %.2f", s.Nodes, s.SingleCross)
	}
}

// TestSmokeNodesThroughTheLog runs the cross-node mode with the cluster's
// event log: three NATS servers routed into one cluster, two sfere nodes
// keeping a history, every broadcast a JetStream publish at 3 replicas
// and 1, from 4 concurrent callers: every stream gets every broadcast.
func TestSmokeNodesThroughTheLog(t *testing.T) {
	bin := buildTools(t, "./cmd/sfere-bench-server", "./cmd/sfere-load")
	out := filepath.Join(t.TempDir(), "log.json")
	run := exec.Command(filepath.Join(bin, "sfere-load"),
		"-n", "40", "-modes", "sfere", "-nodes", "2", "-nats-servers", "3", "-cluster-log", "r3,r1", "-src-port", "0",
		"-server-args", "-callers 4", "-singles", "2", "-duration", "1s", "-rate", "50",
		"-settle", "100ms", "-quiet", "-hb-impact=false", "-json", out, "-max-time", "3m")
	log, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("sfere-load: %v\n%s", err, log)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Trials []struct {
			Mode      string    `json:"mode"`
			Held      int       `json:"held"`
			Errors    []string  `json:"errors"`
			Sustained nodePhase `json:"sustained"`
		} `json:"trials"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	var modes []string
	for _, tr := range res.Trials {
		modes = append(modes, tr.Mode)
		ph := tr.Sustained
		if tr.Held != 40 || len(tr.Errors) > 0 || ph.Expected == 0 || ph.Delivered != ph.Expected || ph.Missing != 0 {
			t.Errorf("%s: held %d, errors %v, delivered %d of %d, missing %d", tr.Mode, tr.Held, tr.Errors, ph.Delivered, ph.Expected, ph.Missing)
		}
	}
	if strings.Join(modes, " ") != "sfere/2n+log-r3 sfere/2n+log-r1" {
		t.Errorf("trials %q, want sfere/2n+log-r3 and sfere/2n+log-r1", modes)
	}
}

type nodePhase struct {
	phase
	Local   *nodeLat  `json:"local"`
	Remote  *nodeLat  `json:"remote"`
	PerNode []nodeLat `json:"per_node"`
}

type nodeLat struct {
	Streams   int     `json:"streams"`
	Delivered int64   `json:"delivered"`
	Missing   int64   `json:"missing"`
	P99ms     float64 `json:"p99_ms"`
}

type phase struct {
	Expected  int64   `json:"expected"`
	Delivered int64   `json:"delivered"`
	Missing   int64   `json:"missing"`
	PerSec    float64 `json:"deliveries_per_s"`
}

// buildTools builds the packages into a temporary directory and returns
// it, or skips where the smoke tests cannot run.
func buildTools(t *testing.T, pkgs ...string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs two binaries")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the load tool reads /proc")
	}
	bin := t.TempDir()
	build := exec.Command("go", append([]string{"build", "-o", bin + string(filepath.Separator)}, pkgs...)...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestSmokeDashboard runs sfere with -dashboard at N=50: a second trial,
// labelled sfere+dash, holds one dashboard stream open throughout, which
// the server's dashboard keeps updating, and delivers every broadcast.
func TestSmokeDashboard(t *testing.T) {
	bin := buildTools(t, "./cmd/sfere-bench-server", "./cmd/sfere-load")
	out := filepath.Join(t.TempDir(), "smoke.json")
	run := exec.Command(filepath.Join(bin, "sfere-load"),
		"-n", "50", "-modes", "sfere", "-dashboard",
		"-singles", "2", "-sweeps", "2", "-duration", "2s", "-rate", "50",
		"-settle", "1500ms", "-quiet", "-hb-impact=false", "-json", out, "-max-time", "2m")
	log, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("sfere-load: %v\n%s", err, log)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Trials []struct {
			Mode      string   `json:"mode"`
			Held      int      `json:"held"`
			Errors    []string `json:"errors"`
			DashBytes int64    `json:"dashboard_bytes"`
			Sustained phase    `json:"sustained"`
		} `json:"trials"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Trials) != 2 || res.Trials[0].Mode != "sfere" || res.Trials[1].Mode != "sfere+dash" {
		t.Fatalf("want trials sfere and sfere+dash, got %+v\n%s", res.Trials, log)
	}
	for _, tr := range res.Trials {
		ph := tr.Sustained
		if tr.Held != 50 || len(tr.Errors) > 0 || ph.Expected == 0 || ph.Delivered != ph.Expected {
			t.Errorf("%s: held %d, errors %v, delivered %d of %d", tr.Mode, tr.Held, tr.Errors, ph.Delivered, ph.Expected)
		}
	}
	// The page's first update, then one a second over a trial of several
	// seconds: several KiB at the least.
	if got := res.Trials[1].DashBytes; got < 8<<10 {
		t.Errorf("the dashboard stream read %d bytes over the trial", got)
	}
	if got := res.Trials[0].DashBytes; got != 0 {
		t.Errorf("the trial without a dashboard read %d dashboard bytes", got)
	}
}

// TestSmokeDecodeEvery runs sfere-gzip at N=40 decoding every 4th stream
// only: the 10 sampled streams get every broadcast and count the wire
// bytes; the 30 others are read and dropped, and no stream is lost.
func TestSmokeDecodeEvery(t *testing.T) {
	bin := buildTools(t, "./cmd/sfere-bench-server", "./cmd/sfere-load")
	out := filepath.Join(t.TempDir(), "every.json")
	run := exec.Command(filepath.Join(bin, "sfere-load"),
		"-n", "40", "-modes", "sfere-gzip", "-server-args", "-payload lobby", "-decode-every", "4",
		"-singles", "1", "-sweeps", "0", "-duration", "1s", "-rate", "20", "-src-port", "0",
		"-settle", "100ms", "-quiet", "-hb-impact=false", "-json", out, "-max-time", "2m")
	log, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("sfere-load: %v\n%s", err, log)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Trials []struct {
			Held        int   `json:"held"`
			DecodeEvery int   `json:"decode_every"`
			Closed      int64 `json:"closed_by_server"`
			Sustained   struct {
				phase
				WirePerDelivery float64 `json:"wire_bytes_per_delivery"`
			} `json:"sustained"`
		} `json:"trials"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Trials) != 1 {
		t.Fatalf("%d trials, want 1\n%s", len(res.Trials), log)
	}
	tr := res.Trials[0]
	ph := tr.Sustained
	if tr.Held != 40 || tr.DecodeEvery != 4 || tr.Closed != 0 || ph.Expected != 10*20 || ph.Delivered != ph.Expected || ph.Missing != 0 {
		t.Errorf("held %d, decode every %d, closed %d, delivered %d of %d, missing %d; want 40 held, 10 streams x 20 delivered\n%s",
			tr.Held, tr.DecodeEvery, tr.Closed, ph.Delivered, ph.Expected, ph.Missing, log)
	}
	if ph.WirePerDelivery < 20 || ph.WirePerDelivery > 150 {
		t.Errorf("wire bytes per sampled delivery %.1f: want the sampled streams' compressed bytes only", ph.WirePerDelivery)
	}
}
