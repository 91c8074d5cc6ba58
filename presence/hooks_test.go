package presence_test

import (
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/presence"
)

// A function added with OnDiff after the tracker was made is told every
// batch from then on, the same batches as Options.OnDiff, in order.
func TestOnDiffAddedAfterNewSeesEveryBatch(t *testing.T) {
	r := newRig(t, presence.Options{Grace: -1})
	var mu sync.Mutex
	var seen []presence.Diff
	r.tracker.OnDiff(func(d presence.Diff) {
		mu.Lock()
		seen = append(seen, d)
		mu.Unlock()
	})
	r.claim("brian", "s1")
	tb := r.open("s1")
	tb.Close()
	ssetest.Eventually(t, 5*time.Second, "brian's departure told to the hook", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, d := range seen {
			for _, l := range d.Leaves {
				if l.ID == "brian" && l.Reason == presence.ReasonClosed {
					return true
				}
			}
		}
		return false
	})
	mu.Lock()
	defer mu.Unlock()
	if got := r.batches(); !reflect.DeepEqual(got, seen) {
		t.Fatalf("Options.OnDiff saw %+v\nthe hook saw %+v", got, seen)
	}
	if len(seen) == 0 || len(seen[0].Joins) != 1 || seen[0].Joins[0].ID != "brian" {
		t.Fatalf("the first batch is not brian's arrival: %+v", seen)
	}
}
