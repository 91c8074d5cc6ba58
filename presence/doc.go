// Package presence tells an application who is here: people, not streams.
//
// A person is an id the application chooses (a user id, a unique display
// name) with optional metadata, held by an owner (a secret only the
// application knows, such as a session id). A person has zero or more
// streams: one per tab, window or device. A [Tracker] follows the streams
// of one room and announces, exactly once each, a person's arrival (their
// first stream appears) and departure (their last stream has been gone for
// a grace period, or they left explicitly, or the node holding their
// streams was lost). A reload or a tab switch within the grace period says
// nothing; a peer that TCP gave up on ([sfere.ErrPeerVanished]) departs at
// once. When many streams break at once, the grace period stretches to
// [Options.StormGrace], so that a crowd coming back slowly after a proxy
// restart or a blip at the server is announced to nobody.
//
// # Resume window
//
// With [Options.Resume] set, a person who departed because its streams
// ended (the grace period ran out, its peer vanished, its node was lost)
// is away for that long: its departure was announced, but its id stays
// reserved for its owner (on every node of a cluster) and
// [Tracker.Lookup] still finds it. If the owner's page reconnects within
// the window ([Tracker.Serve] or [Tracker.Detach], through any node), the
// person joins again, announced once in [Diff.Joins] with [Member.Back]
// set, so the application says "brian is back". A window that runs out,
// a [Tracker.Leave] or a claim of another id releases the claim silently:
// there is never a second departure. An explicit leave or a rename is
// never resumable.
//
// # Keys
//
// Every stream of a room is stored under its own key:
//
//	category = room, scope = person id, id = connection id
//
// so both questions an application asks are patterns the hub matches,
// and the room's is the cheapest one (the store indexes by category):
//
//	everyone in the room:     Everyone(room)       = (*, room, *)
//	every stream of a person: StreamsOf(room, id)  = (id, room, *)
//
// Two tabs of one person are two keys: neither replaces the other.
//
// # Snapshot and diffs
//
// Like Phoenix Presence, a stream first receives the room's state (a
// snapshot, rendered by [Options.Snapshot]) and then only diffs (joins and
// leaves, rendered by [Options.Diff]). Changes are batched: the first
// change after a quiet period goes out at once, and changes that follow
// within [Options.Window] go out together at the end of the window; while
// changes keep coming, each window is twice the last, up to
// [Options.MaxWindow]. N people arriving at once cost each stream a few
// dozen events, however large N is, not N. A stream that opened since
// the last batch receives the snapshot of the state before the batch,
// then the batch's diff like every other stream: the diff is kept in the
// hub's history and the snapshot is not, so a stream that breaks and
// resumes is replayed only what it did not apply, and no stream ever sees
// a change twice or misses one. Presence traffic is queued to streams like
// any other broadcast and never holds up the application's own.
//
// # Wiring
//
// There is none to do: [New] takes the hub and follows its streams from
// then on ([sfere.Hub.OnOpen], [sfere.Stream.AfterEnd]), so the hub, its
// store and their options know nothing of the tracker. Make the tracker
// before the hub serves the room. Streams of other categories are ignored.
//
// # Cluster
//
// With [Options.Cluster] set (see package natspresence, an adapter over a
// natscluster node, which decides which nodes are there), the trackers of
// a room on several nodes behave as one: a person with tabs on two nodes
// is one person, a name claimed on one node is taken on all, and when a
// node is lost its people depart once on every other node
// (ReasonNodeLost).
//
// Where the cluster's hubs copy one shared log (a [LogCluster]: package
// natspresence over a natscluster node that keeps a history), the room's
// arrivals, departures and returns go through that log: each node
// appends the changes it decided, and every node applies the log's, in
// log order, to the room's roster, delivering the diff at the log's
// position. So a stream that resumes on any node is replayed the lines it
// missed, once, a stream that recovered holds the room's state (no
// snapshot), and a departure that several nodes decided is one line on
// every node. Without a log, each node announces changes to its own
// streams only, and every stream that opens gets a snapshot.
package presence
