package presence_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/netfault"
	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/presence"
)

// backOf is what a diff shows of id coming back within its resume window.
func backOf(id string) string { return `data-back="` + id + `"` }

// reserved checks that brian's id is held for s1 while he is away: another
// owner is refused, and Lookup finds him, not present.
func reserved(t *testing.T, r *rig) {
	t.Helper()
	if st := r.post("/claim?id=brian&owner=s9"); st != http.StatusConflict {
		t.Errorf("brian claimed by another owner while away: status %d, want 409", st)
	}
	m, ok := r.tracker.Lookup(t.Context(), "s1")
	if !ok || m.ID != "brian" || m.Present || m.Back {
		t.Errorf("Lookup of brian's owner while away = %+v, %v; want brian, not present", m, ok)
	}
	for _, m := range r.tracker.Members() {
		if m.ID == "brian" {
			t.Errorf("brian is a member while away")
		}
	}
}

// backOnce checks what phil's stream saw of brian: joined twice (the
// second time back), left once.
func backOnce(t *testing.T, ps *tab, reason string) {
	t.Helper()
	if n := ps.count(leaves("brian")); n != 1 {
		t.Errorf("phil saw %d departures of brian, want 1:\n%s", n, strings.Join(ps.all(), "\n"))
	}
	if n := ps.count(`data-leaves="brian:` + reason + `"`); n != 1 {
		t.Errorf("brian's departure was not %s", reason)
	}
	if n := len(joinedID(ps, "brian")); n != 2 {
		t.Errorf("phil saw brian join %d times, want 2 (arrival, return)", n)
	}
	if n := ps.count(backOf("brian")); n != 1 {
		t.Errorf("phil saw brian back %d times, want 1", n)
	}
}

func joinedID(tb *tab, id string) []string {
	var out []string
	for _, j := range joined(tb) {
		if j == id {
			out = append(out, j)
		}
	}
	return out
}

// A peer that vanished departs at once, as without a window, but its name
// stays reserved; the owner's page reconnects and the person is back,
// announced once.
func TestResumeAfterVanishedPeer(t *testing.T) {
	if err := netfault.Available(); err != nil {
		t.Skip(err)
	}
	r := newRigUserTimeout(t, presence.Options{Grace: time.Minute, Resume: time.Minute}, time.Second)
	r.claim("phil", "s2")
	ps := r.open("s2")
	r.claim("brian", "s1")
	bs := r.open("s1")
	ps.waitFor(`data-joins="brian"`)
	netfault.DropConn(t, bs.LocalPort(), bs.RemotePort())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // something must be written for TCP to notice
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				r.ping()
			}
		}
	})
	defer wg.Wait()
	defer close(stop)
	ps.waitFor(`data-leaves="brian:closed"`)
	d := r.lastLeave("brian")
	if !d.Resumable || d.Err == nil || !strings.Contains(d.Err.Error(), "vanished") {
		t.Errorf("departure = %+v, want a resumable one of a vanished peer", d)
	}
	reserved(t, r)

	bs2 := r.open("s1") // the page reconnects
	bs2.waitList("phil", "brian")
	ps.waitFor(backOf("brian"))
	ssetest.Eventually(t, waitLong, "brian is a member again", func() bool { return len(r.tracker.Members()) == 2 })
	if m, ok := r.tracker.Lookup(t.Context(), "s1"); !ok || !m.Present || m.Back {
		t.Errorf("Lookup after the return = %+v, %v", m, ok)
	}
	// The new stream's snapshot is the room before the batch of his
	// return (phil alone); the batch then tells it of the return, once.
	if n := bs2.count(backOf("brian")); n != 1 {
		t.Errorf("brian's new stream was told of his own return %d times, want 1", n)
	}
	if n := bs2.count(leaves("brian")); n != 0 {
		t.Errorf("brian's new stream was told of his departure (%d)", n)
	}
	r.settle(ps, bs2)
	backOnce(t, ps, "closed")
}

// A departure after the grace period is resumable too; the claim timeout
// does not cut the window short.
func TestResumeAfterGrace(t *testing.T) {
	const grace, claimTimeout = 100 * time.Millisecond, 100 * time.Millisecond
	r := newRigClock(t, presence.Options{Grace: grace, Resume: 5 * time.Second, ClaimTimeout: claimTimeout})
	r.claim("phil", "s2")
	ps := r.open("s2")
	r.claim("brian", "s1")
	bs := r.open("s1")
	ps.waitFor(`data-joins="brian"`)
	bs.Close()
	r.waitState("brian", "grace", 0)
	r.clock.Advance(grace)
	ps.waitFor(`data-leaves="brian:closed"`)
	r.clock.Advance(3 * claimTimeout)
	r.checkState("brian", "away")
	reserved(t, r)
	r.claim("brian", "s1") // the owner claims its own id again: it stays away
	r.clock.Advance(3 * claimTimeout)
	r.checkState("brian", "away")
	bs2 := r.open("s1")
	bs2.waitList("phil", "brian")
	ps.waitFor(backOf("brian"))
	r.settle(ps, bs2)
	backOnce(t, ps, "closed")
	var backs int
	for _, d := range r.batches() {
		for _, j := range d.Joins {
			if j.Back {
				backs++
			}
		}
	}
	if backs != 1 {
		t.Errorf("%d joins with Back, want 1: %+v", backs, r.batches())
	}
}

// A window that runs out releases the name silently: no second departure,
// and another owner may claim it; the old owner's page is refused.
func TestResumeWindowRunsOut(t *testing.T) {
	const resume = 500 * time.Millisecond
	r := newRig(t, presence.Options{Grace: -1, Resume: resume})
	r.claim("phil", "s2")
	ps := r.open("s2")
	r.claim("brian", "s1")
	bs := r.open("s1")
	ps.waitFor(`data-joins="brian"`)
	closed := time.Now() // the window starts after this
	bs.Close()
	ps.waitFor(`data-leaves="brian:closed"`)
	ssetest.Eventually(t, waitLong, "the window runs out and the name is free", func() bool {
		return r.post("/claim?id=brian&owner=s9") == http.StatusOK
	})
	if took := time.Since(closed); took < resume {
		t.Errorf("the name was free %v after the stream closed, within the window (%v)", took, resume)
	}
	if _, ok := r.tracker.Lookup(t.Context(), "s1"); ok {
		t.Errorf("brian's old owner still holds him after the window")
	}
	if st := r.post("/sse?owner=s1"); st != http.StatusForbidden {
		t.Errorf("the old owner's page after the window: status %d, want 403", st)
	}
	r.open("s9")
	ssetest.Eventually(t, waitLong, "the new brian joins, not back", func() bool {
		return ps.count(`data-joins="brian" data-leaves="" data-back=""`) == 2
	})
	if n := ps.count(leaves("brian")); n != 1 {
		t.Errorf("phil saw %d departures of brian, want 1", n)
	}
	for _, d := range r.batches() {
		for _, l := range d.Leaves {
			if l.Reason == 0 {
				t.Errorf("a departure without a reason: %+v", l)
			}
		}
	}
}

// Leave is never resumable; Leave while away releases the name silently.
func TestLeaveNotResumable(t *testing.T) {
	r := newRig(t, presence.Options{Grace: -1, Resume: time.Minute})
	r.claim("phil", "s2")
	ps := r.open("s2")
	r.claim("brian", "s1")
	r.open("s1")
	ps.waitFor(`data-joins="brian"`)
	if st := r.post("/leave?owner=s1"); st != http.StatusOK {
		t.Fatalf("leave: %d", st)
	}
	ps.waitFor(`data-leaves="brian:left"`)
	if d := r.lastLeave("brian"); d.Resumable {
		t.Errorf("a leave is resumable: %+v", d)
	}
	r.claim("brian", "s9") // free at once
	if st := r.post("/sse?owner=s1"); st != http.StatusForbidden {
		t.Errorf("the page of the owner who left: status %d, want 403", st)
	}

	// carol goes away, then leaves: nothing more is said.
	r.claim("carol", "s3")
	cs := r.open("s3")
	ps.waitFor(`data-joins="carol"`)
	cs.Close()
	ps.waitFor(`data-leaves="carol:closed"`)
	id, err := r.tracker.Leave(t.Context(), "s3")
	if err != nil || id != "carol" {
		t.Fatalf("Leave while away = %q, %v; want carol", id, err)
	}
	r.claim("carol", "s8") // free at once
	if _, ok := r.tracker.Lookup(t.Context(), "s3"); ok {
		t.Errorf("carol's owner holds a person after leaving")
	}
	r.settle(ps)
	if n := ps.count(leaves("carol")); n != 1 {
		t.Errorf("phil saw %d departures of carol, want 1", n)
	}
}

// A claim of another id while away gives the old one up silently.
func TestRenameWhileAwaySilent(t *testing.T) {
	r := newRig(t, presence.Options{Grace: -1, Resume: time.Minute})
	r.claim("phil", "s2")
	ps := r.open("s2")
	r.claim("brian", "s1")
	bs := r.open("s1")
	ps.waitFor(`data-joins="brian"`)
	bs.Close()
	ps.waitFor(`data-leaves="brian:closed"`)
	renamed, err := r.tracker.Claim(t.Context(), presence.Claim{Person: "bryan", Owner: "s1"})
	if err != nil || renamed != "brian" {
		t.Fatalf("claim of another id while away = %q, %v; want renamed brian", renamed, err)
	}
	r.claim("brian", "s9") // free at once
	r.open("s1")
	ps.waitFor(`data-joins="bryan" data-leaves="" data-back=""`) // a newcomer, not back
	if n := ps.count(leaves("brian")); n != 1 {
		t.Errorf("phil saw %d departures of brian, want 1:\n%s", n, strings.Join(ps.all(), "\n"))
	}
	for _, d := range r.batches() {
		for _, l := range d.Leaves {
			if l.Reason == presence.ReasonRenamed {
				t.Errorf("a rename while away was announced: %+v", l)
			}
		}
	}
}

// A rename of a present person is never resumable: the old id is free at
// once.
func TestRenameNotResumable(t *testing.T) {
	r := newRig(t, presence.Options{Resume: time.Minute})
	r.claim("phil", "s2")
	ps := r.open("s2")
	r.claim("brian", "s1")
	bs := r.open("s1")
	ps.waitFor(`data-joins="brian"`)
	r.claim("bryan", "s1")
	ps.waitFor(`data-leaves="brian:renamed"`)
	bs.waitEnd()
	if d := r.lastLeave("brian"); d.Resumable {
		t.Errorf("a rename is resumable: %+v", d)
	}
	r.claim("brian", "s9")
}

// Without a window (the default) the claim goes with the departure.
func TestNoResumeWindowReleasesAtDeparture(t *testing.T) {
	r := newRig(t, presence.Options{Grace: -1})
	r.claim("phil", "s2")
	ps := r.open("s2")
	r.claim("brian", "s1")
	bs := r.open("s1")
	ps.waitFor(`data-joins="brian"`)
	bs.Close()
	ps.waitFor(`data-leaves="brian:closed"`)
	if d := r.lastLeave("brian"); d.Resumable {
		t.Errorf("resumable without a window: %+v", d)
	}
	r.claim("brian", "s9")
}
