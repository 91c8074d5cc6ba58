package dashboard

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/presence"
)

// Bounds of what one pane lists; the rest is counted, not shown.
const (
	maxCategories = 50
	maxKeys       = 100
	maxMembers    = 100
)

// view is everything the page shows at one moment; the templates turn it
// into HTML (escaping every string: keys and names are user input).
type view struct {
	Overview overview
	Streams  streamsView
	People   []roomView
	Cluster  *clusterView
	History  string // the hub's position; "" without a history
}

type overview struct {
	At       string
	Streams  int // the app's streams on this hub
	Own      int // open dashboard streams
	Opened   uint64
	Ended    uint64
	HasRates bool
	Opens    string
	Ends     string
	Sent     string // broadcasts and sends per second
	Deliver  string
	Failed   string
	Bytes    string // per second
	EndsBy   []causeFigure

	Heartbeat *heartbeatView

	Goroutines uint64
	Heap       string
	Mapped     string
	GCs        string // per second
	MaxPause   string

	Plots []plot
}

type causeFigure struct {
	Cause string
	Total uint64
	Rate  string
}

type heartbeatView struct {
	Sweeps, Skipped, Writes, Failures uint64
	LastSweep                         string
}

type streamsView struct {
	Search     string
	Err        string
	Total      int
	Categories []categoryCount
	MoreCats   int
	Keys       []sfere.Key
	MoreKeys   int
}

type categoryCount struct {
	Category string
	Count    int
}

type roomView struct {
	Room    string
	Count   int
	Members []memberView
	More    int
}

type memberView struct {
	ID, Meta string
	Since    string
	Tabs     int
}

type clusterView struct {
	ID      string
	Peers   []string
	Streams int // every node's, as the node sees them
	Stats   []figure
}

type figure struct {
	Name  string
	Value string
}

// parseSearch turns a search into the pattern it selects: empty is every
// stream, anything else the hub's pattern text (scope/category/id, each
// part percent-encoded or * for any).
func parseSearch(text string) (sfere.Pattern, error) {
	if text == "" {
		return sfere.All, nil
	}
	p, err := sfere.ParsePattern(text)
	if err != nil {
		return sfere.Pattern{}, fmt.Errorf("not a pattern: want scope/category/id with * for any part, e.g. */lobby/*")
	}
	return p, nil
}

// currentView returns the view of now, with the Streams pane searched by
// search. It uses the sampler's newest sample when it is fresh, and takes
// one of its own otherwise (a page rendered while none is open).
func (d *Dashboard) currentView(search string) view {
	now := time.Now()
	d.mu.Lock()
	last := d.last
	if last == nil || now.Sub(last.at) > 2*d.opts.Interval {
		last = d.readLocked(now) // not a plot's: no sampler runs
	}
	var cur point
	if n := len(d.points); n > 0 && d.points[n-1].at.Equal(last.at) {
		cur = d.points[n-1]
	}
	plots := d.plotsLocked(now)
	d.mu.Unlock()

	v := view{Overview: overviewOf(last, cur, d.opts.Heartbeat != nil), Streams: d.streamsView(search)}
	v.Overview.Plots = plots
	for _, t := range d.opts.Trackers {
		v.People = append(v.People, d.roomView(t))
	}
	if d.opts.Node != nil {
		v.Cluster = d.clusterView(last)
	}
	if pos := d.hub.Position(); pos != (sfere.Position{}) {
		v.History = pos.String()
	}
	return v
}

func overviewOf(s *sample, p point, heartbeat bool) overview {
	o := overview{
		At:         s.at.UTC().Format("15:04:05"),
		Streams:    s.streams,
		Own:        s.own,
		Opened:     s.hub.Opened - min(s.ownOpened, s.hub.Opened),
		Ended:      s.hub.Ended - min(s.ownEnded, s.hub.Ended),
		HasRates:   p.hasRates,
		Goroutines: s.goroutines,
		Heap:       bytesText(float64(s.heap)),
		Mapped:     bytesText(float64(s.mapped)),
	}
	r := p.r
	o.Opens, o.Ends = rateText(r.opens), rateText(r.ends)
	o.Sent, o.Deliver, o.Failed = rateText(r.broadcasts), rateText(r.delivered), rateText(r.failed)
	o.Bytes = bytesText(r.bytes) + "/s"
	o.GCs = rateText(r.gcs)
	o.MaxPause = "none"
	if r.maxPause > 0 {
		o.MaxPause = "≤ " + r.maxPause.Round(time.Microsecond).String()
	}
	for _, c := range causes {
		total := s.hub.EndedBy(c) - min(s.ownEndedBy[c], s.hub.EndedBy(c))
		o.EndsBy = append(o.EndsBy, causeFigure{Cause: c.String(), Total: total, Rate: rateText(r.endsBy[c])})
	}
	if heartbeat {
		o.Heartbeat = &heartbeatView{Sweeps: s.beat.Sweeps, Skipped: s.beat.Skipped, Writes: s.beat.Writes,
			Failures: s.beat.Failures, LastSweep: s.beat.LastSweep.Round(time.Microsecond).String()}
	}
	return o
}

// streamsView lists the streams search selects, by category.
func (d *Dashboard) streamsView(search string) streamsView {
	sv := streamsView{Search: search}
	p, err := parseSearch(search)
	if err != nil {
		sv.Err = err.Error()
		return sv
	}
	keys := d.hub.List(p)
	sv.Total = len(keys)
	counts := make(map[string]int)
	for _, k := range keys {
		counts[k.Category]++
	}
	for c, n := range counts {
		sv.Categories = append(sv.Categories, categoryCount{Category: c, Count: n})
	}
	slices.SortFunc(sv.Categories, func(a, b categoryCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Category, b.Category))
	})
	if len(sv.Categories) > maxCategories {
		sv.MoreCats = len(sv.Categories) - maxCategories
		sv.Categories = sv.Categories[:maxCategories]
	}
	slices.SortFunc(keys, func(a, b sfere.Key) int {
		return cmp.Or(cmp.Compare(a.Category, b.Category), cmp.Compare(a.Scope, b.Scope), cmp.Compare(a.ID, b.ID))
	})
	if len(keys) > maxKeys {
		sv.MoreKeys = len(keys) - maxKeys
		keys = keys[:maxKeys]
	}
	sv.Keys = keys
	return sv
}

// roomView lists the people of t's room, with the tabs each has open on
// this hub.
func (d *Dashboard) roomView(t *presence.Tracker) roomView {
	members := t.Members()
	rv := roomView{Room: t.Room(), Count: len(members)}
	if len(members) > maxMembers {
		rv.More = len(members) - maxMembers
		members = members[:maxMembers]
	}
	now := time.Now()
	for _, m := range members {
		rv.Members = append(rv.Members, memberView{
			ID:    m.ID,
			Meta:  m.Meta,
			Since: now.Sub(m.Since).Round(time.Second).String(),
			Tabs:  d.hub.Count(presence.StreamsOf(t.Room(), m.ID)),
		})
	}
	return rv
}

func (d *Dashboard) clusterView(s *sample) *clusterView {
	n := d.opts.Node
	peers := n.Peers()
	slices.Sort(peers)
	st := s.node
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	return &clusterView{
		ID:      n.ID(),
		Peers:   peers,
		Streams: n.Count(sfere.All),
		Stats: []figure{
			{"broadcasts sent", u(st.BroadcastsSent)},
			{"broadcasts received", u(st.BroadcastsReceived)},
			{"remote sends", u(st.RemoteSends)},
			{"nodes lost", u(st.NodesLost)},
			{"NATS gaps", u(st.Gaps)},
			{"time without NATS", st.GapTime.Round(time.Millisecond).String()},
			{"log deliveries", u(st.LogDelivered)},
			{"log delivery failures", u(st.LogFailed)},
			{"log publish retries", u(st.PublishRetries)},
			{"log refused", u(st.LogRefused)},
			{"log late", u(st.LogLate)},
		},
	}
}

// rateText writes a per-second rate with a precision that suits it.
func rateText(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
}

// bytesText writes a byte count in B, KiB, MiB or GiB.
func bytesText(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return strconv.FormatFloat(v, 'f', 0, 64) + " B"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + units[i]
}
