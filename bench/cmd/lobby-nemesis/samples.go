package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sfere-go/sfere/bench/internal/history"
)

// sample records a process's resident memory (from /proc) and, for a lobby
// node, its goroutines (from its /metrics).
func sample(ctx context.Context, log *history.Log, p *proc, metricsURL, phase string) {
	pid := p.pid()
	if pid == 0 {
		return
	}
	rec := history.Record{Kind: history.KindProc, Target: p.name, PID: pid, Phase: phase, RSS: rss(pid)}
	if metricsURL != "" {
		rec.Goroutines = goroutines(ctx, metricsURL)
	}
	log.Add(rec)
}

// rss reads VmRSS of a process, in bytes (0 if unreadable).
func rss(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// goroutines reads go_goroutines from a Prometheus text endpoint (0 if
// unreadable).
func goroutines(ctx context.Context, url string) int {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	return 0
}

// sampleAll samples every server process.
func sampleAll(ctx context.Context, log *history.Log, c *cluster, phase string) {
	for _, n := range c.nodes {
		sample(ctx, log, n.proc, "http://"+hostPort(n.port)+"/metrics", phase)
	}
	for _, s := range c.nats {
		sample(ctx, log, s.proc, "", phase)
	}
}
