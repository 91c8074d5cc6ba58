package sfere

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
)

// line numbers broadcast in recovery tests: <p>N</p>.
// heldEvents counts the events h holds: the expiry timer drops them.
func heldEvents(h *history) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.top + 1 - h.firstLocked()
}

func numbered(n int) Effect { return AppendElements("#m", fmt.Sprintf("<p>%d</p>", n)) }

// elementsUntil waits for the event containing end on c and returns the
// elements patched before it, in order.
func elementsUntil(t *testing.T, c *ssetest.Client, end string) []string {
	t.Helper()
	last := c.Wait(waitLong, ssetest.Containing(end))
	var got []string
	for _, e := range c.Events()[:last.Seq] {
		for _, d := range e.Data {
			if p, ok := strings.CutPrefix(d, "elements "); ok {
				got = append(got, p)
			}
		}
	}
	return got
}

// The recovery table: what a stream that opens with a position gets, on
// both sinks. A recovered stream gets exactly the events it missed, in
// order, instead of the initial effects; one that cannot be recovered
// gets the initial effects and nothing of the history.
func TestRecovery(t *testing.T) {
	type setup func(t *testing.T, hub *Hub) (from string)
	mark := func(t *testing.T, hub *Hub) string { return hub.Position().String() }
	broadcast := func(t *testing.T, hub *Hub, ns ...int) {
		for _, n := range ns {
			if _, err := hub.Broadcast(All, nil, numbered(n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name      string
		history   HistoryOptions
		setup     setup
		want      []string // elements before the live marker
		recovered bool
		err       error
	}{
		{"no position", HistoryOptions{Size: 8}, func(t *testing.T, hub *Hub) string {
			broadcast(t, hub, 1)
			return ""
		}, []string{"<p>initial</p>"}, false, nil},
		{"empty history", HistoryOptions{Size: 8}, mark, nil, true, nil},
		{"missed events in order", HistoryOptions{Size: 8}, func(t *testing.T, hub *Hub) string {
			broadcast(t, hub, 1)
			from := mark(t, hub)
			broadcast(t, hub, 2, 3, 4)
			return from
		}, []string{"<p>2</p>", "<p>3</p>", "<p>4</p>"}, true, nil},
		{"position evicted by size", HistoryOptions{Size: 4}, func(t *testing.T, hub *Hub) string {
			from := mark(t, hub)
			broadcast(t, hub, 1, 2, 3, 4, 5)
			return from
		}, []string{"<p>initial</p>"}, false, ErrPositionGone},
		{"position evicted by age", HistoryOptions{Size: 8, MaxAge: 50 * time.Millisecond}, func(t *testing.T, hub *Hub) string {
			from := mark(t, hub)
			broadcast(t, hub, 1)
			ssetest.Eventually(t, waitLong, "the event aged out", func() bool { return heldEvents(hub.hist) == 0 })
			return from
		}, []string{"<p>initial</p>"}, false, ErrPositionGone},
		{"position ahead of the top", HistoryOptions{Size: 8}, func(t *testing.T, hub *Hub) string {
			broadcast(t, hub, 1)
			p := hub.Position()
			p.Offset += 5
			return p.String()
		}, []string{"<p>initial</p>"}, false, ErrPositionAhead},
		{"wrong epoch", HistoryOptions{Size: 8}, func(t *testing.T, hub *Hub) string {
			broadcast(t, hub, 1)
			return "0123456789abcdef-0"
		}, []string{"<p>initial</p>"}, false, ErrPositionUnknown},
		{"malformed position", HistoryOptions{Size: 8}, func(*testing.T, *Hub) string { return "nonsense" },
			[]string{"<p>initial</p>"}, false, ErrPositionUnknown},
		{"replay limit exceeded", HistoryOptions{Size: 8, MaxReplay: 3}, func(t *testing.T, hub *Hub) string {
			from := mark(t, hub)
			broadcast(t, hub, 1, 2, 3, 4)
			return from
		}, []string{"<p>initial</p>"}, false, ErrReplayLimit},
		{"replay at the limit", HistoryOptions{Size: 8, MaxReplay: 3}, func(t *testing.T, hub *Hub) string {
			from := mark(t, hub)
			broadcast(t, hub, 1, 2, 3)
			return from
		}, []string{"<p>1</p>", "<p>2</p>", "<p>3</p>"}, true, nil},
		{"excluded key", HistoryOptions{Size: 8}, func(t *testing.T, hub *Hub) string {
			from := mark(t, hub)
			hub.Broadcast(All, Keys(lobbyKey("brian")), numbered(1))
			hub.Broadcast(All, InCategory("lobby"), numbered(2)) // a pattern excluding all of lobby
			broadcast(t, hub, 3)
			return from
		}, []string{"<p>3</p>"}, true, nil},
		{"pattern that does not match", HistoryOptions{Size: 8}, func(t *testing.T, hub *Hub) string {
			from := mark(t, hub)
			hub.Broadcast(lobbyKey("phil").Pattern(), nil, numbered(1))
			hub.Broadcast(InCategory("game"), nil, numbered(2))
			hub.Broadcast(lobbyKey("brian").Pattern(), nil, numbered(3))
			return from
		}, []string{"<p>3</p>"}, true, nil},
		{"targeted sends", HistoryOptions{Size: 8}, func(t *testing.T, hub *Hub) string {
			from := mark(t, hub)
			if _, err := hub.Send(lobbyKey("brian"), numbered(1)); !errors.Is(err, ErrNoStream) {
				t.Fatalf("send to a key with no stream: %v", err)
			}
			hub.Send(lobbyKey("phil"), numbered(2))
			broadcast(t, hub, 3)
			return from
		}, []string{"<p>1</p>", "<p>3</p>"}, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bothPaths(t, func(t *testing.T, noHijack bool) {
				hub, _ := newMemoryHub(t, HubOptions{NoHijack: noHijack, History: tc.history})
				srv := testServer(t, hub, AppendElements("#m", "<p>initial</p>"))
				from := tc.setup(t, hub)
				id := "brian"
				if from != "" {
					id += "&lastEventID=" + url.QueryEscape(from)
				}
				c := dial(t, srv, id)
				ssetest.Eventually(t, waitLong, "stream", func() bool { return hub.Count(lobbyKey("brian").Pattern()) == 1 })
				if _, err := hub.Broadcast(All, nil, AppendElements("#m", "<p>live</p>")); err != nil {
					t.Fatal(err)
				}
				got := elementsUntil(t, c, "<p>live</p>")
				if strings.Join(got, " ") != strings.Join(tc.want, " ") {
					t.Fatalf("before the live event got %q, want %q", got, tc.want)
				}
				s, _ := hub.Store().Get(lobbyKey("brian"))
				rec := s.Recovery()
				if rec.Recovered != tc.recovered || !errors.Is(rec.Err, tc.err) || (tc.err == nil) != (rec.Err == nil) {
					t.Fatalf("recovery = %+v, want recovered %v, err %v", rec, tc.recovered, tc.err)
				}
				if rec.Recovered && rec.Replayed != len(tc.want) {
					t.Fatalf("recovery = %+v, want %d replayed", rec, len(tc.want))
				}
			})
		})
	}
}

// The Last-Event-ID header, as a reconnecting EventSource or Datastar
// client sends it, resumes like the query parameter.
func TestRecoveryFromHeader(t *testing.T) {
	hub, _ := newMemoryHub(t, HubOptions{History: HistoryOptions{Size: 8}})
	srv := testServer(t, hub, AppendElements("#m", "<p>initial</p>"))
	from := hub.Position()
	hub.Broadcast(All, nil, numbered(1))
	req, _ := http.NewRequest("POST", srv.URL+"/sse?id=brian", nil)
	req.Header.Set("Last-Event-ID", from.String())
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	c := ssetest.FromResponse(t, resp)
	e := c.Wait(waitLong, ssetest.Containing("<p>1</p>"))
	want := Position{Epoch: from.Epoch, Offset: from.Offset + 1}.String()
	if e.Seq != 0 || e.ID != want {
		t.Fatalf("first event %v (#%d), want the replayed event with id %q and no initial effects", e, e.Seq, want)
	}
}

// Every event carries its position; broadcasts racing a reconnect reach
// the stream exactly once and in order across its two connections.
func TestReplayRacingBroadcasts(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, _ := newMemoryHub(t, HubOptions{NoHijack: noHijack, History: HistoryOptions{Size: 4096}})
		srv := testServer(t, hub)
		const total = 600
		var wg sync.WaitGroup
		wg.Add(1)
		started := make(chan struct{})
		go func() {
			defer wg.Done()
			for n := 1; n <= total; n++ {
				hub.Broadcast(All, nil, numbered(n))
				if n == 50 {
					close(started)
				}
				if n%50 == 0 {
					time.Sleep(time.Millisecond) // let the streams read
				}
			}
		}()
		defer wg.Wait()

		// The first connection reads a while, then breaks; what it got
		// ends with the last id it saw.
		first := dial(t, srv, "brian")
		<-started
		numbers := func(c *ssetest.Client) (ns []int, lastID string) {
			for _, e := range c.Events() {
				for _, d := range e.Data {
					if p, ok := strings.CutPrefix(d, "elements <p>"); ok {
						n, _ := strconv.Atoi(strings.TrimSuffix(p, "</p>"))
						ns = append(ns, n)
					}
				}
				if e.HasID {
					lastID = e.ID
				}
			}
			return ns, lastID
		}
		ssetest.Eventually(t, waitLong, "100 events", func() bool { ns, _ := numbers(first); return len(ns) >= 100 })
		first.Close()
		<-first.Done()
		seen, lastID := numbers(first)
		// Each event here is one message whose id comes with its data, so
		// everything seen is covered by lastID. Reconnect mid-storm.
		second := dial(t, srv, "brian&lastEventID="+url.QueryEscape(lastID))
		wg.Wait()
		hub.Broadcast(All, nil, AppendElements("#m", "<p>end</p>"))
		for _, p := range elementsUntil(t, second, "<p>end</p>") {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(p, "<p>"), "</p>"))
			seen = append(seen, n)
		}
		for i, n := range seen {
			if n != seen[0]+i {
				t.Fatalf("event %d is %d: want contiguous, exactly once, in order (from %d)", i, n, seen[0])
			}
		}
		if seen[len(seen)-1] != total {
			t.Fatalf("last event %d, want %d", seen[len(seen)-1], total)
		}
	})
}

// Replaying k missed events from a full 10,000-event history: the cost
// grows with k, not with the history's size, and allocates nothing per
// event (dst is reused, as a stream's queue is).
func BenchmarkReplay(b *testing.B) {
	hub := NewHub(NewMemoryStore(MemoryOptions{}), HubOptions{History: HistoryOptions{Size: 10_000}})
	for n := range 10_000 {
		hub.Broadcast(All, nil, numbered(n))
	}
	top := hub.Position()
	for _, k := range []int{5, 100, 1_000} {
		b.Run(fmt.Sprint(k), func(b *testing.B) {
			from := Position{Epoch: top.Epoch, Offset: top.Offset - uint64(k)}
			var dst []*message
			b.ReportAllocs()
			for b.Loop() {
				hub.hist.mu.Lock()
				var err error
				dst, err = hub.hist.replayLocked(dst[:0], from, lobbyKey("brian"), time.Now())
				hub.hist.mu.Unlock()
				if err != nil || len(dst) != k {
					b.Fatalf("replayed %d: %v", len(dst), err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*k), "ns/event")
		})
	}
}

// BenchmarkFanout with a history: each broadcast also takes a position
// (one copy of the message with its id) and is kept.
func BenchmarkFanoutWithHistory(b *testing.B) {
	benchFanout(b, HubOptions{History: HistoryOptions{Size: 1_000}})
}

// With HubOptions.Retry each stream's opening tells its client to wait
// Retry plus a random share of it before reconnecting: clients of one
// restart spread out.
func TestOpeningSendsJitteredRetry(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		const base = time.Second
		hub, _ := newMemoryHub(t, HubOptions{NoHijack: noHijack, Retry: base, History: HistoryOptions{Size: 8}})
		srv := testServer(t, hub, AppendElements("#m", "<p>initial</p>"))
		hasRetry := ssetest.Where("with a retry field", func(e ssetest.Event) bool { return e.HasRetry })
		seen := map[int]bool{}
		for i := range 12 {
			c := dial(t, srv, fmt.Sprint("p", i))
			e := c.Wait(waitLong, hasRetry)
			if e.Retry < base || e.Retry >= 2*base {
				t.Fatalf("retry %v, want %v plus less than %v", e.Retry, base, base)
			}
			c.Wait(waitLong, ssetest.Containing("<p>initial</p>"))
			seen[int(e.Retry.Milliseconds())] = true
		}
		if len(seen) < 2 {
			t.Fatalf("12 streams were all told %v: no jitter", seen)
		}
		// A stream that resumes is told too.
		c := dial(t, srv, "resumed&lastEventID="+url.QueryEscape(hub.Position().String()))
		c.Wait(waitLong, hasRetry)
	})
}

// A hub whose history copies a shared log applies the log's positions:
// duplicates are ignored, a gap makes earlier positions unservable, and a
// new epoch makes the old one's unknown.
func TestBroadcastAtFollowsTheLog(t *testing.T) {
	hub, _ := newMemoryHub(t, HubOptions{History: HistoryOptions{Size: 8, Epoch: "e1"}})
	srv := testServer(t, hub, AppendElements("#m", "<p>initial</p>"))
	at := func(epoch string, off uint64, n int) {
		t.Helper()
		if _, err := hub.BroadcastAt(Position{Epoch: epoch, Offset: off}, All, nil, numbered(n)); err != nil {
			t.Fatal(err)
		}
	}
	resume := func(name, from string) (*ssetest.Client, Recovery) {
		t.Helper()
		c := dial(t, srv, name+"&lastEventID="+url.QueryEscape(from))
		ssetest.Eventually(t, waitLong, "stream", func() bool { return hub.Count(lobbyKey(name).Pattern()) == 1 })
		s, _ := hub.Store().Get(lobbyKey(name))
		return c, s.Recovery()
	}
	at("e1", 1, 1)
	at("e1", 2, 2)
	at("e1", 2, 99) // applied already: ignored
	at("e1", 5, 5)  // 3 and 4 never came: a gap
	if _, rec := resume("gap", "e1-2"); !errors.Is(rec.Err, ErrPositionGone) {
		t.Fatalf("resume across the gap: %+v, want ErrPositionGone", rec)
	}
	c, rec := resume("after", "e1-4")
	if !rec.Recovered || rec.Replayed != 1 {
		t.Fatalf("resume after the gap: %+v, want 1 replayed", rec)
	}
	at("e2", 1, 6) // the log was made anew
	if got := elementsUntil(t, c, "<p>6</p>"); strings.Join(got, " ") != "<p>5</p>" {
		t.Fatalf("resumed stream got %q before 6, want 5 only (never 99)", got)
	}
	if _, rec := resume("old", "e1-5"); !errors.Is(rec.Err, ErrPositionUnknown) {
		t.Fatalf("resume in the old epoch: %+v, want ErrPositionUnknown", rec)
	}
	if hub.Position() != (Position{Epoch: "e2", Offset: 1}) {
		t.Fatalf("position %v, want e2-1", hub.Position())
	}
	// A log made anew before its first event: the hub forgets at once.
	if err := hub.ResetHistory("e3"); err != nil {
		t.Fatal(err)
	}
	if _, rec := resume("reset", "e2-1"); !errors.Is(rec.Err, ErrPositionUnknown) {
		t.Fatalf("resume after a reset: %+v, want ErrPositionUnknown", rec)
	}
	if _, rec := resume("fresh", "e3-0"); !rec.Recovered {
		t.Fatalf("resume at the new log's start: %+v, want recovered", rec)
	}
	if _, err := hub.Broadcast(All, nil, numbered(7)); err != nil {
		t.Fatal(err)
	}
	if hub.Position() != (Position{Epoch: "e3", Offset: 0}) {
		t.Fatalf("a local broadcast moved the shared position to %v", hub.Position())
	}
}

// Positions come from clients (Last-Event-ID): any text either parses to a
// position whose text form parses back to it, or is refused.
func FuzzParsePosition(f *testing.F) {
	for _, s := range []string{"", "-", "abc-1", "0123456789abcdef-18446744073709551615", "a-b-3", "e--1", "x-01", "x-+1", " x-1", "x-1 ", "-5", "e-5.1", "e-5.0", "e-5.", "e-.1", "e-5.-1", "e-5.1.2", "e.1-5.2", "e-5.1073741825"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePosition(s)
		if err != nil {
			return
		}
		if p.Epoch == "" {
			t.Fatalf("%q parsed to an empty epoch", s)
		}
		q, err := ParsePosition(p.String())
		if err != nil || q != p {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, p, p.String(), q, err)
		}
	})
}

// flipMatcher excludes nothing until it is flipped, then everything: an
// app's exclusion that changes after its broadcast (a set it reuses).
type flipMatcher struct{ flipped *atomic.Bool }

func (m flipMatcher) Match(Key) bool { return m.flipped.Load() }

// An event queued live to a resuming stream while it was being stored
// (here, by an OnOpen hook) reaches it exactly once, in position order
// with the replay, even though the broadcast's exclusion no longer lets
// the replay see it.
func TestRecoveryKeepsWhatWasQueuedLive(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		var (
			hub     *Hub
			flipped atomic.Bool
		)
		hub, _ = newMemoryHub(t, HubOptions{NoHijack: noHijack, History: HistoryOptions{Size: 8}, OnOpen: func(s *Stream) {
			if s.Key() == lobbyKey("brian") {
				hub.Broadcast(All, flipMatcher{&flipped}, AppendElements("#m", "<p>hello</p>"))
				flipped.Store(true)
			}
		}})
		srv := testServer(t, hub, AppendElements("#m", "<p>initial</p>"))
		from := hub.Position()
		hub.Broadcast(All, nil, numbered(1))
		c := dial(t, srv, "brian&lastEventID="+url.QueryEscape(from.String()))
		// Once OnOpen ran (the stream is stored before it runs).
		ssetest.Eventually(t, waitLong, "OnOpen", flipped.Load)
		hub.Broadcast(All, nil, AppendElements("#m", "<p>live</p>"))
		if got := elementsUntil(t, c, "<p>live</p>"); strings.Join(got, " ") != "<p>1</p> <p>hello</p>" {
			t.Fatalf("before the live event got %q, want 1 (replayed) then hello (queued live), once each", got)
		}
		s, _ := hub.Store().Get(lobbyKey("brian"))
		if rec := s.Recovery(); !rec.Recovered || rec.Replayed != 1 {
			t.Fatalf("recovery = %+v, want recovered with 1 replayed", rec)
		}
	})
}

// Heartbeats are comments: they carry no id and take no place in the
// history, so they never push a missed event out of it.
func TestHeartbeatTakesNoPosition(t *testing.T) {
	hub, _ := newMemoryHub(t, HubOptions{History: HistoryOptions{Size: 8}})
	srv := testServer(t, hub, AppendElements("#m", "<p>initial</p>"))
	c := dial(t, srv, "brian")
	c.Wait(waitLong, ssetest.Containing("<p>initial</p>"))
	hub.Broadcast(All, nil, numbered(1))
	before := hub.Position()
	hb := NewHeartbeat(hub, All, time.Hour)
	for range 3 {
		hb.Beat()
	}
	e := c.Wait(waitLong, ssetest.CommentIs("heartbeat"))
	if e.HasID {
		t.Fatalf("a heartbeat carries id %q", e.ID)
	}
	if after := hub.Position(); after != before {
		t.Fatalf("three heartbeats moved the history from %v to %v", before, after)
	}
}

// An exclusion the app changes after a broadcast (a KeySet it keeps
// filling, as package presence does) never brings a resuming stream an
// event it was excluded from live; the replay covers only what came before
// the stream was stored, and the stream gets every event once.
func TestReplayIgnoresExclusionsChangedLater(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		var hub *Hub
		hub, _ = newMemoryHub(t, HubOptions{NoHijack: noHijack, History: HistoryOptions{Size: 64}, OnOpen: func(s *Stream) {
			ex := KeySet{s.Key(): {}}
			hub.Broadcast(All, ex, AppendElements("#m", "<p>not for the newcomer</p>"))
			delete(ex, s.Key())
			hub.Send(s.Key(), AppendElements("#m", "<p>for the newcomer</p>"))
		}})
		srv := testServer(t, hub)
		hub.Broadcast(All, nil, numbered(1))
		from := hub.Position()
		hub.Broadcast(All, nil, numbered(2))
		c := dial(t, srv, "brian&lastEventID="+url.QueryEscape(from.String()))
		c.Wait(waitLong, ssetest.Containing("<p>for the newcomer</p>"))
		hub.Broadcast(All, nil, numbered(3))
		c.Wait(waitLong, ssetest.Containing("<p>3</p>"))
		var got []string
		for _, e := range c.Events() {
			for _, d := range e.Data {
				if p, ok := strings.CutPrefix(d, "elements "); ok {
					got = append(got, p)
				}
			}
		}
		want := []string{"<p>2</p>", "<p>for the newcomer</p>", "<p>3</p>"}
		if !slices.Equal(got, want) {
			t.Fatalf("the resumed stream got %q, want %q", got, want)
		}
	})
}

// A Last-Event-ID header that carries two positions (the page's own and
// the one the client added on a retry, joined by fetch) resumes from the
// last.
func TestLastEventIDWithTwoPositions(t *testing.T) {
	hub, _ := newMemoryHub(t, HubOptions{History: HistoryOptions{Size: 8}})
	srv := testServer(t, hub, AppendElements("#m", "<p>initial</p>"))
	page := hub.Position()
	hub.Broadcast(All, nil, numbered(1))
	last := hub.Position()
	hub.Broadcast(All, nil, numbered(2))
	req, _ := http.NewRequest("POST", srv.URL+"/sse?id=brian", nil)
	req.Header.Set("Last-Event-ID", page.String()+", "+last.String())
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	c := ssetest.FromResponse(t, resp)
	e := c.Wait(waitLong, ssetest.Containing("<p>2</p>"))
	if _, dup := c.Find(ssetest.Containing("<p>1</p>")); dup || e.Seq != 0 {
		t.Fatalf("resumed from the first position, not the last:\n%v", c.Events())
	}
}
