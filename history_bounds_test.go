package sfere

import (
	"errors"
	"net/url"
	"runtime"
	"strings"
	"testing"

	"github.com/sfere-go/sfere/internal/ssetest"
	"time"
)

// held returns how many events the hub's history holds and their bytes.
func held(h *Hub) (events, bytes int) {
	h.hist.mu.Lock()
	defer h.hist.mu.Unlock()
	for _, e := range h.hist.ring {
		if e.msg != nil {
			events++
			bytes += len(e.msg.data)
		}
	}
	if bytes != h.hist.bytes {
		panic("history: byte count drifted")
	}
	return events, bytes
}

// line is a broadcast of about size bytes.
func line(size int) Effect {
	return AppendElements("#m", "<p>"+strings.Repeat("x", size)+"</p>")
}

// The history holds at most MaxBytes (the newest event always): the
// oldest events go, and a client that missed them is not recovered.
func TestHistoryBoundedInBytes(t *testing.T) {
	hub, _ := newMemoryHub(t, HubOptions{History: HistoryOptions{Size: 1000, MaxBytes: 10 << 10}})
	srv := testServer(t, hub, AppendElements("#m", "<p>initial</p>"))
	from := hub.Position().String()
	for range 100 {
		if _, err := hub.Broadcast(All, nil, line(1000)); err != nil {
			t.Fatal(err)
		}
	}
	events, bytes := held(hub)
	if bytes > 10<<10 || events < 8 || events > 10 {
		t.Fatalf("history holds %d events, %d bytes; want at most 10 KiB (9 or so events of ~1 KiB)", events, bytes)
	}
	// A single event over the bound is held alone.
	if _, err := hub.Broadcast(All, nil, line(20<<10)); err != nil {
		t.Fatal(err)
	}
	if events, _ := held(hub); events != 1 {
		t.Fatalf("after an event bigger than the bound the history holds %d events, want 1 (the newest)", events)
	}
	c := dial(t, srv, "brian&lastEventID="+url.QueryEscape(from))
	c.Wait(waitLong, ssetest.Containing("<p>initial</p>"))
	s := waitStream(t, hub, "brian")
	if rec := s.Recovery(); rec.Recovered || !errors.Is(rec.Err, ErrPositionGone) {
		t.Fatalf("recovery from a position the byte bound dropped: %+v, want ErrPositionGone", rec)
	}
}

func waitStream(t *testing.T, hub *Hub, id string) *Stream {
	t.Helper()
	var s *Stream
	ssetest.Eventually(t, waitLong, "stream "+id, func() bool {
		var ok bool
		s, ok = hub.Store().Get(lobbyKey(id))
		return ok
	})
	return s
}

// Events older than MaxAge are dropped from the history, not only skipped
// at replay: an idle hub ends up holding nothing.
func TestHistoryDropsAgedEvents(t *testing.T) {
	hub, _ := newMemoryHub(t, HubOptions{History: HistoryOptions{Size: 100, MaxAge: 50 * time.Millisecond}})
	for range 10 {
		if _, err := hub.Broadcast(All, nil, line(100)); err != nil {
			t.Fatal(err)
		}
	}
	if events, _ := held(hub); events != 10 {
		t.Fatalf("history holds %d events right after 10 broadcasts", events)
	}
	ssetest.Eventually(t, waitLong, "aged events dropped", func() bool {
		events, bytes := held(hub)
		return events == 0 && bytes == 0
	})
	// It keeps working after it emptied, and drops again.
	if _, err := hub.Broadcast(All, nil, line(100)); err != nil {
		t.Fatal(err)
	}
	ssetest.Eventually(t, waitLong, "the next event dropped", func() bool {
		events, _ := held(hub)
		return events == 0
	})
}

// A replay is bounded by the stream's queue limit in bytes: a client that
// missed more is not recovered (ErrReplayLimit) and gets its initial
// effects, having been sent no more than the limit.
func TestReplayBoundedByQueueBytes(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, _ := newMemoryHub(t, HubOptions{NoHijack: noHijack, MaxQueueBytes: 16 << 10, History: HistoryOptions{Size: 1000}})
		srv := testServer(t, hub, AppendElements("#m", "<p>initial</p>"))
		from := hub.Position().String()
		for range 50 { // 50 KiB missed
			hub.Broadcast(All, nil, line(1000))
		}
		c := dial(t, srv, "brian&lastEventID="+url.QueryEscape(from), ssetest.KeepLines())
		s := waitStream(t, hub, "brian")
		hub.Broadcast(All, nil, AppendElements("#m", "<p>live</p>"))
		c.Wait(waitLong, ssetest.Containing("<p>live</p>"))
		if rec := s.Recovery(); rec.Recovered || !errors.Is(rec.Err, ErrReplayLimit) {
			t.Fatalf("recovery of 50 KiB with a 16 KiB queue: %+v, want ErrReplayLimit", rec)
		}
		sent := 0
		for _, l := range c.Lines() {
			sent += len(l) + 1
		}
		if sent > 16<<10 {
			t.Fatalf("the stream was sent %d bytes, more than the 16 KiB queue limit", sent)
		}
		if !strings.Contains(strings.Join(c.Lines(), "\n"), "<p>initial</p>") {
			t.Fatal("the stream that could not recover did not get its initial effects")
		}

		// Within the limit it recovers.
		from = hub.Position().String()
		for range 10 {
			hub.Broadcast(All, nil, line(1000))
		}
		c2 := dial(t, srv, "phil&lastEventID="+url.QueryEscape(from))
		s2 := waitStream(t, hub, "phil")
		hub.Broadcast(All, nil, AppendElements("#m", "<p>live2</p>"))
		c2.Wait(waitLong, ssetest.Containing("<p>live2</p>"))
		if rec := s2.Recovery(); !rec.Recovered || rec.Replayed != 10 {
			t.Fatalf("recovery of 10 KiB with a 16 KiB queue: %+v, want 10 replayed", rec)
		}
	})
}

// BroadcastLive reaches the streams but takes no position and no room in
// the history, and carries no id.
func TestBroadcastLiveIsNotKept(t *testing.T) {
	hub, _ := newMemoryHub(t, HubOptions{History: HistoryOptions{Size: 10}})
	srv := testServer(t, hub)
	c := dial(t, srv, "brian")
	waitStream(t, hub, "brian")
	hub.Broadcast(All, nil, line(10))
	before := hub.Position()
	res, err := hub.BroadcastLive(All, nil, AppendElements("#m", "<p>snapshot</p>"))
	if err != nil || res.Delivered != 1 {
		t.Fatalf("BroadcastLive: %+v, %v", res, err)
	}
	e := c.Wait(waitLong, ssetest.Containing("<p>snapshot</p>"))
	if e.ID != "" {
		t.Fatalf("a live-only event carries id %q", e.ID)
	}
	if hub.Position() != before {
		t.Fatalf("position moved from %v to %v", before, hub.Position())
	}
	if events, _ := held(hub); events != 1 {
		t.Fatalf("history holds %d events after one broadcast and a live-only one", events)
	}
}

// The byte bound holds the heap: 20,000 events of 4 KiB (80 MB) through a
// history of 1 MiB leave the heap at most the bound (plus slack) above
// where it started.
func TestHistoryHeapBoundedByBytes(t *testing.T) {
	hub, _ := newMemoryHub(t, HubOptions{History: HistoryOptions{Size: 20000, MaxBytes: 1 << 20}})
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base := heap()
	for range 20000 {
		if _, err := hub.Broadcast(All, nil, line(4<<10)); err != nil {
			t.Fatal(err)
		}
	}
	grew := int64(heap()) - int64(base)
	t.Logf("heap grew %d KiB for 80 MB of events through a 1 MiB history", grew>>10)
	if grew > 1<<20+4<<20 {
		t.Fatalf("heap grew %d KiB: more than the 1 MiB bound plus 4 MiB slack", grew>>10)
	}
	runtime.KeepAlive(hub)
}
