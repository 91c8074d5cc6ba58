package sfere

import (
	"errors"
	"fmt"
)

// Cause says why a stream left the store. It is the one catalog of
// eviction reasons; every eviction carries exactly one.
type Cause uint8

const (
	// CauseClosed: the stream ended. The client went away (request context
	// ended), a write failed or timed out, the stream fell too far behind,
	// a heartbeat write failed, the app sent [CloseStream], or the hub shut
	// down. [Eviction.Err] says which.
	CauseClosed Cause = iota + 1
	// CauseExplicit: the application purged the key or the stream.
	CauseExplicit
	// CauseReplaced: a new stream was stored under the same key.
	CauseReplaced
	// CauseExpired: the stream outlived the TTL store's duration.
	CauseExpired
	// CauseSize: the TTL store evicted the stream to stay within its maximum size.
	CauseSize
	// CauseNodeLost: the cluster node that held the stream stopped
	// answering. Only cluster packages report it, for streams that lived
	// on another node; a local store never does.
	CauseNodeLost
)

var causeNames = [...]string{
	CauseClosed:   "closed",
	CauseExplicit: "explicit",
	CauseReplaced: "replaced",
	CauseExpired:  "expired",
	CauseSize:     "size",
	CauseNodeLost: "node-lost",
}

// String returns the cause's lower-case name, e.g. "closed".
func (c Cause) String() string {
	if c >= CauseClosed && int(c) < len(causeNames) {
		return causeNames[c]
	}
	return fmt.Sprintf("Cause(%d)", uint8(c))
}

// MarshalText implements [encoding.TextMarshaler] with the cause's name.
func (c Cause) MarshalText() ([]byte, error) {
	if c < CauseClosed || int(c) >= len(causeNames) {
		return nil, fmt.Errorf("sfere: unknown cause %d", uint8(c))
	}
	return []byte(causeNames[c]), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler] for the names String returns.
func (c *Cause) UnmarshalText(text []byte) error {
	for i, name := range causeNames {
		if name != "" && name == string(text) {
			*c = Cause(i)
			return nil
		}
	}
	return fmt.Errorf("sfere: unknown cause %q", text)
}

// Eviction describes one stream leaving the store.
type Eviction struct {
	Key    Key
	Stream *Stream
	Cause  Cause
	// Err is what ended the stream, when an error did: a write error,
	// [ErrClientGone], [ErrSlowClient], [ErrHubClosed], [ErrClosedByApp].
	// It is nil for replaced, explicit, expired and size evictions.
	Err error
}

// EvictFunc is called exactly once for every stream that leaves a store,
// after the store has released its locks: it may call the store and the hub.
// It runs on the goroutine that caused the eviction (often the stream's own
// [Hub.Serve]); keep it short and do not block.
type EvictFunc func(Eviction)

// Errors carried by [Eviction.Err] when a stream ends by itself.
var (
	// ErrClientGone: the client closed the connection (or, on a stream
	// [Hub.Serve] holds, the server canceled the request's context).
	ErrClientGone = errors.New("sfere: client gone")
	// ErrSlowClient: the stream's queue exceeded its limit because the
	// client did not read fast enough. On a taken-over connection the
	// response then ends without its last chunk, so that the client
	// takes it for a broken stream and reconnects (with a history,
	// resuming where it was).
	ErrSlowClient = errors.New("sfere: client too slow, queue full")
	// ErrClosedByApp: the application sent [CloseStream].
	ErrClosedByApp = errors.New("sfere: stream closed by the application")
	// ErrHubClosed: the hub is shutting down; also returned by [Hub.Serve]
	// after [Hub.Shutdown].
	ErrHubClosed = errors.New("sfere: hub closed")
	// ErrWrite wraps a failed or timed-out write to the client.
	ErrWrite = errors.New("sfere: write to client failed")
	// ErrClientData: the client of a stream whose connection the hub took
	// over sent more than [MaxClientData] bytes after its request.
	ErrClientData = errors.New("sfere: client sent data on its stream")
)
