package lobby_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// cookieOf returns the value of the cookie name in b's jar.
func cookieOf(b *browser, name string) string {
	for _, c := range b.jar.Cookies(b.base) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// A session id planted in the victim's browser is never used: the
// victim's join makes a new session, the victim's lines are the victim's,
// and the attacker can neither speak as the victim nor make it leave.
func TestPlantedSessionNeverUsed(t *testing.T) {
	srv := startServer(t, lobby.Options{})
	watcher := newBrowser(t, srv)
	ws := watcher.enter("watcher")
	attacker := newBrowser(t, srv)
	attacker.join("mallory")
	planted := cookieOf(attacker, "lobby_session")

	victim := newBrowser(t, srv)
	victim.jar.SetCookies(victim.base, []*http.Cookie{{Name: "lobby_session", Value: planted, Path: "/"}})
	victim.join("victim")
	vs := victim.openStream()
	vs.waitFor(`id="participant-list"`)
	if got := cookieOf(victim, "lobby_session"); got == planted || got == "" {
		t.Fatalf("the victim's session is %q, the planted one %q: want a new one", got, planted)
	}
	ws.waitFor(joinedLine("victim"))

	// The attacker's session (the planted one) ended at the victim's join.
	if r := attacker.post("/message", map[string]any{"message": "hello from the attacker"}); r.status != http.StatusForbidden {
		t.Errorf("the attacker's message after the victim's join: status %d, want 403", r.status)
	}
	if r := attacker.post("/leave", map[string]any{}); r.status != http.StatusForbidden {
		t.Errorf("the attacker's leave after the victim's join: status %d, want 403", r.status)
	}
	victim.say("my own words")
	ws.waitFor("<strong>victim</strong>: my own words")
	if n := ws.count("hello from the attacker") + ws.count(leftLine("victim")); n != 0 {
		t.Fatalf("the attacker spoke as the victim or made it leave:\n%s", ws.dump())
	}
}

// The member cookie comes with the stream, not with /join: a join whose
// stream never opened leaves nothing a restart could take back.
func TestMemberCookieSignedAtStreamOpening(t *testing.T) {
	srv := startServer(t, lobby.Options{})
	b := newBrowser(t, srv)
	r := b.join("brian")
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == "lobby_member" {
			t.Fatalf("/join set a member cookie: %v", c)
		}
	}
	b.openStream().waitFor(`id="participant-list"`)
	if cookieOf(b, "lobby_member") == "" {
		t.Fatal("the stream did not set the member cookie")
	}
}

// A session that left is not taken back after a restart, even with the
// member cookie it held (kept by an attacker, or a stale tab): the
// revocation outlives the process.
func TestLeaveNotUndoneByRestart(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	revoked := filepath.Join(t.TempDir(), "session-key.revoked")
	a := startServer(t, lobby.Options{SessionKey: key, RevocationFile: revoked})
	brian := newBrowser(t, a)
	brian.enter("brian")
	stale := brian.jar.Cookies(brian.base) // the cookies before the leave
	if r := brian.post("/leave", map[string]any{}); r.status != http.StatusOK {
		t.Fatalf("leave: %d", r.status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	b := startServer(t, lobby.Options{SessionKey: key, RevocationFile: revoked})
	replay := newBrowser(t, b)
	replay.jar.SetCookies(replay.base, stale)
	s := replay.openStream()
	s.waitFor("please join again")
	if page := replay.get("/"); strings.Contains(page.body, "You are <strong>brian</strong>") {
		t.Fatal("the page of a session that left shows it in the lobby after a restart")
	}
}

// A session whose resume window ran out has ended as surely as one that
// left: its member cookie takes nothing back, neither in the run where it
// ended (a cookie an earlier run signed would otherwise resume it) nor
// after a restart, and it cannot speak.
func TestExpiredSessionRevoked(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	opts := lobby.Options{SessionKey: key, RevocationFile: filepath.Join(t.TempDir(), "session-key.revoked"), Resume: time.Second}
	restart := func(srv *lobby.Server) *lobby.Server {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		return startServer(t, opts)
	}
	inLobby := func(b *browser) bool { return strings.Contains(b.get("/").body, "You are <strong>brian</strong>") }
	refused := func(srv *lobby.Server, cookies []*http.Cookie, when string) {
		t.Helper()
		b := newBrowser(t, srv)
		b.jar.SetCookies(b.base, cookies)
		if inLobby(b) {
			t.Fatalf("%s: the page shows the ended session in the lobby", when)
		}
		b.openStream().waitFor("please join again")
		if r := b.post("/message", map[string]any{"message": "a ghost speaks"}); r.status != http.StatusForbidden {
			t.Fatalf("%s: the ended session's message: status %d, want 403", when, r.status)
		}
	}

	// Run 1 signs brian's member cookie; run 2 takes the session back
	// from it, and signs it again.
	a := startServer(t, opts)
	brian := newBrowser(t, a)
	brian.enter("brian")
	signedBy1 := brian.jar.Cookies(brian.base)
	b := restart(a)
	brian.base.Host = b.Addr().String()
	watcher := newBrowser(t, b)
	ws := watcher.enter("watcher")
	bs := brian.openStream()
	ws.waitFor(joinedLine("brian"))
	bs.waitFor(`id="participant-list"`)
	signedBy2 := brian.jar.Cookies(brian.base)
	if !inLobby(brian) {
		t.Fatal("the session taken back in run 2 does not see the lobby")
	}

	// brian's tab closes and stays closed: the departure is announced
	// after the grace period, and the name is kept for the resume window.
	bs.close()
	ws.waitFor(leftLine("brian"))
	ssetest.Eventually(t, waitLong, "the resume window to end", func() bool { return !inLobby(brian) })
	// Run 1's cookie is from an earlier run, so run 2 would take it.
	replay := newBrowser(t, b)
	replay.jar.SetCookies(replay.base, signedBy1)
	ssetest.Eventually(t, waitLong, "run 1's cookie to be refused", func() bool { return !inLobby(replay) })
	refused(b, signedBy1, "run 2, run 1's cookie")

	c := restart(b)
	refused(c, signedBy2, "run 3, run 2's cookie")
	refused(c, signedBy1, "run 3, run 1's cookie")
	if r := newBrowser(t, c).post("/join", map[string]any{"username": "brian"}); r.status != http.StatusOK {
		t.Errorf("brian's name after its session ended: status %d, want 200", r.status)
	}
}

// A session that joins again under its own name leaves, and its new
// session takes the name, while the departure still waits for its batch
// (a wide presence window makes sure it does): it is the new session that
// is revoked when its resume window runs out, and it is revoked.
func TestExpiredSessionRevokedAfterRejoin(t *testing.T) {
	opts := lobby.Options{SessionKey: []byte("0123456789abcdef0123456789abcdef"), RevocationFile: filepath.Join(t.TempDir(), "revoked"),
		Resume: 3 * time.Second, PresenceWindow: 2 * time.Second}
	a := startServer(t, opts)
	brian := newBrowser(t, a)
	brian.enter("brian") // its arrival goes out at once; changes in the next 2 s wait for one batch
	brian.join("brian")  // the first session leaves, the second takes the name
	s := brian.openStream()
	// The list comes as the stream opens, the second session's arrival
	// with the held batch: once it is announced, its departure is too,
	// and the session is revoked when its resume window ends.
	s.waitFor(joinedLine("brian"))
	second := brian.jar.Cookies(brian.base)
	if !strings.Contains(brian.get("/").body, "You are <strong>brian</strong>") {
		t.Fatal("the second session does not see the lobby")
	}
	s.close()
	ssetest.Eventually(t, 20*time.Second, "the second session's resume window to end",
		func() bool { return !strings.Contains(brian.get("/").body, "You are <strong>brian</strong>") })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	b := startServer(t, opts)
	replay := newBrowser(t, b)
	replay.jar.SetCookies(replay.base, second)
	replay.openStream().waitFor("please join again")
	if r := replay.post("/message", map[string]any{"message": "a ghost speaks"}); r.status != http.StatusForbidden {
		t.Fatalf("the ended session's message after a restart: status %d, want 403", r.status)
	}
}

// Squatting from one address: at most NamesPerAddress names held at once,
// so at most that many arrivals announced; a name released (left) frees a
// place.
func TestNamesPerAddressCapped(t *testing.T) {
	const limit = 5
	srv := startServer(t, lobby.Options{NamesPerAddress: limit, Resume: time.Minute})
	ws := newBrowser(t, srv).enter("watcher") // the watcher's own name counts too
	var held []*browser
	refused := 0
	for i := range 3 * limit {
		b := newBrowser(t, srv)
		r := b.post("/join", map[string]any{"username": fmt.Sprintf("squat%02d", i)})
		switch r.status {
		case http.StatusOK:
			s := b.openStream()
			s.waitFor(`id="participant-list"`)
			s.close() // the name stays reserved for the resume window
			held = append(held, b)
		case http.StatusTooManyRequests:
			if r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "too many names") {
				t.Fatalf("refusal without Retry-After or message: %v %q", r.header, r.body)
			}
			refused++
		default:
			t.Fatalf("join %d: status %d", i, r.status)
		}
	}
	if len(held) != limit-1 || refused != 2*limit+1 {
		t.Fatalf("%d names held and %d refused from one address, want %d and %d", len(held), refused, limit-1, 2*limit+1)
	}
	time.Sleep(500 * time.Millisecond) // negative check: any further arrival would be announced by now
	joins := 0
	for i := range 3 * limit {
		joins += ws.count(joinedLine(fmt.Sprintf("squat%02d", i)))
	}
	if joins > limit {
		t.Fatalf("the watcher saw %d arrivals from one address, more than %d", joins, limit)
	}
	// A name left is a place free.
	if r := held[0].post("/leave", map[string]any{}); r.status != http.StatusOK {
		t.Fatalf("leave: %d", r.status)
	}
	if r := newBrowser(t, srv).post("/join", map[string]any{"username": "after"}); r.status != http.StatusOK {
		t.Fatalf("a join after a leave freed a place: status %d", r.status)
	}
}

// Concurrent joins from one address never hold more names than the cap:
// a join whose name is not claimed yet still counts (a check of the
// others' liveness must not take it for a session that ended). Each round
// is one address (forwarded by the test, a trusted proxy) sending three times
// the cap's joins at once; each join carries the session of a person who
// joined from elsewhere under the same name (a phone that moved from one
// network to another), so it ends that session, and records it as
// revoked, before it claims the name.
func TestNamesPerAddressConcurrentJoins(t *testing.T) {
	const limit, rounds, perRound = 4, 30, 3 * 4
	srv := startServer(t, lobby.Options{NamesPerAddress: limit, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		RevocationFile: filepath.Join(t.TempDir(), "revoked")})
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: perRound}}
	t.Cleanup(hc.CloseIdleConnections)
	join := func(addr, name, session string) (int, string, error) {
		req, err := http.NewRequest(http.MethodPost, srv.URL()+"/join", strings.NewReader(fmt.Sprintf(`{"username":%q}`, name)))
		if err != nil {
			return 0, "", err
		}
		req.Header.Set("Datastar-Request", "true")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", addr)
		if session != "" {
			req.AddCookie(&http.Cookie{Name: "lobby_session", Value: session})
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		for _, c := range resp.Cookies() {
			if c.Name == "lobby_session" {
				session = c.Value
			}
		}
		return resp.StatusCode, session, err
	}
	for round := range rounds {
		sessions := make([]string, perRound)
		for i := range sessions {
			status, sid, err := join(fmt.Sprintf("10.%d.0.%d", round, i+1), fmt.Sprintf("r%02dn%02d", round, i), "")
			if err != nil || status != http.StatusOK {
				t.Fatalf("round %d: the first join of person %d: %d %v", round, i, status, err)
			}
			sessions[i] = sid
		}
		addr := fmt.Sprintf("192.0.2.%d", round+1)
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			accepted int
			errs     []error
		)
		start := make(chan struct{})
		for i := range perRound {
			wg.Go(func() {
				<-start
				status, _, err := join(addr, fmt.Sprintf("r%02dn%02d", round, i), sessions[i])
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					errs = append(errs, err)
				case status == http.StatusOK:
					accepted++
				case status != http.StatusTooManyRequests:
					errs = append(errs, fmt.Errorf("status %d", status))
				}
			})
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("round %d: %v", round, errs)
		}
		if accepted != limit {
			t.Fatalf("round %d: %d concurrent joins from %s accepted, want exactly the cap, %d", round, accepted, addr, limit)
		}
	}
}

// Joins and stream openings from one address are rate-limited: past the
// burst, 429 with Retry-After.
func TestJoinAndStreamRatesPerAddress(t *testing.T) {
	srv := startServer(t, lobby.Options{JoinRate: 0.01, JoinBurst: 3, StreamRate: 0.01, StreamBurst: 2})
	for i := range 3 {
		newBrowser(t, srv).join(fmt.Sprintf("j%d", i))
	}
	r := newBrowser(t, srv).post("/join", map[string]any{"username": "j3"})
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("fourth join: status %d, Retry-After %q; want 429 with it", r.status, r.header.Get("Retry-After"))
	}
	b := newBrowser(t, srv)
	r = b.post("/join", map[string]any{"username": "k"}) // refused as well: the bucket is empty
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("join: %d", r.status)
	}
	srv2 := startServer(t, lobby.Options{StreamRate: 0.01, StreamBurst: 2})
	c := newBrowser(t, srv2)
	c.join("c")
	c.openStream().waitFor(`id="participant-list"`)
	c.openStream().waitFor(`id="participant-list"`)
	third := c.post("/sse", map[string]any{})
	if third.status != http.StatusTooManyRequests || third.header.Get("Retry-After") == "" || !strings.Contains(third.body, "too many streams opened") {
		t.Fatalf("third stream opening: status %d %v %q; want 429 with Retry-After", third.status, third.header, third.body)
	}
}

// 100 sessions from one address send 4 lines each as fast as they can: the lines
// accepted stay within the per-address budget (burst plus rate times the
// time taken), whatever the per-session limit allows.
func TestLinesPerAddressAcrossSessions(t *testing.T) {
	const rate, burst = 10, 30
	srv := startServer(t, lobby.Options{AddressMessageRate: rate, AddressMessageBurst: burst, MaxStreamsPerIP: -1, MessageRate: -1})
	senders := make([]*browser, 100)
	for i := range senders {
		senders[i] = newBrowser(t, srv)
		senders[i].enter(fmt.Sprintf("s%03d", i))
		// 400 requests at once on two busy cores: what counts is how many
		// are accepted, not how fast (one CI run saw answers take over 5 s).
		senders[i].client.Timeout = time.Minute
	}
	start := time.Now()
	var mu sync.Mutex
	accepted, refused := 0, 0
	var wg sync.WaitGroup
	for _, b := range senders {
		wg.Go(func() {
			for i := range 4 {
				r := b.post("/message", map[string]any{"message": fmt.Sprintf("line %d", i)})
				mu.Lock()
				switch r.status {
				case http.StatusOK:
					accepted++
				case http.StatusTooManyRequests:
					refused++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	allowed := burst + int(rate*took.Seconds()) + 1
	t.Logf("100 sessions, 400 lines in %v: %d accepted, %d refused (budget %d)", took.Round(time.Millisecond), accepted, refused, allowed)
	if accepted > allowed || accepted+refused != 400 {
		t.Fatalf("%d lines accepted (%d refused) in %v from one address; the budget allows %d", accepted, refused, took, allowed)
	}
}

// Forwarded and X-Forwarded-For name the client only when a trusted proxy
// sends them: from anyone else they are ignored.
func TestForwardedOnlyFromTrustedProxies(t *testing.T) {
	srv := startServer(t, lobby.Options{NamesPerAddress: 1, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	join := func(name string, hdr map[string]string) int {
		b := newBrowser(t, srv)
		req, _ := http.NewRequest(http.MethodPost, srv.URL()+"/join", strings.NewReader(fmt.Sprintf(`{"username":%q}`, name)))
		req.Header.Set("Datastar-Request", "true")
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		return b.do(req).status
	}
	// The test runs as the trusted proxy: each forwarded client has its
	// own budget of one name.
	for _, c := range []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"a1", map[string]string{"X-Forwarded-For": "192.0.2.1"}, 200},
		{"a2", map[string]string{"X-Forwarded-For": "192.0.2.1"}, 429},
		{"b1", map[string]string{"X-Forwarded-For": "198.51.100.7, 192.0.2.2"}, 200}, // the nearest hop counts
		{"b2", map[string]string{"Forwarded": `for=192.0.2.3;proto=https`}, 200},
		{"b3", map[string]string{"Forwarded": `for="[2001:db8::1]:4711"`}, 200},
		{"b4", map[string]string{"Forwarded": `for="[2001:db8::2]"`}, 429}, // the same /64
		{"c1", nil, 200}, // the proxy itself
		{"c2", nil, 429},
	} {
		if got := join(c.name, c.hdr); got != c.want {
			t.Errorf("join %s with %v: status %d, want %d", c.name, c.hdr, got, c.want)
		}
	}

	// Not trusted: the headers count for nothing.
	other := startServer(t, lobby.Options{NamesPerAddress: 1})
	for i, want := range []int{200, 429} {
		b := newBrowser(t, other)
		req, _ := http.NewRequest(http.MethodPost, other.URL()+"/join", strings.NewReader(fmt.Sprintf(`{"username":"x%d"}`, i)))
		req.Header.Set("Datastar-Request", "true")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("192.0.2.%d", 10+i))
		if got := b.do(req).status; got != want {
			t.Errorf("untrusted join %d with a forged X-Forwarded-For: status %d, want %d", i, got, want)
		}
	}
}

// The snapshot flood: one session opens and closes extra streams again and
// again while long-named people are present. Each opening sends that
// stream the whole list, but no snapshot enters the history (nothing could
// ever replay it): the history's position does not move and the heap does
// not grow with the flood.
func TestSnapshotFloodKeepsNothing(t *testing.T) {
	srv := startServer(t, lobby.Options{MaxStreamsPerIP: -1})
	var first *stream
	for i := range 30 {
		s := newBrowser(t, srv).enter(fmt.Sprintf("%s%02d", strings.Repeat("long name ", 3), i))
		if first == nil {
			first = s
		}
	}
	flooder := newBrowser(t, srv)
	flooder.enter("flooder")
	// The arrivals go out in order: once the first person has seen the
	// last one, every arrival's batch is in the history.
	first.waitFor(joinedLine("flooder"))
	position := func() string { return renderedPosition(t, flooder.get("/").body) }
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before, base := position(), heap()
	const opens = 100
	for range opens {
		s := flooder.openStream()
		s.waitFor(`id="participant-list"`)
		s.close()
	}
	after, grew := position(), int64(heap())-int64(base)
	t.Logf("%d stream openings with 31 present: position %s -> %s, heap %+d KiB", opens, before, after, grew>>10)
	if after != before {
		t.Errorf("the history moved from %s to %s: snapshots (or something else) were kept", before, after)
	}
	if grew > 10<<20 {
		t.Errorf("the heap grew %d KiB during the flood", grew>>10)
	}
}

// Joining again under one's own name (a stale join form in another tab)
// makes a new session that takes the name over, also with a resume window
// (the old session's leave frees the name at once).
func TestJoinAgainUnderOwnName(t *testing.T) {
	srv := startServer(t, lobby.Options{Resume: time.Minute})
	brian := newBrowser(t, srv)
	brian.enter("brian")
	before := cookieOf(brian, "lobby_session")
	r := brian.join("Brian")
	if !strings.Contains(r.body, "You are <strong>brian</strong>") {
		t.Fatalf("joining again as Brian: the page says\n%s", r.body)
	}
	if after := cookieOf(brian, "lobby_session"); after == before {
		t.Fatal("joining again kept the old session id")
	}
	brian.openStream().waitFor(`id="participant-list"`)
	brian.say("still me")
}
