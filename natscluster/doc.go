// Package natscluster makes several sfere hubs, one per process, behave as
// one over NATS: a broadcast on any node reaches every matching stream on
// every node, a Send reaches a stream wherever it lives, List and Count see
// the whole cluster, a key opened on a second node closes the first node's
// stream (cause replaced), and the streams of a node that stopped answering
// are reported once, cause node-lost.
//
// Each node announces the streams it opens and closes on a presence
// subject at once, and its whole set of keys every Interval. Peers keep a
// view of each other from those messages: List and Count may lag a change
// by the NATS delivery time (milliseconds) and heal any divergence within
// one Interval. A node silent for 3 Intervals is lost.
//
// Wiring, in dependency order:
//
//	var node *natscluster.Node
//	store := sfere.NewMemoryStore(sfere.MemoryOptions{OnEvict: func(ev sfere.Eviction) {
//		node.Evicted(ev) // before the app's own handling
//		app.Evicted(ev)
//	}})
//	hub := sfere.NewHub(store, sfere.HubOptions{OnOpen: func(s *sfere.Stream) { node.Opened(s) }})
//	node, err = natscluster.New(nc, hub, natscluster.Options{OnNodeLost: app.NodeLost})
package natscluster
