package checker

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sfere-go/sfere/bench/internal/history"
)

// pageKey names one page: its person and its number.
type pageKey struct {
	client string
	page   int
}

func (k pageKey) String() string { return fmt.Sprintf("%s/%d", k.client, k.page) }

// page is one page's life and what it received, in order.
type page struct {
	key     pageKey
	open    time.Time // zero: never opened
	end     time.Time // zero: alive at the end
	reason  string
	events  []history.Record
	streams []span // its streams answered 200, each until it ended (zero: open at the end)
	// ownFaults are the faults whose target is the page's person (its
	// packets dropped), and those on the lobby node its stream was on that
	// keep the node from delivering anything (cut off from NATS, paused),
	// each for as long as both lasted.
	ownFaults []span
	final     []string
	hasFinal  bool
}

// owes reports whether the page lived from before sent until settle after
// answered, or after the end of a fault under way then on its own person's
// packets (a dropped packet arrives once the drop ends) or on the node its
// stream was on (a node cut off from the log, or paused, delivers what the
// log took once it is back: no node can do it sooner, nor can the page
// learn sooner that it should go elsewhere), with a stream open until
// settle after answered or opened after answered, or it shows the line or
// change (shown).
func (p *page) owes(sent, answered time.Time, settle time.Duration, shown bool) bool {
	if p.open.IsZero() || p.open.After(sent) {
		return false
	}
	if p.end.IsZero() {
		return true
	}
	// A page whose stream broke before the line could reach it (Settle
	// after its answer) and that ended before it could open one again
	// never had the chance to receive the line or be told.
	alive := shown
	for _, st := range p.streams {
		alive = alive || st.end.IsZero() || !st.end.Before(answered.Add(settle)) || st.start.After(answered)
	}
	if !alive {
		return false
	}
	// Each fault that begins before the page had Settle free of them
	// pushes that time to its end.
	until := answered
	for moved := true; moved; {
		moved = false
		for _, f := range p.ownFaults {
			if !f.start.After(until.Add(settle)) && (f.end.IsZero() || f.end.After(until) && !f.end.Before(sent)) {
				if f.end.IsZero() {
					return false // to the end: the page never got the chance
				}
				until, moved = f.end, true
			}
		}
	}
	return !p.end.Before(until.Add(settle))
}

// line is a chat line a person said.
type line struct {
	speaker    string
	seq        int
	text       string
	sent, at   time.Time
	status     int
	accepted   bool
	deliveries map[pageKey]int
}

// check holds the indexes the checks share.
type check struct {
	opts    Options
	single  bool // the campaign ran one lobby node (its meta record says so)
	r       Report
	recs    []history.Record
	pages   map[pageKey]*page
	order   []*page // in order of first record
	lines   map[string]*line
	said    []*line // in order of sending
	truth   []string
	haveTru bool
	faults  []span
}

// span is a fault under way from start to end (zero: to the end), or
// a stream open on node (its name) from start to end.
type span struct {
	kind, target string
	node         string
	start, end   time.Time
}

// nodeFaults are the kinds of fault on a lobby node that keep it from
// delivering to its pages until they end, while the pages' streams stay
// open: it is cut off from NATS, or its process is stopped.
var nodeFaults = map[string]bool{"cut": true, "pause": true}

// overlap returns the part of f while st was open, and whether there is
// one.
func overlap(f, st span) (span, bool) {
	o := f
	if st.start.After(o.start) {
		o.start = st.start
	}
	if !st.end.IsZero() && (o.end.IsZero() || st.end.Before(o.end)) {
		o.end = st.end
	}
	return o, o.end.IsZero() || o.end.After(o.start)
}

func newCheck(recs []history.Record, opts Options) *check {
	c := &check{opts: opts, recs: recs, pages: make(map[pageKey]*page), lines: make(map[string]*line),
		r: Report{Faults: make(map[string]int), LostDuring: make(map[string]int)}}
	open := make(map[[2]string]int)  // (kind, target) -> index in c.faults
	nodes := make(map[string]string) // address -> lobby node
	for _, rec := range recs {
		switch rec.Kind {
		case history.KindMeta:
			c.r.Seed = rec.Seed
			c.single = rec.Settings["mode"] == "single"
		case history.KindNode:
			nodes[rec.Node] = rec.Target
		case history.KindFault:
			k := [2]string{rec.Fault, rec.Target}
			switch rec.Phase {
			case history.PhaseStart:
				c.r.Faults[rec.Fault]++
				open[k] = len(c.faults)
				c.faults = append(c.faults, span{kind: rec.Fault, target: rec.Target, start: rec.At})
			case history.PhaseEnd:
				if i, ok := open[k]; ok {
					c.faults[i].end = rec.At
					delete(open, k)
				}
			}
		case history.KindRequest:
			if rec.Route == "/message" && rec.Text != "" {
				l := &line{speaker: rec.Client, seq: rec.Seq, text: rec.Text, sent: rec.Sent, at: rec.At,
					status: rec.Status, accepted: rec.Status >= 200 && rec.Status < 300, deliveries: make(map[pageKey]int)}
				c.lines[rec.Text] = l
				c.said = append(c.said, l)
			}
		case history.KindStream:
			c.r.Pages.Streams++
			if rec.Status == 200 {
				c.r.Pages.StreamsOK++
				p := c.page(rec)
				// The node that answered: the last the load balancer tried.
				addr := rec.Node
				if i := strings.LastIndexByte(addr, ','); i >= 0 {
					addr = addr[i+1:]
				}
				p.streams = append(p.streams, span{kind: "stream", node: nodes[strings.TrimSpace(addr)], start: rec.At})
			}
		case history.KindStreamEnd:
			if p := c.page(rec); len(p.streams) > 0 && p.streams[len(p.streams)-1].end.IsZero() {
				p.streams[len(p.streams)-1].end = rec.At
			}
		case history.KindPageOpen:
			p := c.page(rec)
			if p.open.IsZero() {
				p.open = rec.At
				c.r.Pages.Opened++
			}
		case history.KindPageEnd:
			p := c.page(rec)
			if p.end.IsZero() {
				p.end, p.reason = rec.At, rec.Reason
				switch rec.Reason {
				case history.EndError:
					c.r.Pages.BrokenByError++
				case history.EndTold:
					c.r.Pages.Told++
				}
			}
		case history.KindEvent:
			p := c.page(rec)
			p.events = append(p.events, rec)
		case history.KindFinal:
			p := c.page(rec)
			p.final, p.hasFinal = rec.Names, true
		case history.KindTruth:
			c.truth, c.haveTru = rec.Names, true
		}
	}
	for _, p := range c.order {
		for _, f := range c.faults {
			if f.target == p.key.client {
				p.ownFaults = append(p.ownFaults, f)
			}
			if !nodeFaults[f.kind] {
				continue
			}
			if c.single {
				// The only node: a page whose stream broke has nowhere
				// else to go either.
				p.ownFaults = append(p.ownFaults, f)
				continue
			}
			for _, st := range p.streams {
				if st.node != f.target {
					continue
				}
				if o, ok := overlap(f, st); ok {
					p.ownFaults = append(p.ownFaults, o)
				}
			}
		}
	}
	return c
}

func (c *check) page(rec history.Record) *page {
	k := pageKey{rec.Client, rec.Page}
	p := c.pages[k]
	if p == nil {
		p = &page{key: k}
		c.pages[k] = p
		c.order = append(c.order, p)
	}
	return p
}

func (c *check) finding(kind *int, format string, args ...any) {
	*kind++
	if *kind <= c.opts.Findings {
		c.r.Findings = append(c.r.Findings, fmt.Sprintf(format, args...))
	}
}

// during returns the kinds of fault under way at some time in [from, to].
func (c *check) during(from, to time.Time) []string {
	var kinds []string
	for _, f := range c.faults {
		if f.start.After(to) || !f.end.IsZero() && f.end.Before(from) {
			continue
		}
		if !slices.Contains(kinds, f.kind) {
			kinds = append(kinds, f.kind)
		}
	}
	return kinds
}
