package natscluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/sfere-go/sfere"
)

// Publishing to the cluster's event log. A publish is done or not done,
// never half-done: the event carries a Nats-Msg-Id, so JetStream stores
// it once however often it is retried (within the stream's duplicates
// window, 2 minutes by default), and the publish is retried with that id
// through leader elections, lost servers and reconnects for at most the
// node's PublishTimeout. Nothing is delivered by the publish itself:
// every node, this one included, delivers the event as it applies the
// log. So a nil error means the log holds the event (a majority of its
// replicas has it) and every node will deliver it; an error means this
// publish put it nowhere.
//
// The one case the caller cannot tell apart: an acknowledgement lost on
// every attempt while JetStream did store the event (the connection cut
// at the moment of the last attempt's reply). The error then wraps
// [ErrNoLog] although every node delivers the event once. It is never the
// other way round: a nil error is never returned for an event the log
// does not hold.

// publishAttempt bounds one publish round trip; publishBackoff is the
// first wait between attempts, doubled up to publishBackoffMax.
const (
	publishAttempt    = time.Second
	publishBackoff    = 25 * time.Millisecond
	publishBackoffMax = 500 * time.Millisecond
)

// publish appends an event to the log, retrying as the package doc says;
// the error wraps [ErrNoLog] when the log did not take it.
func (l *eventLog) publish(ctx context.Context, p sfere.Pattern, exclude sfere.Matcher, effects []sfere.Effect) error {
	wm, err := encodeMatcher(exclude)
	if err != nil {
		return err
	}
	b, err := json.Marshal(event{Pattern: p, Exclude: wm, Effects: effects})
	if err != nil {
		return fmt.Errorf("natscluster: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, l.retryFor)
	defer cancel()
	id := nuid.Next()
	wait := publishBackoff
	for attempt := 1; ; attempt++ {
		err = l.attempt(ctx, id, b)
		if err == nil {
			if attempt > 1 {
				l.n.publishRetries.Add(uint64(attempt - 1))
			}
			return nil
		}
		if !retryable(err) {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: gave up after %d attempts in %v: %w", ErrNoLog, attempt, l.retryFor, err)
		case <-t.C:
		}
		wait = min(2*wait, publishBackoffMax)
	}
	return fmt.Errorf("%w: %w", ErrNoLog, err)
}

// errNotConnected stands for an attempt not made: a publish while the
// connection is down would wait in nats.go's reconnect buffer and could
// reach the log after the caller was told it did not.
var errNotConnected = errors.New("not connected to NATS")

// attempt makes one publish of the event id with payload b.
func (l *eventLog) attempt(ctx context.Context, id string, b []byte) error {
	if !l.n.nc.IsConnected() {
		return errNotConnected
	}
	actx, cancel := context.WithTimeout(ctx, publishAttempt)
	defer cancel()
	_, err := l.js.Publish(actx, l.config.Subjects[0], b, jetstream.WithMsgID(id))
	return err
}

// retryable reports whether a failed publish may succeed if tried again:
// everything but a closed connection, a refused payload and a stream
// that refuses messages of this kind.
func retryable(err error) bool {
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject) {
		return false
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum {
		return false
	}
	return true
}
