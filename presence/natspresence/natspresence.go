// Package natspresence shares a [presence.Tracker]'s room between nodes
// over NATS: it implements [presence.Cluster] as an adapter over a
// [natscluster.Node].
//
// The node owns the cluster: its membership (which nodes are there, when
// one is lost, when a node that just started or reconnected has heard the
// others), its NATS connection and where shared state lives. This package
// adds what a room needs on top:
//
//   - Who holds whom travels as plain NATS messages on the room's subject:
//     each node publishes at once how many streams of a person it holds
//     whenever that changes, and its whole set every Interval (the node's).
//     The nodes hold the truth about their own streams; the others' views
//     heal within one Interval of any loss. These messages are news, not
//     heartbeats of their own: whether a node is lost is the node's
//     decision (a node silent for 3 Intervals, while this node keeps up
//     with its own messages), made once for its streams and its people,
//     at one moment. Its people then depart once on every other node,
//     unless they still have a stream elsewhere.
//   - Who may hold a person id is a JetStream key-value bucket that the
//     node opens ([natscluster.Node.KeyValue]), whose compare-and-set
//     create decides two claims of one id. Every node re-asserts the
//     claims of its people every Interval, and keys expire after
//     [Options.ClaimTTL] without it (15 s by default): a crashed node's
//     claims lapse, and if the bucket is lost (a NATS server without
//     storage restarted) it is rebuilt within one Interval. A claim
//     outlives the moment its node is found lost (3 Intervals), so a node
//     that was only slow (a stalled process, a NATS reconnect) re-asserts
//     its claims before anyone else can take them, and it outlives the
//     leader election of the bucket that follows the loss of a NATS
//     server. Claims wait until the node is warm after it starts or
//     reconnects ([natscluster.Node.Warm]), so a name held on another node
//     is never given out twice.
//   - A claim is a lease. A node cut off from NATS (or stalled) for
//     longer than a claim lives is lost to the others, and its people's
//     names are free there. If one was given to another owner meanwhile,
//     the node finds it so when it is back (twice in a row, an Interval
//     apart) and gives its person up: the person's streams on it end and
//     it departs, so that the name has one holder again.
//
// A person away within its resume window ([presence.Options.Resume]) has
// no stream anywhere, so every node that knew it keeps re-asserting its
// claim, marked away, until the window runs out: the name survives the
// loss of any node, a node that starts meanwhile refuses it to another
// owner, and the owner's return through a node that never knew the person
// (found in the bucket) is still a return.
//
// The claims bucket is on disk (file storage) with the node's replicas
// ([natscluster.Options.Replicas]): by default 3 where the NATS cluster
// has at least 3 JetStream servers, else 1. Its contents are re-asserted
// every Interval, so even a bucket lost whole is rebuilt; replicas make a
// lost server or a leader change of the bucket a pause of a few seconds
// (claims wait, a Claim may fail and is tried again by the person)
// instead of a rebuild. A claim is a compare-and-set that a majority of
// the replicas acknowledged, so no name is given twice across the loss of
// one server. JetStream's lazy fsync (2 minutes by default) matters
// little here: a claim lost with every server's page cache is re-asserted
// within one Interval by the nodes that hold its person.
//
// # Arrivals, departures and returns in the log
//
// On a
// node that keeps a history (the cluster's event log), the Cluster is a
// [presence.LogCluster]: the tracker hands each batch of the changes it
// decided to Append, which puts it into the log as an app event of the
// room's kind ([natscluster.Node.Append]); every node, as it applies the
// log, hands the room's events to its tracker ([natscluster.Node.Handle],
// [presence.Notify.Applied]), which applies them to its roster and
// delivers the diff at the event's position. Who decides what:
//
//   - an arrival, by every node that sees the person's first stream (its
//     own, or another node's through its hold message);
//   - a departure, by every node whose grace timer for the person runs
//     out, or that finds the node holding its last streams lost;
//   - a leave (or a rename), by the node that answers it and by every
//     node that hears of it (the leave message is plain NATS, and may
//     reach nobody who holds the person's streams): each departs the
//     arrival its roster shows of the person's claim, so a leave
//     answered by a node that knows the person from the claims only,
//     or that started a moment ago, is in the log too;
//   - a return, like an arrival, under the claim's next Ref.
//
// Each arrival of a claim has a Ref of its own (the claim's for the
// first, the next for each arrival again after its node was found lost
// and heard again), and carries the claim's Ref too. A node that learns
// of a person after some of those arrivals (it started since: a rolling
// restart) takes the Ref of the arrival its roster shows, and so does a
// node whose own arrival of the claim the roster shows under another Ref:
// a departure names the arrival it departs, and one of an arrival the
// roster does not show changes nothing.
//
// Each node appends what it decided, in batches (the tracker's windows,
// so a storm of N arrivals costs each stream a few dozen events, not N),
// less what its roster shows already. So the log may carry a change more
// than once (a lost node's person departs on each survivor, each node's
// windows cut a storm differently); the roster takes it once, on every
// node (applying is idempotent: see [presence.LogCluster]), and a batch
// of nothing new is delivered to no stream. A batch does not carry a
// Nats-Msg-Id shared between nodes (a digest of its contents would let
// JetStream store the same batch once): an attempt stored after its
// deadline is applied to nobody, and another node's append of the same
// batch under its id would be taken for it, and lost. So each departure is one "left" line,
// on every node, in the same place of the log, whichever nodes decided
// it, and a page that resumes on another node is replayed it once.
//
// A batch the log did not take (NATS out of reach, the log's servers
// electing a leader for longer than the node's PublishTimeout) is tried
// again, in order, until the log takes it or a minute has passed since
// it was decided; then it is dropped with a warning (the other nodes
// decide it too, unless they lost NATS as well).
//
// A node that starts is handed the roster by another node (a NATS
// request: the first node to answer), then applies the room's batches the
// log holds (applying is idempotent, so those the other node's roster
// held already change nothing): the log keeps only its Size and MaxAge,
// and the arrivals of people present for longer are no longer in it. If
// no node answers (the first node, or all restarted), the roster is what
// the log still holds. A roster too large for one NATS message (tens of
// thousands of people) is not handed over. Declare the room's [Kind] in
// the node's [natscluster.Options.AppKinds]: the node then holds its log
// back from the room's first batch until the tracker starts, and renders
// the batches at their positions as every node did, so its history
// serves every position of the log; without it, the batches the node
// applied before its tracker started update the roster only, and its
// history serves the positions after.
//
// No NATS round trip runs under the tracker's lock: the calls made under
// it (Hold, Leave, Release, Append) only publish or queue.
package natspresence

import (
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sfere-go/sfere/natscluster"
	"github.com/sfere-go/sfere/presence"
)

// DefaultTimeout is the default of [Options.Timeout].
const DefaultTimeout = 2 * time.Second

// Options configures a [Cluster]. The zero value is usable. The node id,
// the subjects' prefix, the Interval and the bucket's replicas are the
// node's ([natscluster.Options]): nodes of one cluster sharing a room
// share its people.
type Options struct {
	// Timeout bounds each key-value operation. Zero means [DefaultTimeout].
	Timeout time.Duration
	// Logger receives warnings. Nil means slog.Default().
	Logger *slog.Logger
	// ClaimTTL is how long a claim lives in the bucket without being
	// re-asserted: a crashed node's names are free to other owners after
	// it. Zero means 6 Intervals or [DefaultClaimTTL], whichever is
	// longer: long enough to ride through the leader election that
	// follows the loss of the bucket's leader (JetStream waits 4 to 9 s
	// before it elects another), during which no claim can be written.
	// It must be at least 3 Intervals, so that a node found lost still
	// holds its claims.
	ClaimTTL time.Duration
}

// DefaultClaimTTL is the shortest claim life when [Options.ClaimTTL] is
// zero.
const DefaultClaimTTL = 15 * time.Second

// ErrBadClaimTTL is returned by [New] for an [Options.ClaimTTL] shorter
// than 3 Intervals.
var ErrBadClaimTTL = errors.New("natspresence: a claim must live at least 3 intervals")

// Cluster is one node's share of a room. Create it with [New] and give it
// to [presence.Options.Cluster]; the tracker starts and closes it.
type Cluster struct {
	cnode    *natscluster.Node // owns the membership, the connection, the bucket's place
	nc       *nats.Conn
	js       jetstream.JetStream
	room     string
	node     string
	subject  string
	bucket   string
	interval time.Duration
	claimTTL time.Duration
	timeout  time.Duration
	log      *slog.Logger

	// pubMu orders hold messages and snapshots (see snapshot); holds
	// counts the hold messages. The tracker's lock may be held when it
	// is taken, never the other way round.
	pubMu sync.Mutex
	holds uint64

	mu        sync.Mutex
	kv        jetstream.KeyValue
	n         presence.Notify
	mine      map[string]claimRev // person -> the claim this node asserts
	pending   map[string]*partial // snapshots being assembled, by node
	seq       uint64              // this node's snapshots
	sub       *nats.Subscription
	unwatch   func()              // stops the node's membership news
	unlog     func()              // stops the log's batches (nil without a log)
	rosterSub *nats.Subscription  // answers nodes that start for the roster (nil without a log)
	appends   *appender           // this node's batches on their way into the log (nil without a log)
	work      chan func()         // key-value work queued under the tracker's lock
	kick      chan struct{}       // re-assert the claims now (after a reconnect)
	changed   map[string]struct{} // claims kept or changed since they were last asserted
	soon      chan struct{}       // assert the changed claims now
	stop      chan struct{}
	done      sync.WaitGroup
	stopped   bool
}

// partial is a snapshot whose parts are arriving.
type partial struct {
	seq   uint64
	next  int
	holds []presence.Hold
}

type claimRev struct {
	presence.Claim
	rev   uint64 // the key's last known revision; 0 if unknown
	taken bool   // the last re-assertion found another owner's claim
}

// message is what nodes publish on the room's subject.
type message struct {
	Node  string `json:"node"`
	Op    string `json:"op"` // hold, snapshot, leave, bye
	Holds []hold `json:"holds,omitempty"`
	// A snapshot comes in Parts parts, numbered from 0, of one Seq.
	Seq   uint64 `json:"seq,omitempty"`
	Part  int    `json:"part,omitempty"`
	Parts int    `json:"parts,omitempty"`
}

type hold struct {
	Person   string `json:"p"`
	Owner    string `json:"o"`
	Meta     string `json:"m,omitempty"`
	Ref      string `json:"r,omitempty"`
	Streams  int    `json:"n"`
	Since    int64  `json:"s,omitempty"`
	Vanished bool   `json:"v,omitempty"`
}

const (
	opHold     = "hold"
	opSnapshot = "snapshot"
	opLeave    = "leave"
	opBye      = "bye"
)

// New returns node's share of room, creating the claims bucket if need
// be (the NATS servers must have JetStream), waiting for JetStream until
// ctx ends. The node's id, prefix, Interval and replicas are the room's.
// Close the tracker that runs it before the node.
func New(ctx context.Context, node *natscluster.Node, room string, opts Options) (*Cluster, error) {
	interval := node.Interval()
	if opts.ClaimTTL != 0 && opts.ClaimTTL < 3*interval {
		return nil, fmt.Errorf("%w: %v with interval %v", ErrBadClaimTTL, opts.ClaimTTL, interval)
	}
	js, err := jetstream.New(node.Conn())
	if err != nil {
		return nil, fmt.Errorf("natspresence: %w", err)
	}
	c := &Cluster{
		cnode:    node,
		nc:       node.Conn(),
		js:       js,
		room:     room,
		node:     node.ID(),
		subject:  node.Prefix() + ".people." + hex.EncodeToString([]byte(room)),
		bucket:   node.Prefix() + "_claims",
		interval: interval,
		claimTTL: cmp.Or(opts.ClaimTTL, max(6*interval, DefaultClaimTTL)),
		timeout:  cmp.Or(opts.Timeout, DefaultTimeout),
		log:      cmp.Or(opts.Logger, slog.Default()),
		mine:     make(map[string]claimRev),
		pending:  make(map[string]*partial),
		work:     make(chan func(), 1024),
		kick:     make(chan struct{}, 1),
		changed:  make(map[string]struct{}),
		soon:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	if _, err := c.openBucket(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// ID returns the node's id.
func (c *Cluster) ID() string { return c.node }

// openBucket finds or makes the claims bucket through the node, which
// gives it the cluster's replicas.
func (c *Cluster) openBucket(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := c.cnode.KeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: c.bucket, TTL: c.claimTTL, History: 1, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("natspresence: %w", err)
	}
	c.mu.Lock()
	c.kv = kv
	c.mu.Unlock()
	return kv, nil
}

func (c *Cluster) bucketKV() jetstream.KeyValue {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kv
}

// Start implements [presence.Cluster]: from now on the node's decisions
// about other nodes reach the tracker (a node lost: its people held
// nowhere else depart; a node closed: as if their streams there ended).
func (c *Cluster) Start(n presence.Notify) error {
	c.mu.Lock()
	c.n = n
	c.mu.Unlock()
	if c.Logs() {
		// Before the subscription: another node's news may make the
		// tracker append a batch at once (see Append).
		c.appends = newAppender(c)
	}
	sub, err := c.nc.Subscribe(c.subject, c.receive)
	if err != nil {
		return fmt.Errorf("natspresence: subscribe: %w", err)
	}
	if err := c.nc.Flush(); err != nil {
		sub.Unsubscribe()
		return fmt.Errorf("natspresence: %w", err)
	}
	c.sub = sub
	if c.Logs() {
		if err := c.startLog(n); err != nil {
			sub.Unsubscribe()
			return err
		}
	}
	c.unwatch = c.cnode.Watch(natscluster.Watch{
		Lost: func(l natscluster.Lost) { n.NodeLost(l.Node) },
		Left: func(node string) { c.forget(node) },
	})
	c.done.Add(3)
	go c.run()
	go c.asserting()
	go c.worker()
	if c.appends != nil {
		go c.appends.run()
	}
	return nil
}

// Close implements [presence.Cluster]: it says goodbye and stops.
func (c *Cluster) Close() {
	c.mu.Lock()
	if c.stopped || c.sub == nil {
		c.stopped = true
		c.mu.Unlock()
		return
	}
	c.stopped = true
	c.mu.Unlock()
	c.unwatch()
	if c.unlog != nil {
		c.unlog()
	}
	close(c.stop)
	c.done.Wait()
	if c.appends != nil {
		// An append in flight ends as soon as JetStream answers; Close
		// waits a moment for it, not for a log out of reach (the
		// appender then ends by itself, within its PublishTimeout).
		select {
		case <-c.appends.done:
		case <-time.After(time.Second):
		}
	}
	c.sub.Unsubscribe()
	if c.rosterSub != nil {
		c.rosterSub.Unsubscribe()
	}
	c.publish(message{Node: c.node, Op: opBye})
	if c.nc.IsConnected() {
		_ = c.nc.FlushTimeout(time.Second) // best effort: peers also find the silence
	}
}

func (c *Cluster) publish(m message) {
	b, err := json.Marshal(m)
	if err == nil {
		err = c.nc.Publish(c.subject, b)
	}
	if err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		c.log.Warn("natspresence: not published", "op", m.Op, "err", err)
	}
}

// Hold implements [presence.Cluster]: it publishes at once. The claim of
// a person held here is re-asserted from now on, with h's Ref and Meta.
func (c *Cluster) Hold(h presence.Hold) {
	if h.Streams > 0 {
		c.keep(h.Claim)
	}
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	c.holds++
	c.publish(message{Node: c.node, Op: opHold, Holds: []hold{toWire(h)}})
}

// Reserve implements [presence.Cluster]: the claim is re-asserted every
// Interval until Release, so it neither expires nor is lost with a node
// (every node that knew the person keeps it) while its person is away. A
// changed claim (the person went away, or came back) is written at once,
// in the background, so that a node that looks it up sees it.
func (c *Cluster) Reserve(cl presence.Claim) { c.keep(cl) }

// keep makes cl one of the claims this node re-asserts; a new or changed
// one is asserted soon, apart from the others.
func (c *Cluster) keep(cl presence.Claim) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, ok := c.mine[cl.Person]
	if ok && cur.Claim == cl {
		return
	}
	if ok && cur.Owner != cl.Owner {
		cur.rev = 0
	}
	c.mine[cl.Person] = claimRev{Claim: cl, rev: cur.rev}
	c.changed[cl.Person] = struct{}{}
	select {
	case c.soon <- struct{}{}:
	default:
	}
}

// Leave implements [presence.Cluster].
func (c *Cluster) Leave(person, owner string) {
	c.publish(message{Node: c.node, Op: opLeave, Holds: []hold{{Person: person, Owner: owner}}})
}

// Release implements [presence.Cluster]: the delete runs in the background.
func (c *Cluster) Release(person, owner string) {
	c.mu.Lock()
	delete(c.mine, person)
	c.mu.Unlock()
	c.queue(func() { c.release(person, owner) })
}

func (c *Cluster) queue(f func()) {
	select {
	case c.work <- f:
	default:
		// A full queue (NATS far behind): do it beside the worker.
		go f()
	}
}

func (c *Cluster) worker() {
	defer c.done.Done()
	for {
		select {
		case <-c.stop:
			return
		case f := <-c.work:
			f()
		}
	}
}

func (c *Cluster) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.timeout)
}

func personKey(person string) string { return "p." + hex.EncodeToString([]byte(person)) }
func ownerKey(owner string) string   { return "o." + hex.EncodeToString([]byte(owner)) }

type claimValue struct {
	Owner string `json:"owner"`
	Meta  string `json:"meta,omitempty"`
	Ref   string `json:"ref,omitempty"`
	Away  bool   `json:"away,omitempty"` // the person is away within its resume window
}

// Claim implements [presence.Cluster].
func (c *Cluster) Claim(ctx context.Context, cl presence.Claim) (presence.Claim, error) {
	if cl.Person == "" || cl.Owner == "" {
		return cl, errors.New("natspresence: empty person or owner")
	}
	if err := c.warm(ctx); err != nil {
		return cl, err
	}
	var rev uint64
	err := c.withBucket(ctx, func(kv jetstream.KeyValue) (err error) {
		cl, rev, err = c.create(ctx, kv, cl)
		return err
	})
	if err != nil {
		return cl, err
	}
	c.mu.Lock()
	c.mine[cl.Person] = claimRev{Claim: cl, rev: rev}
	c.mu.Unlock()
	return cl, nil
}

// create makes cl's keys, or finds the person already cl.Owner's.
func (c *Cluster) create(ctx context.Context, kv jetstream.KeyValue, cl presence.Claim) (presence.Claim, uint64, error) {
	val, _ := json.Marshal(claimValue{Owner: cl.Owner, Meta: cl.Meta, Ref: cl.Ref, Away: cl.Away})
	rev, err := kv.Create(ctx, personKey(cl.Person), val)
	for tries := 1; errors.Is(err, jetstream.ErrKeyExists); tries++ {
		e, gerr := kv.Get(ctx, personKey(cl.Person))
		if errors.Is(gerr, jetstream.ErrKeyNotFound) && tries < 4 {
			// The key lapsed or was released between the two, or the
			// read went to a replica that has not got the key yet: try
			// again in a moment.
			select {
			case <-ctx.Done():
				return cl, 0, fmt.Errorf("natspresence: claim %q: %w", cl.Person, ctx.Err())
			case <-time.After(time.Duration(tries) * 20 * time.Millisecond):
			}
			rev, err = kv.Create(ctx, personKey(cl.Person), val)
			continue
		}
		if gerr != nil {
			return cl, 0, fmt.Errorf("natspresence: claim %q: %w", cl.Person, gerr)
		}
		var cur claimValue
		if json.Unmarshal(e.Value(), &cur) != nil || cur.Owner != cl.Owner {
			return cl, 0, fmt.Errorf("%w: %q", presence.ErrTaken, cl.Person)
		}
		cl.Ref = cmp.Or(cur.Ref, cl.Ref)
		cl.Away = cur.Away
		rev, err = e.Revision(), nil
	}
	if err != nil {
		return cl, 0, fmt.Errorf("natspresence: claim %q: %w", cl.Person, err)
	}
	if _, err := kv.Put(ctx, ownerKey(cl.Owner), []byte(cl.Person)); err != nil {
		return cl, 0, fmt.Errorf("natspresence: claim %q: %w", cl.Person, err)
	}
	return cl, rev, nil
}

// warm waits, after the node started or reconnected, until the other
// nodes have had time to tell what they hold and to re-assert their
// claims, which they do at once when they reconnect.
func (c *Cluster) warm(ctx context.Context) error {
	if err := c.cnode.Warm(ctx); err != nil {
		return fmt.Errorf("natspresence: claim: %w", err)
	}
	return nil
}

// Lookup implements [presence.Cluster].
func (c *Cluster) Lookup(ctx context.Context, owner string) (presence.Claim, bool) {
	if owner == "" {
		return presence.Claim{}, false
	}
	kv := c.bucketKV()
	e, err := kv.Get(ctx, ownerKey(owner))
	if err != nil {
		return presence.Claim{}, false
	}
	person := string(e.Value())
	e, err = kv.Get(ctx, personKey(person))
	if err != nil {
		return presence.Claim{}, false
	}
	var v claimValue
	if json.Unmarshal(e.Value(), &v) != nil || v.Owner != owner {
		return presence.Claim{}, false
	}
	return presence.Claim{Person: person, Owner: owner, Meta: v.Meta, Ref: v.Ref, Away: v.Away}, true
}

// release deletes owner's claim of person, if it is still owner's.
func (c *Cluster) release(person, owner string) {
	ctx, cancel := c.ctx()
	defer cancel()
	kv := c.bucketKV()
	e, err := kv.Get(ctx, personKey(person))
	if err != nil {
		return
	}
	var v claimValue
	if json.Unmarshal(e.Value(), &v) != nil || v.Owner != owner {
		return
	}
	if err := kv.Delete(ctx, personKey(person), jetstream.LastRevision(e.Revision())); err != nil {
		return
	}
	// The owner's key, unless it names the person the owner moved to.
	if e, err := kv.Get(ctx, ownerKey(owner)); err == nil && string(e.Value()) == person {
		_ = kv.Delete(ctx, ownerKey(owner), jetstream.LastRevision(e.Revision()))
	}
}

// receive handles another node's message.
func (c *Cluster) receive(msg *nats.Msg) {
	var m message
	if err := json.Unmarshal(msg.Data, &m); err != nil || m.Node == "" {
		c.log.Warn("natspresence: bad message", "err", err)
		return
	}
	if m.Node == c.node {
		return
	}
	if m.Op == opBye {
		c.forget(m.Node)
		return
	}
	// News of a node is a sign of its life: the node decides its loss,
	// even if its own messages never come.
	c.cnode.Heard(m.Node)
	c.mu.Lock()
	n := c.n
	c.mu.Unlock()
	switch m.Op {
	case opHold:
		for _, h := range m.Holds {
			n.Held(m.Node, fromWire(h))
		}
	case opSnapshot:
		if holds, ok := c.assemble(m); ok {
			n.Snapshot(m.Node, holds)
		}
	case opLeave:
		for _, h := range m.Holds {
			n.Left(h.Person, h.Owner)
		}
	}
}

// forget drops what node held, as if its streams had ended: it closed
// (said goodbye on the room's subject, or the node did on the cluster's).
func (c *Cluster) forget(node string) {
	c.mu.Lock()
	delete(c.pending, node)
	n := c.n
	c.mu.Unlock()
	n.Snapshot(node, nil)
}

// assemble adds a snapshot part and returns the whole set once complete.
func (c *Cluster) assemble(m message) ([]presence.Hold, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pending[m.Node]
	if m.Part == 0 || p == nil || p.seq != m.Seq || p.next != m.Part {
		p = &partial{seq: m.Seq}
		if m.Part != 0 {
			delete(c.pending, m.Node) // a part went missing: wait for the next snapshot
			return nil, false
		}
		c.pending[m.Node] = p
	}
	for _, h := range m.Holds {
		p.holds = append(p.holds, fromWire(h))
	}
	p.next++
	if p.next < max(m.Parts, 1) {
		return nil, false
	}
	delete(c.pending, m.Node)
	return p.holds, true
}

// run publishes snapshots, and at once when the connection is back.
func (c *Cluster) run() {
	defer c.done.Done()
	t := time.NewTicker(c.interval)
	defer t.Stop()
	status := c.nc.StatusChanged(nats.CONNECTED)
	defer c.nc.RemoveStatusListener(status)
	c.snapshot()
	for {
		select {
		case <-c.stop:
			return
		case <-status:
			c.snapshot() // tell the others at once what this node holds
			select {
			case c.kick <- struct{}{}: // and re-assert its claims: the server may have lost them
			default:
			}
		case <-t.C:
			c.snapshot()
		}
	}
}

// asserting re-asserts this node's claims every interval, and a claim that
// changed (new, away, back) at once, apart from the snapshots: key-value
// round trips never delay them.
func (c *Cluster) asserting() {
	defer c.done.Done()
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.soon:
			if c.nc.IsConnected() {
				c.assertChanged()
			}
			continue
		case <-t.C:
		case <-c.kick:
		}
		if c.nc.IsConnected() {
			c.assert()
		}
	}
}

// bucketGone reports whether err says the claims bucket is missing (the
// NATS server lost its state).
func bucketGone(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
}

// withBucket runs f on the claims bucket, and once more after creating the
// bucket again if it was missing. A bucket that did not answer but is
// still there (its replicas electing a leader after a NATS server was
// lost) is left alone: the caller tries again later.
func (c *Cluster) withBucket(ctx context.Context, f func(kv jetstream.KeyValue) error) error {
	err := f(c.bucketKV())
	if !bucketGone(err) {
		return err
	}
	kv, serr := c.js.KeyValue(ctx, c.bucket)
	if serr == nil {
		return f(kv) // there (made again by another node, or led again)
	}
	if !errors.Is(serr, jetstream.ErrBucketNotFound) {
		return errors.Join(err, serr) // not known either way: later
	}
	kv, oerr := c.openBucket(ctx)
	if oerr != nil {
		return errors.Join(err, oerr)
	}
	return f(kv)
}

const snapshotChunk = 1000

// snapshot publishes what this node holds, in parts under NATS's payload
// limit; a peer applies the whole set once the last part arrived.
//
// A snapshot must not go out after a hold message newer than it: a peer
// applies both in the order sent, and a stale snapshot after a hold
// would drop the person the hold announced (announced gone, then back
// when the next snapshot comes). So it is taken again if a hold was
// published while it was being taken (up to 5 times: under a stream of
// holds that never pauses, the next snapshot is in an Interval).
func (c *Cluster) snapshot() {
	c.mu.Lock()
	n := c.n
	c.seq++
	seq := c.seq
	c.mu.Unlock()
	for tries := 1; ; tries++ {
		c.pubMu.Lock()
		before := c.holds
		c.pubMu.Unlock()
		holds := n.Holds()
		c.pubMu.Lock()
		if c.holds != before && tries < 5 {
			c.pubMu.Unlock()
			continue
		}
		wire := make([]hold, len(holds))
		for i, h := range holds {
			wire[i] = toWire(h)
		}
		parts := max(1, (len(wire)+snapshotChunk-1)/snapshotChunk)
		for i := range parts {
			chunk := wire[i*snapshotChunk : min(len(wire), (i+1)*snapshotChunk)]
			c.publish(message{Node: c.node, Op: opSnapshot, Seq: seq, Part: i, Parts: parts, Holds: chunk})
		}
		c.pubMu.Unlock()
		return
	}
}

// assert re-asserts this node's claims: each is created again if it
// lapsed (or the bucket was lost) and refreshed otherwise.
func (c *Cluster) assert() {
	c.mu.Lock()
	mine := make([]claimRev, 0, len(c.mine))
	for _, cr := range c.mine {
		mine = append(mine, cr)
	}
	c.mu.Unlock()
	for _, cr := range mine {
		select {
		case <-c.stop:
			return
		default:
		}
		if !c.reassert(cr) {
			// The bucket is out of reach (its replicas electing a
			// leader, NATS away): the others would wait as long each.
			// The next Interval tries them all again.
			return
		}
	}
}

// assertChanged asserts the claims that changed since it last ran.
func (c *Cluster) assertChanged() {
	c.mu.Lock()
	var changed []claimRev
	for person := range c.changed {
		if cr, ok := c.mine[person]; ok {
			changed = append(changed, cr)
		}
	}
	clear(c.changed)
	c.mu.Unlock()
	for i, cr := range changed {
		select {
		case <-c.stop:
			return
		default:
		}
		if !c.reassert(cr) {
			// Out of reach: these are asserted with the others, at
			// the next Interval.
			c.mu.Lock()
			for _, cr := range changed[i+1:] {
				c.changed[cr.Person] = struct{}{}
			}
			c.mu.Unlock()
			return
		}
	}
}

// reassert re-asserts one claim and records its new revision. It
// returns false if the bucket could not be reached.
func (c *Cluster) reassert(cr claimRev) bool {
	var rev uint64
	ctx, cancel := c.ctx()
	err := c.withBucket(ctx, func(kv jetstream.KeyValue) (err error) {
		rev, err = c.assertOne(ctx, kv, cr)
		return err
	})
	cancel()
	if errors.Is(err, presence.ErrTaken) {
		c.giveUp(cr)
		return true
	}
	if err != nil {
		c.log.Warn("natspresence: claim not re-asserted", "person", cr.Person, "err", err)
		return !natscluster.NotReady(err)
	}
	c.mu.Lock()
	if cur, ok := c.mine[cr.Person]; ok && cur.Owner == cr.Owner {
		cur.rev, cur.taken = rev, false
		c.mine[cr.Person] = cur
	}
	c.mu.Unlock()
	return true
}

// giveUp drops a claim of this node that the bucket holds for another
// owner: it lapsed while this node could not re-assert it (cut off from
// NATS, or stalled, for longer than a claim lives) and another node gave
// the name out meanwhile. The bucket decides: the person ends here (its
// streams end, it departs), so that the name has one holder again. It
// does so the second time in a row it finds the claim taken, an
// interval apart: a read served by a replica that lags behind the
// bucket's leader never ends a person.
func (c *Cluster) giveUp(cr claimRev) {
	c.mu.Lock()
	cur, ok := c.mine[cr.Person]
	ok = ok && cur.Owner == cr.Owner
	if ok && !cur.taken {
		cur.taken = true
		c.mine[cr.Person] = cur
		c.mu.Unlock()
		return
	}
	if ok {
		delete(c.mine, cr.Person)
		delete(c.changed, cr.Person)
	}
	n := c.n
	c.mu.Unlock()
	if !ok {
		return // released or changed meanwhile
	}
	c.log.Warn("natspresence: a claim of this node is held by another owner; giving the person up", "person", cr.Person, "node", c.node)
	n.Left(cr.Person, cr.Owner)
}

func (c *Cluster) assertOne(ctx context.Context, kv jetstream.KeyValue, cr claimRev) (uint64, error) {
	val, _ := json.Marshal(claimValue{Owner: cr.Owner, Meta: cr.Meta, Ref: cr.Ref, Away: cr.Away})
	var rev uint64
	var err error
	if cr.rev != 0 {
		rev, err = kv.Update(ctx, personKey(cr.Person), val, cr.rev)
	}
	if cr.rev == 0 || errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) {
		rev, err = kv.Create(ctx, personKey(cr.Person), val)
		for tries := 1; errors.Is(err, jetstream.ErrKeyExists); tries++ {
			e, gerr := kv.Get(ctx, personKey(cr.Person))
			if errors.Is(gerr, jetstream.ErrKeyNotFound) && tries < 3 {
				rev, err = kv.Create(ctx, personKey(cr.Person), val)
				continue
			}
			if gerr != nil {
				return 0, gerr
			}
			var cur claimValue
			if json.Unmarshal(e.Value(), &cur) != nil || cur.Owner != cr.Owner {
				return 0, presence.ErrTaken
			}
			rev, err = kv.Update(ctx, personKey(cr.Person), val, e.Revision())
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				// Another node (which also keeps this claim) wrote it
				// since the Get: it is asserted.
				rev, err = 0, nil
			}
		}
	}
	if err != nil {
		return 0, err
	}
	if _, err := kv.Put(ctx, ownerKey(cr.Owner), []byte(cr.Person)); err != nil {
		return 0, err
	}
	return rev, nil
}

func toWire(h presence.Hold) hold {
	w := hold{Person: h.Person, Owner: h.Owner, Meta: h.Meta, Ref: h.Ref, Streams: h.Streams, Vanished: h.Vanished}
	if !h.Since.IsZero() {
		w.Since = h.Since.UnixNano()
	}
	return w
}

func fromWire(w hold) presence.Hold {
	h := presence.Hold{Claim: presence.Claim{Person: w.Person, Owner: w.Owner, Meta: w.Meta, Ref: w.Ref}, Streams: w.Streams, Vanished: w.Vanished}
	if w.Since != 0 {
		h.Since = time.Unix(0, w.Since)
	}
	return h
}
