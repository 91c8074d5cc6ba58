package natscluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrNoHistory is returned by [Node.LogState] on a node without a history
// (Options.Hub.History.Size zero): it has no event log.
var ErrNoHistory = errors.New("natscluster: the node keeps no history, so no event log")

// LogState is the cluster's event log as one node sees it: where
// JetStream keeps the log's stream and how far it goes, and how far this
// node applied it. See [Node.LogState].
type LogState struct {
	// Stream is the JetStream stream's name, Epoch the log's (its
	// creation time: see the package's event log).
	Stream, Epoch string
	// Replicas is how many servers the stream is configured to be kept
	// on; Leader the one that leads it ("" while none does), Followers
	// the others, as the leader reports them.
	Replicas  int
	Leader    string
	Followers []Replica
	// First and Last are the sequences of the oldest and newest events
	// the log holds; Applied is the last this node applied to its hub,
	// and Behind how many of the log's it has yet to apply.
	First, Last uint64
	Applied     uint64
	Behind      uint64
	// Gaps counts the times this node's consumer skipped events of the
	// log (it was made anew from the first missing one); Lost counts
	// events the log dropped (its bounds) before this node applied them:
	// positions the hub's history then no longer serves.
	Gaps, Lost uint64
}

// Replica is a follower of the log's stream as the leader reports it.
type Replica struct {
	Server  string
	Current bool          // caught up with the leader
	Offline bool          // not heard from
	Lag     uint64        // operations behind the leader
	Active  time.Duration // since the leader last heard from it
}

// LogState asks JetStream for the state of the cluster's event log (one
// round trip, bounded by ctx) and adds this node's progress. It returns
// an error wrapping [ErrNoHistory] on a node without a log, or the
// JetStream request's error.
func (n *Node) LogState(ctx context.Context) (LogState, error) {
	l := n.events
	if l == nil {
		return LogState{}, ErrNoHistory
	}
	st := LogState{Stream: l.config.Name, Gaps: l.skips.Load(), Lost: l.lost.Load()}
	l.mu.Lock()
	epoch, applied := l.epoch, l.applied
	l.mu.Unlock()
	s, err := l.js.Stream(ctx, l.config.Name)
	if err != nil {
		return st, fmt.Errorf("natscluster: event log state: %w", err)
	}
	info := s.CachedInfo()
	st.Epoch = strconv.FormatInt(info.Created.UnixNano(), 36)
	st.Replicas = info.Config.Replicas
	st.First, st.Last = info.State.FirstSeq, info.State.LastSeq
	if st.Epoch == epoch {
		st.Applied = applied
		st.Behind = st.Last - min(applied, st.Last)
	}
	if c := info.Cluster; c != nil {
		st.Leader = c.Leader
		for _, r := range c.Replicas {
			if r == nil {
				continue
			}
			st.Followers = append(st.Followers, Replica{Server: r.Name, Current: r.Current, Offline: r.Offline, Lag: r.Lag, Active: r.Active})
		}
	}
	return st, nil
}
