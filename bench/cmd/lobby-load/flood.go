package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sfere-go/sfere/bench/internal/host"
)

// FloodResult is one snapshot flood: -members people with long names hold
// a stream each while one more person opens and closes extra streams of
// its own session for -flood-duration, -flood-conc at a time. Each opening
// is sent the whole participant list (a snapshot, addressed to that stream
// alone); before issue 17 every snapshot also went into the history, which
// kept them for -history-age and had no byte bound. The target: the lobby
// process's RSS grows by no more than the history's byte budget + 10 MiB
// over its RSS with everyone present, and, once everyone has left, is back
// within 10 MiB of that within -history-age.
type FloodResult struct {
	Started time.Time `json:"started"`
	LoadAvg string    `json:"loadavg_before"`
	LoadEnd string    `json:"loadavg_after"`

	Members     int     `json:"members"`
	NameLen     int     `json:"name_len"`
	Conc        int     `json:"conc"`
	DurationSec float64 `json:"duration_s"`
	// HistoryBytesMiB and HistoryAgeSec are the lobby's history bounds
	// (the flags the tool passed, or said the lobby runs with).
	HistoryBytesMiB float64 `json:"history_bytes_mib"`
	HistoryAgeSec   float64 `json:"history_age_s"`

	// Opens is how many extra streams the flooder opened and saw its
	// snapshot on; SnapshotKiB the bytes each read until its list
	// (p50).
	Opens       int     `json:"opens"`
	OpensPerSec float64 `json:"opens_per_s"`
	SnapshotKiB float64 `json:"snapshot_kib_p50"`

	// RSS of the lobby process (/proc/PID/status VmRSS), MiB: just
	// started, with everyone present (the baseline), the most sampled
	// during the flood (every 100 ms), and after everyone left.
	StartRSSMiB    float64 `json:"start_rss_mib"`
	BaselineRSSMiB float64 `json:"baseline_rss_mib"`
	PeakRSSMiB     float64 `json:"flood_peak_rss_mib"`
	GrowthMiB      float64 `json:"growth_mib"`
	GrowthLimitMiB float64 `json:"growth_limit_mib"` // history bytes + 10 MiB
	// SettleSec is the time from everyone having left until the RSS was
	// at most baseline + 10 MiB (-1: not within the history age + 60 s);
	// RSSAtAgeMiB the RSS when the history age had passed.
	SettleSec   float64 `json:"settle_s"`
	RSSAtAgeMiB float64 `json:"rss_at_history_age_mib"`
	// HeapMiB is the lobby's Go heap in use (go_memstats_heap_alloc_bytes
	// from /metrics) with everyone present, at the flood's end, and when
	// the history age had passed after everyone left.
	HeapMiB [3]float64 `json:"heap_alloc_mib"`
	// Samples is the RSS after everyone left, one every 5 s.
	Samples []RSSSample `json:"rss_after_leaving"`

	Pass   bool     `json:"pass"`
	Server Server   `json:"server"`
	Errors []string `json:"errors,omitempty"`
}

// RSSSample is the lobby's RSS some seconds after everyone left.
type RSSSample struct {
	AtSec  float64 `json:"at_s"`
	RSSMiB float64 `json:"rss_mib"`
}

// floodConfig is the flood's part of the tool's flags.
type floodConfig struct {
	members, nameLen, conc int
	duration               time.Duration
	historyBytes           int64
	historyAge             time.Duration
}

// floodArgs are the lobby flags the flood's history bounds need.
func (f floodConfig) lobbyArgs() []string {
	return []string{"-history-bytes", strconv.FormatInt(f.historyBytes, 10), "-history-age", f.historyAge.String()}
}

func runFlood(cfg config, f floodConfig, l *lobbyProc) (res FloodResult) {
	res = FloodResult{Started: time.Now().UTC(), LoadAvg: host.LoadAvg(), Members: f.members, NameLen: f.nameLen, Conc: f.conc,
		DurationSec: f.duration.Seconds(), HistoryBytesMiB: float64(f.historyBytes) / (1 << 20), HistoryAgeSec: f.historyAge.Seconds(), SettleSec: -1}
	res.GrowthLimitMiB = res.HistoryBytesMiB + 10
	var errs tally
	defer func() {
		res.Server = l.server()
		res.LoadEnd = host.LoadAvg()
		res.Errors = errs.lines()
		res.Pass = len(res.Errors) == 0 && res.GrowthMiB <= res.GrowthLimitMiB && res.SettleSec >= 0 && res.SettleSec <= res.HistoryAgeSec
	}()
	if l.cmd == nil {
		errs.add("the flood measures the lobby process's RSS: it needs a lobby this tool starts (no -url)")
		return res
	}
	res.StartRSSMiB = l.server().RSSMiB
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	streamsCtx, endStreams := context.WithCancel(ctx)
	tag := strconv.FormatInt(time.Now().UnixNano()%1e6, 36)
	fl := &floodTrial{f: f, l: l, ctx: ctx, streamsCtx: streamsCtx, c: newClient(l.url, cfg.conc, time.Minute),
		errs: &errs, flooderName: "flooder-" + tag}
	fl.seat(tag)
	flooder, err := fl.c.join(ctx, fl.flooderName)
	if err == nil {
		err = fl.hold(flooder, make(chan struct{}))
	}
	if err != nil {
		errs.add("flooder: " + errKind(err))
		endStreams()
		fl.streams.Wait()
		return res
	}
	// Every member saw the flooder arrive: the arrivals are all out.
	waitCtx, waited := context.WithTimeout(ctx, time.Minute)
	for _, m := range fl.members {
		if m.seen == nil {
			continue
		}
		select {
		case <-m.seen:
		case <-waitCtx.Done():
		}
	}
	if waitCtx.Err() != nil {
		errs.add("the members did not all see the flooder's arrival within a minute")
	}
	waited()
	res.BaselineRSSMiB = l.server().RSSMiB
	res.HeapMiB[0] = heapMiB(ctx, l.url)
	logf("flood: %d members and the flooder in; lobby RSS %.1f MiB (%.1f MiB at start), heap %.1f MiB",
		f.members, res.BaselineRSSMiB, res.StartRSSMiB, res.HeapMiB[0])

	fl.flood(&res, flooder)

	// Everyone leaves; the RSS is followed for the history age (and a
	// minute more, to say when it settled if it did not in time).
	for _, sid := range append([]string{flooder}, sidsOf(fl.members, func(m floodMember) string { return m.sid })...) {
		if sid == "" {
			continue
		}
		if err := fl.c.leave(ctx, sid); err != nil {
			errs.add("leave: " + errKind(err))
		}
	}
	endStreams()
	fl.streams.Wait()
	fl.followRSS(&res)
	return res
}

// floodMember is one member of the lobby the flood runs in.
type floodMember struct {
	sid  string
	seen chan struct{} // its stream showed the flooder's arrival
}

// floodTrial is one snapshot flood under way: the members, each with a
// stream read to its end, and the flooder.
type floodTrial struct {
	f           floodConfig
	l           *lobbyProc
	ctx         context.Context
	streamsCtx  context.Context // the members' and the flooder's streams
	c           *client
	errs        *tally
	flooderName string
	members     []floodMember
	streams     sync.WaitGroup
}

// hold opens sid's stream and reads it to its end; seen is closed when it
// shows the flooder's arrival.
func (fl *floodTrial) hold(sid string, seen chan struct{}) error {
	body, err := fl.c.openStream(fl.streamsCtx, sid, 0)
	if err != nil {
		return err
	}
	fl.streams.Go(func() {
		defer body.Close()
		mark := [][]byte{[]byte(">" + fl.flooderName + " joined the lobby<")}
		s := newScanner(64<<10, mark, func(int, time.Time) { close(seen) }, nil)
		_ = s.run(body)
	})
	return nil
}

// seat has the members join, 16 at a time, each with a stream.
func (fl *floodTrial) seat(tag string) {
	f := fl.f
	fl.members = make([]floodMember, f.members)
	var joinWG sync.WaitGroup
	next := atomic.Int64{}
	for range min(16, f.members) {
		joinWG.Go(func() {
			for i := int(next.Add(1) - 1); i < f.members; i = int(next.Add(1) - 1) {
				name := fmt.Sprintf("%s-%05d-", tag, i)
				name += strings.Repeat("x", max(0, f.nameLen-len(name)))
				sid, err := fl.c.join(fl.ctx, name)
				if err != nil {
					fl.errs.add("member join: " + errKind(err))
					continue
				}
				fl.members[i] = floodMember{sid: sid, seen: make(chan struct{})}
				if err := fl.hold(sid, fl.members[i].seen); err != nil {
					fl.errs.add("member stream: " + errKind(err))
				}
			}
		})
	}
	joinWG.Wait()
}

// flood has the flooder open its stream again and again, f.conc at a
// time, for f.duration, the lobby's RSS sampled throughout.
func (fl *floodTrial) flood(res *FloodResult, flooder string) {
	f, l, ctx := fl.f, fl.l, fl.ctx
	var (
		opens    atomic.Int64
		peak     atomic.Int64 // KiB
		sizesMu  sync.Mutex
		sizes    []float64
		floodCtx context.Context
		stop     context.CancelFunc
		wg       sync.WaitGroup
	)
	floodCtx, stop = context.WithTimeout(ctx, f.duration)
	defer stop()
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if kib := int64(l.server().RSSMiB * 1024); kib > peak.Load() {
				peak.Store(kib)
			}
			select {
			case <-floodCtx.Done():
				return
			case <-tick.C:
			}
		}
	})
	mark := []byte(`id="participant-list"`)
	t0 := time.Now()
	for range f.conc {
		wg.Go(func() {
			for floodCtx.Err() == nil {
				n, err := snapshotOnce(floodCtx, fl.c, flooder, mark)
				switch {
				case err == nil:
					opens.Add(1)
					sizesMu.Lock()
					sizes = append(sizes, float64(n)/1024)
					sizesMu.Unlock()
				case floodCtx.Err() == nil:
					fl.errs.add("flood stream: " + errKind(err))
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	res.Opens = int(opens.Load())
	res.OpensPerSec = float64(res.Opens) / elapsed.Seconds()
	res.SnapshotKiB = percentiles(sizes).P50
	res.PeakRSSMiB = max(float64(peak.Load())/1024, l.server().RSSMiB)
	res.GrowthMiB = res.PeakRSSMiB - res.BaselineRSSMiB
	res.HeapMiB[1] = heapMiB(ctx, l.url)
	logf("flood: %d openings in %.1f s (%.0f/s, %.1f KiB each); lobby RSS peak %.1f MiB (+%.1f MiB, limit +%.1f), heap %.1f MiB",
		res.Opens, elapsed.Seconds(), res.OpensPerSec, res.SnapshotKiB, res.PeakRSSMiB, res.GrowthMiB, res.GrowthLimitMiB, res.HeapMiB[1])
}

// followRSS samples the lobby's RSS every second once everyone left, for
// the history age and until it settles (a minute more at most).
func (fl *floodTrial) followRSS(res *FloodResult) {
	left := time.Now()
	limit := res.BaselineRSSMiB + 10
	atAge := false
	for next := time.Duration(0); ; next += time.Second {
		time.Sleep(time.Until(left.Add(next)))
		since := time.Since(left)
		rss := fl.l.server().RSSMiB
		if next%(5*time.Second) == 0 {
			res.Samples = append(res.Samples, RSSSample{AtSec: since.Seconds(), RSSMiB: rss})
		}
		if res.SettleSec < 0 && rss <= limit {
			res.SettleSec = since.Seconds()
		}
		if !atAge && since >= fl.f.historyAge {
			atAge = true
			res.RSSAtAgeMiB = rss
			res.HeapMiB[2] = heapMiB(fl.ctx, fl.l.url)
		}
		if atAge && (res.SettleSec >= 0 || since >= fl.f.historyAge+time.Minute) {
			break
		}
	}
}

func sidsOf[T any](xs []T, f func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// snapshotOnce opens one more stream of session sid, reads it until the
// participant list (its snapshot) has arrived, and closes it. It returns
// the bytes read.
func snapshotOnce(ctx context.Context, c *client, sid string, mark []byte) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	body, err := c.openStream(ctx, sid, 0)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	var got []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		got = append(got, buf[:n]...)
		if bytes.Contains(got, mark) {
			return len(got), nil
		}
		if err != nil {
			return len(got), fmt.Errorf("the stream ended before its snapshot: %w", err)
		}
	}
}

// heapMiB reads the lobby's Go heap in use from its /metrics (0 if it
// cannot).
func heapMiB(ctx context.Context, base string) float64 {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_heap_alloc_bytes "); ok {
			x, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return x / (1 << 20)
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return 0
}

func printFlood(r FloodResult) {
	fmt.Printf("\nsnapshot flood: %d members (names of %d), %d openings at a time for %.0f s; history %.0f MiB, %.0f s\n",
		r.Members, r.NameLen, r.Conc, r.DurationSec, r.HistoryBytesMiB, r.HistoryAgeSec)
	fmt.Printf("  %d openings (%.0f/s), snapshot %.1f KiB\n", r.Opens, r.OpensPerSec, r.SnapshotKiB)
	fmt.Printf("  lobby RSS MiB: start %.1f, everyone present %.1f, flood peak %.1f (+%.1f, limit +%.1f)\n",
		r.StartRSSMiB, r.BaselineRSSMiB, r.PeakRSSMiB, r.GrowthMiB, r.GrowthLimitMiB)
	settle := "not within the history age + 60 s"
	if r.SettleSec >= 0 {
		settle = fmt.Sprintf("%.0f s", r.SettleSec)
	}
	fmt.Printf("  after everyone left: RSS at %.0f s %.1f MiB; within baseline + 10 MiB after %s; heap MiB present/flood end/at age %.1f/%.1f/%.1f\n",
		r.HistoryAgeSec, r.RSSAtAgeMiB, settle, r.HeapMiB[0], r.HeapMiB[1], r.HeapMiB[2])
	fmt.Printf("  lobby CPU %.1f s; load before %s, after %s; target met: %v\n", r.Server.CPUSec, r.LoadAvg, r.LoadEnd, r.Pass)
	for _, e := range r.Errors {
		fmt.Printf("  error: %s\n", e)
	}
}
