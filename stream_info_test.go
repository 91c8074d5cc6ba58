package sfere

import (
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
)

// TestStreamInfoOnBothSinks checks Info against a real connection: its
// age, its transport, no app write before the first event and one after,
// and an empty queue once the client has it.
func TestStreamInfoOnBothSinks(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub := NewHub(NewMemoryStore(MemoryOptions{}), HubOptions{NoHijack: noHijack})
		srv := testServer(t, hub)
		before := time.Now()
		c := dial(t, srv, "a")
		key := NewKey(DefaultScope, "lobby", "a")
		var s *Stream
		ssetest.Eventually(t, 5*time.Second, "the stream stored", func() bool {
			var ok bool
			s, ok = hub.Store().Get(key)
			return ok
		})
		info := s.Info()
		if info.Opened.Before(before) || info.Opened.After(time.Now()) {
			t.Errorf("opened at %v, not during the dial from %v", info.Opened, before)
		}
		if info.TakenOver == noHijack {
			t.Errorf("taken over = %v with NoHijack %v", info.TakenOver, noHijack)
		}
		if info.Compressed {
			t.Error("compressed without compression")
		}
		sent := time.Now()
		if _, err := hub.Send(key, PatchElements(`<p id="p">hi</p>`)); err != nil {
			t.Fatal(err)
		}
		c.Wait(5*time.Second, ssetest.Containing("hi"))
		ssetest.Eventually(t, 5*time.Second, "the send recorded as the last write, nothing queued", func() bool {
			info := s.Info()
			return !info.LastWrite.Before(sent.Add(-time.Millisecond)) && info.Queued == 0
		})
	})
}
