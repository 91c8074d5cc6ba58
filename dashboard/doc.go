// Package dashboard serves a live page about a sfere hub, in the spirit of
// Phoenix LiveDashboard: mount one [http.Handler] and watch the hub's
// streams, people, rates, runtime and cluster in a browser, with no other
// service to run.
//
//	d, err := dashboard.New(hub, dashboard.Options{Path: "/debug/dashboard"})
//	if err != nil {
//		return err
//	}
//	mux.Handle("/debug/dashboard", d)
//	mux.Handle("/debug/dashboard/", d)
//
// The page is a Datastar page fed by a stream of the hub itself (the
// dashboard uses sfere's public API only), updated every
// [Options.Interval]. While no page is open the dashboard does nothing:
// it samples and renders only for open pages, once per interval whatever
// their number.
//
// # Panes
//
//   - Overview: the hub's streams now and over the last [Options.Window]
//     (the dashboard's own left out), opens and ends per second, ends by
//     cause ([sfere.Cause]), broadcasts, deliveries and refusals per
//     second, bytes written per second ([sfere.Hub.Stats]), the delivery
//     latency's p50, p90 and p99 over the last interval
//     ([sfere.Latencies]: upper bounds, the dashboard's own updates
//     included), the heartbeat's sweeps ([Options.Heartbeat]), goroutines, heap and GC,
//     with small SVG plots drawn by the server.
//   - Streams: the keys by category with counts, searched with the hub's
//     pattern text ([sfere.ParsePattern]: scope/category/id, * for any);
//     each stream's age, queued bytes, last write and transport
//     ([sfere.Stream.Info]), and a histogram of queued bytes.
//   - People (with [Options.Trackers]): who is present per room, since
//     when, and how many tabs each has open on this node; who is away
//     within the resume window and how long it has left
//     ([presence.Tracker.Away]); the room's recent arrivals and
//     departures, with why each left (the departure's
//     reason and its last stream's cause, never its error, which may name
//     the client's address), recorded while a page is open
//     ([presence.Tracker.OnDiff]).
//   - Cluster (with [Options.Node]): the node's id, its peers, the
//     cluster's stream count and the node's counters; with a history, the
//     event log's JetStream stream: replicas, leader, followers and their
//     lag, the sequences it holds, how far this node applied it, gaps and
//     events lost ([natscluster.Node.LogState], read once per interval
//     under no lock); with [Options.Presence], the claims this node
//     asserts; with [Options.NATS], the connection's status, server,
//     traffic and reconnects.
//   - History: the hub's newest position, if it keeps a history, and the
//     streams that resumed from a position or could not, counted while a
//     page is open ([sfere.Hub.OnOpen], [sfere.Stream.Recovery]).
//
// # Safety
//
// The dashboard shows stream keys and people's ids and names, never
// message contents or owners (session ids); every string is escaped. It
// has no access control of its own: mount it behind the app's guard for
// debug routes. Its one POST (the search) passes a cross-origin check
// ([http.CrossOriginProtection]). The page sets a Content-Security-Policy
// that allows the Datastar client and requests to its own site only.
package dashboard
