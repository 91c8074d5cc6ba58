package lobby_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// recoveryNotice is the line a stream gets when the lobby could not send
// it everything it missed.
const recoveryNotice = "could not be recovered"

// A line said between the page's render (or the /join answer) and the
// moment its stream opens reaches the page: the page opens its stream from
// the position it was rendered at. Each such line arrives once, before the
// lines said after the stream opened.
func TestLineSaidBetweenPageAndStreamIsNotLost(t *testing.T) {
	srv := startServer(t, lobby.Options{})
	phil, brian := newBrowser(t, srv), newBrowser(t, srv)
	ps := phil.enter("phil")

	// The /join answer, then a line, then the stream.
	joined := brian.join("brian")
	phil.say("said before the stream opened")
	bs := brian.openStreamFrom(renderedPosition(t, joined.body))
	bs.waitFor("said before the stream opened")
	phil.say("said after it opened")
	bs.waitFor("said after it opened")

	// A reload: the page, then a line, then the page's stream.
	bs.Close()
	page := brian.get("/")
	if !strings.Contains(page.body, "You are <strong>brian</strong>") {
		t.Fatalf("the reload does not show the lobby:\n%s", page.body)
	}
	phil.say("said during the reload")
	again := brian.openStreamFrom(renderedPosition(t, page.body))
	again.waitFor("said during the reload")
	phil.say("said after the reload")
	again.waitFor("said after the reload")

	for _, s := range []struct {
		s     *stream
		lines []string
	}{
		{bs, []string{"said before the stream opened", "said after it opened"}},
		{again, []string{"said during the reload", "said after the reload"}},
	} {
		assertLinesOnceInOrder(t, s.s, s.lines...)
		if n := s.s.count(recoveryNotice); n != 0 {
			t.Errorf("a stream that recovered was told it could not:\n%s", s.s.dump())
		}
	}
	if n := ps.count(leftLine("brian")); n != 0 {
		t.Errorf("the reload announced a departure:\n%s", ps.dump())
	}
}

// A stream that comes back with a position the lobby cannot serve (another
// epoch: the server restarted) is told so, and still gets the list.
func TestUnrecoverablePositionIsSaid(t *testing.T) {
	srv := startServer(t, lobby.Options{})
	brian := newBrowser(t, srv)
	brian.join("brian")
	bs := brian.openStreamFrom("0000000000000000-7")
	bs.waitFor(recoveryNotice)
	bs.waitFor(`id="participant-list"`)
}

// assertLinesOnceInOrder checks that each chat text arrived on s exactly
// once, in the order given.
func assertLinesOnceInOrder(t *testing.T, s *stream, texts ...string) {
	t.Helper()
	last := -1
	for _, text := range texts {
		at := -1
		for i, e := range s.events() {
			if strings.Contains(e.Text(), text) {
				if at >= 0 {
					t.Errorf("%q arrived twice:\n%s", text, s.dump())
				}
				at = i
			}
		}
		switch {
		case at < 0:
			t.Errorf("%q never arrived:\n%s", text, s.dump())
		case at < last:
			t.Errorf("%q arrived out of order:\n%s", text, s.dump())
		}
		last = at
	}
}

// A restarted single-node lobby with the same session key takes every
// session back when its page reconnects: no new join, each person listed
// once, a line saying what was said meanwhile is lost, and chat works.
func TestRestartResumesSessions(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	a := startServer(t, lobby.Options{SessionKey: key})
	brian, phil := newBrowser(t, a), newBrowser(t, a)
	bs := brian.enter("brian")
	ps := phil.enter("phil")
	bs.waitFor(joinedLine("phil"))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	bs.waitEnd(waitLong)
	ps.waitEnd(waitLong)

	b := startServer(t, lobby.Options{SessionKey: key})
	for _, br := range []*browser{brian, phil} {
		br.base.Host = b.Addr().String() // the cookie jar ignores the port: the cookies go along
	}
	bs2 := brian.openStreamFrom(bs.lastID())
	ps2 := phil.openStreamFrom(ps.lastID())
	for _, s := range []*stream{bs2, ps2} {
		s.waitFor(recoveryNotice)
		ssetest.Eventually(t, waitLong, "both listed", func() bool {
			it := listModel(s)
			return it[participantID("brian")] && it[participantID("phil")] && len(it) == 2
		})
		if n := s.count(`<form id="join"`); n != 0 {
			t.Errorf("a resumed session was asked to join again:\n%s", s.dump())
		}
	}
	phil.say("back after the restart")
	bs2.waitFor("<strong>phil</strong>: back after the restart")

	// Another browser cannot take the name of a resumed session.
	if r := newBrowser(t, b).post("/join", map[string]any{"username": "brian"}); r.status != http.StatusConflict {
		t.Errorf("join as brian while brian resumed: status %d, want 409", r.status)
	}
}

// A forged or foreign member cookie does not take a name: the session is
// asked to join again.
func TestForgedMemberCookieRefused(t *testing.T) {
	a := startServer(t, lobby.Options{SessionKey: []byte("0123456789abcdef0123456789abcdef")})
	brian := newBrowser(t, a)
	brian.enter("brian")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	b := startServer(t, lobby.Options{SessionKey: []byte("another key, another lobby......")})
	brian.base.Host = b.Addr().String()
	s := brian.openStream()
	s.waitFor("please join again")
	if r := newBrowser(t, b).post("/join", map[string]any{"username": "brian"}); r.status != http.StatusOK {
		t.Errorf("the name of a session signed by another key is not free: status %d", r.status)
	}
}
