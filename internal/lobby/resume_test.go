package lobby_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/netfault"
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
	bs := brian.openPageStream(renderedPosition(t, joined.body))
	bs.waitFor("said before the stream opened")
	bs.waitFor(`id="participant-list"`)
	bs.waitFor(joinedLine("brian")) // the list comes as the stream opens, his arrival with the batch after
	phil.say("said after it opened")
	bs.waitFor("said after it opened")

	// A reload: the page, then a line, then the page's stream.
	bs.Close()
	page := brian.get("/")
	if !strings.Contains(page.body, "You are <strong>brian</strong>") {
		t.Fatalf("the reload does not show the lobby:\n%s", page.body)
	}
	phil.say("said during the reload")
	again := brian.openPageStream(renderedPosition(t, page.body))
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
	// Brian's own arrival reached his first stream once: in its snapshot,
	// not also from the history (the batch that announced it to others
	// excluded his new stream).
	if n := bs.count(joinedLine("brian")); n != 1 {
		t.Errorf("brian's stream shows his arrival %d times, want 1:\n%s", n, bs.dump())
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

// backLine is the line that announces name's return within its resume
// window.
func backLine(name string) string { return `<p class="system-message">` + name + ` is back</p>` }

// Issue 11's case: Brian's machine drops off the network while Phil
// chats. Brian is announced gone once (his peer vanished), his name stays
// his, and when the network comes back his page reconnects with the id of
// the last event it got: he is announced back once, and gets every line
// he missed exactly once, in order, before the lines said after.
func TestVanishedPeerResumes(t *testing.T) {
	if err := netfault.Available(); err != nil {
		t.Skip(err)
	}
	const heartbeat, userTimeout = time.Second, 2 * time.Second
	srv := startServer(t, lobby.Options{Heartbeat: heartbeat, UserTimeout: userTimeout, Resume: time.Minute})
	brian, phil := newBrowser(t, srv), newBrowser(t, srv)
	bs := brian.enter("brian")
	ps := phil.enter("phil")
	bs.waitFor(joinedLine("phil"))
	awayAndBack(t, bs, brian, phil, []*stream{ps}, heartbeat+userTimeout+2*time.Second, func() {
		if r := newBrowser(t, srv).post("/join", map[string]any{"username": "Brian"}); r.status != http.StatusConflict {
			t.Errorf("brian's name while he is away: status %d, want 409 (reserved)", r.status)
		}
		if r := brian.post("/message", map[string]any{"message": "am I here?"}); r.status != http.StatusForbidden {
			t.Errorf("a message from brian while he is away: status %d, want 403", r.status)
		}
	})
	brian.say("I am back")
	ps.waitFor("<strong>brian</strong>: I am back")
	if !strings.Contains(phil.get("/metrics").body, "lobby_returns_total 1") {
		t.Errorf("the return is not counted in /metrics")
	}
}

// The same through another node of a three-node cluster: Brian vanishes
// from node a, comes back through node c; the lines said on node b while
// he was away reach him exactly once, in order, from the cluster's log,
// and every node announces his departure and his return once.
func TestVanishedPeerResumesOnAnotherNode(t *testing.T) {
	if err := netfault.Available(); err != nil {
		t.Skip(err)
	}
	node := newCluster(t, lobby.Options{UserTimeout: time.Second, Resume: time.Minute})
	a, b, c := node("a"), node("b"), node("c")
	brian, phil, carol := newBrowser(t, a), newBrowser(t, b), newBrowser(t, c)
	bs := brian.enter("brian")
	ps := phil.enter("phil")
	cs := carol.enter("carol")
	bs.waitFor(joinedLine("carol"))
	awayAndBack(t, bs, brian.via(c), phil, []*stream{ps, cs}, 10*time.Second, func() {
		if r := newBrowser(t, c).post("/join", map[string]any{"username": "brian"}); r.status != http.StatusConflict {
			t.Errorf("brian's name on node c while he is away: status %d, want 409", r.status)
		}
	})
	brian.via(c).say("back through c")
	ps.waitFor("<strong>brian</strong>: back through c")
}

// awayAndBack drops the packets of brian's stream bs while phil says
// lines, until every watcher has seen "brian left" (within leftWithin);
// runs whileAway; then lets the network back and reopens brian's stream
// through back from the last id bs got. It checks that every watcher saw
// one "left" and one "back" for brian (no new "joined"), and that the new
// stream got each line said while he was away (before and after his
// departure) and after his return exactly once, in order, with no line
// from before the drop and no recovery notice.
func awayAndBack(t *testing.T, bs *stream, back, phil *browser, watchers []*stream, leftWithin time.Duration, whileAway func()) *stream {
	t.Helper()
	joined := make([]int, len(watchers))
	for i, w := range watchers {
		joined[i] = w.count(joinedLine("brian"))
	}
	phil.say("before the drop")
	lastID := bs.idAfter("before the drop")
	restore := netfault.DropConn(t, bs.LocalPort(), bs.RemotePort())
	lines := []string{"missed one", "missed two", "missed three"}
	for _, text := range lines {
		phil.say(text)
	}
	for _, w := range watchers {
		w.waitForWithin(leftLine("brian"), leftWithin)
	}
	lines = append(lines, "missed four, after he left")
	phil.say(lines[3])
	whileAway()

	restore()
	bs.Close()
	s := back.openStreamFrom(lastID)
	for _, w := range watchers {
		w.waitFor(backLine("brian"))
	}
	s.waitFor(lines[3])
	lines = append(lines, "said after he came back")
	phil.say(lines[4])
	s.waitFor(lines[4])
	assertLinesOnceInOrder(t, s, lines...)
	if n := s.count(recoveryNotice) + s.count("before the drop"); n != 0 {
		t.Errorf("the resumed stream was told it lost lines, or got old ones again:\n%s", s.dump())
	}
	for i, w := range watchers {
		if l, b, j := w.count(leftLine("brian")), w.count(backLine("brian")), w.count(joinedLine("brian"))-joined[i]; l != 1 || b != 1 || j != 0 {
			t.Errorf("watcher %d saw %d \"left\", %d \"back\" and %d new \"joined\" lines for brian, want 1, 1 and 0:\n%s", i, l, b, j, w.dump())
		}
	}
	return s
}

// A small reconnect storm: every stream breaks at once and comes back at
// once with the id of the last event it got, while lines are said; each
// resumed stream gets every line it missed once, in order, and the
// batches that announce the returning streams race the replays (a race
// the -race build checks: a replay matches old batches' exclusions while
// new batches are made).
func TestResumeStormKeepsEveryLine(t *testing.T) {
	srv := startServer(t, lobby.Options{Grace: 5 * time.Second, Resume: time.Minute, MaxStreamsPerIP: -1, MessageRate: -1})
	const n = 30
	sayer := newBrowser(t, srv)
	sayer.enter("sayer")
	people := make([]*browser, n)
	streams := make([]*stream, n)
	for i := range people {
		people[i] = newBrowser(t, srv)
		streams[i] = people[i].enter(fmt.Sprintf("p%02d", i))
	}
	sayer.say("before the storm")
	lastIDs := make([]string, n)
	for i, s := range streams {
		lastIDs[i] = s.idAfter("before the storm")
		s.Close()
	}
	var lines []string
	for i := range 5 {
		lines = append(lines, fmt.Sprintf("missed %d", i))
		sayer.say(lines[i])
	}
	resumed := make([]*ssetest.Client, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, b := range people {
		req := ssetest.DatastarPost("/sse", `{}`)
		req.Header.Set("Cookie", cookieHeader(b))
		req.Header.Set("Last-Event-ID", lastIDs[i])
		wg.Go(func() { resumed[i], errs[i] = ssetest.Dial(srv.Addr().String(), req) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("p%02d could not reconnect: %v", i, err)
		}
		t.Cleanup(func() { resumed[i].Close() })
	}
	lines = append(lines, "said after the storm")
	sayer.say(lines[len(lines)-1])
	for i, c := range resumed {
		s := &stream{t: t, Client: c}
		if _, err := c.Seen(waitLong, withData(lines[len(lines)-1])); err != nil {
			t.Fatalf("p%02d: %v\n%s", i, err, s.dump())
		}
		assertLinesOnceInOrder(t, s, lines...)
		if s.count(recoveryNotice)+s.count("before the storm") != 0 {
			t.Errorf("p%02d's resumed stream was told it lost lines, or got old ones again:\n%s", i, s.dump())
		}
		// It holds the list: it is sent no new one (at 5,000 people, the
		// lists alone would be a gigabyte).
		if n := s.count(`<ul id="participant-list">`); n != 0 {
			t.Errorf("p%02d's resumed stream was sent %d participant lists, want 0", i, n)
		}
	}
}

// cookieHeader is the Cookie header b's jar sends to the lobby.
func cookieHeader(b *browser) string {
	r := &http.Request{Header: http.Header{}}
	for _, c := range b.jar.Cookies(b.base) {
		r.AddCookie(c)
	}
	return r.Header.Get("Cookie")
}

// A stream broken right after its opening's list, before the batch of
// arrivals that came with it, resumes from its opening's id and is
// replayed that batch once: its page shows each arrival once. (The list
// once held the batch itself, unpositioned, and the replay doubled it; the
// fault campaign found it after restarts and storms.)
func TestBrokenAfterTheListShowsArrivalsOnce(t *testing.T) {
	srv := startServer(t, lobby.Options{})
	brian, phil := newBrowser(t, srv), newBrowser(t, srv)
	brian.enter("brian")

	phil.join("phil")
	ps := phil.openStream()
	ps.waitFor(joinedLine("phil"))
	// What the page applied before the break: everything up to the list
	// (which carries no id), and the id the opening carried.
	var applied []ssetest.Event
	opening := ""
	for _, e := range ps.Events() {
		applied = append(applied, e)
		if e.HasID {
			opening = e.ID
		}
		if strings.Contains(e.Text(), `id="participant-list"`) {
			break
		}
	}
	if opening == "" {
		t.Fatalf("the opening carried no id before the list:\n%s", ps.dump())
	}
	ps.close()

	again := phil.openStreamFrom(opening)
	again.waitFor(joinedLine("phil"))
	seen := append(applied, again.Events()...)
	count := func(text string) int {
		n := 0
		for _, e := range seen {
			n += strings.Count(e.Text(), text)
		}
		return n
	}
	if n := count(joinedLine("phil")); n != 1 {
		t.Errorf("the page shows %d \"phil joined\" lines, want 1:\n%s\n-- after the break --\n%s", n, ps.dump(), again.dump())
	}
	if n := count(`<li id="` + participantID("phil") + `">`); n != 1 {
		t.Errorf("the page lists phil %d times, want 1", n)
	}
	if n := count(`<li id="` + participantID("brian") + `">`); n != 1 {
		t.Errorf("the page lists brian %d times, want 1", n)
	}
}
