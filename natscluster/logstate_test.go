package natscluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// LogState reports the log's stream, its bounds and placement, and how
// far each node applied it; a node without a history has no log.
func TestLogStateReportsTheLogAndThisNodesProgress(t *testing.T) {
	ns := startNATS(t)
	a, b := historyNode(t, ns, "a"), historyNode(t, ns, "b")
	for n := 1; n <= 3; n++ {
		if _, err := a.node.Broadcast(sfere.All, nil, numbered(n)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "both nodes applied 3 events", func() bool {
		return a.hub.Position().Offset >= 3 && b.hub.Position().Offset == a.hub.Position().Offset
	})
	for _, tn := range []*testNode{a, b} {
		ctx, cancel := context.WithTimeout(context.Background(), ceiling)
		st, err := tn.node.LogState(ctx)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", tn.name, err)
		}
		pos := tn.hub.Position()
		if st.Stream != streamName(DefaultPrefix) || st.Epoch != pos.Epoch || st.Replicas != 1 {
			t.Errorf("%s: stream %q epoch %q replicas %d; want %q, the hub's epoch %q, 1", tn.name, st.Stream, st.Epoch, st.Replicas, streamName(DefaultPrefix), pos.Epoch)
		}
		if st.Last != pos.Offset || st.Applied != pos.Offset || st.Behind != 0 || st.First != 1 {
			t.Errorf("%s: first %d last %d applied %d behind %d; want 1, %d, %d, 0", tn.name, st.First, st.Last, st.Applied, st.Behind, pos.Offset, pos.Offset)
		}
		if st.Gaps != 0 || st.Lost != 0 {
			t.Errorf("%s: %d gaps, %d lost, on a log that lost nothing", tn.name, st.Gaps, st.Lost)
		}
	}
	plain := newTestNode(t, ns, "c")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := plain.node.LogState(ctx); !errors.Is(err, ErrNoHistory) {
		t.Fatalf("LogState of a node without a history: %v, want ErrNoHistory", err)
	}
}

// A node that fell behind while the log dropped events (its bounds) counts
// them as lost and no longer serves positions before them; a consumer
// that skips events counts a gap and is made anew from the next one, and
// loses nothing the log still holds.
func TestLogStateCountsLostEventsAndGaps(t *testing.T) {
	ns := startNATS(t)
	sized := func(name string, every time.Duration) *testNode {
		return newTestNodeWith(t, ns, name, Options{Interval: every, Hub: sfere.HubOptions{
			History: sfere.HistoryOptions{Size: 4}, // the log keeps 4 events
		}})
	}
	// b checks its log only when told to: every Interval, it would make a
	// stopped consumer anew.
	a, b := sized("a", interval), sized("b", time.Hour)
	broadcast := func(from, to int) {
		t.Helper()
		for n := from; n <= to; n++ {
			if _, err := a.node.Broadcast(sfere.All, nil, numbered(n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	state := func(tn *testNode) LogState {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), ceiling)
		defer cancel()
		st, err := tn.node.LogState(ctx)
		if err != nil {
			t.Fatalf("%s: %v", tn.name, err)
		}
		return st
	}
	broadcast(1, 1)
	waitFor(t, "both nodes applied event 1", func() bool {
		return a.hub.Position().Offset == 1 && b.hub.Position().Offset == 1
	})
	first := b.hub.Position()

	// b stops applying (as if its consumer's server were lost) while ten
	// more events go in: the log keeps 8 to 11, so 2 to 7 are gone.
	b.node.events.mu.Lock()
	cc := b.node.events.consumer
	b.node.events.mu.Unlock()
	b.node.events.stop()
	select { // Stop returns before a delivery under way ends: wait for it
	case <-cc.Closed():
	case <-time.After(ceiling):
		t.Fatal("b's consumer never stopped")
	}
	broadcast(2, 11)
	if got := b.hub.Position().Offset; got != 1 {
		t.Fatalf("b applied up to %d with its consumer stopped", got)
	}
	b.node.events.breaks() // what the consumer's error handler does
	waitFor(t, "b caught up with what the log holds", func() bool { return b.hub.Position().Offset == 11 })
	st := state(b)
	if st.Lost != 6 || st.Gaps != 0 || st.First != 8 || st.Applied != 11 || st.Behind != 0 {
		t.Fatalf("b after falling behind: lost %d gaps %d first %d applied %d behind %d; want 6, 0, 8, 11, 0",
			st.Lost, st.Gaps, st.First, st.Applied, st.Behind)
	}
	if st := state(a); st.Lost != 0 || st.Gaps != 0 {
		t.Fatalf("a, which kept up: lost %d gaps %d, want 0, 0", st.Lost, st.Gaps)
	}
	// Positions before the loss are not served on b; later ones are.
	gone := b.resume(t, first.String())
	gone.Wait(ceiling, ssetest.Containing("hello b"))
	if rec := streamOf(t, b, "brian").Recovery(); rec.Recovered || !errors.Is(rec.Err, sfere.ErrPositionGone) {
		t.Fatalf("a position from before the loss: %+v, want ErrPositionGone", rec)
	}
	gone.Close()
	<-gone.Done()
	waitFor(t, "brian's stream gone", func() bool { return b.hub.Count(lobbyKey("brian").Pattern()) == 0 })
	kept := b.resume(t, sfere.Position{Epoch: first.Epoch, Offset: 8}.String())
	kept.Wait(ceiling, ssetest.Containing("<p>11</p>"))
	if rec := streamOf(t, b, "brian").Recovery(); !rec.Recovered || rec.Replayed != 3 {
		t.Fatalf("a position the log still holds: %+v, want 3 events replayed", rec)
	}

	// An event past the next one (a consumer placed on a replica still
	// catching up) is a gap: not applied, the consumer made anew from the
	// next one, nothing lost.
	b.node.events.apply(first.Epoch, 13, time.Now(), []byte(`{}`))
	broadcast(12, 13)
	waitFor(t, "b applied 12 and 13 after the gap", func() bool { return b.hub.Position().Offset == 13 })
	kept.Wait(ceiling, ssetest.Containing("<p>13</p>"))
	if st := state(b); st.Gaps != 1 || st.Lost != 6 || st.Applied != 13 {
		t.Fatalf("b after a gap: gaps %d lost %d applied %d; want 1, 6, 13", st.Gaps, st.Lost, st.Applied)
	}
}

// streamOf returns id's stream on tn.
func streamOf(t *testing.T, tn *testNode, id string) *sfere.Stream {
	t.Helper()
	s, ok := tn.hub.Store().Get(lobbyKey(id))
	if !ok {
		t.Fatalf("no stream of %s on %s", id, tn.name)
	}
	return s
}
