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
	History  historyView
}

// historyView is the hub's history as the page shows it.
type historyView struct {
	Position string // the newest event's; "" without a history
	// Streams that asked for a position since a page began watching:
	// recovered (replayed what they missed) or not, and events replayed,
	// in all and per second.
	Recovered, Unrecovered, Replayed uint64
	RecoveredRate, UnrecoveredRate   string
	ReplayedRate                     string
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
	// Delivery latency over the last interval: percentiles (upper
	// bounds) and how many deliveries they are of.
	P50, P90, P99 string
	Latencies     uint64

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
	Streams    []streamRow
	MoreKeys   int
	Queues     []queueBar // how many streams have how much queued
}

type streamRow struct {
	Key       sfere.Key
	Age       string
	Queued    string
	LastWrite string // how long ago
	Transport string
}

// queueBar is one bucket of the queue-depth histogram, drawn as a bar.
type queueBar struct {
	Label  string
	Count  int
	Y      int // the bar's top, in SVG units
	Height int
}

// queueBuckets are the upper bounds of the queue-depth histogram's
// buckets, in bytes (the last bucket takes the rest).
var queueBuckets = []struct {
	max   int
	label string
}{{0, "empty"}, {1 << 10, "≤ 1 KiB"}, {16 << 10, "≤ 16 KiB"}, {256 << 10, "≤ 256 KiB"}, {-1, "more"}}

type categoryCount struct {
	Category string
	Count    int
}

type roomView struct {
	Room    string
	Count   int
	Members []memberView
	More    int
	// People away within their resume window, the first to run out
	// first, with how long each has left.
	Away     []awayView
	MoreAway int
	Recent   []changeView // newest first
}

type awayView struct {
	ID, Meta, Left string
}

type changeView struct {
	Ago, ID, Meta, What string
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
	NATS    []figure // the connection's state; nil without Options.NATS
	// The event log's state (nil without a history) or why it could not
	// be read, and its followers.
	Log       []figure
	LogErr    string
	Followers []followerView
	// Claims asserted by this node's presence clusters (Options.Presence).
	Claims []figure
}

type followerView struct {
	Server, State, Lag, Active string
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
		// No sampler runs: a sample of this view's own, not a plot's,
		// with the event log read under no lock.
		d.mu.Unlock()
		log := d.readLog()
		d.mu.Lock()
		last = d.readLocked(now)
		last.log = log
	}
	var cur point
	if n := len(d.points); n > 0 && d.points[n-1].at.Equal(last.at) {
		cur = d.points[n-1]
	}
	plots := d.plotsLocked(now)
	d.mu.Unlock()

	v := view{Overview: overviewOf(last, cur, d.opts.Heartbeat != nil), Streams: d.streamsView(search)}
	v.Overview.Plots = plots
	for i, t := range d.opts.Trackers {
		v.People = append(v.People, d.roomView(i, t))
	}
	if d.opts.Node != nil {
		v.Cluster = d.clusterView(last)
	}
	if nc := d.opts.NATS; nc != nil {
		if v.Cluster == nil {
			v.Cluster = &clusterView{}
		}
		st := nc.Stats()
		u := func(v uint64) string { return strconv.FormatUint(v, 10) }
		v.Cluster.NATS = []figure{
			{"status", nc.Status().String()},
			{"server", nc.ConnectedUrlRedacted()},
			{"messages in / out", u(st.InMsgs) + " / " + u(st.OutMsgs)},
			{"bytes in / out", bytesText(float64(st.InBytes)) + " / " + bytesText(float64(st.OutBytes))},
			{"reconnects", u(st.Reconnects)},
		}
	}
	if pos := d.hub.Position(); pos != (sfere.Position{}) {
		v.History.Position = pos.String()
	}
	v.History.Recovered, v.History.Unrecovered, v.History.Replayed = last.recovered, last.unrecovered, last.replayed
	v.History.RecoveredRate, v.History.UnrecoveredRate = rateText(cur.r.recovered), rateText(cur.r.unrecovered)
	v.History.ReplayedRate = rateText(cur.r.replayed)
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
	o.P50, o.P90, o.P99, o.Latencies = "–", "–", "–", r.latencies
	if r.latencies > 0 {
		o.P50, o.P90, o.P99 = durationText(r.p50), durationText(r.p90), durationText(r.p99)
	}
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
	// The store's streams, not Hub.List: the rows show what each stream
	// is doing, and Store.Get would count as an access (a sliding expiry).
	streams := d.hub.Store().AppendStreams(nil, p)
	sv.Total = len(streams)
	counts := make(map[string]int)
	queues := make([]int, len(queueBuckets))
	for _, s := range streams {
		counts[s.Key().Category]++
		info := s.Info()
		b := 0
		for b < len(queueBuckets)-1 && info.Queued > queueBuckets[b].max {
			b++
		}
		queues[b]++
	}
	top := slices.Max(queues)
	for i, n := range queues {
		bar := queueBar{Label: queueBuckets[i].label, Count: n}
		if top > 0 {
			bar.Height = n * (plotHeight - 2) / top
		}
		bar.Y = plotHeight - bar.Height
		sv.Queues = append(sv.Queues, bar)
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
	sv.MoreKeys = max(len(streams)-maxKeys, 0)
	now := time.Now()
	for _, s := range firstStreams(streams, maxKeys) {
		info := s.Info()
		row := streamRow{Key: s.Key(), Age: ago(now, info.Opened), Queued: bytesText(float64(info.Queued)),
			LastWrite: "never", Transport: "net/http"}
		if !info.LastWrite.IsZero() {
			row.LastWrite = ago(now, info.LastWrite) + " ago"
		}
		if info.TakenOver {
			row.Transport = "taken over"
		}
		if info.Compressed {
			row.Transport += ", gzip"
		}
		sv.Streams = append(sv.Streams, row)
	}
	return sv
}

// firstStreams returns the first n of streams in key order (category,
// scope, id), sorted: a bounded insertion, so that a hub of many streams
// costs a pass over them rather than a sort of them all.
func firstStreams(streams []*sfere.Stream, n int) []*sfere.Stream {
	less := func(x, y *sfere.Stream) int {
		a, b := x.Key(), y.Key()
		return cmp.Or(cmp.Compare(a.Category, b.Category), cmp.Compare(a.Scope, b.Scope), cmp.Compare(a.ID, b.ID))
	}
	first := make([]*sfere.Stream, 0, min(n, len(streams)))
	for _, s := range streams {
		if len(first) == n && less(s, first[n-1]) >= 0 {
			continue
		}
		i, _ := slices.BinarySearchFunc(first, s, less)
		if len(first) == n {
			first = first[:n-1]
		}
		first = slices.Insert(first, i, s)
	}
	return first
}

// roomView lists the people of t's room, with the tabs each has open on
// this hub.
func (d *Dashboard) roomView(i int, t *presence.Tracker) roomView {
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
			Since: ago(now, m.Since),
			Tabs:  d.hub.Count(presence.StreamsOf(t.Room(), m.ID)),
		})
	}
	away := t.Away()
	if len(away) > maxMembers {
		rv.MoreAway = len(away) - maxMembers
		away = away[:maxMembers]
	}
	for _, a := range away {
		rv.Away = append(rv.Away, awayView{ID: a.ID, Meta: a.Meta, Left: ago(a.Until, now)})
	}
	for _, c := range d.recentOf(i) {
		rv.Recent = append(rv.Recent, changeView{Ago: ago(now, c.at), ID: c.id, Meta: c.meta, What: c.what})
	}
	return rv
}

func (d *Dashboard) clusterView(s *sample) *clusterView {
	n := d.opts.Node
	peers := n.Peers()
	slices.Sort(peers)
	st := s.node
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	cv := &clusterView{
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
	if s.log.err != nil {
		cv.LogErr = s.log.err.Error()
	}
	if l := s.log.state; l != nil {
		leader := l.Leader
		if leader == "" {
			leader = "none"
		}
		cv.Log = []figure{
			{"stream", l.Stream + " (epoch " + l.Epoch + ")"},
			{"replicas", strconv.Itoa(l.Replicas)},
			{"leader", leader},
			{"sequences held", u(l.First) + " to " + u(l.Last)},
			{"applied here", u(l.Applied)},
			{"behind (to apply here)", u(l.Behind)},
			{"gaps (consumer skipped events)", u(l.Gaps)},
			{"events lost before applied here", u(l.Lost)},
		}
		for _, f := range l.Followers {
			state := "current"
			switch {
			case f.Offline:
				state = "offline"
			case !f.Current:
				state = "catching up"
			}
			cv.Followers = append(cv.Followers, followerView{Server: f.Server, State: state, Lag: u(f.Lag),
				Active: f.Active.Round(time.Millisecond).String() + " ago"})
		}
	}
	for i, c := range d.opts.Presence {
		n, away := c.Claims()
		name := "claims asserted"
		if len(d.opts.Presence) > 1 {
			name += " (" + strconv.Itoa(i+1) + ")"
		}
		cv.Claims = append(cv.Claims, figure{name, strconv.Itoa(n) + " (" + strconv.Itoa(away) + " of people away)"})
	}
	return cv
}

// ago writes the time from then to now, rounded to what a reader needs
// (zero if then is later).
func ago(now, then time.Time) string {
	d := max(now.Sub(then), 0)
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// durationText writes a latency rounded to what a reader needs: three
// significant digits or so.
func durationText(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return d.String()
	case d < time.Millisecond:
		return d.Round(time.Microsecond / 10).String()
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(10 * time.Millisecond).String()
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
