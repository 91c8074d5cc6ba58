package natscluster

import (
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// AutoReplicas is the replica count that [Options.Replicas] zero stands
// for where the NATS cluster can place it: a stream on 3 servers
// survives the loss of any one of them.
const AutoReplicas = 3

// withReplicas runs create with the replica count to ask for: want, or
// with want 0, [AutoReplicas] and then 1 if JetStream cannot place that
// many (fewer than 3 JetStream servers, or one server without a cluster).
// It never asks for fewer than have, the count an existing stream has.
func withReplicas(want, have int, create func(replicas int) error) error {
	if want > 0 {
		return create(max(want, have))
	}
	err := create(max(AutoReplicas, have))
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
