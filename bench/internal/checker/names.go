package checker

import (
	"strings"
	"time"

	"github.com/sfere-go/sfere/bench/internal/history"
)

// hold is a span in which a person held its name: from its /join (or a
// /message) answered 2xx until it sent /leave, one of its pages was told
// to join again, or the lobby refused its /message with 403 (it did not
// know the session then: a single node that restarted knows a session
// again only once its page comes back with its signed cookie).
type hold struct {
	client, name string
	from, until  time.Time // until zero: to the end
}

// heldTwice checks the third promise: a /join answered 2xx for a name that
// another person held across the whole request, while one of that
// person's streams stayed open across it and kept receiving the lobby's
// events after the answer (so the lobby served that person's session all
// along), is a name held twice.
func (c *check) heldTwice() {
	var holds []*hold
	open := make(map[string]*hold) // client -> its open hold
	var joins []history.Record
	for _, rec := range c.recs {
		ok := rec.Status >= 200 && rec.Status < 300
		switch {
		case rec.Kind == history.KindRequest && rec.Route == "/join" && ok:
			joins = append(joins, rec)
			if open[rec.Client] == nil {
				h := &hold{client: rec.Client, name: rec.Name, from: rec.At}
				open[rec.Client] = h
				holds = append(holds, h)
			}
		case rec.Kind == history.KindRequest && rec.Route == "/message" && ok:
			// The person's name is the client's (the campaign's people
			// join under their own names).
			if open[rec.Client] == nil {
				h := &hold{client: rec.Client, name: rec.Client, from: rec.At}
				open[rec.Client] = h
				holds = append(holds, h)
			}
		case rec.Kind == history.KindRequest && rec.Route == "/leave",
			rec.Kind == history.KindRequest && rec.Route == "/message" && rec.Status == 403,
			rec.Kind == history.KindPageEnd && rec.Reason == history.EndTold:
			if h := open[rec.Client]; h != nil {
				h.until = rec.Sent
				if h.until.IsZero() {
					h.until = rec.At
				}
				delete(open, rec.Client)
			}
		}
	}
	for _, j := range joins {
		for _, h := range holds {
			if h.client == j.Client || !strings.EqualFold(h.name, j.Name) {
				continue
			}
			if h.from.After(j.Sent) || !h.until.IsZero() && h.until.Before(j.At) {
				continue
			}
			if !c.servedAcross(h, j) {
				continue
			}
			c.finding(&c.r.NamesHeldTwice, "name %q given to %s at %s while %s held it (since %s)", j.Name, j.Client, j.At.Format(timeFmt), h.client, h.from.Format(timeFmt))
		}
	}
}

// servedAcross reports whether a page of h's person held one stream from
// before j was sent until after it was answered, and received an event on
// it after the answer: the lobby served the holder's session all along. (A
// single node that restarted forgets its sessions until their pages come
// back; a name it gives away meanwhile is not held by two sessions at
// once, and the holder is told when it comes back.)
func (c *check) servedAcross(h *hold, j history.Record) bool {
	for _, p := range c.order {
		if p.key.client != h.client {
			continue
		}
		for _, st := range p.streams {
			if st.start.After(j.Sent) || !st.end.IsZero() && st.end.Before(j.At) {
				continue
			}
			for _, ev := range p.events {
				if ev.At.After(j.At) && (st.end.IsZero() || !ev.At.After(st.end)) &&
					(h.until.IsZero() || ev.At.Before(h.until)) && !ev.JoinForm {
					return true
				}
			}
		}
	}
	return false
}
