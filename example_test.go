package sfere_test

import (
	"bufio"
	"context"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sfere-go/sfere"
)

func ExampleMemoryStore() {
	store := sfere.NewMemoryStore(sfere.MemoryOptions{
		OnEvict: func(ev sfere.Eviction) {
			fmt.Println("evicted", ev.Key, "cause", ev.Cause)
		},
	})
	hub := sfere.NewHub(store, sfere.HubOptions{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hub.Serve(w, r, sfere.NewKey(sfere.DefaultScope, "lobby", r.URL.Query().Get("name")))
	}))
	defer srv.Close()

	resp, err := http.Post(srv.URL+"?name=brian", "application/json", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	// Stored by the time the response head came back.
	fmt.Println(store.Keys(sfere.InCategory("lobby")))
	store.Purge(sfere.NewKey(sfere.DefaultScope, "lobby", "brian"))
	resp.Body.Close()
	// Output:
	// [default/lobby/brian]
	// evicted default/lobby/brian cause explicit
}

func ExampleHub_Serve() {
	hub := sfere.NewHub(sfere.NewMemoryStore(sfere.MemoryOptions{}), sfere.HubOptions{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /sse", func(w http.ResponseWriter, r *http.Request) {
		key := sfere.NewKey(sfere.DefaultScope, "lobby", "brian") // from the session, in a real app
		// Blocks until the stream ends; the stream is then out of the store.
		if err := hub.Serve(w, r, key, sfere.PatchElements(`<ul id="participant-list"><li>brian</li></ul>`)); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
}

func ExampleHub_Detach() {
	hub := sfere.NewHub(sfere.NewMemoryStore(sfere.MemoryOptions{}), sfere.HubOptions{})
	var open atomic.Int64           // what the app holds per stream: here, a count
	ended := make(chan struct{}, 1) // for this example's output: a stream ended
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := sfere.NewKey(sfere.DefaultScope, "lobby", r.URL.Query().Get("name"))
		open.Add(1)
		s, err := hub.Detach(w, r, key, sfere.Comment("welcome"))
		if err != nil {
			open.Add(-1)
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		s.AfterEnd(func() {
			open.Add(-1)
			ended <- struct{}{}
		})
		// The handler returns; the stream lives on until it ends.
	}))
	defer srv.Close()
	defer hub.Shutdown(context.Background())

	resp, err := http.Get(srv.URL + "?name=brian")
	if err != nil {
		fmt.Println(err)
		return
	}
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	fmt.Printf("brian reads %q; streams open: %d\n", line, open.Load())
	resp.Body.Close() // brian closes the tab
	<-ended
	fmt.Println("streams open:", open.Load(), "stored:", hub.Count(sfere.All))
	// Output:
	// brian reads ": welcome\n"; streams open: 1
	// streams open: 0 stored: 0
}

func ExampleHub_Broadcast() {
	hub := sfere.NewHub(sfere.NewMemoryStore(sfere.MemoryOptions{}), sfere.HubOptions{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hub.Serve(w, r, sfere.NewKey(sfere.DefaultScope, "lobby", r.URL.Query().Get("name")))
	}))
	defer srv.Close()
	defer hub.Shutdown(context.Background())

	phil, err := http.Post(srv.URL+"?name=phil", "application/json", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer phil.Body.Close()
	brian, err := http.Post(srv.URL+"?name=brian", "application/json", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer brian.Body.Close()
	// Both streams are stored: each was before its response head came back.

	// Everyone in the lobby but brian.
	res, _ := hub.Broadcast(sfere.InCategory("lobby"), sfere.NewKey(sfere.DefaultScope, "lobby", "brian"),
		sfere.AppendElements("#messages", `<div class="system-message">brian joined the lobby</div>`))
	fmt.Printf("delivered %d, failed %d\n", res.Delivered, res.Failed)

	lines := bufio.NewScanner(phil.Body)
	for lines.Scan() {
		if line := lines.Text(); strings.HasPrefix(line, "data:") {
			fmt.Println(line)
			if strings.Contains(line, "elements") {
				break
			}
		}
	}
	// Output:
	// delivered 1, failed 0
	// data: selector #messages
	// data: mode append
	// data: elements <div class="system-message">brian joined the lobby</div>
}

func ExampleHub_Send() {
	hub := sfere.NewHub(sfere.NewMemoryStore(sfere.MemoryOptions{}), sfere.HubOptions{})
	_, err := hub.Send(sfere.NewKey(sfere.DefaultScope, "lobby", "nobody"), sfere.Comment("hello"))
	fmt.Println(err)
	// Output:
	// sfere: no stream for key: default/lobby/nobody
}

func ExampleHeartbeat() {
	store, _ := sfere.NewTTLStore(sfere.TTLOptions{Duration: 30 * time.Second})
	defer store.Close()
	hub := sfere.NewHub(store, sfere.HubOptions{WriteTimeout: 5 * time.Second})

	// Start in dependency order (store, hub, heartbeat), stop in reverse.
	stop := sfere.NewHeartbeat(hub, sfere.InCategory("lobby"), 10*time.Second).Start()
	defer hub.Shutdown(context.Background())
	defer stop()
	// ... serve HTTP on a listener from sfere.Listen, so a vanished peer
	// fails a heartbeat write within interval + user timeout.
}

func ExampleListen() {
	ln, err := sfere.Listen(context.Background(), "tcp", "127.0.0.1:0", sfere.ListenOptions{UserTimeout: 5 * time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Close()
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second} // no WriteTimeout: streams are long
	go srv.Serve(ln)
	defer srv.Close()
	fmt.Println("listening")
	// Output: listening
}

func ExampleRender() {
	b, _ := sfere.Render(sfere.RemoveElements("#participant-brian"), sfere.Comment("heartbeat"))
	fmt.Printf("%q\n", b)
	// Output:
	// "event: datastar-patch-elements\ndata: selector #participant-brian\ndata: mode remove\n\n\n: heartbeat\n\n"
}

func ExamplePattern() {
	p := sfere.InCategory("lobby")
	fmt.Println(p, p.Match(sfere.NewKey("default", "lobby", "brian")), p.Match(sfere.NewKey("default", "game", "42")))
	lit := sfere.NewPattern(sfere.Any, sfere.Exactly("lobby"), sfere.Exactly("*"))
	fmt.Println(lit, lit.Match(sfere.NewKey("default", "lobby", "brian")))
	// Output:
	// */lobby/* true false
	// */lobby/%2A false
}

// announce is app code that runs on one hub or, given a natscluster.Node,
// on a whole cluster.
func announce(p sfere.Publisher, name string) (int, error) {
	res, err := p.Broadcast(sfere.InCategory("lobby"), sfere.NewKey(sfere.DefaultScope, "lobby", name),
		sfere.AppendElements("#messages", `<div class="system-message">`+html.EscapeString(name)+` joined the lobby</div>`))
	return res.Delivered, err
}

func ExamplePublisher() {
	hub := sfere.NewHub(sfere.NewMemoryStore(sfere.MemoryOptions{}), sfere.HubOptions{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hub.Serve(w, r, sfere.NewKey(sfere.DefaultScope, "lobby", r.URL.Query().Get("name")))
	}))
	defer srv.Close()
	defer hub.Shutdown(context.Background())
	for _, name := range []string{"phil", "brian"} {
		resp, err := http.Get(srv.URL + "?name=" + name)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer resp.Body.Close()
	}
	// Both streams are stored: each was before its response head came back.
	delivered, err := announce(hub, "brian") // phil's stream only
	fmt.Println(delivered, err)
	// Output:
	// 1 <nil>
}
