package presence_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/presence"
)

// historyRig is a tracker on a hub that keeps a history (and no cluster:
// a replay holds the room's state), served over real TCP: POST /claim?owner=&id= and
// POST /sse?owner=, whose opening (the initial effects, sent when the
// stream does not recover) carries a position, as a page's does.
type historyRig struct {
	t       *testing.T
	hub     *sfere.Hub
	tracker *presence.Tracker
	addr    string
	// onOpen, if set, runs as each stream is stored, its opening decided,
	// before the tracker records it (the hub's OnOpen).
	onOpen atomic.Pointer[func(*sfere.Stream)]
}

func newHistoryRig(t *testing.T, window time.Duration) *historyRig {
	t.Helper()
	r := &historyRig{t: t}
	hub := sfere.NewHub(sfere.NewMemoryStore(sfere.MemoryOptions{}), sfere.HubOptions{
		History: sfere.HistoryOptions{Size: 100},
		OnOpen: func(s *sfere.Stream) {
			if f := r.onOpen.Load(); f != nil {
				(*f)(s)
			}
		},
	})
	tr, err := presence.New(hub, presence.Options{
		Room: room, Window: window, Snapshot: renderSnapshot, Diff: renderDiff,
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
	r.hub, r.tracker, r.addr = hub, tr, srv.Listener.Addr().String()
	return r
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

// On a hub with a history, a stream whose position cannot be served (one of
// an earlier run) gets the snapshot in its opening, not with the next
// batch: a page that breaks right after its opening resumes from the
// opening's position with the list that belongs to it, is replayed
// nothing it already shows, and gets no second snapshot.
func TestSnapshotComesWithTheOpening(t *testing.T) {
	r := newHistoryRig(t, time.Minute) // a batch after the first waits for the window (or Flush)
	r.claim("a", "oa")
	a := r.open("oa", "")
	a.waitFor(`data-joins="a"`) // the first change after a quiet spell goes out at once

	r.claim("b", "ob")
	b := r.open("ob", "0000000000000000-7")
	b.waitFor(`id="opening"`)
	// Within the window: b's arrival waits for the next batch, and b's
	// snapshot must not.
	if got := b.waitFor(`id="snapshot"`); !strings.Contains(got, `data-ids="a"`) {
		t.Fatalf("snapshot %s, want a alone", got)
	}
	pos := lastID(b)
	if pos == "" {
		t.Fatalf("the opening carried no position: %v", b.Events())
	}
	b.Close()
	b2 := r.open("ob", pos)
	presence.Flush(r.tracker) // the held batch: b's arrival
	b2.waitFor(`data-joins="b"`)
	a.waitMembers("a", "b")
	if n := b2.count(`id="snapshot"`) + b2.count(`id="opening"`); n != 0 {
		t.Errorf("the resume from the opening's position was not recovered, or got a second list: %v", b2.Events())
	}
	if got := strings.Join(shownList(append(b.all(), b2.all()...)), ","); got != "a,b" {
		t.Errorf("the page shows %q, want a,b", got)
	}
}

// A newcomer's stream (it holds no list, and asks for no position the
// server could not serve) gets its snapshot with the next batch. If it
// breaks before that batch, its page resumes from its opening's position
// with no list: the person's stream that recovers then gets a snapshot
// with the batch all the same, so the page ends with the whole list.
func TestResumeBeforeTheFirstSnapshotGetsOne(t *testing.T) {
	r := newHistoryRig(t, time.Minute)
	r.claim("a", "oa")
	a := r.open("oa", "")
	a.waitFor(`data-joins="a"`)

	r.claim("b", "ob")
	b := r.open("ob", "")
	b.waitFor(`id="opening"`)
	pos := lastID(b)
	if pos == "" {
		t.Fatalf("the opening carried no position: %v", b.Events())
	}
	b.Close()
	// The tracker records the end before b2 opens (b stays, within its
	// grace period).
	ssetest.Eventually(t, waitLong, "b's first stream ended", func() bool {
		_, n := presence.PersonState(r.tracker, "b")
		return n == 0
	})
	b2 := r.open("ob", pos)
	b2.WaitHead(waitLong)
	ssetest.Eventually(t, waitLong, "b's second stream stored", func() bool {
		return r.hub.Count(presence.StreamsOf(room, "b")) == 1
	})
	presence.Flush(r.tracker) // the held batch: a snapshot for b2, b's arrival
	b2.waitFor(`data-joins="b"`)
	a.waitMembers("a", "b")
	if got := strings.Join(shownList(append(b.all(), b2.all()...)), ","); got != "a,b" {
		t.Errorf("the page shows %q, want a,b: %v %v", got, b.Events(), b2.Events())
	}
}

// A batch sent while a stream whose position cannot be served is on its
// way in (stored, its opening decided, not yet recorded by the tracker)
// does not reach it: its snapshot, which comes in its opening, holds the
// batch. Sent to it before the snapshot, the batch would announce to the
// page, on its old list, what the snapshot shows (the single-node
// campaign's doubled "joined" after a restart).
func TestBatchWhileAFailedRecoveryOpensIsInItsSnapshot(t *testing.T) {
	r := newHistoryRig(t, time.Minute)
	r.claim("a", "oa")
	a := r.open("oa", "")
	a.waitFor(`data-joins="a"`)
	r.claim("c", "oc")
	r.open("oc", "")
	ssetest.Eventually(t, waitLong, "c's stream recorded", func() bool {
		_, n := presence.PersonState(r.tracker, "c")
		return n == 1
	}) // c's arrival waits in the held batch

	bs := presence.StreamsOf(room, "b")
	var once sync.Once
	hook := func(s *sfere.Stream) {
		if bs.Match(s.Key()) {
			once.Do(func() { presence.Flush(r.tracker) }) // c's arrival, as b comes in
		}
	}
	r.onOpen.Store(&hook)
	r.claim("b", "ob")
	b := r.open("ob", "0000000000000000-7") // a position of an earlier run
	a.waitFor(`data-joins="c"`)
	if got := b.waitFor(`id="snapshot"`); !strings.Contains(got, `data-ids="a,c"`) {
		t.Fatalf("snapshot %s, want a,c", got)
	}
	presence.Flush(r.tracker) // b's arrival
	a.waitFor(`data-joins="b"`)
	b.waitFor(`data-joins="b"`)
	if n := b.count(`data-joins="c"`); n != 0 {
		t.Errorf("b's page was sent c's arrival %d times besides its snapshot: %v", n, b.Events())
	}
}
