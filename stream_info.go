package sfere

import "time"

// StreamInfo is what a stream is doing at one moment, for a dashboard or
// a debug page: read with [Stream.Info], from any goroutine.
type StreamInfo struct {
	// Opened is when the hub made the stream (its request arrived).
	Opened time.Time
	// Queued is the bytes waiting for the client; a stream whose queue
	// would pass [HubOptions.MaxQueueBytes] is closed.
	Queued int
	// LastWrite is when the last successful write of app traffic (not a
	// heartbeat) began; zero if none has yet.
	LastWrite time.Time
	// TakenOver is true if the hub took the connection over from net/http
	// (see [Hub.Serve]); false for a stream written through net/http's
	// response writer (HTTP/2, TLS, [HubOptions.NoHijack]).
	TakenOver bool
	// Compressed is true if the stream is written gzip.
	Compressed bool
}

// Info returns what the stream is doing now.
func (s *Stream) Info() StreamInfo {
	info := StreamInfo{Opened: s.opened, Compressed: s.compressed}
	if ns := s.lastAppWrite.Load(); ns != 0 {
		info.LastWrite = time.Unix(0, ns)
	}
	_, info.TakenOver = s.sink.(*connSink)
	s.mu.Lock()
	info.Queued = s.queued
	s.mu.Unlock()
	return info
}
