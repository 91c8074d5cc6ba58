package bench

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestSmokeLobby builds the lobby and lobby-load once and runs the tool's
// scenarios small, each against a lobby process of its own.
func TestSmokeLobby(t *testing.T) {
	bin := buildTools(t, "./cmd/lobby-load", "github.com/sfere-go/sfere/cmd/lobby") // the lobby of the repository's module, through the replace directive
	t.Run("storm", func(t *testing.T) { smokeLobbyStorm(t, bin) })
	t.Run("churn", func(t *testing.T) { smokeLobbyChurn(t, bin) })
	t.Run("reconnect", func(t *testing.T) { smokeLobbyReconnect(t, bin) })
	t.Run("flood", func(t *testing.T) { smokeLobbyFlood(t, bin) })
}

// smokeLobbyFlood runs the snapshot flood small: 10 members, the flooder
// opening 2 streams at a time for 2 s, a 2 s history age. Every opening
// got its snapshot, and the lobby process's RSS was read before, during
// and after (the targets themselves are the tool's to judge, at full
// size: see SECURITY.md).
func smokeLobbyFlood(t *testing.T, bin string) {
	out := filepath.Join(t.TempDir(), "flood.json")
	run := exec.Command(filepath.Join(bin, "lobby-load"), "-scenario", "flood", "-members", "10", "-flood-conc", "2",
		"-flood-duration", "2s", "-history-age", "2s", "-quiet", "-json", out, "-max-time", "2m")
	log, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("lobby-load: %v\n%s", err, log)
	}
	t.Logf("%s", log)
	var res struct {
		Floods []struct {
			Members     int        `json:"members"`
			Opens       int        `json:"opens"`
			SnapshotKiB float64    `json:"snapshot_kib_p50"`
			Baseline    float64    `json:"baseline_rss_mib"`
			Peak        float64    `json:"flood_peak_rss_mib"`
			AtAge       float64    `json:"rss_at_history_age_mib"`
			Heap        [3]float64 `json:"heap_alloc_mib"`
			Samples     []struct {
				RSS float64 `json:"rss_mib"`
			} `json:"rss_after_leaving"`
			Errors []string `json:"errors"`
		} `json:"floods"`
	}
	readResults(t, out, &res)
	if len(res.Floods) != 1 {
		t.Fatalf("want 1 flood, got %d", len(res.Floods))
	}
	f := res.Floods[0]
	if f.Members != 10 || f.Opens < 2 || f.SnapshotKiB <= 0 || len(f.Errors) > 0 {
		t.Errorf("members %d, openings %d, snapshot %v KiB, errors %v", f.Members, f.Opens, f.SnapshotKiB, f.Errors)
	}
	if f.Baseline <= 0 || f.Peak < f.Baseline || f.AtAge <= 0 || len(f.Samples) == 0 || f.Heap[0] <= 0 || f.Heap[2] <= 0 {
		t.Errorf("RSS MiB: baseline %v, peak %v, at age %v, samples %d; heap %v", f.Baseline, f.Peak, f.AtAge, len(f.Samples), f.Heap)
	}
}

// smokeLobbyReconnect runs the reconnect scenario small: 50 people, 5 of
// them chatting, every stream broken at once. With positions every stream
// resumes and gets every line of the window exactly once, in order; the
// contrast storm without positions loses lines on every stream (which is
// also what shows the check can see a loss).
//
// The lobby runs with a 5 s grace: with the default 2 s, a page whose
// jittered retry (1–2 s) is near 2 s comes back just after its grace ran
// out and is announced as gone, which would make this test flaky (see the
// "Reconnect storm" section of BENCHMARKS.md).
func smokeLobbyReconnect(t *testing.T, bin string) {
	out := filepath.Join(t.TempDir(), "reconnect.json")
	run := exec.Command(filepath.Join(bin, "lobby-load"), "-scenario", "reconnect", "-n", "50", "-speakers", "2", "-chat-rate", "10",
		"-pre", "1s", "-post", "1s", "-resume-timeout", "30s", "-lobby-args", "-grace 5s",
		"-src-port", "31200", "-quiet", "-json", out, "-max-time", "2m")
	log, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("lobby-load: %v\n%s", err, log)
	}
	t.Logf("%s", log)
	var res struct {
		Reconnects []struct {
			N, Arrived int
			Breaks     []struct {
				Positions   bool    `json:"positions"`
				Broken      int     `json:"broken"`
				Resumed     int     `json:"resumed"`
				AllResumed  float64 `json:"all_resumed_s"`
				Resume      pct     `json:"resume_s"`
				Retry       pct     `json:"retry_ms"`
				Replayed    pct     `json:"replayed_lines"`
				Lines       int     `json:"lines"`
				Expected    int64   `json:"expected"`
				Delivered   int64   `json:"delivered"`
				Lost        int64   `json:"lost"`
				Doubled     int64   `json:"doubled"`
				OutOfOrder  int64   `json:"out_of_order"`
				Unrecovered int     `json:"streams_unrecovered"`
				Left        int     `json:"streams_seeing_left"`
				Errors      []string
			} `json:"breaks"`
			Errors []string
		} `json:"reconnects"`
	}
	readResults(t, out, &res)
	if len(res.Reconnects) != 1 || len(res.Reconnects[0].Breaks) != 2 {
		t.Fatalf("want 1 reconnect trial with 2 breaks, got %+v", res.Reconnects)
	}
	r := res.Reconnects[0]
	if r.N != 50 || r.Arrived != 50 || len(r.Errors) > 0 {
		t.Errorf("N %d, arrived %d, errors %v", r.N, r.Arrived, r.Errors)
	}
	for i, b := range r.Breaks {
		if b.Positions != (i == 0) || b.Broken != 50 || b.Resumed != 50 || b.AllResumed <= 0 || b.AllResumed < b.Resume.Max ||
			b.Retry.P50 < 1000 || b.Retry.Max > 2000 || len(b.Errors) > 0 {
			t.Errorf("break %d (positions %v): broken %d, resumed %d, all after %v s, resume %+v, retry ms %+v, errors %v",
				i, b.Positions, b.Broken, b.Resumed, b.AllResumed, b.Resume, b.Retry, b.Errors)
		}
		if b.Lines == 0 || b.Expected != int64(b.Lines)*50 || b.Doubled != 0 || b.OutOfOrder != 0 || b.Left != 0 {
			t.Errorf("break %d: %d lines, expected %d, doubled %d, out of order %d, streams seeing left %d", i, b.Lines, b.Expected, b.Doubled, b.OutOfOrder, b.Left)
		}
	}
	with, without := r.Breaks[0], r.Breaks[1]
	if with.Lost != 0 || with.Delivered != with.Expected || with.Unrecovered != 0 || with.Replayed.P50 < 1 {
		t.Errorf("with positions: lost %d, delivered %d of %d, unrecovered %d, replayed %+v", with.Lost, with.Delivered, with.Expected, with.Unrecovered, with.Replayed)
	}
	if without.Lost == 0 || without.Delivered+without.Lost != without.Expected {
		t.Errorf("without positions: lost %d, delivered %d of %d (a break of 1-2 s at 10 lines/s must lose lines)", without.Lost, without.Delivered, without.Expected)
	}
}

// smokeLobbyStorm runs a join storm of 40 people: everyone joins, opens a
// stream and sees their own arrival on it, and the chat line said half-way
// reaches everyone who was in by then.
func smokeLobbyStorm(t *testing.T, bin string) {
	out := filepath.Join(t.TempDir(), "storm.json")
	run := exec.Command(filepath.Join(bin, "lobby-load"), "-scenario", "storm", "-n", "40", "-conc", "8",
		"-src-port", "31000", "-timeout", "1m", "-quiet", "-json", out, "-max-time", "2m")
	log, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("lobby-load: %v\n%s", err, log)
	}
	t.Logf("%s", log)
	var res struct {
		Storms []struct {
			N, Joined, Streams, Arrived int
			AllIn                       float64 `json:"all_in_s"`
			Arrival                     pct     `json:"arrival_since_storm_s"`
			Chat                        struct {
				Present, Reached int
				Delivery         pct `json:"delivery_ms"`
			} `json:"chat"`
			Server struct {
				CPU float64 `json:"cpu_s"`
			} `json:"server"`
			Errors []string `json:"errors"`
		} `json:"storms"`
	}
	readResults(t, out, &res)
	if len(res.Storms) != 1 {
		t.Fatalf("want 1 storm, got %d", len(res.Storms))
	}
	s := res.Storms[0]
	if s.N != 40 || s.Joined != 40 || s.Streams != 40 || s.Arrived != 40 || len(s.Errors) > 0 {
		t.Errorf("N %d: joined %d, streams %d, arrived %d, errors %v", s.N, s.Joined, s.Streams, s.Arrived, s.Errors)
	}
	if s.Arrival.Count != 40 || s.AllIn <= 0 || s.AllIn != s.Arrival.Max || s.Arrival.P50 > s.Arrival.Max {
		t.Errorf("arrival %+v, all in after %v s", s.Arrival, s.AllIn)
	}
	if s.Chat.Present < 20 || s.Chat.Reached != s.Chat.Present || s.Chat.Delivery.Count != s.Chat.Present || s.Chat.Delivery.Max <= 0 {
		t.Errorf("chat line: present %d, reached %d, delivery %+v", s.Chat.Present, s.Chat.Reached, s.Chat.Delivery)
	}
}

// smokeLobbyChurn runs the churn scenario small: 5 chatters, 20 churners at
// 20 cycles a second for 2 s. Cycles complete, every chat line reaches
// every chatter, none is missing, and every chatter sees each churner
// arrival and departure exactly once.
func smokeLobbyChurn(t *testing.T, bin string) {
	out := filepath.Join(t.TempDir(), "churn.json")
	run := exec.Command(filepath.Join(bin, "lobby-load"), "-scenario", "churn", "-churners", "20", "-chatters", "5",
		"-rate", "20", "-chat-rate", "10", "-warmup", "1s", "-duration", "2s", "-hold", "100ms,300ms",
		"-src-port", "31100", "-quiet", "-json", out, "-max-time", "2m")
	log, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("lobby-load: %v\n%s", err, log)
	}
	t.Logf("%s", log)
	var res struct {
		Churns []struct {
			Cycles    int      `json:"cycles"`
			Rate      float64  `json:"achieved_cycles_per_s"`
			Failed    int      `json:"failed_cycles"`
			Arrival   pct      `json:"cycle_arrival_ms"`
			Lines     int      `json:"lines"`
			Expected  int64    `json:"expected"`
			Delivered int64    `json:"delivered"`
			Missing   int64    `json:"missing"`
			Delivery  pct      `json:"delivery_ms"`
			Announced int64    `json:"arrivals_announced"`
			Joined    [2]int64 `json:"joined_lines_min_max"`
			Left      [2]int64 `json:"left_lines_min_max"`
			Errors    []string
		} `json:"churns"`
	}
	readResults(t, out, &res)
	if len(res.Churns) != 1 {
		t.Fatalf("want 1 churn, got %d", len(res.Churns))
	}
	c := res.Churns[0]
	if c.Cycles == 0 || c.Rate <= 0 || c.Failed != 0 || c.Arrival.Count == 0 || len(c.Errors) > 0 {
		t.Errorf("cycles %d (%.1f/s), failed %d, arrivals %d, errors %v", c.Cycles, c.Rate, c.Failed, c.Arrival.Count, c.Errors)
	}
	if c.Lines == 0 || c.Expected != int64(c.Lines)*5 || c.Delivered != c.Expected || c.Missing != 0 ||
		c.Delivery.Count != int(c.Delivered) || c.Delivery.P99 <= 0 {
		t.Errorf("chat: %d lines, %d of %d delivered, missing %d, delivery %+v", c.Lines, c.Delivered, c.Expected, c.Missing, c.Delivery)
	}
	// Exactly one "joined" and one "left" line per churner arrival, at
	// every chatter.
	if a := c.Announced; a < int64(c.Cycles) || c.Joined != [2]int64{a, a} || c.Left != [2]int64{a, a} {
		t.Errorf("%d arrivals announced (%d cycles); chatters saw %v joined and %v left lines", a, c.Cycles, c.Joined, c.Left)
	}
}

type pct struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

func readResults(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}
