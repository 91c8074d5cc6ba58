package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
)

// TestMain lets the tests run the command itself as a child process (the
// test binary re-executed with LOBBY_TEST_MAIN=1), so a real SIGTERM or
// SIGKILL reaches a real process.
func TestMain(m *testing.M) {
	if os.Getenv("LOBBY_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stderr))
	}
	if os.Getenv("LOBBY_TEST_FAKE_GO") == "1" {
		os.Exit(fakeGoRun(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// child is the lobby command running in a process of its own.
type child struct {
	cmd    *exec.Cmd
	url    string
	mu     sync.Mutex
	stderr bytes.Buffer
	exited chan struct{}
	err    error
}

var listeningRE = regexp.MustCompile(`msg="lobby listening" url=(http://\S+)`)

func startChild(t *testing.T, args ...string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(os.Args[0], args...), exited: make(chan struct{})}
	// The session key's default file goes to a directory of the test's.
	c.cmd.Env = append(os.Environ(), "LOBBY_TEST_MAIN=1", "XDG_CACHE_HOME="+t.TempDir())
	pipe, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			c.mu.Lock()
			c.stderr.WriteString(sc.Text() + "\n")
			c.mu.Unlock()
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
			}
		}
		c.err = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.exited
		if t.Failed() {
			t.Logf("lobby's log:\n%s", c.log())
		}
	})
	select {
	case c.url = <-urls:
	case <-c.exited:
		t.Fatalf("the lobby exited: %v\n%s", c.err, c.log())
	case <-time.After(10 * time.Second):
		t.Fatalf("the lobby did not start:\n%s", c.log())
	}
	return c
}

func (c *child) log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stderr.String()
}

// client is a minimal lobby client: a session cookie and its signed
// member cookie, and one stream read line by line over its own TCP
// connection.
type client struct {
	base, name, cookie, member string
	hc                         *http.Client
}

func (c *client) post(path string, signals any) (int, error) {
	body, _ := json.Marshal(signals)
	req, _ := http.NewRequest(http.MethodPost, c.base+path, bytes.NewReader(body))
	req.Header.Set("Datastar-Request", "true")
	req.Header.Set("Content-Type", "application/json")
	if c.cookie != "" {
		req.AddCookie(&http.Cookie{Name: "lobby_session", Value: c.cookie})
	}
	if c.member != "" {
		req.AddCookie(&http.Cookie{Name: "lobby_member", Value: c.member})
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		switch {
		case ck.Name == "lobby_session":
			c.cookie = ck.Value
		case ck.Name == "lobby_member" && ck.MaxAge < 0:
			c.member = ""
		case ck.Name == "lobby_member":
			c.member = ck.Value
		}
	}
	return resp.StatusCode, nil
}

// took keeps the member cookie that comes with a stream's response.
func (c *client) took(s *ssetest.Client) {
	resp, err := s.Head(5 * time.Second)
	if err != nil {
		return
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == "lobby_member" && ck.MaxAge > 0 {
			c.member = ck.Value
		}
	}
}

func (c *client) join() error {
	c.cookie, c.member = "", ""
	status, err := c.post("/join", map[string]any{"username": c.name})
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("join %s: status %d", c.name, status)
	}
	return err
}

// request is the client's stream request: POST /sse with its session,
// and the id of the last event it got (if any), as a reconnecting
// Datastar client sends it.
func (c *client) request(lastID ...string) ssetest.Request {
	req := ssetest.DatastarPost("/sse", "{}")
	req.Host = "x"
	cookie := "lobby_session=" + c.cookie
	if c.member != "" {
		cookie += "; lobby_member=" + c.member
	}
	req.Header.Set("Cookie", cookie)
	if len(lastID) > 0 && lastID[0] != "" {
		req.Header.Set("Last-Event-ID", lastID[0])
	}
	return req
}

func (c *client) addr() string { return strings.TrimPrefix(c.base, "http://") }

// participantList matches the event that sends the whole participant list.
var participantList = ssetest.Containing(`<ul id="participant-list">`)

// items returns the participant list's item ids as the page would show them.
func items(s *ssetest.Client) map[string]int {
	items := map[string]int{}
	idRE := regexp.MustCompile(`id="(participant-[0-9a-f]+)"`)
	for _, e := range s.Events() {
		for _, l := range e.Data {
			switch {
			case strings.Contains(l, `<ul id="participant-list">`):
				clear(items)
				fallthrough
			case strings.HasPrefix(l, "elements <li id="):
				for _, m := range idRE.FindAllStringSubmatch(l, -1) {
					items[m[1]]++
				}
			case strings.HasPrefix(l, "selector #participant-") && !strings.Contains(l, "participant-list"):
				delete(items, strings.TrimSpace(strings.TrimPrefix(l, "selector #")))
			}
		}
	}
	return items
}

// seat joins n users to the lobby at url, each with a stream that has
// received the participant list, and returns the streams and the last
// user (to chat with).
func seat(t *testing.T, url string, hc *http.Client, n int) ([]*ssetest.Client, *client) {
	t.Helper()
	var streams []*ssetest.Client
	var last *client
	for i := range n {
		cl := &client{base: url, name: fmt.Sprintf("user%03d", i), hc: hc}
		if err := cl.join(); err != nil {
			t.Fatal(err)
		}
		s := ssetest.Open(t, cl.addr(), cl.request())
		s.Wait(5*time.Second, participantList)
		cl.took(s)
		streams = append(streams, s)
		last = cl
	}
	return streams, last
}

// chat has c post a 500-byte message every 5 ms until stop is called;
// stop waits for the chatter to return.
func chat(c *client) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-quit:
				return
			default:
			}
			c.post("/message", map[string]any{"message": fmt.Sprintf("tick %d %s", i, strings.Repeat("x", 500))})
			time.Sleep(5 * time.Millisecond) // pacing: the chat load
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// SIGTERM under load: the process tells every stream to reconnect, ends
// them all, closes a client that stopped reading, and exits 0 within the
// 5 s it allows itself.
func TestSIGTERMUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	c := startChild(t, "-addr", "127.0.0.1:0", "-heartbeat", "1s", "-user-timeout", "2s", "-max-streams-per-ip", "0", "-join-rate", "0", "-stream-rate", "0", "-address-message-rate", "0", "-names-per-ip", "0", "-message-rate", "0")
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer hc.CloseIdleConnections()
	const n = 100
	streams, chatter := seat(t, c.url, hc, n)
	stalledClient := &client{base: c.url, name: "stalled", hc: hc}
	if err := stalledClient.join(); err != nil {
		t.Fatal(err)
	}
	stalled := ssetest.Open(t, stalledClient.addr(), stalledClient.request(), ssetest.NoRead(), ssetest.RecvBuffer(2048))
	stopChat := chat(chatter)
	time.Sleep(time.Second) // pacing: the load runs a while before the SIGTERM

	start := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var last time.Duration
	for i, s := range streams {
		select {
		case <-s.Done():
			last = max(last, time.Since(start))
		case <-time.After(5*time.Second - time.Since(start)):
			t.Fatalf("user%03d: stream still open 5 s after SIGTERM", i)
		}
		_, told := s.Find(ssetest.Containing("data-init__delay"))
		if !errors.Is(s.Err(), io.EOF) || !told {
			t.Errorf("user%03d: stream ended with %v, told to reconnect: %v", i, s.Err(), told)
		}
	}
	select {
	case <-c.exited:
	case <-time.After(6*time.Second - time.Since(start)):
		t.Fatalf("the process still runs %v after SIGTERM", time.Since(start))
	}
	exited := time.Since(start)
	stopChat()
	if c.err != nil {
		t.Errorf("exit: %v", c.err)
	}
	// The process is gone; its side of the stalled connection is an
	// orphan the kernel still holds (FIN-WAIT-1, data queued against a
	// zero window). It ends by the user timeout's abort, or, once this
	// read opens the window, by draining at the pace of window probes
	// (hundreds of ms apart): give it a generous ceiling.
	stalled.Conn().SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.Copy(io.Discard, stalled.Conn()); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("the stalled client's connection is still open")
		}
	}
	t.Logf("SIGTERM with %d streams, a stalled reader and chat: last stream ended after %v, process exited (code 0) after %v",
		n, last.Round(time.Millisecond), exited.Round(time.Millisecond))
	if strings.Contains(c.log(), "left the lobby") || strings.Contains(c.log(), `msg=left`) {
		t.Errorf("the shutdown announced departures")
	}
}

// rejoiner is a lobby user who behaves as a Datastar page does when its
// server dies: it retries its stream with backoff while the server is
// down or the stream broke, joins again when told to, and stops at a
// clean end.
type rejoiner struct {
	cl *client

	mu      sync.Mutex
	cur     *ssetest.Client // the latest stream
	opened  time.Time       // when cur was opened
	last    string          // the last id an earlier stream got
	rejoins int
}

// run keeps the user connected until stop is closed.
func (r *rejoiner) run(stop <-chan struct{}) {
	backoff := 50 * time.Millisecond
	for {
		select {
		case <-stop:
			return
		default:
		}
		s, err := ssetest.Dial(r.cl.addr(), r.cl.request(r.lastID()))
		if err != nil { // refused: the server is down
			time.Sleep(backoff) // pacing: the client backs off as Datastar does
			backoff = min(2*backoff, time.Second)
			continue
		}
		r.cl.took(s)
		r.mu.Lock()
		r.cur, r.opened = s, time.Now()
		r.mu.Unlock()
		select {
		case <-s.Done():
		case <-stop:
			s.Close()
			return
		}
		s.Close()
		_, toldToJoin := s.Find(ssetest.Containing(`<form id="join"`))
		switch {
		case toldToJoin:
			r.mu.Lock()
			r.rejoins++
			r.mu.Unlock()
			for r.cl.join() != nil {
				time.Sleep(backoff) // pacing: the client backs off as Datastar does
			}
		case errors.Is(s.Err(), io.EOF):
			return
		default: // broken: retry with backoff
			time.Sleep(backoff) // pacing: the client backs off as Datastar does
			backoff = min(2*backoff, time.Second)
		}
	}
}

// lastID is the id of the last event the user's streams got.
func (r *rejoiner) lastID() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur == nil {
		return ""
	}
	id := ""
	for _, e := range r.cur.Events() {
		if e.HasID {
			id = e.ID
		}
	}
	if id == "" {
		return r.last
	}
	r.last = id
	return id
}

// seesAll reports whether the user's stream, opened after since, lists n
// participants.
func (r *rejoiner) seesAll(since time.Time, n int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur != nil && r.opened.After(since) && len(items(r.cur)) == n
}

// kill -9, then a new process on the same address and session key file:
// clients whose streams broke retry (as Datastar does on a network error,
// with the id of the last event they got), are taken back by their signed
// session cookies without a new join, are told that what was said
// meanwhile is lost, and end up in one consistent lobby: each listed once
// on every page, one stream each, no ghost.
func TestKillAndRestartReconnects(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	keyFile := filepath.Join(t.TempDir(), "session-key")
	a := startChild(t, "-addr", "127.0.0.1:0", "-heartbeat", "1s", "-grace", "200ms", "-debug", "-max-streams-per-ip", "0", "-join-rate", "0", "-stream-rate", "0", "-address-message-rate", "0", "-names-per-ip", "0", "-session-key-file", keyFile)
	addr := strings.TrimPrefix(a.url, "http://")
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer hc.CloseIdleConnections()
	const n = 10
	users := make([]*rejoiner, n)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range users {
		users[i] = &rejoiner{cl: &client{base: a.url, name: fmt.Sprintf("user%02d", i), hc: hc}}
		if err := users[i].cl.join(); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { users[i].run(stop) })
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	everyoneSeesEveryone := func(since time.Time) func() bool {
		return func() bool {
			for _, u := range users {
				if !u.seesAll(since, n) {
					return false
				}
			}
			return true
		}
	}
	ssetest.Eventually(t, 15*time.Second, "every client to see everyone before the kill", everyoneSeesEveryone(time.Time{}))

	killed := time.Now()
	a.cmd.Process.Kill()
	<-a.exited
	time.Sleep(300 * time.Millisecond) // pacing: the clients retry against a closed port
	b := startChild(t, "-addr", addr, "-heartbeat", "1s", "-grace", "200ms", "-debug", "-max-streams-per-ip", "0", "-join-rate", "0", "-stream-rate", "0", "-address-message-rate", "0", "-names-per-ip", "0", "-session-key-file", keyFile)
	ssetest.Eventually(t, 15*time.Second, "every client to see everyone after the restart", everyoneSeesEveryone(killed))
	t.Logf("kill -9 and restart: all %d clients back after %v", n, time.Since(killed).Round(time.Millisecond))
	time.Sleep(300 * time.Millisecond) // negative check: a second rejoin would come by now
	for i, u := range users {
		u.mu.Lock()
		items, rejoins := items(u.cur), u.rejoins
		_, told := u.cur.Find(ssetest.Containing("could not be recovered"))
		u.mu.Unlock()
		if rejoins != 0 {
			t.Errorf("user%02d was told to join again %d times, want 0 (its session resumed)", i, rejoins)
		}
		if !told {
			t.Errorf("user%02d was not told that lines said during the restart are lost", i)
		}
		checkListedOnce(t, fmt.Sprintf("user%02d", i), items, n)
	}
	if keys := debugConnections(t, hc, b.url); len(keys) != n {
		t.Errorf("%d streams on the new process, want %d: %q", len(keys), n, keys)
	}
}

// checkListedOnce checks that who's participant list has n items, each
// shown once.
func checkListedOnce(t *testing.T, who string, items map[string]int, n int) {
	t.Helper()
	for id, count := range items {
		if count != 1 {
			t.Errorf("%s's list shows %s %d times", who, id, count)
		}
	}
	if len(items) != n {
		t.Errorf("%s's list has %d items, want %d", who, len(items), n)
	}
}

// debugConnections returns the keys of the streams the lobby at url holds.
func debugConnections(t *testing.T, hc *http.Client, url string) []string {
	t.Helper()
	resp, err := hc.Get(url + "/debug/connections")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var keys []string
	if err := json.NewDecoder(resp.Body).Decode(&keys); err != nil {
		t.Fatalf("debug connections: %v", err)
	}
	return keys
}
