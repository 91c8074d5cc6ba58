package sfere

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
)

// waiting reports whether a stream waits for the hub's history to move
// (a request ahead of it: see HistoryOptions.AheadWait).
func waiting(hub *Hub) bool {
	hub.hist.mu.Lock()
	defer hub.hist.mu.Unlock()
	return hub.hist.moved != nil
}

// A client that resumes on a hub whose copy of a shared log lags the
// position another hub served it waits for this hub to apply the log that
// far, and then resumes from there: it is sent neither the state at the
// hub's older position nor, again, the events it already had.
func TestResumeAheadOfSharedHistoryWaits(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, _ := newMemoryHub(t, HubOptions{NoHijack: noHijack, History: HistoryOptions{Size: 16, Epoch: "e1", AheadWait: time.Minute}})
		srv := testServer(t, hub, AppendElements("#m", "<p>initial</p>"))
		for off := uint64(1); off <= 3; off++ {
			if _, err := hub.BroadcastAt(Position{Epoch: "e1", Offset: off}, All, nil, numbered(int(off))); err != nil {
				t.Fatal(err)
			}
		}
		// The client had 1 to 5 from another hub.
		c := dial(t, srv, "brian&lastEventID="+url.QueryEscape("e1-5"))
		// (A hub that does not wait stores the stream at once.)
		ssetest.Eventually(t, waitLong, "the stream waiting for the log", func() bool { return waiting(hub) || hub.Count(All) != 0 })
		for off := uint64(4); off <= 6; off++ {
			if _, err := hub.BroadcastAt(Position{Epoch: "e1", Offset: off}, All, nil, numbered(int(off))); err != nil {
				t.Fatal(err)
			}
		}
		if got := elementsUntil(t, c, "<p>6</p>"); strings.Join(got, " ") != "" {
			t.Fatalf("the resumed stream got %q before 6, want nothing (it had up to 5)", got)
		}
		s, ok := hub.Store().Get(lobbyKey("brian"))
		if !ok {
			t.Fatal("no stream stored")
		}
		if rec := s.Recovery(); !rec.Recovered {
			t.Fatalf("recovery %+v, want recovered", rec)
		}
		if evs := c.Events(); evs[len(evs)-1].ID != "e1-6" {
			t.Fatalf("event 6 carries id %q, want e1-6", evs[len(evs)-1].ID)
		}
	})
}

// A hub that does not reach the position in time (cut off from the log)
// refuses the stream before writing anything, so the client tries again,
// maybe on another hub, with its position; once the hub is there it
// resumes.
func TestResumeAheadOfSharedHistoryRefused(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, _ := newMemoryHub(t, HubOptions{NoHijack: noHijack, History: HistoryOptions{Size: 16, Epoch: "e1", AheadWait: 50 * time.Millisecond}})
		srv := testServer(t, hub, AppendElements("#m", "<p>initial</p>"))
		if _, err := hub.BroadcastAt(Position{Epoch: "e1", Offset: 1}, All, nil, numbered(1)); err != nil {
			t.Fatal(err)
		}
		for _, from := range []string{"e1-3", "e1-3.1", "e1-3.o1"} { // after a message, inside one, inside an opening
			c := dial(t, srv, "brian&lastEventID="+url.QueryEscape(from))
			if head := c.WaitHead(waitLong); head.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("from %s: status %d, want 503 (the test server's answer to Serve's error)", from, head.StatusCode)
			}
			if n := hub.Count(All); n != 0 {
				t.Fatalf("from %s: %d streams stored, want none", from, n)
			}
		}
		// Another epoch, or a position the hub has, is not waited for.
		if _, err := hub.BroadcastAt(Position{Epoch: "e1", Offset: 2}, All, nil, numbered(2)); err != nil {
			t.Fatal(err)
		}
		c := dial(t, srv, "other&lastEventID="+url.QueryEscape("e0-9"))
		c.Wait(waitLong, ssetest.Containing("<p>initial</p>"))
		if _, err := hub.BroadcastAt(Position{Epoch: "e1", Offset: 3}, All, nil, numbered(3)); err != nil {
			t.Fatal(err)
		}
		c = dial(t, srv, "brian&lastEventID="+url.QueryEscape("e1-3"))
		if _, err := hub.BroadcastAt(Position{Epoch: "e1", Offset: 4}, All, nil, numbered(4)); err != nil {
			t.Fatal(err)
		}
		if got := elementsUntil(t, c, "<p>4</p>"); strings.Join(got, " ") != "" {
			t.Fatalf("resumed at 3, got %q before 4, want nothing", got)
		}
	})
}
