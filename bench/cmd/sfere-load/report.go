package main

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"github.com/sfere-go/sfere/bench/internal/wire"
)

func printTable(w io.Writer, sums []*Summary, cfg trialConfig) {
	if cfg.size > 0 {
		payload := fmt.Sprintf("Payload %d B", cfg.size)
		if slices.Contains(cfg.serverArgs, "lobby") {
			payload = "Payload: the lobby's chat lines (-payload lobby)"
		}
		if cfg.decodeEvery > 1 {
			payload += fmt.Sprintf("; 1 stream in %d decoded, figures theirs", cfg.decodeEvery)
		}
		fmt.Fprintf(w, "\n%s; one broadcast x%d; sustained %v at %s; medians over runs; ratios to raw in the same run.\n\n",
			payload, cfg.singles, cfg.duration, rateText(cfg))
	} else {
		fmt.Fprintf(w, "\nMedians over runs; ratios to raw in the same run (settings: see the results file's args).\n\n")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tN\theld\tconnect s\tRSS/stream KiB\t1x p50 ms\t1x p99 ms\t1x max ms\tvs raw\tsweep ms\tvs raw\tsust deliv/s\tvs raw\tsust p99 ms\tmissing\tclosed\thb +p99 ms\twire B/deliv\t")
	for _, s := range sums {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.2f\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t%s\t%s\t%.0f\t%s\t%.0f\t%d\t%d\t%s\t%.1f\t\n",
			s.Mode, s.N, s.Held, s.ConnectSec, s.RSSPerStreamKiB, s.SingleP50, s.SingleP99, s.SingleMax,
			ratioText(s.Mode, s.SingleMaxVsRaw), msText(s.SweepMs), ratioText(s.Mode, s.SweepVsRaw),
			s.PerSec, ratioText(s.Mode, s.PerSecVsRaw), s.SustP99, s.Missing, s.Closed, msText(s.HBDeltaMs), s.WirePerDelivery)
	}
	_ = tw.Flush()
	printNodes(w, sums)

	// sfere against the peers at each N.
	fmt.Fprintln(w)
	for _, s := range sums {
		if s.Mode != wire.ModeSfere {
			continue
		}
		for _, p := range sums {
			if p.N != s.N || p.Mode == wire.ModeSfere || p.Mode == wire.ModeRaw || p.PerSec == 0 || p.Nodes > 1 {
				continue
			}
			fmt.Fprintf(w, "N=%d: sfere/%s deliveries/s %.2fx (sustained p99 %.0f ms vs %.0f ms); one broadcast max %.2fx\n",
				s.N, p.Mode, s.PerSec/p.PerSec, s.SustP99, p.SustP99, s.SingleMax/p.SingleMax)
		}
	}
	// Compressed sfere against uncompressed sfere and datastar-go's
	// per-stream gzip at each N.
	for _, s := range sums {
		if s.Mode != wire.ModeSfereGzip {
			continue
		}
		for _, p := range sums {
			if p.N != s.N || (p.Mode != wire.ModeSfere && p.Mode != wire.ModeNaiveGzip) || p.PerSec == 0 || p.Nodes > 1 || p.WirePerDelivery == 0 {
				continue
			}
			fmt.Fprintf(w, "N=%d: sfere-gzip/%s deliveries/s %.2fx; one broadcast max %.2fx; wire bytes per delivery %.1f vs %.1f (%.2fx)\n",
				s.N, p.Mode, s.PerSec/p.PerSec, s.SingleMax/p.SingleMax, s.WirePerDelivery, p.WirePerDelivery, s.WirePerDelivery/p.WirePerDelivery)
		}
	}
}

func ratioText(mode string, r float64) string {
	if mode == wire.ModeRaw {
		return "1"
	}
	if r == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", r)
}

func msText(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", v)
}

func rateText(cfg trialConfig) string {
	if cfg.rate > 0 {
		return fmt.Sprintf("%.0f broadcasts/s", cfg.rate)
	}
	return fmt.Sprintf("%.0f offered deliveries/s (rate = offered/N)", cfg.offered)
}

// printNodes prints the cross-node figures of multi-node summaries: the
// streams on node 0, where broadcasts are issued, against the others.
func printNodes(w io.Writer, sums []*Summary) {
	var multi []*Summary
	for _, s := range sums {
		if s.Nodes > 1 {
			multi = append(multi, s)
		}
	}
	if len(multi) == 0 {
		return
	}
	fmt.Fprintf(w, "\nAcross nodes (broadcasts triggered on node 0; remote = the other nodes, one NATS hop away; RSS summed over nodes):\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tN\tnodes\tRSS MiB\t1x local p99\t1x remote p99\tremote/local\t1x local max\t1x remote max\tsust local p99\tsust remote p99\tremote/local\t")
	for _, s := range multi {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.1f\t%.1f\t%.2fx\t%.1f\t%.1f\t%.1f\t%.1f\t%.2fx\t\n",
			s.Mode, s.N, s.Nodes, s.RSSIdleMiB, s.SingleLocalP99, s.SingleRemoteP99, s.SingleCross,
			s.SingleLocalMax, s.SingleRemoteMax, s.SustLocalP99, s.SustRemoteP99, s.SustCross)
	}
	_ = tw.Flush()
}
