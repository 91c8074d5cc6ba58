package sfere_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sfere-go/sfere"
)

// The README's "library" section shows the code between the README
// markers verbatim; TestREADMEShowsTheExample keeps the two equal, and the
// other tests here run it.

// README:begin
// run serves a lobby's streams on addr until ctx ends.
func run(ctx context.Context, addr string) error {
	store, err := sfere.NewTTLStore(sfere.TTLOptions{
		Duration: 30 * time.Second, // sliding: every successful write keeps a stream alive
		OnEvict: func(ev sfere.Eviction) { // exactly once per stream that leaves
			log.Printf("%v left: %v (%v)", ev.Key, ev.Cause, ev.Err) // closed, explicit, replaced, expired, size
		},
	})
	if err != nil {
		return err
	}
	defer store.Close()
	hub := sfere.NewHub(store, sfere.HubOptions{WriteTimeout: 5 * time.Second})
	defer hub.Shutdown(context.Background())

	mux := http.NewServeMux()
	mux.HandleFunc("POST /sse", func(w http.ResponseWriter, r *http.Request) {
		key := sfere.NewKey(sfere.DefaultScope, "lobby", userFromSession(r))
		// Stores the stream, writes the initial effects, blocks until the stream ends.
		// (hub.Detach returns at once instead: the stream outlives the handler.)
		if err := hub.Serve(w, r, key, sfere.PatchElements(participantList())); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("POST /message", func(w http.ResponseWriter, r *http.Request) {
		key := sfere.NewKey(sfere.DefaultScope, "lobby", userFromSession(r))
		// Everyone in the lobby but the sender: rendered once, queued to every
		// matching stream, never blocks on a client. Safe from any goroutine.
		if _, err := hub.Broadcast(sfere.InCategory("lobby"), key, sfere.AppendElements("#messages", messageLine(r))); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		// The sender's own stream: clear the input.
		if _, err := hub.Send(key, sfere.PatchSignals([]byte(`{"message":""}`))); errors.Is(err, sfere.ErrNoStream) {
			http.Error(w, "open your stream first", http.StatusConflict)
		}
	})

	stop := sfere.NewHeartbeat(hub, sfere.InCategory("lobby"), 10*time.Second).Start()
	defer stop()
	ln, err := sfere.Listen(ctx, "tcp", addr, sfere.ListenOptions{UserTimeout: 5 * time.Second})
	if err != nil {
		return err // a busy port says so: "listen tcp 127.0.0.1:8080: bind: address already in use"
	}
	srv := &http.Server{Handler: mux, ConnContext: sfere.ConnContext} // no WriteTimeout: streams are long
	context.AfterFunc(ctx, func() { srv.Close() })
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil // a vanished peer's eviction error wraps sfere.ErrPeerVanished
}

// README:end

// The app's own parts of the README example.

// userFromSession stands for the app's session lookup.
func userFromSession(r *http.Request) string { return r.URL.Query().Get("user") }

// participantList stands for the app's rendering of who is here.
func participantList() string { return `<ul id="participants"></ul>` }

// messageLine renders a chat message; a Datastar app reads it from the
// request's signals.
func messageLine(r *http.Request) string {
	return fmt.Sprintf(`<div class="message">%s: %s</div>`,
		html.EscapeString(userFromSession(r)), html.EscapeString(r.URL.Query().Get("message")))
}

func TestREADMEShowsTheExample(t *testing.T) {
	src, err := os.ReadFile("example_readme_test.go")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok1 := bytes.Cut(src, []byte("// README:begin\n"))
	region, _, ok2 := bytes.Cut(rest, []byte("\n// README:end\n"))
	if !ok1 || !ok2 {
		t.Fatal("no README markers in example_readme_test.go")
	}
	block := "```go\n" + string(region) + "```\n"
	if !bytes.Contains(readme, []byte(block)) {
		t.Fatalf("README.md does not show the example of example_readme_test.go; paste this block into it:\n%s", block)
	}
}

// readmeCeiling bounds each wait for an event in the tests of the README's example.
const readmeCeiling = 20 * time.Second

func TestREADMEExampleSaysThePortIsBusy(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	err = run(context.Background(), busy.Addr().String())
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("run on a busy port: %v, want address already in use", err)
	}
}

func TestREADMEExampleServesALobby(t *testing.T) {
	var logged syncBuffer
	log.SetOutput(&logged)
	defer log.SetOutput(os.Stderr)

	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- run(ctx, addr) }()
	base := "http://" + addr

	phil := openReadmeStream(t, base, "phil", ran)
	brian := openReadmeStream(t, base, "brian", ran)
	phil.waitLine(t, `data: elements <ul id="participants"></ul>`)
	brian.waitLine(t, `data: elements <ul id="participants"></ul>`)

	resp, err := http.Post(base+"/message?user=brian&message=%3Cb%3Ehi", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("message: %s", resp.Status)
	}
	phil.waitLine(t, `data: elements <div class="message">brian: &lt;b&gt;hi</div>`)
	brian.waitLine(t, `data: signals {"message":""}`)

	resp, err = http.Post(base+"/message?user=nobody&message=hi", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("message without a stream: %s, want 409", resp.Status)
	}

	brian.body.Close() // brian closes the tab
	waitUntil(t, "brian's departure logged", func() bool {
		return strings.Contains(logged.String(), "default/lobby/brian left: closed")
	})
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("run after its context ended: %v", err)
		}
	case <-time.After(readmeCeiling):
		t.Fatal("run did not return after its context ended")
	}
	phil.waitEnd(t)
}

// readmeStream is a stream of the README's example, read line by line.
type readmeStream struct {
	body  interface{ Close() error }
	lines chan string
}

// openReadmeStream opens user's stream, retrying while the server starts.
func openReadmeStream(t *testing.T, base, user string, ran <-chan error) *readmeStream {
	t.Helper()
	deadline := time.Now().Add(readmeCeiling)
	for {
		resp, err := http.Post(base+"/sse?user="+user, "", nil)
		if err == nil {
			s := &readmeStream{body: resp.Body, lines: make(chan string, 64)}
			go func() {
				defer close(s.lines)
				sc := bufio.NewScanner(resp.Body)
				for sc.Scan() {
					s.lines <- sc.Text()
				}
			}()
			t.Cleanup(func() { resp.Body.Close() })
			return s
		}
		select {
		case err := <-ran:
			t.Fatalf("run ended before serving: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("cannot open %s's stream: %v", user, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *readmeStream) waitLine(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(readmeCeiling)
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				t.Fatalf("stream ended before %q", want)
			}
			if line == want {
				return
			}
		case <-timeout:
			t.Fatalf("no %q within %v", want, readmeCeiling)
		}
	}
}

func (s *readmeStream) waitEnd(t *testing.T) {
	t.Helper()
	timeout := time.After(readmeCeiling)
	for {
		select {
		case _, ok := <-s.lines:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("stream still open")
		}
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(readmeCeiling)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, readmeCeiling)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuffer is a log output tests can read while streams write to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
