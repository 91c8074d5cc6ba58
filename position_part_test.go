package sfere

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/sfere-go/sfere/internal/ssetest"
)

// threeEvents is one broadcast the client receives as three SSE events,
// of both kinds Datastar has (one message cannot be one event: an element
// patch and a signal patch are two).
var threeEvents = []Effect{
	AppendElements("#m", "<p>a</p>"),
	PatchSignals([]byte(`{"b":1}`)),
	AppendElements("#m", "<p>c</p>"),
}

// applied returns what a page applies from c's record, in order: the
// elements patched and the signals patched (less the position signal),
// until the event that patches end.
func applied(t *testing.T, c *ssetest.Client, end string) []string {
	t.Helper()
	c.Wait(waitLong, ssetest.Containing(end))
	var got []string
	for _, e := range c.Events() {
		if m, ok := signalPatch(t, e); ok {
			if _, pos := m["_pos"]; !pos {
				got = append(got, e.Text())
			}
			continue
		}
		if text, ok := strings.CutPrefix(e.Text(), "selector #m\nmode append\nelements "); ok {
			if text == end {
				break
			}
			got = append(got, text)
		}
	}
	return got
}

// ids returns the ids c read, in order, from the event that patches from.
func ids(c *ssetest.Client, from string) []string {
	var got []string
	seen := false
	for _, e := range c.Events() {
		seen = seen || strings.Contains(e.Text(), from)
		if seen && e.HasID {
			got = append(got, e.ID)
		}
	}
	return got
}

// Every event of a message of several carries a position, so a client cut
// off between two of them (its connection broke after the first: it sends
// the id of the last event it read, as the Datastar client does) resumes
// exactly after it: it gets the events it had not read, never one twice.
// Plain, with a position signal (each event then followed by the signal's
// patch, which carries the id) and compressed (the rest of the message is
// not what the group compressed), on both stream paths.
func TestCutInsideAMessageResumesAfterIt(t *testing.T) {
	cases := []struct {
		name string
		opts HubOptions
		gzip bool
	}{
		{name: "plain", opts: HubOptions{History: HistoryOptions{Size: 16}}},
		{name: "position-signal", opts: HubOptions{History: HistoryOptions{Size: 16, PositionSignal: "_pos"}}},
		{name: "gzip", opts: HubOptions{History: HistoryOptions{Size: 16}, Compression: &CompressionOptions{}}, gzip: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bothPaths(t, func(t *testing.T, noHijack bool) {
				opts := tc.opts
				opts.NoHijack = noHijack
				hub, _ := newMemoryHub(t, opts)
				srv := testServer(t, hub, AppendElements("#m", "<p>initial</p>"))
				open := func(from string) *ssetest.Client {
					req := ssetest.DatastarPost("/sse?id=brian", "{}")
					var copts []ssetest.Option
					if tc.gzip {
						req.Header.Set("Accept-Encoding", "gzip")
						copts = append(copts, ssetest.Gunzip())
					}
					if from != "" {
						req.Header.Set("Last-Event-ID", from)
					}
					c := ssetest.Open(t, srv.Listener.Addr().String(), req, copts...)
					ssetest.Eventually(t, waitLong, "brian's stream", func() bool { return hub.Count(All) == 1 })
					return c
				}
				first := open("")
				first.Wait(waitLong, ssetest.Containing("<p>initial</p>"))
				if _, err := hub.Broadcast(All, nil, threeEvents...); err != nil {
					t.Fatal(err)
				}
				hub.Broadcast(All, nil, numbered(1))
				if got := applied(t, first, "<p>1</p>"); strings.Join(got, " ") != `<p>initial</p> <p>a</p> signals {"b":1} <p>c</p>` {
					t.Fatalf("first connection applied %q", got)
				}
				// With a position signal, <p>1</p>'s id comes on the patch after it.
				var cuts []string
				ssetest.Eventually(t, waitLong, "<p>1</p>'s id", func() bool { cuts = ids(first, "<p>a</p>"); return len(cuts) >= 4 })
				if len(cuts) != 4 { // three for the message, one for <p>1</p>
					t.Fatalf("ids from the message on: %q, want one per event", cuts)
				}
				first.Close()
				ssetest.Eventually(t, waitLong, "brian gone", func() bool { return hub.Count(All) == 0 })
				// Each resume is sent what it missed: the rest of the message,
				// then every broadcast since (a live one ends each wait).
				for i, want := range []struct {
					applied  string
					replayed int
				}{
					{`signals {"b":1} <p>c</p> <p>1</p>`, 2},
					{`<p>c</p> <p>1</p> <p>2</p>`, 3},
				} {
					p, err := ParsePosition(cuts[i])
					if err != nil || p.Part != i+1 {
						t.Fatalf("id %q of event %d: %+v, %v", cuts[i], i+1, p, err)
					}
					c := open(cuts[i])
					live := numbered(2 + i)
					hub.Broadcast(All, nil, live)
					if got := strings.Join(applied(t, c, live.Elements), " "); got != want.applied {
						t.Fatalf("cut after event %d (%s): resumed with %q, want %q", i+1, cuts[i], got, want.applied)
					}
					s, _ := hub.Store().Get(lobbyKey("brian"))
					if rec := s.Recovery(); !rec.Recovered || rec.Replayed != want.replayed {
						t.Fatalf("recovery = %+v, want recovered with %d replayed", rec, want.replayed)
					}
					c.Close()
					ssetest.Eventually(t, waitLong, "brian gone", func() bool { return hub.Count(All) == 0 })
				}
			})
		})
	}
}

// A position inside a message the history cannot serve is refused with a
// reason, never taken for the message's end: a part past the message's
// last event, a part of an event the history no longer holds.
func TestPartOfAMessageThatCannotBeServed(t *testing.T) {
	hub, _ := newMemoryHub(t, HubOptions{History: HistoryOptions{Size: 2}})
	srv := testServer(t, hub, AppendElements("#m", "<p>initial</p>"))
	hub.Broadcast(All, nil, threeEvents...)
	at := hub.Position()
	resume := func(name string, from Position) Recovery {
		t.Helper()
		req := ssetest.DatastarPost("/sse?id="+name, "{}")
		req.Header.Set("Last-Event-ID", from.String())
		ssetest.Open(t, srv.Listener.Addr().String(), req)
		ssetest.Eventually(t, waitLong, name+"'s stream", func() bool { return hub.Count(lobbyKey(name).Pattern()) == 1 })
		s, _ := hub.Store().Get(lobbyKey(name))
		return s.Recovery()
	}
	if rec := resume("past", Position{Epoch: at.Epoch, Offset: at.Offset, Part: 3}); !errors.Is(rec.Err, ErrPositionUnknown) {
		t.Fatalf("part 3 of a message of 3 events: %+v, want ErrPositionUnknown", rec)
	}
	if rec := resume("inside", Position{Epoch: at.Epoch, Offset: at.Offset, Part: 2}); !rec.Recovered || rec.Replayed != 1 {
		t.Fatalf("part 2 of 3: %+v, want the last event replayed", rec)
	}
	hub.Broadcast(All, nil, numbered(1))
	hub.Broadcast(All, nil, numbered(2))
	if rec := resume("gone", Position{Epoch: at.Epoch, Offset: at.Offset, Part: 1}); !errors.Is(rec.Err, ErrPositionGone) {
		t.Fatalf("part of a message pushed out: %+v, want ErrPositionGone", rec)
	}
	if _, err := hub.BroadcastAt(Position{Epoch: "e", Offset: 1, Part: 1}, All, nil, numbered(3)); err == nil {
		t.Fatal("BroadcastAt a part of a message: nil error")
	}
}

// The ids of a message: each event ends with its own, the last with the
// message's position; comments carry none; without events the message is
// as it was.
func TestEveryEventCarriesItsPosition(t *testing.T) {
	m, err := render([]Effect{Comment("before"), AppendElements("#m", "<p>1</p>"), Comment("between"), PatchSignals([]byte(`{"x":1}`)), AppendElements("#m", "<p>3</p>")})
	if err != nil {
		t.Fatal(err)
	}
	got := string(m.withPosition(Position{Epoch: "e", Offset: 7}, "").data)
	var blocks []string
	for _, b := range strings.Split(got, "\n\n") {
		if b = strings.Trim(b, "\n"); b != "" {
			blocks = append(blocks, b)
		}
	}
	want := []string{": before", "\nid: e-7.1", ": between", "\nid: e-7.2", "\nid: e-7"}
	if len(blocks) != len(want) {
		t.Fatalf("message with its ids:\n%s", got)
	}
	for i, b := range blocks {
		if strings.HasPrefix(want[i], ":") && b != want[i] || !strings.HasPrefix(want[i], ":") && (!strings.HasSuffix(b, want[i]) || strings.Count(b, "id: ") != 1) {
			t.Fatalf("block %d is %q, want it to end with %q:\n%s", i, b, want[i], got)
		}
	}
	comments := &message{data: []byte(": only\n\n"), idAt: -1}
	if comments.withPosition(Position{Epoch: "e", Offset: 8}, "_pos") != comments {
		t.Fatal("a message of comments took a position")
	}
}

// Every event of a stream's opening carries a position, so a client cut
// off inside it holds an id that says so and is sent a new opening, whole,
// when it comes back. Without one it would keep the id it had before: here
// a position ahead of the history (a page that comes from a node further
// on), which the history serves by the time the client comes back, so it
// would resume from there and never get the rest of its opening. Plain and
// with a position signal, on both stream paths.
func TestCutInsideTheOpeningOpensAgain(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts HubOptions
	}{
		{name: "plain", opts: HubOptions{History: HistoryOptions{Size: 16}}},
		{name: "position-signal", opts: HubOptions{History: HistoryOptions{Size: 16, PositionSignal: "_pos"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bothPaths(t, func(t *testing.T, noHijack bool) {
				opts := tc.opts
				opts.NoHijack = noHijack
				hub, _ := newMemoryHub(t, opts)
				srv := testServer(t, hub, threeEvents...)
				open := func(from string) (*ssetest.Client, Recovery) {
					req := ssetest.DatastarPost("/sse?id=brian", "{}")
					req.Header.Set("Last-Event-ID", from)
					c := ssetest.Open(t, srv.Listener.Addr().String(), req)
					c.WaitHead(waitLong) // stored by then
					s, ok := hub.Store().Get(lobbyKey("brian"))
					if !ok {
						t.Fatal("no stream once the head came")
					}
					return c, s.Recovery()
				}
				hub.Broadcast(All, nil, numbered(1))
				at := hub.Position()
				ahead := Position{Epoch: at.Epoch, Offset: at.Offset + 2}
				first, rec := open(ahead.String())
				if !errors.Is(rec.Err, ErrPositionAhead) {
					t.Fatalf("recovery from ahead: %+v", rec)
				}
				hub.Broadcast(All, nil, numbered(2))
				const opening = `<p>a</p> signals {"b":1} <p>c</p>`
				if got := strings.Join(applied(t, first, "<p>2</p>"), " "); got != opening {
					t.Fatalf("first connection applied %q, want the opening %q", got, opening)
				}
				want := []string{at.String() + ".o1", at.String() + ".o2", at.String(), Position{Epoch: at.Epoch, Offset: at.Offset + 1}.String()}
				// With a position signal, <p>2</p>'s id comes on the patch after it.
				var got []string
				ssetest.Eventually(t, waitLong, "<p>2</p>'s id", func() bool { got = ids(first, "<p>a</p>"); return len(got) >= len(want) })
				if strings.Join(got, " ") != strings.Join(want, " ") {
					t.Fatalf("ids from the opening on: %q, want %q", got, want)
				}
				if p, err := ParsePosition(want[0]); err != nil || p != (Position{Epoch: at.Epoch, Offset: at.Offset, Part: 1, Opening: true}) {
					t.Fatalf("ParsePosition(%q) = %+v, %v", want[0], p, err)
				}
				first.Close()
				ssetest.Eventually(t, waitLong, "brian gone", func() bool { return hub.Count(All) == 0 })
				hub.Broadcast(All, nil, numbered(3)) // the position asked for first exists now
				// Cut after the first event of the opening: the client holds its id.
				again, rec := open(want[0])
				if rec.Recovered || !errors.Is(rec.Err, ErrPositionInOpening) {
					t.Fatalf("recovery from inside the opening: %+v, want ErrPositionInOpening", rec)
				}
				hub.Broadcast(All, nil, numbered(4))
				if got := strings.Join(applied(t, again, "<p>4</p>"), " "); got != opening {
					t.Fatalf("cut inside the opening: came back to %q, want the whole opening %q", got, opening)
				}
			})
		})
	}
}

// The text of a position inside an opening: epoch-offset.opart, parsed
// back whole; a part of zero or none is refused; a log never places one.
func TestOpeningPositionText(t *testing.T) {
	p := Position{Epoch: "e", Offset: 7, Part: 2, Opening: true}
	if p.String() != "e-7.o2" {
		t.Fatalf("String = %q", p.String())
	}
	if got, err := ParsePosition("e-7.o2"); err != nil || got != p {
		t.Fatalf("ParsePosition = %+v, %v", got, err)
	}
	for _, bad := range []string{"e-7.o", "e-7.o0", "e-7.oo1", "e-7.o1.2"} {
		if _, err := ParsePosition(bad); err == nil {
			t.Fatalf("ParsePosition(%q): nil error", bad)
		}
	}
	hub, _ := newMemoryHub(t, HubOptions{History: HistoryOptions{Size: 4, Epoch: "e"}})
	if _, err := hub.BroadcastAt(Position{Epoch: "e", Offset: 1, Opening: true}, All, nil, numbered(1)); err == nil {
		t.Fatal("BroadcastAt a place in an opening: nil error")
	}
	m, err := render(threeEvents)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := ssetest.Parse(bytes.NewReader(m.asOpening(Position{Epoch: "e", Offset: 7}, "").data))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		if e.HasID {
			got = append(got, e.ID)
		}
	}
	if strings.Join(got, " ") != "e-7.o1 e-7.o2 e-7" || len(evs) != 3 {
		t.Fatalf("ids of an opening of three events: %q", got)
	}
}
