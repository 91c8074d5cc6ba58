package presence

import (
	"context"
	"time"
)

// Cluster shares one room's presence between the trackers of several
// nodes. Package natspresence implements it over NATS. A tracker calls it
// without holding its lock for the methods that take a context (they may
// wait on the network) and with its lock held for the others, which must
// therefore return at once (queue the work).
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
	// depart at once with [ReasonNodeLost].
	NodeLost(node string)
	// Left ends person's streams on this node and makes it depart
	// ([ReasonLeft]), if owner still holds it.
	Left(person, owner string)
	// Holds returns what this node holds now, for a snapshot.
	Holds() []Hold
}
