package natscluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sfere-go/sfere"
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
