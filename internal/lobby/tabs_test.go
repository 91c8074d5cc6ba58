package lobby_test

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/lobby"
)

// Two tabs of one session (two streams, one cookie) are one participant:
// both tabs receive everything, the list shows the name once, closing one
// tab says nothing, closing the last says "brian left the lobby" once.
func TestTwoTabsOfOneSession(t *testing.T) {
	srv := startServer(t, lobby.Options{Debug: true, Heartbeat: 300 * time.Millisecond})
	brian, phil := newBrowser(t, srv), newBrowser(t, srv)
	tab1 := brian.enter("brian")
	ps := phil.enter("phil")
	tab1.waitFor(joinedLine("phil"))

	tab2 := brian.openStream() // the second tab: no new join
	list := tab2.waitFor(`id="participant-list"`)
	if n := strings.Count(list.Text(), `id="`+participantID("brian")+`"`); n != 1 {
		t.Errorf("the second tab's list shows brian %d times: %s", n, list.Text())
	}
	if keys := debugPeople(t, phil); !slices.Equal(keys, []string{"brian", "brian", "phil"}) {
		t.Errorf("streams of = %q", keys)
	}

	// Both tabs receive; either tab's session speaks as brian.
	phil.say("hello both tabs")
	for _, s := range []*stream{tab1, tab2} {
		s.waitFor("<strong>phil</strong>: hello both tabs")
	}
	brian.say("one of my tabs")
	ps.waitFor("<strong>brian</strong>: one of my tabs")
	if n := ps.count(joinedLine("brian")) + ps.count(`<li id="`+participantID("brian")); n != 1 {
		t.Errorf("phil's stream shows brian %d times (list items and joined lines), want 1 (his snapshot)", n)
	}

	// One tab closes: nothing is said; the other still receives.
	tab1.close()
	time.Sleep(testGrace + 3*300*time.Millisecond) // negative check: a departure would come at grace, a heartbeat-found one soon after
	if n := ps.count(leftLine("brian")) + ps.count(removal("brian")); n != 0 {
		t.Fatalf("closing one of two tabs was announced:\n%s", ps.dump())
	}
	phil.say("still there?")
	tab2.waitFor("<strong>phil</strong>: still there?")

	// The last tab closes: one departure, after the grace period.
	closed := time.Now()
	tab2.close()
	left := ps.waitForWithin(leftLine("brian"), testGrace+time.Second)
	if took := left.At.Sub(closed); took < testGrace {
		t.Errorf("departure after %v, before the grace period (%v)", took, testGrace)
	}
	time.Sleep(testGrace + 3*300*time.Millisecond) // negative check: a second departure (grace or heartbeat) would come by now
	if n := ps.count(leftLine("brian")); n != 1 {
		t.Errorf("phil saw %d \"brian left\" lines, want 1", n)
	}
}

// Leave from one tab ends every tab of the session, each told it left.
func TestLeaveEndsEveryTabOfTheSession(t *testing.T) {
	srv := startServer(t, lobby.Options{})
	brian, phil := newBrowser(t, srv), newBrowser(t, srv)
	tab1 := brian.enter("brian")
	tab2 := brian.openStream()
	tab2.waitFor(`id="participant-list"`)
	ps := phil.enter("phil")
	tab1.waitFor(joinedLine("phil"))

	brian.post("/leave", nil)
	ps.waitFor(leftLine("brian"))
	for _, s := range []*stream{tab1, tab2} {
		if err := s.waitEnd(waitLong); !errors.Is(err, io.EOF) {
			t.Errorf("a tab of the session that left ended with %v, want a clean end", err)
		}
		if n := s.count("You have left the lobby"); n != 1 {
			t.Errorf("a tab of the session that left was not told so:\n%s", s.dump())
		}
	}
	if n := ps.count(leftLine("brian")); n != 1 {
		t.Errorf("phil saw %d \"brian left\" lines, want 1", n)
	}
}
