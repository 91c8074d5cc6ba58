package presence_test

import (
	"testing"
	"time"

	"github.com/sfere-go/sfere/presence"
)

// Away lists a person from its resumable departure until it comes back
// or its window runs out, with when the window ends.
func TestAwayListsPeopleWithinTheirWindow(t *testing.T) {
	const resume = 5 * time.Second
	before := time.Now()
	r := newRigClock(t, presence.Options{Grace: -1, Resume: resume})
	after := time.Now() // the fake clock started between before and after
	r.claim("phil", "s2")
	ps := r.open("s2")
	r.claim("brian", "s1")
	bs := r.open("s1")
	ps.waitFor(`data-joins="brian"`)
	if away := r.tracker.Away(); len(away) != 0 {
		t.Fatalf("away with everyone present: %+v", away)
	}
	bs.Close()
	r.waitState("brian", "away", 0)
	away := r.tracker.Away()
	if len(away) != 1 || away[0].ID != "brian" {
		t.Fatalf("Away() = %+v, want brian", away)
	}
	if u := away[0].Until; u.Before(before.Add(resume)) || u.After(after.Add(resume)) {
		t.Errorf("brian's window ends at %v, want the fake clock's start + %v (in [%v, %v])", u, resume, before.Add(resume), after.Add(resume))
	}
	// Back within the window: no longer away.
	bs = r.open("s1")
	r.waitState("brian", "present", 1)
	if away := r.tracker.Away(); len(away) != 0 {
		t.Fatalf("away after coming back: %+v", away)
	}
	// Away again, and the window runs out: forgotten.
	r.clock.Advance(time.Second)
	bs.Close()
	r.waitState("brian", "away", 0)
	if away := r.tracker.Away(); len(away) != 1 || !away[0].Until.After(after.Add(resume)) {
		t.Fatalf("Away() = %+v, want brian with a window from his second departure", away)
	}
	r.clock.Advance(resume)
	if away := r.tracker.Away(); len(away) != 0 {
		t.Fatalf("away after the window ran out: %+v", away)
	}
}
