package natspresence

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// autoReplicas is the replica count Options.Replicas zero stands for
// where the NATS cluster can place it.
const autoReplicas = 3

// withReplicas runs create with the replica count to ask for: want, or
// with want 0, autoReplicas and then 1 if JetStream cannot place that
// many. It never asks for fewer than have, the count the bucket has.
func withReplicas(want, have int, create func(replicas int) error) error {
	if want > 0 {
		return create(max(want, have))
	}
	err := create(max(autoReplicas, have))
	if err != nil && cannotPlace(err) {
		return create(max(1, have))
	}
	return err
}

// cannotPlace reports whether err says JetStream cannot place the
// replicas asked for.
func cannotPlace(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case 10005, // no suitable peers for placement
		10023, // insufficient resources
		10074: // replicas > 1 not supported in non-clustered mode
		return true
	}
	return false
}

// untilReady runs f until it succeeds, fails for good, or ctx ends: a
// NATS cluster starting takes streams only once a majority of its
// servers is up and has elected a JetStream leader.
func (c *Cluster) untilReady(ctx context.Context, f func(context.Context) error) error {
	wait := 100 * time.Millisecond
	for tries := 1; ; tries++ {
		actx, cancel := context.WithTimeout(ctx, c.timeout)
		err := f(actx)
		cancel()
		if err == nil || !notReady(err) {
			return err
		}
		if tries == 3 {
			c.log.Warn("natspresence: waiting for JetStream (a NATS cluster needs a majority of its servers up)", "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (%w)", err, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// notReady reports whether err says JetStream is not ready yet, rather
// than that it refused.
func notReady(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == 10008 || apiErr.Code == 503 && apiErr.ErrorCode != jetstream.JSErrCodeJetStreamNotEnabled && apiErr.ErrorCode != jetstream.JSErrCodeJetStreamNotEnabledForAccount)
}
