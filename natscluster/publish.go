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
// replicas has it) and every node will deliver it; an error means no
// node delivers it.
//
// A refusal has to stay true after it was given: bytes of an attempt
// that got no answer may still reach JetStream later (held in a paused
// server's socket, or in a stalled network), and be stored. So each
// event carries its deadline (Until: the moment its publisher gives up,
// plus clockSkew), every node applies an event stored after its deadline
// to nobody (it keeps its position; see apply), and a publisher that
// gave up after sending bytes settles the outcome: once the deadline has
// passed on every clock, it publishes the event once more with the same
// id. JetStream then either stores it now (too late: nobody delivers it)
// or answers that it holds it already, and the stored time says whether
// in time (then the publish succeeded after all, and returns nil).
//
// The one case left open: NATS out of reach from the deadline on while
// an earlier attempt was stored in time without its acknowledgement
// reaching this node. The error then wraps [ErrNoLog] although every
// node delivers the event once. A nil error is never returned for an
// event the log does not hold or that nodes do not deliver.

// publishAttempt bounds one publish round trip; publishBackoff is the
// first wait between attempts, doubled up to publishBackoffMax.
const (
	publishAttempt    = time.Second
	publishBackoff    = 25 * time.Millisecond
	publishBackoffMax = 500 * time.Millisecond
)

// clockSkew is how far apart a node's clock and the NATS servers' may be
// (NTP keeps them within milliseconds): an event's deadline is this much
// after its publisher gives up, and the publisher settles a refusal only
// this much after the deadline.
const clockSkew = time.Second

// settleFor bounds how long a publisher that gave up tries to settle the
// outcome.
const settleFor = 2 * time.Second

// publish appends an event to the log, retrying as the package doc says;
// the error wraps [ErrNoLog] when no node will deliver the event. Once it
// sent bytes, an error is returned only after the event's deadline
// passed, even if ctx ended before.
func (l *eventLog) publish(ctx context.Context, p sfere.Pattern, exclude sfere.Matcher, effects []sfere.Effect) error {
	wm, err := encodeMatcher(exclude)
	if err != nil {
		return err
	}
	return l.publishEvent(ctx, event{Pattern: p, Exclude: wm, Effects: effects}, nuid.Next())
}

// publishEvent is publish for an event already built, under the
// Nats-Msg-Id id (see [Node.Append]); it sets the event's deadline.
func (l *eventLog) publishEvent(ctx context.Context, e event, id string) error {
	giveUp := time.Now().Add(l.retryFor)
	if d, ok := ctx.Deadline(); ok && d.Before(giveUp) {
		giveUp = d
	}
	until := giveUp.Add(clockSkew)
	e.Until = until.UnixNano()
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("natscluster: %w", err)
	}
	seq, attempts, sent, err := l.retry(ctx, giveUp, id, b)
	if err == nil && time.Now().After(giveUp) {
		// The ack came after the deadline (the process was paused, or
		// the answer slow): the log may have stored the event too late
		// for any node to deliver it.
		sctx, cancel := context.WithTimeout(context.Background(), settleFor)
		err = l.storedInTime(sctx, seq, until)
		cancel()
		if err != nil {
			return fmt.Errorf("%w: acknowledged after its deadline: %w", ErrNoLog, err)
		}
	}
	if err == nil {
		if attempts > 1 {
			l.n.publishRetries.Add(uint64(attempts - 1))
		}
		l.expectApplied(seq)
		return nil
	}
	if sent && retryable(err) {
		if serr := l.settle(id, b, until); serr == nil {
			l.n.publishRetries.Add(uint64(attempts))
			return nil
		} else if !errors.Is(serr, errLate) {
			err = fmt.Errorf("%w (and the outcome could not be settled: %w)", err, serr)
		}
	}
	return fmt.Errorf("%w: gave up after %d attempts: %w", ErrNoLog, attempts, err)
}

// retry attempts the publish of event id until JetStream takes it, an
// error that no retry mends, or giveUp (or ctx's end), and returns the
// sequence the log gave the event. sent reports whether any attempt may
// have reached a server.
func (l *eventLog) retry(ctx context.Context, giveUp time.Time, id string, b []byte) (seq uint64, attempts int, sent bool, err error) {
	ctx, cancel := context.WithDeadline(ctx, giveUp)
	defer cancel()
	wait := publishBackoff
	for attempts = 1; ; attempts++ {
		var (
			maybe bool
			ack   *jetstream.PubAck
		)
		ack, maybe, err = l.attempt(ctx, id, b)
		sent = sent || maybe
		if err == nil {
			return ack.Sequence, attempts, sent, nil
		}
		if !retryable(err) {
			return 0, attempts, sent, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, attempts, sent, err
		case <-t.C:
		}
		wait = min(2*wait, publishBackoffMax)
	}
}

// errLate is settle's answer for an event the log took after its
// deadline, or only now: no node delivers it.
var errLate = errors.New("stored after its deadline")

// settle finds out, after a publish gave up having sent bytes, whether
// the log holds event id in time: it waits until the deadline has passed
// on every clock and publishes the event again with its id. nil means
// the log held it in time (every node delivers it); errLate means no
// node delivers it; any other error means it could not find out.
func (l *eventLog) settle(id string, b []byte, until time.Time) error {
	time.Sleep(time.Until(until.Add(clockSkew)))
	ctx, cancel := context.WithTimeout(context.Background(), settleFor)
	defer cancel()
	wait := publishBackoff
	for {
		ack, _, err := l.attempt(ctx, id, b)
		if err == nil {
			if !ack.Duplicate {
				return errLate // stored only now
			}
			return l.storedInTime(ctx, ack.Sequence, until)
		}
		if !retryable(err) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, publishBackoffMax)
	}
}

// storedInTime reports whether the log stored its event seq by until
// (nil), after it (errLate: no node delivers it), or could not tell.
func (l *eventLog) storedInTime(ctx context.Context, seq uint64, until time.Time) error {
	st, err := l.js.Stream(ctx, l.config.Name)
	if err != nil {
		return err
	}
	m, err := st.GetMsg(ctx, seq)
	if err != nil {
		return err
	}
	if m.Time.After(until) {
		return errLate
	}
	return nil
}

// errNotConnected stands for an attempt not made while the connection is
// down. (A publish that races the connection's loss fails too: [New]
// requires a connection without a reconnect buffer, so nothing waits to
// reach the log after the caller was told it did not.)
var errNotConnected = errors.New("not connected to NATS")

// attempt makes one publish of the event id with payload b; sent
// reports whether its bytes may have reached a server.
func (l *eventLog) attempt(ctx context.Context, id string, b []byte) (ack *jetstream.PubAck, sent bool, err error) {
	if !l.n.nc.IsConnected() {
		return nil, false, errNotConnected
	}
	actx, cancel := context.WithTimeout(ctx, publishAttempt)
	defer cancel()
	ack, err = l.js.Publish(actx, l.config.Subjects[0], b, jetstream.WithMsgID(id))
	sent = !errors.Is(err, nats.ErrReconnectBufExceeded) && !errors.Is(err, jetstream.ErrNoStreamResponse)
	return ack, sent, err
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
