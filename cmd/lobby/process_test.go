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
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the tests run the command itself as a child process (the
// test binary re-executed with LOBBY_TEST_MAIN=1), so a real SIGTERM or
// SIGKILL reaches a real process.
func TestMain(m *testing.M) {
	if os.Getenv("LOBBY_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stderr))
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
	c.cmd.Env = append(os.Environ(), "LOBBY_TEST_MAIN=1")
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

// client is a minimal lobby client: a session cookie, and one stream read
// line by line over its own TCP connection.
type client struct {
	base, name, cookie string
	hc                 *http.Client
}

func (c *client) post(path string, signals any) (int, error) {
	body, _ := json.Marshal(signals)
	req, _ := http.NewRequest(http.MethodPost, c.base+path, bytes.NewReader(body))
	req.Header.Set("Datastar-Request", "true")
	req.Header.Set("Content-Type", "application/json")
	if c.cookie != "" {
		req.AddCookie(&http.Cookie{Name: "lobby_session", Value: c.cookie})
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == "lobby_session" {
			c.cookie = ck.Value
		}
	}
	return resp.StatusCode, nil
}

func (c *client) join() error {
	c.cookie = ""
	status, err := c.post("/join", map[string]any{"username": c.name})
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("join %s: status %d", c.name, status)
	}
	return err
}

// sse is one stream: its lines as they come, and how it ended.
type sse struct {
	conn  net.Conn
	mu    sync.Mutex
	lines []string
	err   error
	done  chan struct{}
	list  chan struct{}
	once  sync.Once
}

func (c *client) open(rcvbuf int, read bool) (*sse, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf) })
		}
	}
	conn, err := d.Dial("tcp", strings.TrimPrefix(c.base, "http://"))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(conn, "POST /sse HTTP/1.1\r\nHost: x\r\nDatastar-Request: true\r\nContent-Type: application/json\r\n"+
		"Cookie: lobby_session=%s\r\nContent-Length: 2\r\n\r\n{}", c.cookie)
	s := &sse{conn: conn, done: make(chan struct{}), list: make(chan struct{})}
	if !read {
		close(s.done)
		return s, nil
	}
	go func() {
		defer close(s.done)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			s.err = err
			return
		}
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadString('\n')
			s.mu.Lock()
			if err != nil {
				s.err = err
				s.mu.Unlock()
				return
			}
			s.lines = append(s.lines, line)
			s.mu.Unlock()
			if strings.Contains(line, `<ul id="participant-list">`) {
				s.once.Do(func() { close(s.list) })
			}
		}
	}()
	return s, nil
}

func (s *sse) has(text string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lines {
		if strings.Contains(l, text) {
			return true
		}
	}
	return false
}

// items returns the participant list's item ids as the page would show them.
func (s *sse) items() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	items := map[string]int{}
	idRE := regexp.MustCompile(`id="(participant-[0-9a-f]+)"`)
	for _, l := range s.lines {
		switch {
		case strings.Contains(l, `<ul id="participant-list">`):
			clear(items)
			fallthrough
		case strings.HasPrefix(l, "data: elements <li id="):
			for _, m := range idRE.FindAllStringSubmatch(l, -1) {
				items[m[1]]++
			}
		case strings.HasPrefix(l, "data: selector #participant-") && !strings.Contains(l, "participant-list"):
			delete(items, strings.TrimSpace(strings.TrimPrefix(l, "data: selector #")))
		}
	}
	return items
}

// SIGTERM under load: the process tells every stream to reconnect, ends
// them all, closes a client that stopped reading, and exits 0 within the
// 5 s it allows itself.
func TestSIGTERMUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	c := startChild(t, "-addr", "127.0.0.1:0", "-heartbeat", "1s", "-user-timeout", "2s", "-max-streams-per-ip", "0", "-message-rate", "0")
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer hc.CloseIdleConnections()
	const n = 100
	var streams []*sse
	var chatter *client
	for i := range n {
		cl := &client{base: c.url, name: fmt.Sprintf("user%03d", i), hc: hc}
		if err := cl.join(); err != nil {
			t.Fatal(err)
		}
		s, err := cl.open(0, true)
		if err != nil {
			t.Fatal(err)
		}
		defer s.conn.Close()
		select {
		case <-s.list:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no participant list", cl.name)
		}
		streams = append(streams, s)
		chatter = cl
	}
	stalledClient := &client{base: c.url, name: "stalled", hc: hc}
	if err := stalledClient.join(); err != nil {
		t.Fatal(err)
	}
	stalled, err := stalledClient.open(2048, false)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.conn.Close()
	stop := make(chan struct{})
	chatDone := make(chan struct{})
	go func() {
		defer close(chatDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			chatter.post("/message", map[string]any{"message": fmt.Sprintf("tick %d %s", i, strings.Repeat("x", 500))})
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(time.Second)

	start := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var last time.Duration
	for i, s := range streams {
		select {
		case <-s.done:
			last = max(last, time.Since(start))
		case <-time.After(5*time.Second - time.Since(start)):
			t.Fatalf("user%03d: stream still open 5 s after SIGTERM", i)
		}
		if !errors.Is(s.err, io.EOF) || !s.has("data-init__delay") {
			t.Errorf("user%03d: stream ended with %v, told to reconnect: %v", i, s.err, s.has("data-init__delay"))
		}
	}
	select {
	case <-c.exited:
	case <-time.After(6*time.Second - time.Since(start)):
		t.Fatalf("the process still runs %v after SIGTERM", time.Since(start))
	}
	exited := time.Since(start)
	close(stop)
	<-chatDone
	if c.err != nil {
		t.Errorf("exit: %v", c.err)
	}
	stalled.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.Copy(io.Discard, stalled.conn); err != nil {
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

// kill -9, then a new process on the same address: clients whose streams
// broke retry (as Datastar does on a network error), are told to join
// again, join, and end up in one consistent lobby: each listed once on
// every page, one stream each, no ghost.
func TestKillAndRestartReconnects(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	a := startChild(t, "-addr", "127.0.0.1:0", "-heartbeat", "1s", "-grace", "200ms", "-debug", "-max-streams-per-ip", "0")
	addr := strings.TrimPrefix(a.url, "http://")
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer hc.CloseIdleConnections()
	const n = 10
	type state struct {
		mu      sync.Mutex
		cur     *sse
		opened  time.Time
		rejoins int
	}
	states := make([]*state, n)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		st := &state{}
		states[i] = st
		cl := &client{base: a.url, name: fmt.Sprintf("user%02d", i), hc: hc}
		if err := cl.join(); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			backoff := 50 * time.Millisecond
			for {
				select {
				case <-stop:
					return
				default:
				}
				s, err := cl.open(0, true)
				if err != nil { // refused: the server is down
					time.Sleep(backoff)
					backoff = min(2*backoff, time.Second)
					continue
				}
				st.mu.Lock()
				st.cur, st.opened = s, time.Now()
				st.mu.Unlock()
				select {
				case <-s.done:
				case <-stop:
					s.conn.Close()
					<-s.done
					return
				}
				switch {
				case s.has(`<form id="join"`):
					st.mu.Lock()
					st.rejoins++
					st.mu.Unlock()
					for cl.join() != nil {
						time.Sleep(backoff)
					}
				case errors.Is(s.err, io.EOF):
					return
				default: // broken: retry with backoff
					time.Sleep(backoff)
					backoff = min(2*backoff, time.Second)
				}
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	waitAll := func(what string, since time.Time) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			ok := 0
			for _, st := range states {
				st.mu.Lock()
				if s := st.cur; s != nil && st.opened.After(since) && len(s.items()) == n {
					ok++
				}
				st.mu.Unlock()
			}
			if ok == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d of %d clients see everyone", what, ok, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitAll("before the kill", time.Time{})

	killed := time.Now()
	a.cmd.Process.Kill()
	<-a.exited
	time.Sleep(300 * time.Millisecond)
	b := startChild(t, "-addr", addr, "-heartbeat", "1s", "-grace", "200ms", "-debug", "-max-streams-per-ip", "0")
	waitAll("after the restart", killed)
	t.Logf("kill -9 and restart: all %d clients back after %v", n, time.Since(killed).Round(time.Millisecond))
	time.Sleep(300 * time.Millisecond)
	for i, st := range states {
		st.mu.Lock()
		items, rejoins := st.cur.items(), st.rejoins
		st.mu.Unlock()
		if rejoins != 1 {
			t.Errorf("user%02d was told to join again %d times, want 1", i, rejoins)
		}
		for id, count := range items {
			if count != 1 {
				t.Errorf("user%02d's list shows %s %d times", i, id, count)
			}
		}
		if len(items) != n {
			t.Errorf("user%02d's list has %d items, want %d", i, len(items), n)
		}
	}
	resp, err := hc.Get(b.url + "/debug/connections")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	json.NewDecoder(resp.Body).Decode(&keys)
	resp.Body.Close()
	if len(keys) != n {
		t.Errorf("%d streams on the new process, want %d: %q", len(keys), n, keys)
	}
}
