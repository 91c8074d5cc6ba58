package presence

import (
	"context"
	"time"
)

// Cluster shares one room's presence between the trackers of several
// nodes. Package natspresence implements it over NATS. A tracker never
// calls it with its lock held: the methods that take a context may wait on
// the network, and may run beside the others; the others report changes,
// are called one at a time, in the order of the changes, and may call the
// tracker back (through [Notify]). They should return soon (queue the
// work): the goroutine that made the change, say a stream's opening, waits
// for them.
type Cluster interface {
	// Start begins delivering the other nodes' news to n. The tracker
	// calls it once, from [New].
	Start(n Notify) error
	// Claim reserves c.Person for c.Owner in the whole cluster and returns
	// the claim in force: c, or the claim the owner already held (with
	// its Ref and Away). It returns an error wrapping [ErrTaken] if another owner
	// holds the person.
	Claim(ctx context.Context, c Claim) (Claim, error)
	// Lookup returns the claim owner holds anywhere in the cluster, with
	// its Away.
	Lookup(ctx context.Context, owner string) (Claim, bool)
	// Release frees owner's claim of person, if owner still holds it.
	Release(person, owner string)
	// Reserve keeps c in force in the whole cluster, as if this node held
	// the person, until Release: the claim of a person away within its
	// resume window. Called again with a new Ref (a return), it asserts
	// that one.
	Reserve(c Claim)
	// Hold tells the other nodes how many streams of a person this node
	// holds now.
	Hold(h Hold)
	// Leave tells the other nodes that person left explicitly: they end
	// its streams and announce the departure without a grace period.
	Leave(person, owner string)
	// Close leaves the cluster: the other nodes treat this node's people
	// as if their streams here had ended.
	Close()
}

// Claim is a person id held by an owner.
type Claim struct {
	Person string
	Owner  string
	Meta   string
	// Ref names this claim: a person who departs and claims its id
	// again gets a new one, and so does a person who returns within its
	// resume window, so late news of the old claim is ignored.
	Ref string
	// Away is set while the person is away within its resume window
	// ([Options.Resume]): its owner's next stream, on any node, is a
	// return.
	Away bool
}

// Hold is what one node holds of one person.
type Hold struct {
	Claim
	// Streams is how many streams of the person the node holds; 0 means
	// its last one there ended.
	Streams int
	// Since is when the person arrived, as the node saw it (zero if it
	// was never announced).
	Since time.Time
	// Vanished is set with Streams 0 when the last stream ended because
	// its peer vanished: the grace period is skipped.
	Vanished bool
}

// Notify is how a [Cluster] tells a tracker what the other nodes hold.
// Its methods may be called from any goroutine; they never block on the
// network.
type Notify interface {
	// Held records what node holds of a person now (a Hold with
	// Streams 0 drops it).
	Held(node string, h Hold)
	// Snapshot replaces everything recorded of node with holds.
	Snapshot(node string, holds []Hold)
	// NodeLost drops everything node held: the people held nowhere else
	// depart at once with [ReasonNodeLost]. If node holds one of them
	// again under the same Ref (it was not lost: stalled, or cut off),
	// that person arrives again.
	NodeLost(node string)
	// Left ends person's streams on this node and makes it depart
	// ([ReasonLeft]), if owner still holds it.
	Left(person, owner string)
	// Holds returns what this node holds now, for a snapshot.
	Holds() []Hold
	// Applied applies a batch of the room's changes from a
	// [LogCluster]'s log, at its position: the log's batches in log
	// order, each once.
	Applied(a Applied)
	// Roster returns the room's roster as this node applied the
	// [LogCluster]'s log, as arrivals, with the Refs of the claims that
	// departed lately: what a node that starts is handed (as a batch
	// that only updates its roster), for the people whose arrival its
	// log no longer holds.
	Roster() ([]Change, map[string]time.Time)
}

// The tracker's calls to its cluster are decided under its lock, which
// orders every change, and made after it: a cluster may take its time or
// call the tracker back (its [Notify]) from within a call.

func hold(h Hold) func(Cluster)                  { return func(c Cluster) { c.Hold(h) } }
func reserve(cl Claim) func(Cluster)             { return func(c Cluster) { c.Reserve(cl) } }
func release(person, owner string) func(Cluster) { return func(c Cluster) { c.Release(person, owner) } }
func leave(person, owner string) func(Cluster)   { return func(c Cluster) { c.Leave(person, owner) } }

// callLocked queues call, to be made once t.mu is released (see
// [Tracker.unlock]); without a cluster it does nothing.
func (t *Tracker) callLocked(call func(Cluster)) {
	if t.cluster != nil {
		t.outbox = append(t.outbox, call)
	}
}

// unlock releases t.mu, making the cluster calls queued under it first,
// without the lock, in the order they were queued. One goroutine at a
// time makes them (the first that finds calls queued and nobody making
// them; it also makes those queued meanwhile), so the cluster hears of
// the changes in the order they happened, and a cluster that calls the
// tracker back from within a call finds the lock free.
func (t *Tracker) unlock() {
	for len(t.outbox) > 0 && !t.sending {
		calls := t.outbox
		t.outbox, t.sending = nil, true
		t.mu.Unlock()
		for _, call := range calls {
			call(t.cluster)
		}
		t.mu.Lock()
		t.sending = false
		t.sent.Broadcast()
	}
	t.mu.Unlock()
}
