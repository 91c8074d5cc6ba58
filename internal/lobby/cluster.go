package lobby

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/natscluster"
)

// cluster is what a lobby node runs to share one lobby with other nodes
// over NATS: the natscluster node (cluster-wide broadcast, send, stream
// moves, lost nodes) and the directory (names and sessions).
type cluster struct {
	log      *slog.Logger
	embedded *natscluster.Server // nil unless -nats-embed
	nc       *nats.Conn
	node     *natscluster.Node
	dir      *directory
	interval time.Duration
	stop     chan struct{}
	done     chan struct{}
}

// startCluster joins the lobby l to the cluster that opts.NATS (or an
// embedded server on opts.NATSEmbed) carries; the node builds the lobby's
// hub over store with hubOpts (c.node.Hub()). The presence
// interval is half the heartbeat, so a lost node is noticed within 2 to 3
// intervals: well inside 3 heartbeats.
func startCluster(ctx context.Context, opts Options, l *Lobby, store sfere.Store, hubOpts sfere.HubOptions) (*cluster, error) {
	c := &cluster{
		log:      opts.Logger,
		interval: max(opts.Heartbeat/2, 50*time.Millisecond),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	url := opts.NATS
	if opts.NATSEmbed != "" {
		srv, err := natscluster.StartServer(opts.NATSEmbed, "")
		if err != nil {
			return nil, err
		}
		c.embedded = srv
		if url == "" {
			url = srv.ClientURL()
		}
		c.log.Info("embedded NATS server", "url", srv.ClientURL())
	}
	var err error
	c.nc, err = nats.Connect(url, nats.Name("sfere-lobby"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		c.close()
		return nil, fmt.Errorf("lobby: connect to NATS at %s: %w", url, err)
	}
	c.node, err = natscluster.New(c.nc, store, natscluster.Options{
		Hub:      hubOpts,
		NodeID:   opts.NodeID,
		Prefix:   "sfere_lobby",
		Interval: c.interval,
		Logger:   opts.Logger,
		OnNodeLost: func(lost natscluster.Lost) {
			if lost.Announcer {
				l.reap(c.live(), 0)
			}
		},
	})
	if err != nil {
		c.close()
		return nil, err
	}
	l.hub = c.node.Hub()
	c.dir, err = newDirectory(ctx, c.nc, "sfere_lobby", c.node.ID(), opts.Logger)
	if err != nil {
		c.close()
		return nil, err
	}
	l.mu.Lock()
	l.dir, l.cluster = c.dir, c.node
	l.mu.Unlock()
	// A node restarted under the same id finds its old participants in
	// the directory: their pages retry on their own, so each gets a while
	// to come back before its departure is announced.
	l.resume(c.dir.held(), max(opts.Grace, 3*opts.Heartbeat))
	go c.run(l)
	c.log.Info("joined the lobby cluster", "node", c.node.ID(), "nats", url)
	return c, nil
}

// run collects orphans: participants left in the directory by nodes that
// are gone (crashed, or a whole cluster restarted). Only the announcer
// node (the smallest live id) does it; the directory's compare-and-set
// keeps it to one announcement even if two nodes briefly disagree.
func (c *cluster) run(l *Lobby) {
	defer close(c.done)
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			if c.announcer() {
				l.reap(c.live(), 3*c.interval)
			}
		}
	}
}

func (c *cluster) live() map[string]bool {
	live := map[string]bool{c.node.ID(): true}
	for _, id := range c.node.Peers() {
		live[id] = true
	}
	return live
}

func (c *cluster) announcer() bool {
	for _, id := range c.node.Peers() {
		if id < c.node.ID() {
			return false
		}
	}
	return true
}

// close leaves the cluster; call it after the hub has shut down, so the
// streams' ends were announced.
func (c *cluster) close() {
	if c.node != nil {
		select {
		case <-c.stop:
		default:
			close(c.stop)
			if c.dir != nil {
				<-c.done
			}
		}
		c.node.Close()
	}
	if c.dir != nil {
		c.dir.close()
	}
	if c.nc != nil {
		c.nc.Close()
	}
	if c.embedded != nil {
		c.embedded.Shutdown()
	}
}

// resume takes back the participants a previous run of this node left in
// the directory: each waits up to wait for its stream, then departs (and,
// if it was announced, is announced gone). mu must NOT be held.
func (l *Lobby) resume(entries []dirEntry, wait time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range entries {
		if l.sessions[e.SID] != nil || l.names[e.Name] != nil {
			continue
		}
		p := &participant{name: e.Name, sid: e.SID, key: keyFor(e.Name), state: stateJoining}
		if e.State == dirPresent {
			p.state, p.announced, p.ended = stateGrace, true, "node restarted"
		}
		l.sessions[p.sid] = p
		l.names[p.name] = p
		l.setTimer(p, wait)
		l.log.Info("waiting for a participant of this node's previous run", "name", p.name, "wait", wait)
	}
}

// reap announces the departures of participants whose node is gone. mu
// must NOT be held.
func (l *Lobby) reap(live map[string]bool, minAge time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.dir == nil {
		return
	}
	for _, name := range l.dir.orphans(live, minAge) {
		l.announceLeft(name, "node-lost")
	}
}

// closeElsewhere ends the streams under keys on whichever node holds them
// (a participant who left through one node while its stream lives on
// another). It does nothing on a single node. mu must NOT be held.
func (l *Lobby) closeElsewhere(keys ...sfere.Key) {
	if l.cluster == nil {
		return
	}
	for _, k := range keys {
		_, err := l.cluster.Send(k, sfere.CloseStream()) // waits at most natscluster.DefaultSendTimeout
		if err != nil && !errors.Is(err, sfere.ErrNoStream) {
			l.log.Warn("close a stream on another node", "key", k, "err", err)
		}
	}
}
