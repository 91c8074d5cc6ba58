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
// one Interval. A node silent for 3 Intervals is lost, unless this node
// is as far behind on its own messages (a stalled process, a busy
// machine): it decides nobody lost then, since it cannot tell.
//
// # One membership for the cluster
//
// The node is the one owner of the cluster's membership: which nodes are
// there, when one is lost, when this node, after it started or
// reconnected, has heard the others ([Node.Warm]). An adapter that keeps
// per-node state of its own (package natspresence keeps who holds which
// person) takes it from the node instead of running its own heartbeats:
// [Node.Watch] tells it each decision (a node lost: right after
// [Options.OnNodeLost], on the same goroutine; a node closed), so streams
// and the adapter's state are declared lost by one decision, at one
// moment, and the two never disagree. [Node.Heard] counts the adapter's
// news of a node as a sign of its life, and [Node.KeyValue] opens the
// adapter's bucket with the node's replicas.
//
// # Wiring
//
// [New] builds the node's hub over your store, so the node sees every
// stream open and end; the store's eviction callback and the hub's OnOpen
// stay the app's own:
//
//	nc, err := nats.Connect("nats://127.0.0.1:4222", nats.MaxReconnects(-1),
//		nats.ReconnectBufSize(-1)) // with a history, New requires it: see ErrReconnectBuffer
//	if err != nil {
//		return err
//	}
//	defer nc.Close()
//	store := sfere.NewMemoryStore(sfere.MemoryOptions{OnEvict: app.Evicted})
//	node, err := natscluster.New(nc, store, natscluster.Options{
//		Hub:        sfere.HubOptions{OnOpen: app.Opened}, // optional
//		OnNodeLost: app.NodeLost,
//	})
//	if err != nil {
//		return err
//	}
//	defer node.Close() // runs after the hub's Shutdown, deferred below
//	hub := node.Hub()  // serve streams with it: hub.Serve(w, r, key)
//	defer hub.Shutdown(context.Background())
//	node.Broadcast(sfere.All, nil, effect) // reach streams through the node
//
// [Example] runs this on two nodes with an embedded NATS server.
//
// A [Node] and an [sfere.Hub] both satisfy [sfere.Publisher] (Broadcast,
// Send, List, Count with the same signatures), so code that takes a
// Publisher runs on one node or a cluster unchanged. Where the two differ:
// a node's Broadcast takes only a [sfere.Key], [sfere.KeySet] or
// [sfere.Pattern] as exclusion, its Result counts local streams only, and
// its Send waits up to [Options.SendTimeout] for a remote node
// ([Node.SendContext] takes a context instead).
//
// # Resuming on any node
//
// With a history (Options.Hub.History.Size > 0) the cluster keeps one
// event log in a JetStream stream (MaxMsgs = Size, MaxAge = the history's
// MaxAge): every broadcast and send is appended to it, JetStream numbers
// it, and every node applies the log in order ([sfere.Hub.BroadcastAt]),
// so each node's history is a copy of the log and a position is valid on
// every node. A client whose stream broke resumes on whichever node it
// reaches (see [sfere.Hub.Serve]). The log's epoch is the stream's
// creation time: a log lost and made anew (a NATS server without storage
// restarted) starts a new epoch, each node resets its history within one
// Interval ([sfere.Hub.ResetHistory]), and positions of the old epoch get
// the full state instead of a replay. A node that finds the log moved on
// past what it applied (JetStream starts a consumer at the oldest message
// it still has, without an error) keeps the gap: positions before it are
// not served.
//
// # An app's own events in the log
//
// An app may put events of its own into the same log ([Node.Append]: a
// kind, a payload, optionally a Nats-Msg-Id of its choosing, so that
// nodes deciding the same thing store it once). Every node hands each to
// the handler of its kind ([Node.Handle]) as it applies the log, at the
// event's position and in log order with the broadcasts around it; the
// handler renders it from its own state and delivers it at that position,
// so a client resuming on any node is replayed it like a broadcast.
// Package natspresence sends who arrived, departed and came back this
// way.
//
// # What a nil error means, and what survives which fault
//
// With a history, [Node.Broadcast] and [Node.Send] return nil only once
// JetStream acknowledged the event: a majority of the log's replicas
// holds it, and every node delivers it once, in log order. Each event
// carries a Nats-Msg-Id and its publish is retried with it (no
// responders, timeouts, a leader election, a reconnect) for at most
// [Options.PublishTimeout]; JetStream stores a retried event once. If
// the log does not take it in time, the error wraps [ErrNoLog] and the
// event is delivered nowhere, on no node: an app answers "not sent, try
// again" (the lobby answers 503). We chose this over an outbox that
// delivers later: the person who typed the line knows at once, and no
// line appears minutes after it was said. A refusal is honest because
// [New] requires a connection that keeps nothing while it reconnects
// ([ErrReconnectBuffer]). One case stays ambiguous: an
// acknowledgement lost on every retry while JetStream did store the
// event gives an error for an event that every node then delivers once.
//
// The log's stream is on disk (file storage: it holds minutes of chat
// that pages resume from), bounded by the history's Size and MaxAge, with
// [Options.Replicas] replicas: by default 3 where the NATS cluster has at
// least 3 JetStream servers, else 1. With 3 replicas the loss of any one
// NATS server (its process or its disk) loses no acknowledged event, and
// publishes ride through the leader election that follows; a node whose
// consumer lived on the lost server makes a new one from the message
// after the last it applied. Making one needs JetStream's meta leader,
// which may take seconds to be elected again while the stream already
// takes events: meanwhile the node reads the events it lacks from the
// stream itself, one by one, and so does a node whose own published
// event its consumer has not applied half a second after the
// acknowledgement (a lost consumer is noticed only after two missed
// heartbeats). With 1 replica the log lives on one server,
// and losing that server's disk starts a new epoch. JetStream's default
// fsync is lazy (sync_interval of 2 minutes): an acknowledgement means a
// majority of the replicas holds the event in memory and in the page
// cache, not on disk, so a power failure of every server at once can
// lose the last acknowledged minutes (Jepsen, NATS 2.12.1, 2025); set
// sync_interval: always on the servers if that matters more than speed.
//
// # NATS inside the app's own processes
//
// [StartServerWith] runs a NATS server with JetStream inside the process;
// with [ServerOptions.Cluster] and [ServerOptions.Routes] the servers of
// several processes route to each other and form one NATS cluster, so
// three app nodes, each with its own server, are a replicated cluster
// with no other service: the log gets 3 replicas, and killing any one
// node, its NATS server and all, loses no acknowledged event. [New] waits
// up to [Options.StartTimeout] for JetStream to take the log (a cluster
// elects its JetStream leader once a majority of its servers is up), so
// the nodes may start in any order.
//
// Without a history, a broadcast is a plain NATS message: delivered to
// this node's streams at once and to the other nodes if they are
// connected; no log, no retry, no promise across a NATS outage.
package natscluster
