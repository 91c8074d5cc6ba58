package lobby

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/natscluster"
	"github.com/sfere-go/sfere/presence/natspresence"
)

// cluster is what a lobby node runs to share one lobby with other nodes
// over NATS: the natscluster node carries chat to every node's streams
// through its event log and decides which nodes are there, and the
// presence cluster, an adapter over it (package natspresence), shares who
// is here, its "joined", "left" and "back" lines through the same log.
// Every call into natscluster is in this file.
type cluster struct {
	log      *slog.Logger
	embedded *natscluster.Server // nil unless -nats-embed
	nc       *nats.Conn
	node     *natscluster.Node
	presence *natspresence.Cluster
}

// prefix names the lobby's subjects and buckets on NATS.
const prefix = "sfere_lobby"

// startCluster joins the lobby to the cluster that opts.NATS (or an
// embedded server on opts.NATSEmbed) carries; the node builds the lobby's
// hub over store with hubOpts (c.node.Hub()). The node's interval is half
// the heartbeat, so a lost node is noticed within 3 intervals: well inside
// 3 heartbeats.
func startCluster(ctx context.Context, opts Options, store sfere.Store, hubOpts sfere.HubOptions) (*cluster, error) {
	c := &cluster{log: opts.Logger}
	url := opts.NATS
	if opts.NATSEmbed != "" {
		srv, err := natscluster.StartServerWith(natscluster.ServerOptions{
			Addr: opts.NATSEmbed, StoreDir: opts.NATSStore, Name: opts.NodeID,
			Cluster: opts.NATSCluster, ClusterName: prefix, Routes: opts.NATSRoutes,
		})
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
	c.nc, err = nats.Connect(url, nats.Name("sfere-lobby"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectBufSize(-1)) // a refused line must never be sent later: natscluster.ErrReconnectBuffer
	if err != nil {
		c.close()
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	interval := max(opts.Heartbeat/2, 50*time.Millisecond)
	c.node, err = natscluster.New(c.nc, store, natscluster.Options{
		Hub:            hubOpts,
		NodeID:         opts.NodeID,
		Prefix:         prefix,
		Interval:       interval,
		Logger:         opts.Logger,
		Replicas:       opts.NATSReplicas,
		PublishTimeout: opts.NATSPublishTimeout,
		// The log waits for the tracker, which renders the room's
		// batches at their positions (see natspresence.Kind).
		AppKinds: []string{natspresence.Kind(Category)},
	})
	if err != nil {
		c.close()
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, natscluster.DefaultStartTimeout)
	defer cancel()
	c.presence, err = natspresence.New(pctx, c.node, Category, natspresence.Options{Logger: opts.Logger})
	if err != nil {
		c.close()
		return nil, err
	}
	c.log.Info("joined the lobby cluster", "node", c.node.ID(), "nats", url)
	return c, nil
}

// close leaves the cluster; call it after the hub has shut down and the
// tracker (which closes the presence cluster) has closed.
func (c *cluster) close() {
	if c.node != nil {
		c.node.Close()
	}
	if c.nc != nil {
		c.nc.Close()
	}
	if c.embedded != nil {
		c.embedded.Shutdown()
	}
}

// presenceClusters are the presence clusters whose claims the dashboard
// counts: the lobby's one room's.
func (c *cluster) presenceClusters() []*natspresence.Cluster {
	return []*natspresence.Cluster{c.presence}
}
