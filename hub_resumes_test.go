package sfere

import (
	"net/http/httptest"
	"testing"
	"time"
)

// Resumes says, before a stream opens, whether its request's position is
// one the history can serve: Serve's recovery would succeed.
func TestResumesSaysWhetherThePositionCanBeServed(t *testing.T) {
	hub := NewHub(NewMemoryStore(MemoryOptions{}), HubOptions{History: HistoryOptions{Size: 4}})
	t.Cleanup(func() { hub.Shutdown(t.Context()) })
	start := hub.Position()
	for range 6 { // the history keeps 4: start is gone
		if _, err := hub.Broadcast(All, nil, PatchElements("<p>x</p>")); err != nil {
			t.Fatal(err)
		}
	}
	top := hub.Position()
	ahead, other := top, top
	ahead.Offset++
	other.Epoch += "x"
	inOpening := top
	inOpening.Opening, inOpening.Part = true, 1
	for _, c := range []struct {
		what, header, query string
		want                bool
	}{
		{"no position", "", "", false},
		{"the newest", top.String(), "", true},
		{"the newest, as the query parameter", "", top.String(), true},
		{"the last of several headers", "x, " + top.String(), "", true},
		{"one the history keeps", Position{Epoch: top.Epoch, Offset: top.Offset - 3}.String(), "", true},
		{"gone", start.String(), "", false},
		{"ahead", ahead.String(), "", false},
		{"an earlier run's", other.String(), "", false},
		{"inside an opening", inOpening.String(), "", false},
		{"malformed", "nonsense", "", false},
	} {
		target := "/sse"
		if c.query != "" {
			target += "?lastEventID=" + c.query
		}
		r := httptest.NewRequest("POST", target, nil)
		if c.header != "" {
			r.Header.Set("Last-Event-ID", c.header)
		}
		if got := hub.Resumes(r); got != c.want {
			t.Errorf("%s (%q): Resumes = %v, want %v", c.what, c.header+c.query, got, c.want)
		}
	}
	// A shared history waits for a position ahead of it (and the stream
	// recovers, or is refused before anything is written), unless told
	// not to wait.
	for _, c := range []struct {
		wait time.Duration
		want bool
	}{{0, true}, {-1, false}} {
		shared := NewHub(NewMemoryStore(MemoryOptions{}), HubOptions{History: HistoryOptions{Size: 4, Epoch: "log", AheadWait: c.wait}})
		t.Cleanup(func() { shared.Shutdown(t.Context()) })
		if _, err := shared.BroadcastAt(Position{Epoch: "log", Offset: 1}, All, nil, PatchElements("<p>x</p>")); err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("POST", "/sse", nil)
		r.Header.Set("Last-Event-ID", Position{Epoch: "log", Offset: 2}.String())
		if got := shared.Resumes(r); got != c.want {
			t.Errorf("a position ahead of a shared history, AheadWait %v: Resumes = %v, want %v", c.wait, got, c.want)
		}
	}
	plain := NewHub(NewMemoryStore(MemoryOptions{}), HubOptions{})
	t.Cleanup(func() { plain.Shutdown(t.Context()) })
	r := httptest.NewRequest("POST", "/sse", nil)
	r.Header.Set("Last-Event-ID", top.String())
	if plain.Resumes(r) {
		t.Error("a hub without a history resumes")
	}
}
