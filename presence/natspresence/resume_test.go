package natspresence_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/presence"
)

func back(id string) string { return `id="join" data-id="` + id + `" data-back="true"` }

// takenEverywhere checks that another owner cannot claim person through
// any of nodes, and that its owner's claim is found, away, on each.
func takenEverywhere(t *testing.T, person, owner string, nodes map[string]*node) {
	t.Helper()
	for name, n := range nodes {
		if err := n.claim(person, "s9"); !errors.Is(err, presence.ErrTaken) {
			t.Errorf("%s claimed through node %s by another owner while away: %v", person, name, err)
		}
		m, ok := n.tracker.Lookup(t.Context(), owner)
		if !ok || m.ID != person || m.Present {
			t.Errorf("Lookup of %s's owner on node %s while away = %+v, %v", person, name, m, ok)
		}
	}
}

// leftAndBackOnce checks that each stream saw person depart once (for
// reason) and come back once, and arrive once before that.
func leftAndBackOnce(t *testing.T, person, reason string, tabs map[string]*tab) {
	t.Helper()
	for name, tb := range tabs {
		if n := tb.count(`data-id="` + person + `" data-reason`); n != 1 {
			t.Errorf("%s saw %d departures of %s, want 1:\n%s", name, n, person, strings.Join(tb.elements(), "\n"))
		}
		if n := tb.count(left(person, reason)); n != 1 {
			t.Errorf("%s: %s's departure was not %s", name, person, reason)
		}
		if n := tb.count(joined(person)); n != 2 {
			t.Errorf("%s saw %s join %d times, want 2 (arrival, return)", name, person, n)
		}
		if n := tb.count(back(person)); n != 1 {
			t.Errorf("%s saw %s back %d times, want 1", name, person, n)
		}
		tb.replay(t, true)
	}
}

// A person whose last stream, on node a, ended departs once on every
// node; its page reconnects through node b within the window and it is
// back, announced once on every node; meanwhile its name is reserved on
// every node, in the shared claims too (a node that starts meanwhile
// refuses it).
func TestResumeThroughAnotherNode(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	defer ns.Shutdown()
	nodes := map[string]*node{}
	for _, id := range []string{"a", "b", "c"} {
		nodes[id] = startNodeResume(t, ns.ClientURL(), id, time.Minute)
	}
	a, b := nodes["a"], nodes["b"]
	if err := a.claim("phil", "s2"); err != nil {
		t.Fatal(err)
	}
	tabs := map[string]*tab{}
	for id, n := range nodes {
		tabs["phil on "+id] = n.open("s2")
	}
	if err := a.claim("brian", "s1"); err != nil {
		t.Fatal(err)
	}
	bs := a.open("s1")
	for _, tb := range tabs {
		tb.waitFor(joined("brian"))
	}
	bs.Close()
	for _, tb := range tabs {
		tb.waitFor(left("brian", "closed"))
	}
	takenEverywhere(t, "brian", "s1", nodes)
	// Longer than a claim lives in the bucket without being re-asserted:
	// only the nodes' re-assertions keep it, and a node started now
	// knows brian only from there.
	time.Sleep(claimLife + interval) // negative check: the claim's life in the bucket (the NATS server's clock) runs out
	d := startNodeResume(t, ns.ClientURL(), "d", time.Minute)
	if err := d.claim("brian", "s9"); !errors.Is(err, presence.ErrTaken) {
		t.Errorf("a node started while brian was away gave his name to another owner: %v", err)
	}

	bs2 := b.open("s1") // the page reconnects through b
	bs2.waitFor("brian")
	for _, tb := range tabs {
		tb.waitFor(back("brian"))
	}
	for id, n := range nodes {
		ssetest.Eventually(t, waitLong, "brian is a member on node "+id, func() bool {
			return strings.Contains(names(n.tracker.Members()), "brian")
		})
	}
	time.Sleep(grace + 4*interval) // negative check: anything doubled would have come by now
	leftAndBackOnce(t, "brian", "closed", tabs)
	for id, n := range nodes {
		if m, ok := n.tracker.Lookup(t.Context(), "s1"); !ok || !m.Present {
			t.Errorf("Lookup of brian's owner on node %s after the return = %+v, %v", id, m, ok)
		}
	}
}

// A node is lost with a person's only stream: the person departs once on
// every other node and resumes through one of them.
func TestResumeAfterNodeLost(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	defer ns.Shutdown()
	a, b, c := startNodeResume(t, ns.ClientURL(), "a", time.Minute), startNodeResume(t, ns.ClientURL(), "b", time.Minute),
		startNodeResume(t, ns.ClientURL(), "c", time.Minute)
	if err := a.claim("phil", "s2"); err != nil {
		t.Fatal(err)
	}
	tabs := map[string]*tab{"phil on a": a.open("s2"), "phil on b": b.open("s2")}
	if err := c.claim("brian", "s1"); err != nil {
		t.Fatal(err)
	}
	c.open("s1")
	for _, tb := range tabs {
		tb.waitFor(joined("brian"))
	}
	c.crash()
	for _, tb := range tabs {
		tb.waitFor(left("brian", "node-lost"))
	}
	time.Sleep(claimLife + interval) // negative check: the lost node's re-assertions have run out (the NATS server's clock)
	takenEverywhere(t, "brian", "s1", map[string]*node{"a": a, "b": b})

	a.open("s1") // the page reconnects through a
	for _, tb := range tabs {
		tb.waitFor(back("brian"))
	}
	time.Sleep(grace + 4*interval) // negative check: anything doubled would have come by now
	leftAndBackOnce(t, "brian", "node-lost", tabs)
}

// A node restarts while a person is away: it does not give the name away,
// and the person resumes through it (announced back on the other node).
func TestResumeThroughRestartedNode(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	defer ns.Shutdown()
	a, b := startNodeResume(t, ns.ClientURL(), "a", time.Minute), startNodeResume(t, ns.ClientURL(), "b", time.Minute)
	if err := a.claim("phil", "s2"); err != nil {
		t.Fatal(err)
	}
	pa := a.open("s2")
	if err := a.claim("brian", "s1"); err != nil {
		t.Fatal(err)
	}
	bs := a.open("s1")
	pa.waitFor(joined("brian"))
	bs.Close()
	pa.waitFor(left("brian", "closed"))
	ssetest.Eventually(t, waitLong, "b sees brian away", func() bool {
		m, ok := b.tracker.Lookup(t.Context(), "s1")
		return ok && !m.Present && !strings.Contains(names(b.tracker.Members()), "brian")
	})
	b.stop()
	b = startNodeResume(t, ns.ClientURL(), "b", time.Minute)
	if err := b.claim("brian", "s9"); !errors.Is(err, presence.ErrTaken) {
		t.Errorf("a restarted node gave brian's name away: %v", err)
	}
	pb := b.open("s2")
	b.open("s1")
	pa.waitFor(back("brian"))
	pb.waitFor(back("brian"))      // it never saw him leave, but it is a return
	time.Sleep(grace + 4*interval) // negative check: anything doubled would have come by now
	leftAndBackOnce(t, "brian", "closed", map[string]*tab{"phil on a": pa})
	if n := pb.count(`data-id="brian"`); n != 1 {
		t.Errorf("phil on the restarted node saw %d events about brian, want 1 (back)", n)
	}
	pb.replay(t, true)
}

// The window runs out on every node: the name is released silently, and
// another owner may claim it through any node.
func TestResumeWindowRunsOutEverywhere(t *testing.T) {
	const resume = time.Second
	a, b, tabs, closed := brianAway(t, resume)
	ssetest.Eventually(t, waitLong, "the name is free through b", func() bool { return b.claim("brian", "s9") == nil })
	if took := time.Since(closed); took < grace+resume {
		t.Errorf("the name was free %v after the stream closed, before grace and window (%v)", took, grace+resume)
	}
	for id, n := range map[string]*node{"a": a, "b": b} {
		ssetest.Eventually(t, waitLong, "brian's old owner holds nothing on "+id, func() bool {
			_, ok := n.tracker.Lookup(t.Context(), "s1")
			return !ok
		})
	}
	b.open("s9")
	for name, tb := range tabs {
		ssetest.Eventually(t, waitLong, name+" sees the new brian", func() bool { return tb.count(joined("brian")) == 2 })
	}
	time.Sleep(grace + 4*interval) // negative check: anything doubled would have come by now
	for name, tb := range tabs {
		if n := tb.count(`data-id="brian" data-reason`); n != 1 {
			t.Errorf("%s saw %d departures of brian, want 1", name, n)
		}
		if n := tb.count(back("brian")); n != 0 {
			t.Errorf("%s saw another owner's brian as back", name)
		}
	}
}

// A person away claims another id through another node: the old one is
// released silently on every node, and the new one is a newcomer.
func TestRenameWhileAwayAcrossNodes(t *testing.T) {
	a, b, tabs, _ := brianAway(t, time.Minute)
	takenEverywhere(t, "brian", "s1", map[string]*node{"a": a, "b": b})
	renamed, err := b.tracker.Claim(t.Context(), presence.Claim{Person: "bryan", Owner: "s1"})
	if err != nil || renamed != "brian" {
		t.Fatalf("claim of another id while away = %q, %v; want renamed brian", renamed, err)
	}
	ssetest.Eventually(t, waitLong, "brian is free through a", func() bool { return a.claim("brian", "s9") == nil })
	ssetest.Eventually(t, waitLong, "a finds s1's new id", func() bool {
		m, ok := a.tracker.Lookup(t.Context(), "s1")
		return ok && m.ID == "bryan"
	})
	a.open("s1") // bryan's first stream, through a
	for _, tb := range tabs {
		tb.waitFor(joined("bryan"))
	}
	time.Sleep(grace + 4*interval) // negative check: anything doubled would have come by now
	for name, tb := range tabs {
		if n := tb.count(`data-id="brian"`); n != 2 {
			t.Errorf("%s saw %d events about brian, want 2 (arrival, departure)", name, n)
		}
		if n := tb.count(back("bryan")); n != 0 {
			t.Errorf("%s saw bryan as back", name)
		}
		tb.replay(t, true)
	}
}

// A person away leaves through another node: released silently on every
// node, the name free at once.
func TestLeaveWhileAwayAcrossNodes(t *testing.T) {
	a, b, tabs, _ := brianAway(t, time.Minute)
	takenEverywhere(t, "brian", "s1", map[string]*node{"a": a, "b": b})
	if id, err := b.tracker.Leave(t.Context(), "s1"); err != nil || id != "brian" {
		t.Fatalf("Leave while away = %q, %v; want brian", id, err)
	}
	ssetest.Eventually(t, waitLong, "brian is free through a", func() bool { return a.claim("brian", "s9") == nil })
	for id, n := range map[string]*node{"a": a, "b": b} {
		if _, ok := n.tracker.Lookup(t.Context(), "s1"); ok {
			t.Errorf("brian's owner holds a person on node %s after leaving", id)
		}
	}
	time.Sleep(grace + 4*interval) // negative check: anything doubled would have come by now
	for name, tb := range tabs {
		if n := tb.count(`data-id="brian"`); n != 2 {
			t.Errorf("%s saw %d events about brian, want 2 (arrival, departure)", name, n)
		}
	}
}

// brianAway starts nodes a and b with the resume window on one NATS, phil
// (owner s2) with a tab on each, and brian (owner s1) through a, whose
// stream then closes (at closed): it returns once both of phil's tabs saw
// brian leave.
func brianAway(t *testing.T, resume time.Duration) (a, b *node, tabs map[string]*tab, closed time.Time) {
	t.Helper()
	ns := startNATS(t, "127.0.0.1:0")
	t.Cleanup(ns.Shutdown)
	a, b = startNodeResume(t, ns.ClientURL(), "a", resume), startNodeResume(t, ns.ClientURL(), "b", resume)
	if err := a.claim("phil", "s2"); err != nil {
		t.Fatal(err)
	}
	tabs = map[string]*tab{"phil on a": a.open("s2"), "phil on b": b.open("s2")}
	if err := a.claim("brian", "s1"); err != nil {
		t.Fatal(err)
	}
	bs := a.open("s1")
	for _, tb := range tabs {
		tb.waitFor(joined("brian"))
	}
	closed = time.Now()
	bs.Close()
	for _, tb := range tabs {
		tb.waitFor(left("brian", "closed"))
	}
	return a, b, tabs, closed
}
