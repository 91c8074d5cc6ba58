package natscluster

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// counter is an app handler that keeps a count in its state and delivers
// each event as a line naming the count: what a node renders depends on
// every earlier event, as a roster's diff does.
type counter struct {
	mu     sync.Mutex
	count  int
	seen   []string // the payloads handled, with their positions and whether earlier
	cancel func()
}

func handleCounter(t *testing.T, tn *testNode) *counter {
	t.Helper()
	c := &counter{}
	cancel, err := tn.node.Handle("count", func(e AppEvent, deliver Deliver) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.count++
		tag := string(e.Data) + "@" + e.At.String()
		if e.Earlier {
			tag += " earlier"
		}
		c.seen = append(c.seen, tag)
		if deliver == nil {
			return
		}
		if string(e.Data) == `"silent"` {
			return // delivered to nobody: the node keeps the position
		}
		if _, err := deliver(sfere.All, nil, numbered(c.count)); err != nil {
			t.Errorf("deliver: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	c.cancel = cancel
	return c
}

func (c *counter) handled() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.seen...)
}

// An app's events go through the log: every node hands each to its
// handler once, at the same position, in log order with the broadcasts
// around it, and a client resuming on another node is replayed what the
// handler delivered there. Two appends under one id are stored once.
func TestAppEventsThroughTheLog(t *testing.T) {
	ns := startNATS(t)
	a, b := historyNode(t, ns, "a"), historyNode(t, ns, "b")
	ca, cb := handleCounter(t, a), handleCounter(t, b)
	if _, err := a.node.Handle("count", func(AppEvent, Deliver) {}); !errors.Is(err, ErrKindHandled) {
		t.Fatalf("a second handler for a kind: %v, want ErrKindHandled", err)
	}
	first := a.resume(t, "")
	waitFor(t, "b sees brian", func() bool { return b.node.Count(sfere.All) == 1 })

	ctx := t.Context()
	if err := a.node.Append(ctx, "count", "", []byte(`"one"`)); err != nil {
		t.Fatal(err)
	}
	first.Wait(ceiling, ssetest.Containing("<p>1</p>"))
	first.Close()
	<-first.Done()
	_, lastID := elements(first)
	waitFor(t, "brian gone everywhere", func() bool { return b.node.Count(sfere.All) == 0 })

	// Missed: an app event appended twice under one id (stored once), a
	// broadcast, one the handler delivers to nobody, and another.
	for range 2 {
		if err := b.node.Append(ctx, "count", "two-once", []byte(`"two"`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.node.Broadcast(sfere.All, nil, sfere.AppendElements("#m", "<p>chat</p>")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{`"silent"`, `"four"`} {
		if err := a.node.Append(ctx, "count", "", []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "both nodes applied the log", func() bool {
		return len(ca.handled()) == 4 && len(cb.handled()) == 4 && a.hub.Position() == b.hub.Position()
	})
	if got, want := strings.Join(cb.handled(), " "), strings.Join(ca.handled(), " "); got != want {
		t.Fatalf("b handled %s, a %s: want the same events at the same positions", got, want)
	}
	second := b.resume(t, lastID)
	if _, err := b.node.Broadcast(sfere.All, nil, sfere.AppendElements("#m", "<p>live</p>")); err != nil {
		t.Fatal(err)
	}
	second.Wait(ceiling, ssetest.Containing("<p>live</p>"))
	if got, _ := elements(second); strings.Join(got, " ") != "<p>2</p> <p>chat</p> <p>4</p> <p>live</p>" {
		t.Fatalf("resumed on b, got %q, want 2 chat 4 then live", got)
	}
	if err := a.node.Append(ctx, "", "", nil); err == nil {
		t.Error("an app event without a kind was appended")
	}
}

// A node that starts while the log holds app events of a kind hands them
// to the handler once it is registered, marked earlier, in log order; its
// history then serves no position before (those positions went to no
// stream there), and later events are delivered as on every node.
func TestAppEventsBeforeTheHandler(t *testing.T) {
	ns, a, ca, before := oneAndTwoCounted(t)
	ctx := t.Context()

	b := historyNode(t, ns, "b") // applies the log as it starts, with no handler
	cb := handleCounter(t, b)
	got := cb.handled()
	if len(got) != 2 || !strings.HasSuffix(got[0], " earlier") || !strings.HasSuffix(got[1], " earlier") ||
		!strings.HasPrefix(got[0], `"one"@`) {
		t.Fatalf("b's handler was handed %q, want one and two, earlier", got)
	}
	if err := a.node.Append(ctx, "count", "", []byte(`"three"`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b applied three", func() bool { return len(cb.handled()) == 3 })
	if got := cb.handled()[2]; strings.HasSuffix(got, " earlier") {
		t.Fatalf("an event after the handler came marked earlier: %s", got)
	}
	// A position before the last event b placed before its handler is
	// not served on b: the client gets the full state, not a replay of a
	// placeholder. (From the last one on, b's replay is its handler's,
	// which knows every event before.)
	c := b.resume(t, before)
	if rec := streamOf(t, b, "brian").Recovery(); rec.Recovered {
		t.Fatalf("a position from before the handler was recovered on b: %+v", rec)
	}
	c.Close()
	ca.cancel()
	cb.cancel()
}

// A node that declares a kind (Options.AppKinds) and starts while the log
// holds events of it holds the log back from the first of them until the
// kind's handler is registered: then the handler renders each at its
// position, not marked earlier, as on every other node, the broadcasts
// after them follow in order, and the node's history serves positions
// from before the handler.
func TestAppEventsHeldForADeclaredKind(t *testing.T) {
	ns, a, ca, before := oneAndTwoCounted(t)
	if _, err := a.node.Broadcast(sfere.All, nil, sfere.AppendElements("#m", "<p>chat</p>")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a applied the chat", func() bool { return a.hub.Position().Offset == 3 })

	b := newTestNodeWith(t, ns, "b", Options{Interval: interval, AppKinds: []string{"count"},
		Hub: sfere.HubOptions{History: sfere.HistoryOptions{Size: 64}}})
	if got := b.hub.Position().Offset; got != 0 {
		t.Fatalf("b applied the log up to %d before the declared kind's handler, want it held from 1", got)
	}
	cb := handleCounter(t, b)
	if got, want := strings.Join(cb.handled(), " "), strings.Join(ca.handled(), " "); got != want {
		t.Fatalf("b's handler got %s, want a's: %s (at the same positions, none earlier)", got, want)
	}
	if b.hub.Position() != a.hub.Position() {
		t.Fatalf("b at %v, a at %v", b.hub.Position(), a.hub.Position())
	}
	c := b.resume(t, before)
	if _, err := a.node.Broadcast(sfere.All, nil, sfere.AppendElements("#m", "<p>live</p>")); err != nil {
		t.Fatal(err)
	}
	c.Wait(ceiling, ssetest.Containing("<p>live</p>"))
	if got, _ := elements(c); strings.Join(got, " ") != "<p>2</p> <p>chat</p> <p>live</p>" {
		t.Fatalf("resumed on b from before the handler, got %q, want 2 chat then live", got)
	}
}

// A hold for a declared kind whose handler does not come ends after the
// node's StartTimeout: the log goes on, the kind's events to no stream,
// handed to a handler registered later as earlier.
func TestAppEventsHoldEnds(t *testing.T) {
	ns := startNATS(t)
	a := historyNode(t, ns, "a")
	ca := handleCounter(t, a)
	if err := a.node.Append(t.Context(), "count", "", []byte(`"one"`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a applied it", func() bool { return len(ca.handled()) == 1 })
	b := newTestNodeWith(t, ns, "b", Options{Interval: interval, AppKinds: []string{"count"}, StartTimeout: time.Second,
		Hub: sfere.HubOptions{History: sfere.HistoryOptions{Size: 64}}})
	if _, err := a.node.Broadcast(sfere.All, nil, sfere.AppendElements("#m", "<p>chat</p>")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b goes on without the handler", func() bool { return b.hub.Position() == a.hub.Position() })
	cb := handleCounter(t, b)
	if got := cb.handled(); len(got) != 1 || !strings.HasSuffix(got[0], " earlier") {
		t.Fatalf("b's late handler got %q, want one earlier", got)
	}
}

// oneAndTwoCounted starts node a with a history and a counter handling
// kind "count", and appends "one" and "two", each applied on a; before is
// the position between them.
func oneAndTwoCounted(t *testing.T) (ns *Server, a *testNode, ca *counter, before string) {
	t.Helper()
	ns = startNATS(t)
	a = historyNode(t, ns, "a")
	ca = handleCounter(t, a)
	for i, p := range []string{`"one"`, `"two"`} {
		if err := a.node.Append(t.Context(), "count", "", []byte(p)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "a applied it", func() bool { return len(ca.handled()) == i+1 })
		if i == 0 {
			before = a.hub.Position().String()
		}
	}
	return ns, a, ca, before
}

// A node whose app removes a kind's handler (an app on its way out)
// delivers the log to its streams up to the next event of that kind and
// no further: a stream there never takes a position past one that nothing
// rendered, so a client that resumes on another node from its last
// position is replayed that event and everything after.
func TestAppHandlerRemovedStopsTheLogHere(t *testing.T) {
	ns := startNATS(t)
	a, b := historyNode(t, ns, "a"), historyNode(t, ns, "b")
	handleCounter(t, a)
	cb := handleCounter(t, b)
	onB := b.resume(t, "")
	chat := func(text string) {
		t.Helper()
		if _, err := a.node.Broadcast(sfere.All, nil, sfere.AppendElements("#m", "<p>"+text+"</p>")); err != nil {
			t.Fatal(err)
		}
	}
	chat("before")
	onB.Wait(ceiling, ssetest.Containing("<p>before</p>"))
	cb.cancel()
	chat("still") // no event of the kind since: b delivers it
	onB.Wait(ceiling, ssetest.Containing("<p>still</p>"))
	if err := a.node.Append(t.Context(), "count", "", []byte(`"one"`)); err != nil {
		t.Fatal(err)
	}
	chat("after") // the log's fourth event
	waitFor(t, "a applied the log", func() bool { return a.hub.Position().Offset == 4 })
	waitFor(t, "b applied the log", func() bool {
		st, err := b.node.LogState(t.Context())
		return err == nil && st.Applied >= 4
	})
	got, lastID := elements(onB)
	if strings.Join(got, " ") != "<p>before</p> <p>still</p>" {
		t.Fatalf("b's stream got %q after its handler was removed, want before and still only", got)
	}
	if len(cb.handled()) != 0 {
		t.Fatalf("the removed handler was called: %q", cb.handled())
	}
	elsewhere := a.resume(t, lastID)
	elsewhere.Wait(ceiling, ssetest.Containing("<p>after</p>"))
	if got, _ := elements(elsewhere); strings.Join(got, " ") != "<p>1</p> <p>after</p>" {
		t.Fatalf("resumed on a from b's last position, got %q, want 1 then after", got)
	}
}
