package main

import (
	"io"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
)

// sseEvent is one server-sent event as a browser's EventSource parser sees
// it (comments dropped).
type sseEvent struct {
	typ   string
	data  []string
	id    string
	hasID bool
	retry time.Duration // 0: none
	at    time.Time
}

// readSSE reads an SSE body with the test kit's parser (the one the
// module's tests use) and hands every event to emit, the moment the blank
// line that ends it arrives. A partial event at a broken end is dropped,
// as a browser drops it. It returns the error that ended the body
// (io.EOF for a clean end) or the error emit returned.
func readSSE(r io.Reader, emit func(sseEvent) error) error {
	return ssetest.ReadEvents(r, func(e ssetest.Event) error {
		if e.IsComment {
			return nil
		}
		ev := sseEvent{typ: e.Type, data: e.Data, id: e.ID, hasID: e.HasID, at: e.At}
		if e.HasRetry {
			ev.retry = e.Retry
		}
		return emit(ev)
	}, nil)
}
