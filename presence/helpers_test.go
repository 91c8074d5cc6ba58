package presence_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/presence"
)

const (
	room     = "room"
	waitLong = 5 * time.Second
)

// render writes presence as two kinds of element the tests parse back:
// a snapshot (every member) and a diff (joins and leaves).
func renderSnapshot(ms []presence.Member) []sfere.Effect {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return []sfere.Effect{sfere.PatchElements(`<p id="snapshot" data-ids="` + strings.Join(ids, ",") + `"></p>`)}
}

func renderDiff(d presence.Diff) []sfere.Effect {
	joins := make([]string, len(d.Joins))
	var back []string
	for i, m := range d.Joins {
		joins[i] = m.ID
		if m.Back {
			back = append(back, m.ID)
		}
	}
	leaves := make([]string, len(d.Leaves))
	for i, l := range d.Leaves {
		leaves[i] = l.ID + ":" + l.Reason.String()
	}
	return []sfere.Effect{sfere.PatchElements(`<p id="diff" data-joins="` + strings.Join(joins, ",") +
		`" data-leaves="` + strings.Join(leaves, ",") + `" data-back="` + strings.Join(back, ",") + `"></p>`)}
}

// rig is a hub, a tracker and an HTTP server with two routes:
// POST /claim?owner=&id= and POST /sse?owner=.
type rig struct {
	t       testing.TB
	hub     *sfere.Hub
	tracker *presence.Tracker
	srv     *httptest.Server
	url     string

	clock   *presence.FakeClock // nil: the person timers run on the real clock
	markers int                 // markers sent (settle)

	mu    sync.Mutex
	diffs []presence.Diff // every batch, as OnDiff saw it
}

// newRigClock is newRig with a fake clock for the person timers (claim
// timeout, grace, resume window): they fire only when r.clock advances.
func newRigClock(t testing.TB, opts presence.Options) *rig {
	t.Helper()
	r := newRig(t, opts)
	r.clock = presence.UseFakeClock(r.tracker)
	return r
}

// waitState waits until the tracker holds person id in state, with
// streams of its streams on this node.
func (r *rig) waitState(id, state string, streams int) {
	r.t.Helper()
	ssetest.Eventually(r.t, waitLong, id+" "+state, func() bool {
		s, n := presence.PersonState(r.tracker, id)
		return s == state && n == streams
	})
}

// checkState checks that the tracker holds person id in state now.
func (r *rig) checkState(id, state string) {
	r.t.Helper()
	if s, _ := presence.PersonState(r.tracker, id); s != state {
		r.t.Errorf("%s is %s, want %s", id, s, state)
	}
}

// settle sends the pending batch, then a marker to every stream of the
// room, and waits until each of tabs read it: each has read all the
// tracker sent it so far.
func (r *rig) settle(tabs ...*tab) {
	r.t.Helper()
	presence.Flush(r.tracker)
	r.markers++
	marker := fmt.Sprintf(`<p id="marker-%d"></p>`, r.markers)
	if _, err := r.hub.Broadcast(presence.Everyone(room), nil, sfere.PatchElements(marker)); err != nil {
		r.t.Fatal(err)
	}
	for _, tb := range tabs {
		tb.waitFor(marker)
	}
}

func newRig(t testing.TB, opts presence.Options) *rig {
	t.Helper()
	return newRigUserTimeout(t, opts, 0)
}

// newRigUserTimeout is newRig with TCP_USER_TIMEOUT on the listener, so
// that a vanished client is found.
func newRigUserTimeout(t testing.TB, opts presence.Options, userTimeout time.Duration) *rig {
	t.Helper()
	return newRigHub(t, sfere.HubOptions{}, opts, userTimeout)
}

// newRigHub is newRigUserTimeout with the hub's options.
func newRigHub(t testing.TB, hubOpts sfere.HubOptions, opts presence.Options, userTimeout time.Duration) *rig {
	t.Helper()
	r := &rig{t: t}
	r.hub = sfere.NewHub(sfere.NewMemoryStore(sfere.MemoryOptions{}), hubOpts)
	opts.Room = room
	if opts.Snapshot == nil {
		opts.Snapshot = renderSnapshot
	}
	if opts.Diff == nil {
		opts.Diff = renderDiff
	}
	opts.OnDiff = func(d presence.Diff) {
		r.mu.Lock()
		r.diffs = append(r.diffs, d)
		r.mu.Unlock()
	}
	tr, err := presence.New(r.hub, opts)
	if err != nil {
		t.Fatal(err)
	}
	r.tracker = tr
	mux := http.NewServeMux()
	mux.HandleFunc("POST /claim", func(w http.ResponseWriter, q *http.Request) {
		if _, err := tr.Claim(q.Context(), presence.Claim{Person: q.URL.Query().Get("id"), Owner: q.URL.Query().Get("owner")}); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
		}
	})
	mux.HandleFunc("POST /leave", func(w http.ResponseWriter, q *http.Request) {
		if _, err := tr.Leave(q.Context(), q.URL.Query().Get("owner")); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
		}
	})
	mux.HandleFunc("POST /sse", func(w http.ResponseWriter, q *http.Request) {
		if _, err := tr.Detach(w, q, q.URL.Query().Get("owner")); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
		}
	})
	r.srv = httptest.NewUnstartedServer(mux)
	r.srv.Config.ConnContext = sfere.ConnContext
	if userTimeout > 0 {
		ln, err := sfere.Listen(context.Background(), "tcp", "127.0.0.1:0", sfere.ListenOptions{UserTimeout: userTimeout})
		if err != nil {
			t.Fatal(err)
		}
		r.srv.Listener.Close()
		r.srv.Listener = ln
	}
	r.srv.Start()
	r.url = r.srv.URL
	t.Cleanup(func() {
		tr.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.hub.Shutdown(ctx); err != nil {
			t.Errorf("hub shutdown: %v", err)
		}
		r.srv.Close()
	})
	return r
}

func (r *rig) post(path string) int {
	r.t.Helper()
	resp, err := http.Post(r.url+path, "application/json", nil)
	if err != nil {
		r.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (r *rig) claim(id, owner string) {
	r.t.Helper()
	if st := r.post("/claim?id=" + id + "&owner=" + owner); st != http.StatusOK {
		r.t.Fatalf("claim %s for %s: status %d", id, owner, st)
	}
}

// ping writes a comment to every stream of the room.
func (r *rig) ping() {
	_, _ = r.hub.Broadcast(presence.Everyone(room), nil, sfere.Comment("ping"))
}

// lastLeave returns the last departure of id in the batches.
func (r *rig) lastLeave(id string) presence.Departure {
	var d presence.Departure
	for _, b := range r.batches() {
		for _, l := range b.Leaves {
			if l.ID == id {
				d = l
			}
		}
	}
	return d
}

// batches returns the batches sent so far.
func (r *rig) batches() []presence.Diff {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]presence.Diff(nil), r.diffs...)
}

// tab is one stream of a person, read over raw TCP by the test kit.
type tab struct {
	t testing.TB
	*ssetest.Client
}

// open opens a stream of owner's person and waits for its snapshot.
func (r *rig) open(owner string) *tab {
	r.t.Helper()
	tb := r.openNoWait(owner)
	tb.waitFor(`id="snapshot"`) // every stream starts with one; changes after it come as diffs
	return tb
}

// openNoWait opens a stream of owner's person.
func (r *rig) openNoWait(owner string) *tab {
	r.t.Helper()
	c := ssetest.Open(r.t, r.srv.Listener.Addr().String(), ssetest.Request{Method: http.MethodPost, Target: "/sse?owner=" + owner})
	if st := c.WaitHead(waitLong).StatusCode; st != http.StatusOK {
		r.t.Fatalf("open stream of %s: status %d", owner, st)
	}
	return &tab{t: r.t, Client: c}
}

// waitFor waits until an event containing text arrived, anywhere in the
// stream, and returns its elements.
func (tb *tab) waitFor(text string) string {
	tb.t.Helper()
	e := tb.WaitSeen(waitLong, ssetest.Containing(text))
	return elements(e)
}

// waitList waits until the list the stream shows (its snapshot, then each
// diff: departures removed, arrivals appended) is want, in that order.
func (tb *tab) waitList(want ...string) {
	tb.t.Helper()
	w := strings.Join(want, ",")
	var got string
	ssetest.Eventually(tb.t, waitLong, "the list "+w, func() bool {
		got = strings.Join(shownList(tb.all()), ",")
		return got == w
	})
}

// waitMembers waits until the list the stream shows holds exactly want,
// in any order. A stream's own person is in its snapshot or arrives in a
// diff after it, depending on which batch recorded the stream first, so a
// test counts the list, never the arrivals.
func (tb *tab) waitMembers(want ...string) {
	tb.t.Helper()
	w := strings.Join(slices.Sorted(slices.Values(want)), ",")
	ssetest.Eventually(tb.t, waitLong, "the members "+w, func() bool {
		got := shownList(tb.all())
		slices.Sort(got)
		return strings.Join(got, ",") == w
	})
}

// shownList is the list a stream shows after the element patches events:
// its snapshot, then each diff's departures removed and arrivals
// appended.
func shownList(events []string) []string {
	var list []string
	for _, e := range events {
		if m := idsAttr.FindStringSubmatch(e); m != nil {
			list = split(m[1])
			continue
		}
		if m := leavesAttr.FindStringSubmatch(e); m != nil {
			for _, l := range split(m[1]) {
				id, _, _ := strings.Cut(l, ":")
				list = slices.DeleteFunc(list, func(x string) bool { return x == id })
			}
		}
		if m := joinsAttr.FindStringSubmatch(e); m != nil {
			list = append(list, split(m[1])...)
		}
	}
	return list
}

// elements is what an element patch carries, its data lines without
// "elements " run together; "" for any other event.
func elements(e ssetest.Event) string {
	var s string
	for _, d := range e.Data {
		if el, ok := strings.CutPrefix(d, "elements "); ok {
			s += el
		}
	}
	return s
}

// all returns the elements of every element patch received so far.
func (tb *tab) all() []string {
	var out []string
	for _, e := range tb.Events() {
		if el := elements(e); el != "" {
			out = append(out, el)
		}
	}
	return out
}

func (tb *tab) count(text string) int {
	n := 0
	for _, e := range tb.all() {
		n += strings.Count(e, text)
	}
	return n
}

// waitEnd waits for the server to end the stream.
func (tb *tab) waitEnd() {
	tb.t.Helper()
	tb.WaitEnd(waitLong)
}
