package checker

import "github.com/sfere-go/sfere/bench/internal/history"

// checkLines checks the first promise: each accepted line reaches each page it
// is owed to once, in its speaker's order (among its accepted lines), or
// the page is told.
func (c *check) checkLines() {
	settle := c.opts.Settle
	for _, p := range c.order {
		top := make(map[string]int) // speaker -> highest seq received
		for _, ev := range p.events {
			for _, ch := range ev.Chat {
				l := c.lines[ch.Text]
				if l == nil {
					continue // not said by a recorded request
				}
				l.deliveries[p.key]++
				if !l.accepted {
					// No promise: a line whose request failed (timed
					// out, say) may arrive late, or more than once.
					continue
				}
				if n := l.deliveries[p.key]; n == 2 {
					c.finding(&c.r.Lines.Doubled, "line %q doubled at page %s (again at %s)", l.text, p.key, ev.At.Format(timeFmt))
				}
				switch t := top[l.speaker]; {
				case l.seq < t:
					c.finding(&c.r.Lines.OutOfOrder, "line %q (seq %d) reached page %s after seq %d of %s", l.text, l.seq, p.key, t, l.speaker)
				case l.seq > t:
					top[l.speaker] = l.seq
				}
			}
		}
	}
	for _, l := range c.said {
		c.r.Lines.Said++
		if !l.accepted {
			continue
		}
		c.r.Lines.Accepted++
		for _, p := range c.order {
			if !p.owes(l.sent, l.at, settle, l.deliveries[p.key] > 0) {
				continue
			}
			c.r.Lines.Expected++
			switch n := l.deliveries[p.key]; {
			case n == 1:
				c.r.Lines.DeliveredOnce++
			case n > 1: // counted as doubled above
			case p.told(l):
				c.r.Lines.DeclaredLost++
			default:
				kinds := c.during(l.sent, l.at.Add(settle))
				if len(kinds) == 0 {
					kinds = []string{"none"}
				}
				for _, k := range kinds {
					c.r.LostDuring[k]++
				}
				c.finding(&c.r.Lines.LostSilently, "line %q (said %s, answered %d at %s) never reached page %s (open %s, end %s %s)",
					l.text, l.sent.Format(timeFmt), l.status, l.at.Format(timeFmt), p.key, p.open.Format(timeFmt), fmtTime(p.end), p.reason)
			}
		}
	}
}

// told reports whether the page was told, after l was sent, that lines
// could not be recovered, or to join again.
func (p *page) told(l *line) bool {
	for _, ev := range p.events {
		if (ev.Notice || ev.JoinForm) && !ev.At.Before(l.sent) {
			return true
		}
	}
	return p.reason == history.EndTold && !p.end.Before(l.sent)
}
