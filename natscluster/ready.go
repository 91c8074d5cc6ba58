package natscluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultStartTimeout is how long [New] waits for JetStream to take the
// event log: a NATS cluster starting elects its JetStream leader once a
// majority of its servers is up.
const DefaultStartTimeout = 30 * time.Second

// untilReady runs f until it succeeds, fails for good, or ctx ends; each
// run gets at most attempt. JetStream still forming (no leader yet, no
// responders, timeouts) is tried again.
func untilReady(ctx context.Context, log *slog.Logger, what string, attempt time.Duration, f func(context.Context) error) error {
	wait := 100 * time.Millisecond
	for tries := 1; ; tries++ {
		actx, cancel := context.WithTimeout(ctx, attempt)
		err := f(actx)
		cancel()
		if err == nil || !notReady(err) {
			return err
		}
		if tries == 3 {
			log.Warn("cluster: waiting for JetStream (a NATS cluster needs a majority of its servers up)", "for", what, "err", err)
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
