package presence_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/presence"
)

// logOnly is a LogCluster of one node whose log the test applies by hand
// (see apply): what the tracker appends is recorded, not applied.
type logOnly struct {
	n        presence.Notify
	mu       sync.Mutex
	appended [][]presence.Change
	refs     map[string]string // claims' Refs by person
}

func (c *logOnly) Start(n presence.Notify) error { c.n = n; return nil }
func (c *logOnly) Claim(_ context.Context, cl presence.Claim) (presence.Claim, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refs == nil {
		c.refs = make(map[string]string)
	}
	c.refs[cl.Person] = cl.Ref
	return cl, nil
}

// ref returns the Ref of person's claim.
func (c *logOnly) ref(person string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refs[person]
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

// appendedSoFar returns the batches the tracker appended so far.
func (c *logOnly) appendedSoFar() [][]presence.Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]presence.Change(nil), c.appended...)
}

// A node that holds a person's stream, whose claim the log departs as
// lost with another node (one cut off from the rest decides that of every
// node it stops hearing) or as closed (a node that did not hear this one
// in time), appends the person's arrival again, back, under the next Ref:
// the room shows the person gone, then back, not gone until that node is
// heard from again (it may never be). A departure the person asked for
// (left through another node) is not answered. The holder also answers
// an arrival the roster ignored because its Ref departed (a node that knew
// the person only by its claim). And the tracker renders the log's batches after Close, while
// the node's streams may still take the log.
func TestHolderAnswersADepartureDecidedElsewhere(t *testing.T) {
	cl := &logOnly{}
	r := newRigHub(t, sfere.HubOptions{History: sfere.HistoryOptions{Size: 64, Epoch: "log"}},
		presence.Options{Window: 10 * time.Millisecond, Cluster: cl}, 0)
	seq := uint64(0)
	apply := func(changes ...presence.Change) (delivered bool) {
		t.Helper()
		seq++
		pos := sfere.Position{Epoch: "log", Offset: seq}
		cl.n.Applied(presence.Applied{Changes: changes, Stored: time.Now(),
			Deliver: func(p sfere.Pattern, exclude sfere.Matcher, effects ...sfere.Effect) (sfere.Result, error) {
				delivered = true
				return r.hub.BroadcastAt(pos, p, exclude, effects...)
			}})
		return delivered
	}
	// arrival waits for the tracker's next appended arrival of id.
	arrival := func(id string, after int) (presence.Change, int) {
		t.Helper()
		var got presence.Change
		n := after
		ssetest.Eventually(t, waitLong, "an arrival of "+id+" appended", func() bool {
			batches := cl.appendedSoFar()
			for ; n < len(batches); n++ {
				for _, c := range batches[n] {
					if !c.Leave && c.Member.ID == id {
						got = c
						n++
						return true
					}
				}
			}
			return false
		})
		return got, n
	}

	r.claim("brian", "o-brian")
	brian := r.open("o-brian")
	first, n := arrival("brian", 0)
	if !apply(first) {
		t.Fatal("brian's arrival not delivered")
	}
	brian.waitFor(`data-joins="brian"`)

	lost := presence.Change{Leave: true, Member: first.Member, Ref: first.Ref,
		Reason: presence.ReasonNodeLost, Cause: sfere.CauseNodeLost}
	if !apply(lost) {
		t.Fatal("brian's departure as lost not delivered")
	}
	brian.waitFor(`data-leaves="brian:node-lost"`)
	again, n := arrival("brian", n)
	if again.Ref == first.Ref || !again.Member.Back {
		t.Fatalf("brian's arrival again: Ref %q (the departed one was %q), back %v; want a new Ref, back", again.Ref, first.Ref, again.Member.Back)
	}
	if !apply(again) {
		t.Fatal("brian's arrival again not delivered")
	}
	brian.waitFor(`data-back="brian"`)
	if got := names(r.tracker.Members()); got != "brian" {
		t.Fatalf("members %q, want brian", got)
	}

	// Another node let his grace run out (it did not hear this one in
	// time): he is here, and arrives again.
	closed := presence.Change{Leave: true, Member: again.Member, Ref: again.Ref, Reason: presence.ReasonClosed}
	if !apply(closed) {
		t.Fatal("brian's departure as closed not delivered")
	}
	brian.waitFor(`data-leaves="brian:closed"`)
	again, n = arrival("brian", n)
	if again.Ref == closed.Ref || !again.Member.Back {
		t.Fatalf("brian's arrival after closed: Ref %q (the departed one was %q), back %v", again.Ref, closed.Ref, again.Member.Back)
	}
	if !apply(again) {
		t.Fatal("brian's arrival again not delivered")
	}
	if got := names(r.tracker.Members()); got != "brian" {
		t.Fatalf("members %q, want brian", got)
	}

	// Brian left through another node: the log says so before this node
	// hears it; nothing is appended for it.
	left := presence.Change{Leave: true, Member: again.Member, Ref: again.Ref, Reason: presence.ReasonLeft}
	if !apply(left) {
		t.Fatal("brian's departure not delivered")
	}
	r.settle(brian)
	for _, b := range cl.appendedSoFar()[n:] {
		for _, c := range b {
			if c.Member.ID == "brian" && !c.Leave {
				t.Fatalf("brian arrived again after he left through another node: %+v", c)
			}
		}
	}

	// Dave arrived and departed through other nodes before his stream
	// reached this one, which knows him only by his claim: its arrival,
	// under the claim's Ref, which departed, changes nothing in the
	// roster, so this node arrives him again under the next one.
	r.claim("dave", "o-dave")
	daveRef := cl.ref("dave")
	daveJoin := presence.Change{Member: presence.Member{ID: "dave", Since: time.Now()}, Ref: daveRef}
	apply(daveJoin)
	apply(presence.Change{Leave: true, Member: daveJoin.Member, Ref: daveRef, Reason: presence.ReasonClosed})
	r.open("o-dave")
	first, n = arrival("dave", n)
	if first.Ref != daveRef {
		t.Fatalf("dave's arrival under %q, want his claim's %q", first.Ref, daveRef)
	}
	if apply(first) {
		t.Fatal("an arrival under a departed Ref was delivered")
	}
	again, _ = arrival("dave", n)
	if again.Ref == daveRef || !again.Member.Back {
		t.Fatalf("dave's arrival again: Ref %q (the departed one was %q), back %v", again.Ref, daveRef, again.Member.Back)
	}
	if !apply(again) {
		t.Fatal("dave's arrival again not delivered")
	}
	brian.waitFor(`data-back="dave"`)

	r.tracker.Close()
	if !apply(presence.Change{Member: presence.Member{ID: "carol", Since: time.Now()}, Ref: "c1"}) {
		t.Fatal("a batch applied after Close was not delivered")
	}
	brian.waitFor(`data-joins="carol"`)
}

// Two arrivals of one claim under different Refs (a node that knew
// nothing of the claim's earlier arrivals named it after the claim, the
// others after the last arrival) are one arrival: the second changes
// nothing, and a departure of either Ref departs it once. An arrival of
// another claim still departs the one shown.
func TestRosterTakesOneArrivalOfAClaim(t *testing.T) {
	hub := sfere.NewHub(sfere.NewMemoryStore(sfere.MemoryOptions{}),
		sfere.HubOptions{History: sfere.HistoryOptions{Size: 64, Epoch: "log"}})
	cl := &logOnly{}
	var told []string
	tr, err := presence.New(hub, presence.Options{Room: "room", Snapshot: renderSnapshot, Diff: renderDiff, Cluster: cl,
		OnDiff: func(d presence.Diff) {
			for _, dep := range d.Leaves {
				told = append(told, "-"+dep.ID)
			}
			for _, j := range d.Joins {
				told = append(told, "+"+j.ID)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	t0 := time.Now()
	apply := func(c presence.Change) {
		cl.n.Applied(presence.Applied{Changes: []presence.Change{c}, Stored: t0,
			Deliver: func(p sfere.Pattern, exclude sfere.Matcher, effects ...sfere.Effect) (sfere.Result, error) {
				return hub.Broadcast(p, exclude, effects...)
			}})
	}
	arrival := func(ref, claim string) presence.Change {
		return presence.Change{Member: presence.Member{ID: "brian", Since: t0}, Ref: ref, Claim: claim}
	}
	apply(arrival("r1-next", "r1"))
	apply(arrival("r1", "r1")) // another node's name for the same arrival
	if got := names(tr.Members()); got != "brian" {
		t.Fatalf("members %q, want brian", got)
	}
	apply(presence.Change{Leave: true, Member: presence.Member{ID: "brian"}, Ref: "r1-next", Reason: presence.ReasonLeft})
	apply(arrival("r2", "r2"))
	apply(arrival("r3", "r3")) // another claim: r2's departure never came
	if got, want := strings.Join(told, " "), "+brian -brian +brian -brian +brian"; got != want {
		t.Errorf("diffs told %q, want %q", got, want)
	}
}

// A person away (its node found lost) and heard again through that node
// comes back under the claim that node gave it: the arrival the tracker
// appends names that claim, even when it goes out at once, within the
// step that brings the person back. (It named a Ref of the tracker's own
// making, so a node that learnt of the person later did not find its
// arrival in the roster, and its departure was lost.)
func TestReturnThroughAnotherNodeNamesItsClaim(t *testing.T) {
	hub := sfere.NewHub(sfere.NewMemoryStore(sfere.MemoryOptions{}),
		sfere.HubOptions{History: sfere.HistoryOptions{Size: 64, Epoch: "log"}})
	cl := &logOnly{}
	tr, err := presence.New(hub, presence.Options{Room: "room", Snapshot: renderSnapshot, Diff: renderDiff, Cluster: cl,
		Window: -1, Resume: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	seen := 0
	applyAppended := func() []presence.Change {
		cl.mu.Lock()
		batches := cl.appended[seen:]
		seen = len(cl.appended)
		cl.mu.Unlock()
		var all []presence.Change
		for _, b := range batches {
			cl.n.Applied(presence.Applied{Changes: b, Stored: time.Now()})
			all = append(all, b...)
		}
		return all
	}
	brian := presence.Hold{Claim: presence.Claim{Person: "brian", Owner: "o1", Ref: "c1"}, Streams: 1, Since: time.Now()}
	cl.n.Held("b", brian)
	if got := applyAppended(); len(got) != 1 || got[0].Leave || got[0].Ref != "c1" || got[0].Claim != "c1" {
		t.Fatalf("brian's arrival appended as %+v, want one arrival of c1, claim c1", got)
	}
	cl.n.NodeLost("b")
	if got := applyAppended(); len(got) != 1 || !got[0].Leave || got[0].Ref != "c1" {
		t.Fatalf("brian's departure appended as %+v, want one departure of c1", got)
	}
	cl.n.Held("b", brian) // b is heard again, brian's stream still there
	got := applyAppended()
	if len(got) != 1 || got[0].Leave || !got[0].Member.Back || got[0].Ref == "c1" || got[0].Claim != "c1" {
		t.Fatalf("brian's return appended as %+v, want one return under a new Ref, claim c1 (b's)", got)
	}
}
