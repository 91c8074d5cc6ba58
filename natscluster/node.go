package natscluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/sfere-go/sfere"
)

// Defaults of [Options].
const (
	DefaultPrefix      = "sfere"
	DefaultInterval    = time.Second
	DefaultSendTimeout = 2 * time.Second
	// DefaultPublishTimeout is how long a publish to the event log is
	// retried: a JetStream leader election takes a few seconds.
	DefaultPublishTimeout = 5 * time.Second
	// snapshotChunk is how many keys one snapshot message carries, well
	// under NATS's default 1 MB payload limit.
	snapshotChunk = 2000
)

// ErrMoved is the error of a local stream closed because the same key was
// opened on another node (cause replaced).
var ErrMoved = errors.New("natscluster: key opened on another node")

// Options configures a [Node]. The zero value is usable.
type Options struct {
	// NodeID names this node, uniquely in the cluster. Empty means random.
	NodeID string
	// Prefix starts every subject the cluster uses; nodes with the same
	// prefix on the same NATS form one cluster. Empty means "sfere".
	Prefix string
	// Interval is how often a node sends its whole set of keys; a node
	// silent for 3 Intervals is lost. Zero means one second.
	Interval time.Duration
	// OnNodeLost is called once per lost node with the streams it held.
	// It runs on the node's own goroutine; keep it short.
	OnNodeLost func(Lost)
	// Logger receives NATS connection gaps and lost nodes. Nil means slog.Default().
	Logger *slog.Logger
	// SendTimeout bounds how long [Node.Send] waits for the node that
	// holds a remote stream to answer. Zero means [DefaultSendTimeout].
	SendTimeout time.Duration
	// Replicas is how many NATS servers hold the event log's stream (with
	// a history) and the adapters' buckets ([Node.KeyValue]: the claims
	// of package natspresence): 3 tolerates the loss of any one. Zero means
	// [AutoReplicas] where the NATS cluster can place them, else 1. A
	// stream found with fewer replicas is raised to this count, never
	// lowered.
	Replicas int
	// PublishTimeout bounds how long a broadcast or send with a history
	// retries its publish to the event log (through a leader election, a
	// lost server, a reconnect) before it gives up with [ErrNoLog]. Zero
	// means [DefaultPublishTimeout].
	PublishTimeout time.Duration
	// StartTimeout bounds how long [New] waits for JetStream to take the
	// event log (with a history). Zero means [DefaultStartTimeout].
	StartTimeout time.Duration
	// AppKinds are the kinds of the app events ([Node.Append]) whose
	// handlers the app registers after New returns ([Node.Handle]), as
	// package natspresence does for a room (natspresence.Kind): a node
	// that meets such an event before its handler holds the log back
	// from there (chat too, in order) until the handler is registered,
	// so the handler renders it at its position as every other node did,
	// and the node's history serves every position of the log. A hold
	// ends after StartTimeout without the handler: the events go on to
	// no stream ([AppEvent.Earlier]).
	AppKinds []string
	// Hub configures the local hub that [New] builds. Its OnOpen, if
	// set, runs before the node announces the stream (the node may end
	// the stream at once, if another node opened the same key later).
	Hub sfere.HubOptions
}

// Lost reports a node that stopped answering and the streams it held.
type Lost struct {
	Node string
	// Evictions has one entry per stream the node held, with
	// [sfere.CauseNodeLost] and no Stream (it lived elsewhere).
	Evictions []sfere.Eviction
	// Announcer is true on exactly one surviving node in a cluster whose
	// nodes see each other: the live node with the smallest id. An app
	// announces the departures only where it is true.
	Announcer bool
}

// Stats are a node's counters.
type Stats struct {
	BroadcastsSent     uint64
	BroadcastsReceived uint64
	RemoteSends        uint64
	NodesLost          uint64
	// Gaps counts disconnections from NATS; GapTime is their total length.
	Gaps    uint64
	GapTime time.Duration
	// LogDelivered and LogFailed count, with a history, this node's
	// streams that events of the cluster's log were queued to, and those
	// that refused one (Broadcast's Result is zero then: delivery happens
	// as each node applies the log).
	LogDelivered uint64
	LogFailed    uint64
	// PublishRetries counts publishes to the log tried again (a leader
	// election, a lost server); LogRefused counts events the log did not
	// take in time, refused with [ErrNoLog].
	PublishRetries uint64
	LogRefused     uint64
	// LogLate counts events of the log that this node applied to no
	// stream: stored after their deadline, refused to their caller.
	LogLate uint64
}

// Node is one hub's membership in a cluster.
type Node struct {
	id       string
	prefix   string
	interval time.Duration
	timeout  time.Duration // of a remote Send
	onLost   func(Lost)
	log      *slog.Logger
	nc       *nats.Conn
	hub      *sfere.Hub
	events   *eventLog // the cluster's event log; nil without a history

	replicas int // of the log and the adapters' buckets; 0: automatic

	apps apps // handlers of the apps' own events in the log (apps.go)

	// mu guards the maps and orders every presence publish with them, so
	// peers see opens, closes and snapshots in the order they happened.
	mu    sync.Mutex
	local map[*sfere.Stream]*localStream
	peers map[string]*peer
	seq   uint64
	// selfSeen is when this node last received one of its own presence
	// messages: a node behind on them cannot tell silent peers from its
	// own lag, and decides nobody lost.
	selfSeen time.Time
	warmAt   time.Time // Warm waits until then (after a start or a reconnect)
	watches  map[uint64]Watch
	watchSeq uint64

	subs []*nats.Subscription
	stop chan struct{}
	done chan struct{}

	broadcastsSent, broadcastsReceived, remoteSends, nodesLost, gaps atomic.Uint64
	logDelivered, logFailed, publishRetries, logRefused, logLate     atomic.Uint64
	gapTime                                                          atomic.Int64
}

type localStream struct {
	stamp stamp
	sub   *nats.Subscription // this stream's Send subject
}

// peer is what this node knows of another node.
type peer struct {
	keys     map[sfere.Key]stamp
	pending  map[sfere.Key]stamp // a snapshot being assembled
	seq      uint64
	lastSeen time.Time
}

// New builds a hub over store and joins it to the cluster on nc: the hub
// (see [Node.Hub]) tells the node of every stream it stores, and the node
// learns of each stream's end from [sfere.Stream.AfterEnd], so neither the
// store's eviction callback nor opts.Hub.OnOpen has to know about the node.
// The caller keeps nc (connected with reconnects enabled, the nats.go
// default) and closes it after [Node.Close].
func New(nc *nats.Conn, store sfere.Store, opts Options) (*Node, error) {
	if opts.Replicas < 0 || opts.Replicas > 5 {
		return nil, fmt.Errorf("%w: %d", ErrBadReplicas, opts.Replicas)
	}
	n := &Node{
		id:       opts.NodeID,
		prefix:   opts.Prefix,
		interval: opts.Interval,
		timeout:  opts.SendTimeout,
		onLost:   opts.OnNodeLost,
		log:      opts.Logger,
		nc:       nc,
		replicas: opts.Replicas,
		local:    make(map[*sfere.Stream]*localStream),
		peers:    make(map[string]*peer),
		watches:  make(map[uint64]Watch),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if n.id == "" {
		n.id = nuid.Next()
	}
	if n.prefix == "" {
		n.prefix = DefaultPrefix
	}
	if n.interval <= 0 {
		n.interval = DefaultInterval
	}
	if n.timeout <= 0 {
		n.timeout = DefaultSendTimeout
	}
	if n.log == nil {
		n.log = slog.Default()
	}
	n.log = n.log.With("node", n.id)
	n.warmAt = time.Now().Add(n.warmup())
	n.apps.declare(opts.AppKinds, cmp.Or(opts.StartTimeout, DefaultStartTimeout))
	hubOpts := opts.Hub
	appOpened := hubOpts.OnOpen
	hubOpts.OnOpen = func(s *sfere.Stream) {
		if appOpened != nil {
			appOpened(s)
		}
		n.opened(s)
	}
	var (
		epoch       string
		first, last uint64
	)
	if hubOpts.History.Size > 0 {
		if nc.Opts.AllowReconnect && nc.Opts.ReconnectBufSize >= 0 {
			return nil, ErrReconnectBuffer
		}
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, fmt.Errorf("natscluster: %w", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), cmp.Or(opts.StartTimeout, DefaultStartTimeout))
		n.events, epoch, first, last, err = openLog(ctx, n, js, hubOpts.History, opts.Replicas, cmp.Or(opts.PublishTimeout, DefaultPublishTimeout))
		cancel()
		if err != nil {
			return nil, err
		}
		hubOpts.History.Epoch = epoch
	}
	n.hub = sfere.NewHub(store, hubOpts)
	for subject, handler := range map[string]nats.MsgHandler{
		n.prefix + subjectPresence:  n.onPresence,
		n.prefix + subjectBroadcast: n.onBroadcast,
	} {
		sub, err := nc.Subscribe(subject, handler)
		if err != nil {
			n.unsubscribe()
			return nil, fmt.Errorf("natscluster: subscribe %s: %w", subject, err)
		}
		n.subs = append(n.subs, sub)
	}
	if err := nc.Flush(); err != nil {
		n.unsubscribe()
		return nil, fmt.Errorf("natscluster: %w", err)
	}
	if n.events != nil {
		// What the log holds is applied before any stream is served.
		ctx, cancel := context.WithTimeout(context.Background(), 10*n.timeout)
		err := n.events.start(ctx, epoch, max(first, 1), last)
		cancel()
		if err != nil {
			n.unsubscribe()
			n.events.close()
			return nil, err
		}
	}
	go n.run()
	return n, nil
}

// ID returns the node's id.
func (n *Node) ID() string { return n.id }

// Hub returns the node's local hub: serve streams with it ([sfere.Hub.Serve],
// [sfere.Hub.Detach]) and run the heartbeat over it. Reach streams through
// the node instead ([Node.Broadcast], [Node.Send], [Node.List]), so other
// nodes' streams are reached too.
func (n *Node) Hub() *sfere.Hub { return n.hub }

// Close leaves the cluster: peers forget this node's streams without
// reporting them lost. Shut the hub down first, so the streams' closes
// are announced.
func (n *Node) Close() {
	n.stopRunning()
	if n.events != nil {
		n.events.close()
	}
	n.apps.close()
	n.mu.Lock()
	n.publish(presence{Node: n.id, Op: opBye})
	for s, ls := range n.local {
		ls.sub.Unsubscribe()
		delete(n.local, s)
	}
	n.mu.Unlock()
	n.unsubscribe()
	if n.nc.IsConnected() {
		n.nc.FlushTimeout(time.Second) // best effort: the goodbye is an optimization
	}
}

// stopRunning stops the snapshot loop and waits for it.
func (n *Node) stopRunning() {
	select {
	case <-n.stop:
	default:
		close(n.stop)
	}
	<-n.done
}

func (n *Node) unsubscribe() {
	for _, sub := range n.subs {
		sub.Unsubscribe()
	}
	n.subs = nil
}

// opened announces a stream the local hub stored (the hub's OnOpen) and
// arranges for its end to be announced too.
func (n *Node) opened(s *sfere.Stream) {
	key := s.Key()
	st := stamp{At: time.Now().UnixNano(), Node: n.id}
	n.mu.Lock()
	sub, err := n.nc.Subscribe(n.sendSubject(key), n.onSend(key))
	if err != nil {
		n.log.Warn("cluster: cannot take sends for stream", "key", key, "err", err)
	}
	n.local[s] = &localStream{stamp: st, sub: sub}
	n.publish(presence{Node: n.id, Op: opOpen, Keys: []presenceKey{{Key: key, Stamp: st}}})
	newer := n.newerRemote(key, st)
	n.mu.Unlock()
	// Registered after the stream is in n.local: a stream that already
	// ended (replaced on this node meanwhile) runs closed now, so no
	// entry outlives its stream.
	s.AfterEnd(func() { n.closed(s) })
	if newer {
		// Another node opened the key after us: it wins.
		n.hub.Store().PurgeStream(s, sfere.CauseReplaced, ErrMoved)
	}
}

// closed announces a stream that left the local store and stops taking
// sends for it. It runs once the store's eviction callback has returned.
func (n *Node) closed(s *sfere.Stream) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ls := n.local[s]
	if ls == nil {
		return // the node was closed first
	}
	delete(n.local, s)
	if ls.sub != nil {
		ls.sub.Unsubscribe()
	}
	n.publish(presence{Node: n.id, Op: opClose, Keys: []presenceKey{{Key: s.Key(), Stamp: ls.stamp}}})
}

// newerRemote reports whether a peer holds key under a later stamp than st.
// Call with n.mu held.
func (n *Node) newerRemote(key sfere.Key, st stamp) bool {
	for _, p := range n.peers {
		if rst, ok := p.keys[key]; ok && rst.after(st) {
			return true
		}
	}
	return false
}

// publish sends a presence message; call with n.mu held, so publishes
// keep the order of the changes they describe.
func (n *Node) publish(p presence) {
	b, err := json.Marshal(p)
	if err == nil {
		err = n.nc.Publish(n.prefix+subjectPresence, b)
	}
	switch {
	case errors.Is(err, nats.ErrReconnectBufExceeded):
		// NATS is out of reach (the gap is logged once): the snapshot
		// sent when the connection is back tells peers what they missed.
	case err != nil:
		n.log.Warn("cluster: presence not sent", "op", p.Op, "err", err)
	}
}

func (n *Node) sendSubject(k sfere.Key) string {
	// The key's text form has no '.', '*', '>' or white space: one token.
	return n.prefix + subjectSend + k.String()
}

// onPresence updates the view of a peer.
func (n *Node) onPresence(msg *nats.Msg) {
	var p presence
	if err := json.Unmarshal(msg.Data, &p); err != nil || p.Node == "" {
		n.log.Warn("cluster: bad presence message", "err", err)
		return
	}
	if p.Node == n.id {
		n.mu.Lock()
		n.selfSeen = time.Now()
		n.mu.Unlock()
		return
	}
	var yield []*sfere.Stream
	n.mu.Lock()
	if p.Op == opBye {
		delete(n.peers, p.Node)
		watches := n.watchesLocked()
		n.mu.Unlock()
		for _, w := range watches {
			if w.Left != nil {
				w.Left(p.Node)
			}
		}
		return
	}
	pr := n.peers[p.Node]
	if pr == nil {
		pr = &peer{keys: make(map[sfere.Key]stamp)}
		n.peers[p.Node] = pr
	}
	pr.lastSeen = time.Now()
	switch p.Op {
	case opOpen:
		for _, k := range p.Keys {
			pr.keys[k.Key] = k.Stamp
			if pr.pending != nil {
				pr.pending[k.Key] = k.Stamp
			}
		}
	case opClose:
		for _, k := range p.Keys {
			if pr.keys[k.Key] == k.Stamp {
				delete(pr.keys, k.Key)
			}
			if pr.pending != nil && pr.pending[k.Key] == k.Stamp {
				delete(pr.pending, k.Key)
			}
		}
	case opSnapshot:
		if p.Part == 0 || p.Seq != pr.seq || pr.pending == nil {
			pr.pending = make(map[sfere.Key]stamp, len(p.Keys))
			pr.seq = p.Seq
		}
		for _, k := range p.Keys {
			pr.pending[k.Key] = k.Stamp
		}
		if p.Part == p.Parts-1 {
			pr.keys, pr.pending = pr.pending, nil
		}
	}
	if p.Op == opOpen || p.Op == opSnapshot {
		// A key this node holds, opened later elsewhere, moves there.
		for s, ls := range n.local {
			if rst, ok := pr.keys[s.Key()]; ok && rst.after(ls.stamp) {
				yield = append(yield, s)
			}
		}
	}
	n.mu.Unlock()
	for _, s := range yield {
		n.hub.Store().PurgeStream(s, sfere.CauseReplaced, ErrMoved)
	}
}

// run sends snapshots, finds lost peers and watches the connection.
func (n *Node) run() {
	defer close(n.done)
	t := time.NewTicker(n.interval)
	defer t.Stop()
	status := n.nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CONNECTED, nats.CLOSED)
	defer n.nc.RemoveStatusListener(status)
	var gapStart time.Time
	reconnects := n.nc.Stats().Reconnects
	n.snapshot()
	for {
		select {
		case <-n.stop:
			return
		case st := <-status:
			switch {
			case st != nats.CONNECTED && gapStart.IsZero():
				gapStart = time.Now()
				n.gaps.Add(1)
				n.log.Warn("cluster: lost the NATS connection; local streams go on, cross-node delivery paused", "status", st)
			case st == nats.CONNECTED && !gapStart.IsZero():
				gap := time.Since(gapStart)
				gapStart = time.Time{}
				n.gapTime.Add(int64(gap))
				n.log.Info("cluster: NATS connection back; cross-node delivery resumed", "gap", gap)
				n.mu.Lock()
				n.rewarmLocked()
				n.mu.Unlock()
				n.snapshot() // peers may have dropped this node meanwhile
				n.checkLog()
			}
		case <-t.C:
			n.snapshot()
			if r := n.nc.Stats().Reconnects; r != reconnects {
				// Back from a gap in which nothing could be heard (the
				// status change may come later, or have been missed):
				// the peers get their time again.
				reconnects = r
				n.mu.Lock()
				n.rewarmLocked()
				n.mu.Unlock()
			} else if n.nc.IsConnected() {
				n.reap()
			}
			n.checkLog()
		}
	}
}

// checkLog has the event log checked (see eventLog.check) without
// holding up the node's loop.
func (n *Node) checkLog() {
	if n.events != nil {
		n.events.background(n.events.check)
	}
}

// snapshot publishes this node's whole set of keys.
func (n *Node) snapshot() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.seq++
	keys := make([]presenceKey, 0, len(n.local))
	for s, ls := range n.local {
		keys = append(keys, presenceKey{Key: s.Key(), Stamp: ls.stamp})
	}
	parts := max(1, (len(keys)+snapshotChunk-1)/snapshotChunk)
	for i := range parts {
		chunk := keys[i*snapshotChunk : min(len(keys), (i+1)*snapshotChunk)]
		n.publish(presence{Node: n.id, Op: opSnapshot, Seq: n.seq, Part: i, Parts: parts, Keys: chunk})
	}
}

// reap drops peers silent for 3 intervals and reports their streams to
// [Options.OnNodeLost] and every [Watch]: the one decision that a node is
// lost. It decides nothing while this node is as far behind on its own
// messages (a stalled process, a busy machine): it cannot tell then.
func (n *Node) reap() {
	var lost []Lost
	n.mu.Lock()
	cutoff := time.Now().Add(-3 * n.interval)
	if !n.nc.Opts.NoEcho && n.selfSeen.Before(cutoff) {
		n.mu.Unlock()
		return
	}
	for id, p := range n.peers {
		if p.lastSeen.After(cutoff) {
			continue
		}
		delete(n.peers, id)
		l := Lost{Node: id}
		for k := range p.keys {
			if n.heldElsewhere(k) {
				continue // the person is still here, through another node
			}
			l.Evictions = append(l.Evictions, sfere.Eviction{Key: k, Cause: sfere.CauseNodeLost})
		}
		lost = append(lost, l)
	}
	announcer := true
	for id := range n.peers {
		if id < n.id {
			announcer = false
		}
	}
	watches := n.watchesLocked()
	n.mu.Unlock()
	for _, l := range lost {
		l.Announcer = announcer
		n.nodesLost.Add(1)
		n.log.Warn("cluster: node lost", "lost", l.Node, "streams", len(l.Evictions), "announcer", announcer)
		if n.onLost != nil {
			n.onLost(l)
		}
		for _, w := range watches {
			if w.Lost != nil {
				w.Lost(l)
			}
		}
	}
}

// heldElsewhere reports whether k is held locally or by a live peer. Call
// with n.mu held.
func (n *Node) heldElsewhere(k sfere.Key) bool {
	if _, ok := n.hub.Store().Get(k); ok {
		return true
	}
	for _, p := range n.peers {
		if _, ok := p.keys[k]; ok {
			return true
		}
	}
	return false
}

// ErrNoLog is returned (wrapped) by [Node.Broadcast] and [Node.Send]
// with a history when the cluster's event log did not take the event
// within [Options.PublishTimeout] (NATS out of reach, no JetStream
// leader, the log's servers lost): the event was delivered nowhere, on
// no node. Try again later, or tell the person it was not sent.
var ErrNoLog = errors.New("natscluster: the cluster's event log did not take the event; delivered nowhere")

// ErrReconnectBuffer is returned by [New] with a history when nc keeps
// publishes while it reconnects (the nats.go default, 8 MB): such a
// publish, refused with [ErrNoLog] once its time ran out, would still be
// sent when the connection is back, and the log would hold an event its
// caller was told was delivered nowhere. Connect with
// nats.ReconnectBufSize(-1): a publish made while the connection is down
// then fails at once, and the node tries it again, with the same
// Nats-Msg-Id, until the connection is back or its time runs out.
var ErrReconnectBuffer = errors.New("natscluster: the NATS connection keeps publishes while it reconnects; connect with nats.ReconnectBufSize(-1)")

// ErrBadReplicas is returned by [New] for a replica count JetStream
// cannot have (below 0 or above 5).
var ErrBadReplicas = errors.New("natscluster: replicas must be 0 (automatic) to 5")

// Broadcast renders effects, queues them to the matching local streams and
// publishes them to every other node, which does the same. The Result
// counts local streams only.
//
// With a history (Options.Hub.History), Broadcast and Send go through the
// cluster's event log instead (see the package doc): the event is
// published to JetStream, retried with one Nats-Msg-Id (stored once) for
// up to [Options.PublishTimeout], and every node, this one included,
// delivers it as it applies the log, with the log's position as its id.
// A nil error then means the log holds the event and every node delivers
// it; Broadcast's Result is zero. An error wrapping [ErrNoLog] means it
// was delivered nowhere (no local-only delivery: a line either reaches
// every node or none). exclude must be nil, a [sfere.Key], a
// [sfere.KeySet] or a [sfere.Pattern].
func (n *Node) Broadcast(p sfere.Pattern, exclude sfere.Matcher, effects ...sfere.Effect) (sfere.Result, error) {
	return n.BroadcastContext(context.Background(), p, exclude, effects...)
}

// BroadcastContext is [Node.Broadcast] with a context: with a history,
// the publish to the log stops retrying when ctx ends (the error wraps
// [ErrNoLog] then too).
func (n *Node) BroadcastContext(ctx context.Context, p sfere.Pattern, exclude sfere.Matcher, effects ...sfere.Effect) (sfere.Result, error) {
	if n.events != nil {
		if _, err := sfere.Render(effects...); err != nil {
			return sfere.Result{}, err
		}
		if err := n.events.publish(ctx, p, exclude, effects); err != nil {
			if errors.Is(err, ErrNoLog) {
				n.logRefused.Add(1)
			}
			return sfere.Result{}, err
		}
		n.broadcastsSent.Add(1)
		return sfere.Result{}, nil
	}
	wm, err := encodeMatcher(exclude)
	if err != nil {
		return sfere.Result{}, err
	}
	res, err := n.hub.Broadcast(p, exclude, effects...)
	if err != nil {
		return res, err
	}
	b, err := json.Marshal(broadcast{Node: n.id, Pattern: p, Exclude: wm, Effects: effects})
	if err == nil {
		err = n.nc.Publish(n.prefix+subjectBroadcast, b)
	}
	if err != nil {
		return res, fmt.Errorf("natscluster: broadcast to other nodes: %w", err)
	}
	n.broadcastsSent.Add(1)
	return res, nil
}

func (n *Node) onBroadcast(msg *nats.Msg) {
	var b broadcast
	if err := json.Unmarshal(msg.Data, &b); err != nil {
		n.log.Warn("cluster: bad broadcast message", "err", err)
		return
	}
	if b.Node == n.id {
		return
	}
	n.broadcastsReceived.Add(1)
	if _, err := n.hub.Broadcast(b.Pattern, b.Exclude.matcher(), b.Effects...); err != nil {
		n.log.Warn("cluster: remote broadcast not delivered", "from", b.Node, "err", err)
	}
}

// Send queues effects to the stream under key, on whichever node holds
// it, waiting at most [Options.SendTimeout] for a remote node's answer. It
// returns an error wrapping [sfere.ErrNoStream] if no node holds the key.
// It has [sfere.Hub.Send]'s signature, so code that takes an
// [sfere.Publisher] works on one node or a cluster.
func (n *Node) Send(key sfere.Key, effects ...sfere.Effect) (sfere.Result, error) {
	return n.SendContext(context.Background(), key, effects...)
}

// SendContext is [Node.Send] with a context: the wait for a remote node
// ends when ctx does, or after [Options.SendTimeout] if ctx has no
// deadline. With a history the effects go through the event log, as
// [Node.Broadcast]'s do: kept in the log even when no node holds key (its
// client may be reconnecting; the error then wraps [sfere.ErrNoStream]),
// refused with [ErrNoLog] and delivered nowhere when the log does not
// take them; the publish retries until ctx ends or for at most
// [Options.PublishTimeout].
func (n *Node) SendContext(ctx context.Context, key sfere.Key, effects ...sfere.Effect) (sfere.Result, error) {
	if n.events != nil {
		if _, err := sfere.Render(effects...); err != nil {
			return sfere.Result{}, err
		}
		n.mu.Lock()
		held := n.heldElsewhere(key)
		n.mu.Unlock()
		// Kept in the log even if no node holds the key now: its client
		// may be reconnecting.
		if err := n.events.publish(ctx, key.Pattern(), nil, effects); err != nil {
			if errors.Is(err, ErrNoLog) {
				n.logRefused.Add(1)
			}
			return sfere.Result{}, err
		}
		if !held {
			return sfere.Result{}, fmt.Errorf("%w: %v", sfere.ErrNoStream, key)
		}
		return sfere.Result{Delivered: 1}, nil
	}
	if _, ok := n.hub.Store().Get(key); ok {
		return n.hub.Send(key, effects...)
	}
	if _, err := sfere.Render(effects...); err != nil {
		return sfere.Result{}, err
	}
	req, err := json.Marshal(sendRequest{Effects: effects})
	if err != nil {
		return sfere.Result{}, fmt.Errorf("natscluster: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.timeout)
		defer cancel()
	}
	msg, err := n.nc.RequestWithContext(ctx, n.sendSubject(key), req)
	if errors.Is(err, nats.ErrNoResponders) {
		return sfere.Result{}, fmt.Errorf("%w: %v", sfere.ErrNoStream, key)
	}
	if err != nil {
		return sfere.Result{}, fmt.Errorf("natscluster: send to %v: %w", key, err)
	}
	n.remoteSends.Add(1)
	var rep sendReply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return sfere.Result{}, fmt.Errorf("natscluster: send to %v: bad reply: %w", key, err)
	}
	res := sfere.Result{Delivered: rep.Delivered, Failed: rep.Failed}
	switch {
	case rep.NoStream:
		return res, fmt.Errorf("%w: %v", sfere.ErrNoStream, key)
	case rep.Error != "":
		return res, fmt.Errorf("natscluster: send to %v: %s", key, rep.Error)
	}
	return res, nil
}

// onSend answers a Send from another node for a local stream.
func (n *Node) onSend(key sfere.Key) nats.MsgHandler {
	return func(msg *nats.Msg) {
		var req sendRequest
		var rep sendReply
		if err := json.Unmarshal(msg.Data, &req); err != nil {
			rep.Error = "bad request: " + err.Error()
		} else {
			res, err := n.hub.Send(key, req.Effects...)
			rep.Delivered, rep.Failed = res.Delivered, res.Failed
			switch {
			case errors.Is(err, sfere.ErrNoStream):
				rep.NoStream = true
			case err != nil:
				rep.Error = err.Error()
			}
		}
		b, _ := json.Marshal(rep)
		msg.Respond(b)
	}
}

// List returns the keys matching p on every node, in no particular order.
func (n *Node) List(p sfere.Pattern) []sfere.Key {
	seen := make(map[sfere.Key]struct{})
	out := n.hub.List(p)
	for _, k := range out {
		seen[k] = struct{}{}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, pr := range n.peers {
		for k := range pr.keys {
			if _, dup := seen[k]; !dup && p.Match(k) {
				seen[k] = struct{}{}
				out = append(out, k)
			}
		}
	}
	return out
}

// Count returns how many keys match p on every node.
func (n *Node) Count(p sfere.Pattern) int { return len(n.List(p)) }

// Peers returns the ids of the other nodes this node sees, sorted.
func (n *Node) Peers() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	ids := make([]string, 0, len(n.peers))
	for id := range n.peers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	return Stats{
		BroadcastsSent:     n.broadcastsSent.Load(),
		BroadcastsReceived: n.broadcastsReceived.Load(),
		RemoteSends:        n.remoteSends.Load(),
		NodesLost:          n.nodesLost.Load(),
		Gaps:               n.gaps.Load(),
		GapTime:            time.Duration(n.gapTime.Load()),
		LogDelivered:       n.logDelivered.Load(),
		LogFailed:          n.logFailed.Load(),
		PublishRetries:     n.publishRetries.Load(),
		LogRefused:         n.logRefused.Load(),
		LogLate:            n.logLate.Load(),
	}
}

var _ sfere.Publisher = (*Node)(nil)
