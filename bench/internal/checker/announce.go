package checker

import (
	"slices"
	"time"

	"github.com/sfere-go/sfere/bench/internal/history"
)

// change is an arrival or a departure the clients caused and every other
// page is owed an announcement of: a person's first page after a fresh
// join (after= the /join was sent), or a /leave answered 2xx.
type change struct {
	name     string
	arrival  bool
	from     time.Time // the announcement counts from here
	sent, at time.Time // the span the page must live across
}

// checkAnnouncements checks the second promise's announcements: none doubled,
// none owed and missing.
func (c *check) checkAnnouncements() {
	for _, p := range c.order {
		here := make(map[string]bool) // name -> announced here (true) or gone (false)
		for _, ev := range p.events {
			if ev.IsList {
				clear(here) // a list restates everything; announcements start over
			}
			for _, a := range ev.Ann {
				c.r.Announcements.Received++
				in := a.What != history.Left
				if was, ok := here[a.Name]; ok && was == in {
					c.finding(&c.r.Announcements.Doubled, "%s %s announced twice at page %s (again at %s)", a.Name, a.What, p.key, ev.At.Format(timeFmt))
				}
				here[a.Name] = in
			}
		}
	}
	for _, ch := range c.changes() {
		for _, p := range c.order {
			if p.key.client == ch.name || !p.owes(ch.sent, ch.at, c.opts.Settle, p.says(ch)) {
				continue
			}
			c.r.Announcements.Expected++
			if !p.says(ch) {
				what := "departure"
				if ch.arrival {
					what = "arrival"
				}
				c.finding(&c.r.Announcements.Missing, "%s of %s at %s never shown at page %s", what, ch.name, ch.sent.Format(timeFmt), p.key)
			}
		}
	}
}

// changes lists the arrivals and departures the clients caused.
func (c *check) changes() []change {
	type state struct {
		holding bool
		pending time.Time // a fresh join's send time, until the person's first page opens
		here    bool      // a page opened since the join: a /leave is a departure to announce
	}
	people := make(map[string]*state)
	get := func(n string) *state {
		if people[n] == nil {
			people[n] = &state{}
		}
		return people[n]
	}
	var out []change
	for _, rec := range c.recs {
		switch rec.Kind {
		case history.KindRequest:
			ok := rec.Status >= 200 && rec.Status < 300
			switch {
			case rec.Route == "/join" && ok && rec.Name == rec.Client:
				s := get(rec.Client)
				if !s.holding {
					s.pending = rec.Sent
				}
				s.holding = true
			case rec.Route == "/leave":
				s := get(rec.Client)
				if ok && s.here {
					out = append(out, change{name: rec.Client, from: rec.Sent, sent: rec.Sent, at: rec.At})
				}
				s.holding, s.pending, s.here = false, time.Time{}, false
			}
		case history.KindPageOpen:
			s := get(rec.Client)
			s.here = true
			if !s.pending.IsZero() {
				out = append(out, change{name: rec.Client, arrival: true, from: s.pending, sent: rec.At, at: rec.At})
				s.pending = time.Time{}
			}
		case history.KindPageEnd:
			if rec.Reason == history.EndTold {
				// The lobby let the person go on its own: what it
				// announced then is not a change the client made.
				s := get(rec.Client)
				s.holding, s.pending, s.here = false, time.Time{}, false
			}
		}
	}
	return out
}

// says reports whether the page showed the change after it began: an
// announcement, a list or a list item (or its removal).
func (p *page) says(ch change) bool {
	for _, ev := range p.events {
		if ev.At.Before(ch.from) {
			continue
		}
		for _, a := range ev.Ann {
			if a.Name == ch.name && (a.What != history.Left) == ch.arrival {
				return true
			}
		}
		if ev.IsList && slices.Contains(ev.List, ch.name) == ch.arrival {
			return true
		}
		if ch.arrival && slices.Contains(ev.Add, ch.name) || !ch.arrival && slices.Contains(ev.Remove, ch.name) {
			return true
		}
	}
	return false
}
