package presence_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/presence"
)

// logOnly is a LogCluster of one node whose log the test applies by hand
// (see apply): what the tracker appends is recorded, not applied.
type logOnly struct {
	n        presence.Notify
	mu       sync.Mutex
	appended [][]presence.Change
}

func (c *logOnly) Start(n presence.Notify) error { c.n = n; return nil }
func (c *logOnly) Claim(_ context.Context, cl presence.Claim) (presence.Claim, error) {
	return cl, nil
}
func (c *logOnly) Lookup(context.Context, string) (presence.Claim, bool) {
	return presence.Claim{}, false
}
func (c *logOnly) Release(string, string) {}
func (c *logOnly) Reserve(presence.Claim) {}
func (c *logOnly) Leave(string, string)   {}
func (c *logOnly) Close()                 {}
func (c *logOnly) Hold(presence.Hold)     {}
func (c *logOnly) Logs() bool             { return true }
func (c *logOnly) Append(changes []presence.Change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.appended = append(c.appended, changes)
}

// The roster applies the log's changes idempotently: an arrival of a claim
// it shows, a departure of a claim it does not show, an arrival of a claim
// that departed change nothing and deliver nothing; an arrival of another
// claim of a person shown departs the old one first. Each batch that
// changes something is delivered once, at its position.
func TestRosterAppliesTheLogIdempotently(t *testing.T) {
	hub := sfere.NewHub(sfere.NewMemoryStore(sfere.MemoryOptions{}),
		sfere.HubOptions{History: sfere.HistoryOptions{Size: 64, Epoch: "log"}})
	cl := &logOnly{}
	var diffs []presence.Diff
	tr, err := presence.New(hub, presence.Options{Room: "room", Snapshot: renderSnapshot, Diff: renderDiff, Cluster: cl,
		OnDiff: func(d presence.Diff) { diffs = append(diffs, d) }})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	t0 := time.Now()
	seq := uint64(0)
	apply := func(stored time.Duration, changes ...presence.Change) (delivered bool) {
		seq++
		pos := sfere.Position{Epoch: "log", Offset: seq}
		cl.n.Applied(presence.Applied{Changes: changes, Stored: t0.Add(stored),
			Deliver: func(p sfere.Pattern, exclude sfere.Matcher, effects ...sfere.Effect) (sfere.Result, error) {
				delivered = true
				return hub.BroadcastAt(pos, p, exclude, effects...)
			}})
		return delivered
	}
	join := func(id, ref string) presence.Change {
		return presence.Change{Member: presence.Member{ID: id, Since: t0}, Ref: ref}
	}
	leave := func(id, ref string) presence.Change {
		return presence.Change{Leave: true, Member: presence.Member{ID: id}, Ref: ref, Reason: presence.ReasonClosed}
	}
	members := func() string { return names(tr.Members()) }
	steps := []struct {
		what      string
		changes   []presence.Change
		stored    time.Duration
		delivered bool
		members   string
	}{
		{"brian arrives", []presence.Change{join("brian", "r1")}, 0, true, "brian"},
		{"another node's same arrival", []presence.Change{join("brian", "r1")}, 0, false, "brian"},
		{"a departure of a claim not shown", []presence.Change{leave("brian", "r0")}, 0, false, "brian"},
		{"brian departs", []presence.Change{leave("brian", "r1")}, time.Second, true, ""},
		{"another node's same departure", []presence.Change{leave("brian", "r1")}, time.Second, false, ""},
		{"a late arrival of the claim that departed", []presence.Change{join("brian", "r1")}, 2 * time.Second, false, ""},
		{"brian's new claim", []presence.Change{join("brian", "r2")}, 3 * time.Second, true, "brian"},
		{"a claim whose departure was lost", []presence.Change{join("brian", "r3")}, 4 * time.Second, true, "brian"},
		{"r2's departure, late", []presence.Change{leave("brian", "r2")}, 5 * time.Second, false, "brian"},
		{"the departed claim, long after", []presence.Change{join("brian", "r1")}, time.Hour, true, "brian"},
	}
	for _, s := range steps {
		if got := apply(s.stored, s.changes...); got != s.delivered {
			t.Errorf("%s: delivered %v, want %v", s.what, got, s.delivered)
		}
		if got := members(); got != s.members {
			t.Errorf("%s: members %q, want %q", s.what, got, s.members)
		}
	}
	var lines []string
	for _, d := range diffs {
		var l []string
		for _, dep := range d.Leaves {
			l = append(l, "-"+dep.ID)
		}
		for _, j := range d.Joins {
			l = append(l, "+"+j.ID)
		}
		lines = append(lines, strings.Join(l, " "))
	}
	if got, want := strings.Join(lines, ", "), "+brian, -brian, +brian, -brian +brian, -brian +brian"; got != want {
		t.Errorf("diffs told %q, want %q", got, want)
	}
	if got := hub.Position().Offset; got != seq {
		t.Errorf("the hub's history is at %d, want %d (every delivered batch at its position)", got, seq)
	}
}

func names(ms []presence.Member) string {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return strings.Join(ids, ",")
}
