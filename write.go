package sfere

import (
	"errors"
	"syscall"
	"time"
)

// The rules every write to a client follows, whichever sink writes it.

// upToClose returns how many messages of batch are written: all of them,
// or up to and including the first close-stream message (nothing after it
// reaches the client).
func upToClose(batch []*message) int {
	for i, m := range batch {
		if m.close {
			return i + 1
		}
	}
	return len(batch)
}

// afterWrite is what follows a write of batch to s's client, on either
// sink: the first n messages were written, starting at start, or the
// write failed with err (n is then 0). It settles the messages' trackers,
// records a write of app traffic (anything but a heartbeat, the opening
// batch included: the heartbeat skips streams that just proved their
// client), touches the store (a sliding expiry restarts), and returns why
// the stream must end: the write's error (see writeError),
// [ErrClosedByApp] after a close-stream message, or nil.
//
// The write is recorded before the trackers settle, so that whoever learns
// of a written message from its tracker (a heartbeat's completed sweep)
// also sees the write recorded. The client may have the bytes earlier:
// what it reads is no sign that the server has recorded anything yet.
func (h *Hub) afterWrite(s *Stream, batch []*message, n int, start time.Time, err error) error {
	if err == nil {
		app, bytes := false, 0
		for _, m := range batch[:n] {
			app = app || !m.heartbeat && len(m.data) > 0
			bytes += len(m.data)
		}
		if app {
			s.lastAppWrite.Store(start.UnixNano())
		}
		h.stats.written.Add(uint64(bytes))
		h.stats.latency.wrote(s, batch[:n])
	}
	settleAll(batch[:n], err == nil)
	settleAll(batch[n:], false)
	if err != nil {
		return writeError(err)
	}
	h.store.Touch(s)
	if n > 0 && batch[n-1].close {
		return ErrClosedByApp
	}
	return nil
}

// readerVerdictWait bounds how long one side of a dead connection waits
// for the other's verdict. Once TCP gives up on a peer (the user timeout),
// the kernel reports ETIMEDOUT to one call only, the read or a write, and
// EOF, EPIPE or ECONNRESET to the others, so the side that did not get it
// asks the other before it says why the stream ended. A write that fails
// with a dead connection's error waits for the connection's reader, which
// wakes by itself on a dead connection (both sinks have one: net/http's
// background read, recorded by [Listen]'s connections; the taken-over
// connection's own). The reader of a taken-over connection that meets its
// end while a writer holds it waits for that writer's verdict
// (connSink.readFailure).
const readerVerdictWait = 50 * time.Millisecond

// awaitsReader reports whether a write's error should wait for the
// reader's verdict (see readerVerdictWait).
func awaitsReader(err error) bool {
	return !errors.Is(err, ErrPeerVanished) &&
		(errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET))
}

// awaitVerdict waits until done is closed, at most d.
func awaitVerdict(done <-chan struct{}, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}
