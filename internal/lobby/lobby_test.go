package lobby_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/ssetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Success criterion 1: Brian joins, Phil joins; each sees the other in the
// participant list and a "joined" line.
func TestJoinBothSeeEachOther(t *testing.T) {
	srv := startServer(t, lobby.Options{Debug: true})
	brian, phil := newBrowser(t, srv), newBrowser(t, srv)

	r := brian.join("brian")
	cookie := r.header.Get("Set-Cookie")
	for _, attr := range []string{"lobby_session=", "HttpOnly", "SameSite=Lax", "Path=/"} {
		if !strings.Contains(cookie, attr) {
			t.Errorf("session cookie %q lacks %s", cookie, attr)
		}
	}
	bs := brian.openStream()
	bs.waitFor(`<li id="` + participantID("brian") + `">brian</li>`)
	bs.waitFor(joinedLine("brian"))

	// Phil's stream gets the list as it was before the batch of his
	// arrival, then that batch: his own item and his "joined" line.
	ps := phil.enter("phil")
	list := ps.waitFor(`id="participant-list"`)
	if !strings.Contains(list.Text(), `<li id="`+participantID("brian")+`">brian</li>`) {
		t.Errorf("Phil's list lacks brian: %s", list.Text())
	}
	if own := ps.waitFor(`<li id="` + participantID("phil") + `">phil</li>`); !strings.Contains(own.Text(), "selector #participant-list") {
		t.Errorf("phil's own item is not appended to his list: %s", own.Text())
	}
	ps.waitFor(joinedLine("phil"))

	item := bs.waitFor(`<li id="` + participantID("phil") + `">phil</li>`)
	if !strings.Contains(item.Text(), "mode append") || !strings.Contains(item.Text(), "selector #participant-list") {
		t.Errorf("phil's item is not appended to Brian's list: %s", item.Text())
	}
	bs.waitFor(joinedLine("phil"))

	if keys := debugPeople(t, phil); !slices.Equal(keys, []string{"brian", "phil"}) {
		t.Errorf("debug keys = %q", keys)
	}
	presenceBarrier(t, srv, "carol", bs, ps)
	if n := bs.count(joinedLine("phil")); n != 1 {
		t.Errorf("Brian saw %d \"phil joined\" lines, want 1", n)
	}
	if n := ps.count(joinedLine("brian")); n != 0 {
		t.Errorf("Phil saw %d \"brian joined\" lines, want 0 (Brian was there before him)", n)
	}
	if n := bs.count(joinedLine("brian")) + ps.count(joinedLine("phil")); n != 2 {
		t.Errorf("own joined lines = %d, want one each", n)
	}
}

// Success criteria 2 and 3 for a closed tab: Phil sees exactly one "brian
// left the lobby" and the removal of Brian's item within 1 s after the grace
// period, and his own stream stays up.
func TestTabCloseAnnouncesOneDeparture(t *testing.T) {
	for _, store := range []string{"ttl", "memory"} {
		t.Run(store, func(t *testing.T) {
			srv := startServer(t, lobby.Options{Store: store, Debug: true, Heartbeat: 300 * time.Millisecond})
			brian, phil := newBrowser(t, srv), newBrowser(t, srv)
			bs := brian.enter("brian")
			ps := phil.enter("phil")
			bs.waitFor(joinedLine("phil"))

			closed := time.Now()
			bs.close() // the tab closes: FIN, no Leave
			left := ps.waitForWithin(leftLine("brian"), testGrace+time.Second)
			rm := ps.waitForWithin(removal("brian"), testGrace+time.Second)
			if !strings.Contains(rm.Text(), "mode remove") {
				t.Errorf("removal event is not a remove: %s", rm.Text())
			}
			t.Logf("tab close -> \"brian left the lobby\" at Phil after %v (grace %v)",
				left.At.Sub(closed).Round(time.Millisecond), testGrace)
			if took := left.At.Sub(closed); took < testGrace {
				t.Errorf("left announced after %v, before the grace period (%v) ended", took, testGrace)
			}

			// Wait out more grace periods and heartbeats: still exactly one.
			time.Sleep(testGrace + 3*300*time.Millisecond) // negative check: a second departure (grace or heartbeat) would come by now
			if n := ps.count(leftLine("brian")); n != 1 {
				t.Errorf("Phil saw %d \"brian left\" lines, want 1:\n%s", n, ps.dump())
			}
			if n := ps.count(removal("brian")); n != 1 {
				t.Errorf("Phil saw %d removals of Brian's item, want 1", n)
			}

			// Criterion 3: Phil's stream stays up.
			phil.say("anyone still here?")
			ps.waitFor("<strong>phil</strong>: anyone still here?")

			// Brian's session is no longer in the lobby.
			if r := brian.post("/message", map[string]any{"message": "ghost"}); r.status != http.StatusForbidden {
				t.Errorf("message from departed Brian: status %d, want 403", r.status)
			}
			if r := brian.get("/"); !strings.Contains(r.body, `id="join"`) {
				t.Errorf("Brian's reload does not show the join form")
			}
			if keys := debugPeople(t, phil); !slices.Equal(keys, []string{"phil"}) {
				t.Errorf("debug keys = %q", keys)
			}
		})
	}
}

// An explicit Leave announces at once, exactly once: the eviction of the
// purged stream that follows announces nothing more.
func TestLeaveAnnouncesOnce(t *testing.T) {
	const heartbeat = 300 * time.Millisecond
	srv := startServer(t, lobby.Options{Debug: true, Heartbeat: heartbeat})
	brian, phil := newBrowser(t, srv), newBrowser(t, srv)
	bs := brian.enter("brian")
	ps := phil.enter("phil")
	bs.waitFor(joinedLine("phil"))

	start := time.Now()
	r := brian.post("/leave", map[string]any{"username": "brian"})
	if r.status != http.StatusOK || !strings.Contains(r.body, `id="join"`) || !strings.Contains(r.body, "You left the lobby") {
		t.Fatalf("leave: status %d: %s", r.status, r.body)
	}
	left := ps.waitForWithin(leftLine("brian"), time.Second)
	t.Logf("leave -> left line at Phil after %v", left.At.Sub(start).Round(time.Millisecond))
	if took := left.At.Sub(start); took >= testGrace {
		t.Errorf("leave took %v to announce; it should not wait for grace (%v)", took, testGrace)
	}
	ps.waitFor(removal("brian"))
	if err := bs.waitEnd(waitLong); !errors.Is(err, io.EOF) {
		t.Errorf("Brian's stream ended with %v, want a clean end", err)
	}
	if n := bs.count(leftLine("brian")); n != 0 {
		t.Errorf("Brian's own stream got %d left lines about himself", n)
	}

	time.Sleep(testGrace + 3*heartbeat) // negative check: a second departure (grace or heartbeat) would come by now
	if n := ps.count(leftLine("brian")); n != 1 {
		t.Errorf("Phil saw %d \"brian left\" lines, want 1:\n%s", n, ps.dump())
	}
	if n := ps.count(removal("brian")); n != 1 {
		t.Errorf("Phil saw %d removals, want 1", n)
	}
	for _, path := range []string{"/leave", "/message"} {
		if r := brian.post(path, map[string]any{"message": "x"}); r.status != http.StatusForbidden {
			t.Errorf("%s after leaving: status %d, want 403", path, r.status)
		}
	}

	// Coming back is a new arrival, announced once.
	brian.enter("brian")
	ps.waitFor(joinedLine("brian"))
	presenceBarrier(t, srv, "carol", ps)
	if n := ps.count(joinedLine("brian")); n != 1 {
		t.Errorf("Phil saw %d \"brian joined\" lines after the return, want 1", n)
	}
}

// A reload within grace announces nothing: no left line, no second joined
// line. (Joining again is not a reload: it makes a new session.)
func TestRefreshWithinGraceIsSilent(t *testing.T) {
	const grace = time.Second // generous, so a slow -race run still reconnects in time
	srv := startServer(t, lobby.Options{Grace: grace, Heartbeat: 300 * time.Millisecond, Debug: true})
	brian, phil := newBrowser(t, srv), newBrowser(t, srv)
	bs := brian.enter("brian")
	ps := phil.enter("phil")
	bs.waitFor(joinedLine("phil"))

	// Reload: the page renders the lobby directly, then the stream reopens.
	bs.close()
	page := brian.get("/")
	if !strings.Contains(page.body, `@post('/sse`) || !strings.Contains(page.body, "You are <strong>brian</strong>") {
		t.Fatalf("reload within grace does not render the lobby:\n%s", page.body)
	}
	bs2 := brian.openStream()
	list := bs2.waitFor(`id="participant-list"`)
	if !strings.Contains(list.Text(), participantID("phil")) || !strings.Contains(list.Text(), participantID("brian")) {
		t.Errorf("reopened stream's list: %s", list.Text())
	}

	time.Sleep(grace + 500*time.Millisecond) // negative check: a departure for the reload would come at grace
	if n := ps.count(leftLine("brian")) + ps.count(removal("brian")); n != 0 {
		t.Errorf("Phil saw a departure for a reload:\n%s", ps.dump())
	}
	if n := ps.count(joinedLine("brian")) + bs2.count(joinedLine("brian")); n != 0 {
		t.Errorf("a reload announced a new arrival %d times", n)
	}

	// Joining again from the same browser makes a new session (a join
	// never adopts the session a request carries: see
	// TestPlantedSessionNeverUsed): the old session's tab is told it
	// left, the name passes to the new session, and the others see brian
	// leave and join again.
	brian.join("brian")
	bs2.waitFor("You have left the lobby")
	bs3 := brian.openStream()
	bs3.waitFor(`id="participant-list"`)
	ps.waitFor(joinedLine("brian"))
	brian.say("back")
	for _, s := range []*stream{ps, bs3} {
		s.waitFor("<strong>brian</strong>: back")
	}
	if keys := debugPeople(t, phil); !slices.Equal(keys, []string{"brian", "phil"}) {
		t.Errorf("streams of = %q", keys)
	}
}

// Identity comes from the session cookie, never from signals: nobody can
// speak or leave as someone else, and a taken name is refused.
func TestImpersonationRefused(t *testing.T) {
	srv := startServer(t, lobby.Options{})
	brian, phil, mallory := newBrowser(t, srv), newBrowser(t, srv), newBrowser(t, srv)
	bs := brian.enter("brian")
	ps := phil.enter("phil")
	bs.waitFor(joinedLine("phil"))

	// Without a session.
	if r := mallory.post("/message", map[string]any{"message": "hi", "username": "brian"}); r.status != http.StatusForbidden {
		t.Errorf("message without a session: status %d, want 403", r.status)
	}
	if r := mallory.post("/leave", map[string]any{"username": "brian"}); r.status != http.StatusForbidden {
		t.Errorf("leave without a session: status %d, want 403", r.status)
	}
	for _, name := range []string{"brian", "  brian  "} {
		r := mallory.post("/join", map[string]any{"username": name})
		if r.status != http.StatusConflict || !strings.Contains(r.body, "already taken") {
			t.Errorf("join as %q: status %d: %s", name, r.status, r.body)
		}
	}
	if s := mallory.openStream(); s.waitEnd(waitLong) == nil || s.count("please join again") != 1 {
		t.Errorf("stream without a session was not told to join")
	}

	// A forged session id.
	eve := newBrowser(t, srv)
	eve.jar.SetCookies(eve.base, []*http.Cookie{{Name: "lobby_session", Value: strings.Repeat("ab", 16)}})
	if r := eve.post("/message", map[string]any{"message": "hi"}); r.status != http.StatusForbidden {
		t.Errorf("message with a forged session: status %d, want 403", r.status)
	}

	// With a session of her own, Mallory speaks and leaves as Mallory.
	ms := mallory.enter("mallory")
	ps.waitFor(joinedLine("mallory"))
	mallory.say("I am brian")
	ps.waitFor("<strong>mallory</strong>: I am brian")
	if r := mallory.post("/leave", map[string]any{"username": "brian"}); r.status != http.StatusOK {
		t.Fatalf("Mallory's leave: status %d", r.status)
	}
	ps.waitFor(leftLine("mallory"))
	bs.waitFor(leftLine("mallory"))
	ms.waitEnd(waitLong)
	time.Sleep(testGrace + 200*time.Millisecond) // negative check: what Mallory's requests caused would have come by now
	if n := ps.count("<strong>brian</strong>") + ps.count("brian left"); n != 0 {
		t.Errorf("Mallory spoke or left as Brian:\n%s", ps.dump())
	}
	brian.say("still me")
	ps.waitFor("<strong>brian</strong>: still me")
}

// User text is escaped: a name or message with markup appears as text.
func TestUserTextIsEscaped(t *testing.T) {
	const evil = `<img src=x onerror=alert(1)>`
	const escaped = `&lt;img src=x onerror=alert(1)&gt;`
	srv := startServer(t, lobby.Options{})
	x, phil := newBrowser(t, srv), newBrowser(t, srv)
	xs := x.enter(evil)
	ps := phil.enter("phil")

	list := ps.waitFor(`id="participant-list"`)
	if !strings.Contains(list.Text(), `<li id="`+participantID(evil)+`">`+escaped+`</li>`) {
		t.Errorf("list item of %q not escaped: %s", evil, list.Text())
	}
	xs.waitFor(joinedLine("phil"))
	x.say(`<script>alert("hi")</script>`)
	ps.waitFor(`<strong>` + escaped + `</strong>: &lt;script&gt;alert(&#34;hi&#34;)&lt;/script&gt;`)
	x.post("/leave", nil)
	ps.waitFor(`<p class="system-message">` + escaped + ` left the lobby</p>`)
	for _, s := range []*stream{ps, xs} {
		if n := s.count("<img") + s.count("<script"); n != 0 {
			t.Errorf("raw markup reached a stream:\n%s", s.dump())
		}
	}
	if page := phil.get("/"); strings.Contains(page.body, "<img") {
		t.Errorf("raw markup on the page")
	}
}

// Oversized bodies (413) and malformed signals (400) are refused with a
// clear message and change nothing.
func TestBadRequestsChangeNothing(t *testing.T) {
	srv, brian, phil, _, ps, before := brianAndPhil(t)

	big := []byte(`{"username":"` + strings.Repeat("a", 70<<10) + `","message":"x"}`)
	for _, path := range []string{"/join", "/message", "/leave", "/sse"} {
		r := brian.postRaw(path, big, true)
		if r.status != http.StatusRequestEntityTooLarge || !strings.Contains(r.body, "too large") {
			t.Errorf("%s with 70 KiB: status %d: %s", path, r.status, r.body)
		}
	}
	for _, body := range []string{`{"username":`, `[1,2]`, `{"username":42}`, `not json`, ``} {
		r := brian.postRaw("/join", []byte(body), true)
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "malformed signals") {
			t.Errorf("join with %q: status %d: %s", body, r.status, r.body)
		}
		if r := brian.postRaw("/message", []byte(strings.ReplaceAll(body, "username", "message")), true); r.status != http.StatusBadRequest {
			t.Errorf("message with %q: status %d", body, r.status)
		}
	}
	if r := brian.postRaw("/join", []byte(`{"username":"zed"}`), false); r.status != http.StatusBadRequest || !strings.Contains(r.body, "Datastar-Request") {
		t.Errorf("join without the Datastar header: status %d: %s", r.status, r.body)
	}
	stranger := newBrowser(t, srv)
	for _, name := range []string{"", "   ", strings.Repeat("é", 33), "a\x00b", "a\nb", "\u202Eevil", "tab\there"} {
		if r := stranger.post("/join", map[string]any{"username": name}); r.status != http.StatusBadRequest {
			t.Errorf("join as %q: status %d, want 400: %s", name, r.status, r.body)
		}
	}
	for _, msg := range []string{"", "  ", strings.Repeat("x", 1001), "bell\x07"} {
		if r := brian.post("/message", map[string]any{"message": msg}); r.status != http.StatusBadRequest {
			t.Errorf("message of %d bytes: status %d, want 400", len(msg), r.status)
		}
	}

	time.Sleep(testGrace + 200*time.Millisecond) // negative check: what the bad requests caused would have come by now
	if n := ps.len(); n != before {
		t.Errorf("bad requests reached Phil's stream:\n%s", ps.dump())
	}
	if keys := debugPeople(t, phil); !slices.Equal(keys, []string{"brian", "phil"}) {
		t.Errorf("debug keys = %q", keys)
	}

	// The limits themselves are accepted.
	brian.say(strings.Repeat("y", 1000))
	ps.waitFor("<strong>brian</strong>: yyyy")
	stranger.enter(strings.Repeat("é", 32))
	ps.waitFor(joinedLine(strings.Repeat("é", 32)))
}

// A stream for a session the server does not know (here: after a restart,
// as the Datastar client retries) is told to join again and ended; no ghost
// participant appears. Shutdown ends every stream cleanly.
func TestRestartAsksToJoinAgain(t *testing.T) {
	srvA := startServer(t, lobby.Options{Debug: true})
	brian := newBrowser(t, srvA)
	bs := brian.enter("brian")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srvA.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := bs.waitEnd(waitLong); !errors.Is(err, io.EOF) {
		t.Errorf("stream ended with %v at shutdown, want a clean end", err)
	}

	srvB := startServer(t, lobby.Options{Debug: true})
	brian.base.Host = srvB.Addr().String() // the cookie jar ignores the port: the old cookie goes along
	s := brian.openStream()
	s.waitFor("please join again")
	s.waitFor(`id="join"`)
	if err := s.waitEnd(waitLong); !errors.Is(err, io.EOF) {
		t.Errorf("stream of an unknown session ended with %v, want a clean end", err)
	}
	if keys := debugKeys(t, brian); len(keys) != 0 {
		t.Errorf("ghost streams: %q", keys)
	}
	if r := brian.post("/message", map[string]any{"message": "hello?"}); r.status != http.StatusForbidden {
		t.Errorf("message from unknown session: status %d, want 403", r.status)
	}
	brian.enter("brian")
}

// Graceful shutdown ends every stream (the clients read EOF), refuses new
// connections and leaves no goroutine behind.
func TestGracefulShutdown(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	srv, err := lobby.Start(t.Context(), lobby.Options{Addr: "127.0.0.1:0", Grace: testGrace, Heartbeat: 100 * time.Millisecond, Logger: ssetest.Logger(t, slog.LevelDebug)})
	if err != nil {
		t.Fatal(err)
	}
	brian, phil := newBrowser(t, srv), newBrowser(t, srv)
	bs := brian.enter("brian")
	ps := phil.enter("phil")
	bs.waitFor(joinedLine("phil"))

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	t.Logf("shutdown took %v", time.Since(start).Round(time.Millisecond))
	for _, s := range []*stream{bs, ps} {
		if err := s.waitEnd(time.Second); !errors.Is(err, io.EOF) {
			t.Errorf("stream ended with %v, want EOF", err)
		}
	}
	if n := ps.count("left the lobby") + bs.count("left the lobby"); n != 0 {
		t.Errorf("shutdown announced departures")
	}
	if c, err := net.DialTimeout("tcp", srv.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Errorf("server still accepts connections after shutdown")
	}
	bs.close()
	ps.close()
	brian.client.CloseIdleConnections()
	phil.client.CloseIdleConnections()
	goleak.VerifyNone(t, ignore)
}

// A name reserved by /join whose stream never comes is released silently.
func TestJoinWithoutStreamExpiresSilently(t *testing.T) {
	srv := startServer(t, lobby.Options{JoinTimeout: 300 * time.Millisecond})
	brian, phil, carol := newBrowser(t, srv), newBrowser(t, srv), newBrowser(t, srv)
	brian.join("brian") // never opens the stream
	ps := phil.enter("phil")
	if list := ps.waitFor(`id="participant-list"`); strings.Contains(list.Text(), participantID("brian")) {
		t.Errorf("a participant without a stream is listed: %s", list.Text())
	}
	if r := carol.post("/join", map[string]any{"username": "brian"}); r.status != http.StatusConflict {
		t.Errorf("reserved name: status %d, want 409", r.status)
	}
	ssetest.Eventually(t, waitLong, "the unused name is released", func() bool {
		return carol.post("/join", map[string]any{"username": "brian"}).status == http.StatusOK
	})
	if n := ps.count("brian"); n != 0 {
		t.Errorf("Phil heard about a join that never arrived:\n%s", ps.dump())
	}
	if s := brian.openStream(); s.waitEnd(waitLong) == nil || s.count("please join again") != 1 {
		t.Errorf("Brian's late stream was not told to join again")
	}
}

// A session that joins under another name leaves under the old one first.
func TestRenameIsLeaveThenJoin(t *testing.T) {
	srv := startServer(t, lobby.Options{})
	brian, phil := newBrowser(t, srv), newBrowser(t, srv)
	bs := brian.enter("brian")
	ps := phil.enter("phil")
	bs.waitFor(joinedLine("phil"))
	brian.enter("bob")
	ps.waitFor(leftLine("brian"))
	ps.waitFor(joinedLine("bob"))
	bs.waitEnd(waitLong)
	time.Sleep(testGrace + 200*time.Millisecond) // negative check: a second departure would come within a grace
	if n := ps.count(leftLine("brian")); n != 1 {
		t.Errorf("Phil saw %d \"brian left\" lines, want 1", n)
	}
	if r := phil.post("/join", map[string]any{"username": "brian"}); r.status != http.StatusOK {
		t.Errorf("the old name is not free: %d", r.status)
	}
}

// The heartbeat is an SSE comment: it reaches the client and changes
// nothing on the page (no event at all).
func TestHeartbeatIsAComment(t *testing.T) {
	srv := startServer(t, lobby.Options{Heartbeat: 50 * time.Millisecond})
	brian := newBrowser(t, srv)
	bs := brian.enter("brian")
	bs.waitFor(joinedLine("brian"))
	n := bs.len()
	ssetest.Eventually(t, waitLong, "five heartbeats", func() bool { return bs.heartbeats() >= 5 })
	if got := bs.len(); got != n {
		t.Errorf("heartbeats produced %d Datastar events:\n%s", got-n, bs.dump())
	}
}

// /metrics reports streams, evictions, departures, heartbeats and
// deliveries; /debug/connections lists key texts only, and only with -debug.
func TestMetricsAndDebug(t *testing.T) {
	srv := startServer(t, lobby.Options{Debug: true, Heartbeat: 50 * time.Millisecond})
	brian, phil := newBrowser(t, srv), newBrowser(t, srv)
	bs := brian.enter("brian")
	ps := phil.enter("phil")
	bs.waitFor(joinedLine("phil"))
	bs.close()
	ps.waitFor(leftLine("brian"))

	r := phil.get("/metrics")
	for _, want := range []string{
		"lobby_streams_open 1",
		`lobby_stream_evictions_total{cause="closed"} 1`,
		`lobby_departures_total{reason="closed"} 1`,
		"lobby_participants 1",
		"lobby_joins_total 2",
		"lobby_heartbeat_sweeps_total",
		"lobby_heartbeat_failures_total",
		"lobby_broadcast_deliveries_total",
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	d := phil.get("/debug/connections")
	if !regexp.MustCompile(`^\["phil/lobby/[0-9a-f]{16}"\]\n$`).MatchString(d.body) {
		t.Errorf("debug connections = %q", d.body)
	}
	if strings.Contains(d.body, "127.0.0.1") || strings.Contains(d.body, "session") {
		t.Errorf("debug output leaks addresses or sessions: %s", d.body)
	}

	plain := startServer(t, lobby.Options{})
	if r := newBrowser(t, plain).get("/debug/connections"); r.status != http.StatusNotFound {
		t.Errorf("debug endpoint without -debug: status %d, want 404", r.status)
	}
}
