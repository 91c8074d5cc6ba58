package lobby_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// A page whose recovery failed (the lobby restarted) is told so in its
// opening, which also gives it a position. If that stream breaks before
// the next presence batch, the page resumes from that position, and the
// lobby replays what came after it without a participant list: so the
// opening must bring the list itself. Here the batch with Phil's return
// is held (a long presence window, which a storm of changes gives too),
// Phil's page breaks right after its opening and resumes: it must see
// the list before its own arrival is announced again, never the same
// "joined" line twice with no list between (issue 16's single-node
// finding), and end with the right list.
func TestNoticeOpeningCarriesTheList(t *testing.T) {
	const window = 12 * time.Second // holds the second batch after the restart
	key := []byte("0123456789abcdef0123456789abcdef")
	a := startServer(t, lobby.Options{SessionKey: key, Grace: 5 * time.Second})
	brian, phil := newBrowser(t, a), newBrowser(t, a)
	bs := brian.enter("brian")
	ps := phil.enter("phil")
	bs.waitFor(joinedLine("phil"))
	ps.waitFor(joinedLine("phil"))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	bs.waitEnd(waitLong)
	ps.waitEnd(waitLong)

	b := startServer(t, lobby.Options{SessionKey: key, Grace: 5 * time.Second, PresenceWindow: window})
	for _, br := range []*browser{brian, phil} {
		br.base.Host = b.Addr().String() // the cookie jar ignores the port: the cookies go along
	}
	// Brian's return is the first change after a quiet spell: its batch
	// goes out at once, and the next one waits for the window.
	bs2 := brian.openStreamFrom(bs.lastID())
	bs2.waitFor(recoveryNotice)
	bs2.waitFor(joinedLine("brian"))

	// Phil's page comes back from before the restart: its recovery fails,
	// and its arrival waits in the held batch.
	ps2 := phil.openStreamFrom(ps.lastID())
	ps2.waitFor(recoveryNotice)
	if _, err := ps2.Seen(waitLong, withData(`id="participant-list"`)); err != nil {
		t.Errorf("the opening that told the page what was lost brought no participant list: %v\n%s", err, ps2.dump())
	}
	// The page breaks and resumes from the position its opening gave it,
	// before the held batch goes out.
	from := ps2.lastID()
	if from == "" {
		t.Fatalf("the opening carried no position:\n%s", ps2.dump())
	}
	if strings.Contains(ps2.dump(), joinedLine("phil")) {
		t.Fatalf("the held batch went out before the page broke (the machine too slow for the %v window?):\n%s", window, ps2.dump())
	}
	ps2.close()
	ps3 := phil.openStreamFrom(from)
	ps3.waitForWithin(joinedLine("phil"), window+waitLong)
	bs2.waitFor(joinedLine("phil"))
	if n := ps3.count(recoveryNotice); n != 0 {
		t.Errorf("the resume from the opening's position was not recovered:\n%s", ps3.dump())
	}

	// Phil's page across its three streams, as the checker of the fault
	// campaign reads it: a list restates everything, and an arrival
	// announced twice with no list or departure between is doubled.
	page := []*stream{ps, ps2, ps3}
	announced := map[string]bool{}
	for _, s := range page {
		for _, e := range s.events() {
			text := e.Text()
			if strings.Contains(text, `<ul id="participant-list">`) {
				clear(announced)
			}
			for _, name := range []string{"brian", "phil"} {
				if strings.Contains(text, leftLine(name)) {
					announced[name] = false
				}
				if strings.Contains(text, joinedLine(name)) {
					if announced[name] {
						t.Errorf("%s's arrival announced twice with no list between:\n%s\n%s\n%s", name, ps.dump(), ps2.dump(), ps3.dump())
					}
					announced[name] = true
				}
			}
		}
	}
	var events []ssetest.Event
	for _, s := range page {
		events = append(events, s.events()...)
	}
	if items := listOf(events); !items[participantID("brian")] || !items[participantID("phil")] || len(items) != 2 {
		t.Errorf("the page's list is %v, want brian and phil:\n%s", items, ps3.dump())
	}
}
