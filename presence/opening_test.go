package presence_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/presence"
)

// historyRig is a tracker with [presence.Options.ReplayHoldsState] on a hub
// that keeps a history, served over real TCP: POST /claim?owner=&id= and
// POST /sse?owner=, whose opening (the initial effects, sent when the
// stream does not recover) carries a position, as a page's does.
type historyRig struct {
	t       *testing.T
	hub     *sfere.Hub
	tracker *presence.Tracker
	addr    string
}

func newHistoryRig(t *testing.T, window time.Duration) *historyRig {
	t.Helper()
	hub := sfere.NewHub(sfere.NewMemoryStore(sfere.MemoryOptions{}), sfere.HubOptions{
		History: sfere.HistoryOptions{Size: 100},
	})
	tr, err := presence.New(hub, presence.Options{
		Room: room, Window: window, Snapshot: renderSnapshot, Diff: renderDiff, ReplayHoldsState: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /claim", func(w http.ResponseWriter, q *http.Request) {
		if _, err := tr.Claim(q.Context(), presence.Claim{Person: q.URL.Query().Get("id"), Owner: q.URL.Query().Get("owner")}); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
		}
	})
	mux.HandleFunc("POST /sse", func(w http.ResponseWriter, q *http.Request) {
		if _, err := tr.Detach(w, q, q.URL.Query().Get("owner"), sfere.PatchElements(`<p id="opening"></p>`)); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
		}
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ConnContext = sfere.ConnContext
	srv.Start()
	t.Cleanup(func() {
		tr.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hub.Shutdown(ctx); err != nil {
			t.Errorf("hub shutdown: %v", err)
		}
		srv.Close()
	})
	return &historyRig{t: t, hub: hub, tracker: tr, addr: srv.Listener.Addr().String()}
}

func (r *historyRig) claim(id, owner string) {
	r.t.Helper()
	resp, err := http.Post("http://"+r.addr+"/claim?id="+id+"&owner="+owner, "application/json", nil)
	if err != nil {
		r.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		r.t.Fatalf("claim %s for %s: status %d", id, owner, resp.StatusCode)
	}
}

// open opens a stream of owner's person, resuming from lastID if it is
// not empty (the Last-Event-ID header of a reconnecting client).
func (r *historyRig) open(owner, lastID string) *tab {
	r.t.Helper()
	req := ssetest.Request{Method: http.MethodPost, Target: "/sse?owner=" + owner, Header: http.Header{}}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	c := ssetest.Open(r.t, r.addr, req)
	if st := c.WaitHead(waitLong).StatusCode; st != http.StatusOK {
		r.t.Fatalf("open stream of %s: status %d", owner, st)
	}
	return &tab{t: r.t, Client: c}
}

// lastID is the id of the last event of tb that carried one.
func lastID(tb *tab) string {
	id := ""
	for _, e := range tb.Events() {
		if e.HasID {
			id = e.ID
		}
	}
	return id
}

// With ReplayHoldsState, a stream that does not recover (a position the
// history no longer has, or none) gets the snapshot in its opening, not
// with the next batch: a page that breaks right after its opening resumes
// from the opening's position with the list that belongs to it, is
// replayed nothing it already shows, and gets no second snapshot.
func TestSnapshotComesWithTheOpening(t *testing.T) {
	r := newHistoryRig(t, time.Minute) // a batch after the first waits for the window (or Flush)
	r.claim("a", "oa")
	a := r.open("oa", "")
	a.waitFor(`data-joins="a"`) // the first change after a quiet spell goes out at once

	for _, from := range []string{"", "0000000000000000-7"} { // a page's first stream; a position of an earlier run
		r.claim("b", "ob")
		b := r.open("ob", from)
		b.waitFor(`id="opening"`)
		// Within the window: b's arrival waits for the next batch, and
		// b's snapshot must not.
		if got := b.waitFor(`id="snapshot"`); !strings.Contains(got, `data-ids="a"`) {
			t.Fatalf("from %q: snapshot %s, want a alone", from, got)
		}
		pos := lastID(b)
		if pos == "" {
			t.Fatalf("from %q: the opening carried no position: %v", from, b.Events())
		}
		b.Close()
		b2 := r.open("ob", pos)
		presence.Flush(r.tracker) // the held batch: b's arrival
		b2.waitFor(`data-joins="b"`)
		a.waitMembers("a", "b")
		if n := b2.count(`id="snapshot"`) + b2.count(`id="opening"`); n != 0 {
			t.Errorf("from %q: the resume from the opening's position was not recovered: %v", from, b2.Events())
		}
		if got := strings.Join(shownList(append(b.all(), b2.all()...)), ","); got != "a,b" {
			t.Errorf("from %q: the page shows %q, want a,b", from, got)
		}
		if _, err := r.tracker.Leave(context.Background(), "ob"); err != nil {
			t.Fatal(err)
		}
		b2.waitEnd()
		presence.Flush(r.tracker)
		a.waitMembers("a")
	}
}
