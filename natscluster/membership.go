package natscluster

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sfere-go/sfere"
)

// Watch is what an adapter over a node (package natspresence) is told of
// the cluster's membership as the node decides it: the node is the one
// failure detector, so streams and whatever the adapter keeps per node
// are declared lost by one decision, at one moment. Either func may be
// nil.
type Watch struct {
	// Lost is called once per node found lost, right after
	// [Options.OnNodeLost] and on the same goroutine (the node's own):
	// keep it short.
	Lost func(Lost)
	// Left is called when a node says goodbye (it closed): it is gone
	// without having been lost.
	Left func(node string)
}

// Watch adds w to what the node tells of its membership decisions, from
// now on. The returned func removes it; call it before the node closes.
func (n *Node) Watch(w Watch) (cancel func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.watchSeq++
	id := n.watchSeq
	n.watches[id] = w
	return func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		delete(n.watches, id)
	}
}

// watchesLocked returns the watches; call with n.mu held.
func (n *Node) watchesLocked() []Watch {
	out := make([]Watch, 0, len(n.watches))
	for _, w := range n.watches {
		out = append(out, w)
	}
	return out
}

// Heard tells the node that a message of node came through an adapter
// (news that travels on its own subject). It counts as a sign of life
// like the node's own messages: a node not known yet becomes a peer, with
// no streams, so that its loss is decided (and reported to every
// [Watch]) like any other's, even if its own messages never come.
func (n *Node) Heard(node string) {
	if node == n.id || node == "" {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	pr := n.peers[node]
	if pr == nil {
		pr = &peer{keys: make(map[sfere.Key]stamp)}
		n.peers[node] = pr
	}
	pr.lastSeen = time.Now()
}

// Warm waits, after the node started or reconnected to NATS, until the
// other nodes have had time to say what they hold: long enough for them
// to reconnect too (with this connection's reconnect wait and jitter)
// and to send a snapshot. Decisions that need to know every node's view
// (giving out a name no other node holds) wait on it. It returns at once
// once the node is warm, and ctx's error if ctx ends first.
func (n *Node) Warm(ctx context.Context) error {
	n.mu.Lock()
	wait := time.Until(n.warmAt)
	n.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("natscluster: warming up: %w", ctx.Err())
	}
}

// warmup is how long the node stays cold after a start or a reconnect
// (see Warm).
func (n *Node) warmup() time.Duration {
	return n.interval*3/2 + n.nc.Opts.ReconnectWait + n.nc.Opts.ReconnectJitter
}

// rewarmLocked restarts the warm-up and the peers' silence: after a gap
// in which nothing could be heard, the peers get 3 Intervals again before
// they are lost, and Warm waits until they have spoken. Call with n.mu
// held.
func (n *Node) rewarmLocked() {
	now := time.Now()
	for _, p := range n.peers {
		p.lastSeen = now
	}
	n.warmAt = now.Add(n.warmup())
}

// Conn returns the NATS connection the node runs on, for an adapter's own
// subjects. The caller of [New] keeps it.
func (n *Node) Conn() *nats.Conn { return n.nc }

// Prefix returns the prefix of the cluster's subjects ([Options.Prefix]).
func (n *Node) Prefix() string { return n.prefix }

// Interval returns how often the node sends its whole set of keys; a node
// silent for 3 Intervals is lost.
func (n *Node) Interval() time.Duration { return n.interval }
