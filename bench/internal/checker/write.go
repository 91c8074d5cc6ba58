package checker

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

const timeFmt = "15:04:05.000"

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(timeFmt)
}

// Write prints the report for a person: the counts per promise, the
// examples, and the verdict with the seed.
func (r Report) Write(w io.Writer) error {
	var b strings.Builder
	l, a := r.Lines, r.Announcements
	fmt.Fprintf(&b, "faults:        %s\n", r.faultText())
	fmt.Fprintf(&b, "pages:         %d opened, %d streams (%d answered 200), %d broken by an error answer, %d told to join again\n",
		r.Pages.Opened, r.Pages.Streams, r.Pages.StreamsOK, r.Pages.BrokenByError, r.Pages.Told)
	fmt.Fprintf(&b, "lines:         %d said, %d accepted, %d deliveries expected: %d delivered once, %d lost silently, %d declared lost, %d doubled, %d out of order\n",
		l.Said, l.Accepted, l.Expected, l.DeliveredOnce, l.LostSilently, l.DeclaredLost, l.Doubled, l.OutOfOrder)
	if len(r.LostDuring) > 0 {
		fmt.Fprintf(&b, "lost silently during: %s\n", countText(r.LostDuring))
	}
	fmt.Fprintf(&b, "announcements: %d received, %d doubled; %d expected, %d missing\n", a.Received, a.Doubled, a.Expected, a.Missing)
	fmt.Fprintf(&b, "names:         %d held twice\n", r.NamesHeldTwice)
	fmt.Fprintf(&b, "final lists:   %d pages, %d wrong (there: %s)\n", r.Lists.Pages, r.Lists.Wrong, strings.Join(r.Lists.Truth, " "))
	for _, p := range r.Procs {
		verdict := "back"
		if p.NotBack {
			verdict = "NOT BACK"
		}
		switch {
		case p.Restarted:
			fmt.Fprintf(&b, "process:       %s pid %d: restarted during the campaign, %d goroutines, %d MiB RSS at the end\n",
				p.Target, p.PID, p.FinalGoroutine, p.FinalRSS>>20)
		case p.BaseGoroutines == 0 && p.FinalGoroutine == 0: // not a Go process with metrics (NATS): memory only
			fmt.Fprintf(&b, "process:       %s pid %d: %d -> %d MiB RSS: %s\n", p.Target, p.PID, p.BaseRSS>>20, p.FinalRSS>>20, verdict)
		default:
			fmt.Fprintf(&b, "process:       %s pid %d: %d -> %d goroutines, %d -> %d MiB RSS: %s\n",
				p.Target, p.PID, p.BaseGoroutines, p.FinalGoroutine, p.BaseRSS>>20, p.FinalRSS>>20, verdict)
		}
	}
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "  - %s\n", f)
	}
	verdict := "PASS"
	if r.Failed() {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "%s (seed %d)\n", verdict, r.Seed)
	_, err := io.WriteString(w, b.String())
	return err
}

func (r Report) faultText() string {
	if len(r.Faults) == 0 {
		return "none"
	}
	return countText(r.Faults)
}

// countText is "a 1, b 2", by key.
func countText(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
