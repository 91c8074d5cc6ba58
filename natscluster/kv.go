package natscluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// KeyValue finds or makes the JetStream key-value bucket cfg names, with
// the node's replica count ([Options.Replicas]; cfg.Replicas is
// ignored): a bucket found with fewer replicas is raised to it, never
// lowered (another node may want more). It tries again while JetStream
// is not ready (a NATS cluster starting, a leader election) until ctx
// ends. Adapters keep their shared state in such a bucket (package
// natspresence keeps its claims), so the node decides where the
// cluster's state lives.
func (n *Node) KeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	js, err := jetstream.New(n.nc)
	if err != nil {
		return nil, fmt.Errorf("natscluster: %w", err)
	}
	var kv jetstream.KeyValue
	err = untilReady(ctx, n.log, "bucket "+cfg.Bucket, n.timeout, func(ctx context.Context) error {
		have := 0
		if kv, err := js.KeyValue(ctx, cfg.Bucket); err == nil {
			if st, err := kv.Status(ctx); err == nil {
				if si, ok := st.(*jetstream.KeyValueBucketStatus); ok {
					have = si.StreamInfo().Config.Replicas
				}
			}
		}
		return withReplicas(n.replicas, have, func(r int) (err error) {
			cfg.Replicas = r
			kv, err = js.CreateOrUpdateKeyValue(ctx, cfg)
			return err
		})
	})
	if err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			err = fmt.Errorf("%w (the NATS servers need JetStream: nats-server -js)", err)
		}
		return nil, fmt.Errorf("natscluster: bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// NotReady reports whether err, from a JetStream call, says JetStream is
// not ready yet (no leader after a server was lost, no responders, a
// timeout) rather than that it refused: the call may be tried again
// later.
func NotReady(err error) bool { return notReady(err) }
