package natspresence_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/natscluster"
)

// leftOnce waits until every page shows person's departure, then checks
// that each shows exactly one, for reason.
func leftOnce(t *testing.T, person, reason string, pages map[string]*tab) {
	t.Helper()
	for name, tb := range pages {
		ssetest.Eventually(t, waitLong, person+"'s departure on "+name+"'s page", func() bool {
			return tb.count(`data-id="`+person+`" data-reason`) > 0
		})
	}
	time.Sleep(grace + 4*interval) // negative check: a second departure, from any node, would come by now
	for name, tb := range pages {
		if n, all := tb.count(left(person, reason)), tb.count(`data-id="`+person+`" data-reason`); n != 1 || all != 1 {
			t.Errorf("%s's page shows %d departures of %s, %d of them %s; want one, %s:\n%s",
				name, all, person, n, reason, reason, strings.Join(tb.elements(), "\n"))
		}
		tb.replay(t, true)
	}
}

// A person whose node was killed and whose page resumed on another node
// leaves through the killed node's new process, just started: its
// departure, a leave, is one line on every page.
func TestLeaveThroughRestartedNode(t *testing.T) {
	t.Run("at once", func(t *testing.T) { leaveThroughRestartedNode(t, false) })
	t.Run("after the loss", func(t *testing.T) { leaveThroughRestartedNode(t, true) })
}

func leaveThroughRestartedNode(t *testing.T, afterLoss bool) {
	ns := startNATS(t, "127.0.0.1:0")
	defer ns.Shutdown()
	opts := nodeOptions{History: 256}
	a := startNodeWith(t, ns.ClientURL(), "a", time.Minute, opts)
	b := startNodeWith(t, ns.ClientURL(), "b", time.Minute, opts)
	c := startNodeWith(t, ns.ClientURL(), "c", time.Minute, opts)
	phil, p01, carol := threePeople(t, a, b, c)
	from := p01.lastID()
	b.crash()
	p01.Close()
	resumed := c.openFrom("o-p01", from)
	if afterLoss {
		select {
		case <-c.lost:
		case <-time.After(waitLong):
			t.Fatal("c never found b lost")
		}
	}
	b = startNodeWith(t, ns.ClientURL(), "b", time.Minute, opts)
	if id, err := b.tracker.Leave(t.Context(), "o-p01"); err != nil || id != "p01" {
		t.Fatalf("Leave through the restarted node = %q, %v; want p01", id, err)
	}
	ssetest.Eventually(t, waitLong, "p01's resumed stream ends", resumed.isEnded)
	leftOnce(t, "p01", "left", map[string]*tab{"phil": phil, "carol": carol})
}

// The campaign's case (issue 20): a person lost with its node and heard
// again arrives again in the log under the next Ref of its claim; nodes
// that start afterwards (a rolling restart) learn of it from the node
// holding its stream, under the claim's Ref. Every node that departs it
// must name the arrival the log shows, or the departure is lost: the
// person stays on every page, until a later arrival of its id departs it
// as "closed".
func TestDepartureAfterRollingRestart(t *testing.T) {
	// The node holding its stream is killed, its page resumes on another
	// node, and it leaves through the killed node's new process.
	t.Run("leave", func(t *testing.T) {
		ns, opts, r := rollingRestart(t)
		from := r.p01.lastID()
		r.b.crash()
		r.p01.Close()
		resumed := r.c.openFrom("o-p01", from)
		b := startNodeWith(t, ns.ClientURL(), "b", time.Minute, opts)
		if id, err := b.tracker.Leave(t.Context(), "o-p01"); err != nil || id != "p01" {
			t.Fatalf("Leave through the restarted node = %q, %v; want p01", id, err)
		}
		ssetest.Eventually(t, waitLong, "p01's resumed stream ends", resumed.isEnded)
		leftOnce(t, "p01", "left", map[string]*tab{"phil": r.phil, "carol": r.carol})
	})
	// The node holding its stream is killed, and its page does not
	// come back: the others find it lost.
	t.Run("node lost", func(t *testing.T) {
		_, _, r := rollingRestart(t)
		r.b.crash()
		r.p01.Close()
		leftOnce(t, "p01", "node-lost", map[string]*tab{"phil": r.phil, "carol": r.carol})
	})
}

// restarted is rollingRestart's cluster: p01 on b, phil on a and carol
// on c, a and c restarted since p01 was lost with b and heard again.
type restarted struct {
	a, b, c          *node
	phil, p01, carol *tab
}

func rollingRestart(t *testing.T) (*natscluster.Server, nodeOptions, restarted) {
	t.Helper()
	ns := startNATS(t, "127.0.0.1:0")
	t.Cleanup(ns.Shutdown)
	opts := nodeOptions{History: 256}
	fr := startFreezer(t, strings.TrimPrefix(ns.ClientURL(), "nats://"))
	a := startNodeWith(t, ns.ClientURL(), "a", time.Minute, opts)
	b := startNodeWith(t, fr.url(), "b", time.Minute, opts)
	c := startNodeWith(t, ns.ClientURL(), "c", time.Minute, opts)
	phil, p01, carol := threePeople(t, a, b, c)
	fr.freeze() // b paused: lost, then heard again
	phil.waitFor(left("p01", "node-lost"))
	fr.thaw()
	phil.waitFor(back("p01"))

	a.stop()
	a = startNodeWith(t, ns.ClientURL(), "a", time.Minute, opts)
	c.stop()
	c = startNodeWith(t, ns.ClientURL(), "c", time.Minute, opts)
	phil, carol = a.open("o-phil"), c.open("o-carol")
	for _, tb := range []*tab{phil, carol} {
		tb.waitShown("phil", "p01", "carol")
	}
	for id, n := range map[string]*node{"a": a, "c": c} {
		ssetest.Eventually(t, waitLong, "node "+id+" sees p01 present", func() bool {
			m, ok := n.tracker.Lookup(t.Context(), "o-p01")
			return ok && m.Present
		})
	}
	return ns, opts, restarted{a: a, b: b, c: c, phil: phil, p01: p01, carol: carol}
}

// A person the log shows but no node holds any more (its node was
// killed, and every other node restarted before finding it lost) leaves
// through a node that knows it from the claims only: nobody else can
// depart it, so the node answering the leave does, from its roster.
func TestLeaveOfAPersonNobodyHolds(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	defer ns.Shutdown()
	// Claims outlive the restarts: the leave finds p01's.
	opts := nodeOptions{History: 256, ClaimTTL: 10 * time.Second}
	a := startNodeWith(t, ns.ClientURL(), "a", time.Minute, opts)
	b := startNodeWith(t, ns.ClientURL(), "b", time.Minute, opts)
	for person, n := range map[string]*node{"phil": a, "p01": b} {
		if err := n.claim(person, "o-"+person); err != nil {
			t.Fatal(err)
		}
	}
	phil, p01 := a.open("o-phil"), b.open("o-p01")
	for _, tb := range []*tab{phil, p01} {
		tb.waitShown("phil", "p01")
	}
	b.crash()
	p01.Close()
	a.stop()

	a = startNodeWith(t, ns.ClientURL(), "a", time.Minute, opts)
	b = startNodeWith(t, ns.ClientURL(), "b", time.Minute, opts)
	phil = a.open("o-phil")
	phil.waitShown("phil", "p01")
	if id, err := b.tracker.Leave(t.Context(), "o-p01"); err != nil || id != "p01" {
		t.Fatalf("Leave = %q, %v; want p01", id, err)
	}
	leftOnce(t, "p01", "left", map[string]*tab{"phil": phil})
	for id, n := range map[string]*node{"a": a, "b": b} {
		ssetest.Eventually(t, waitLong, "p01 gone from node "+id, func() bool { return names(n.tracker.Members()) == "phil" })
	}
}

// threePeople claims phil on a, p01 on b and carol on c, opens a page of
// each, and waits until every page shows all three.
func threePeople(t *testing.T, a, b, c *node) (phil, p01, carol *tab) {
	t.Helper()
	for person, n := range map[string]*node{"phil": a, "p01": b, "carol": c} {
		if err := n.claim(person, "o-"+person); err != nil {
			t.Fatal(err)
		}
	}
	phil, p01, carol = a.open("o-phil"), b.open("o-p01"), c.open("o-carol")
	for _, tb := range []*tab{phil, p01, carol} {
		tb.waitShown("phil", "p01", "carol")
	}
	return phil, p01, carol
}
