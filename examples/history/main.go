// Command history is docs/history.md's example as a whole program: a
// chat whose streams carry positions, so a client that reconnects with
// Last-Event-ID gets exactly the lines it missed.
package main

import (
	"context"
	"errors"
	"fmt"
	"html"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sfere-go/sfere"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Print("serving on http://127.0.0.1:8080 (Ctrl-C stops)")
	if err := run(ctx, "127.0.0.1:8080"); err != nil {
		log.Fatal(err)
	}
}

// run serves a chat with a history on addr until ctx ends.
func run(ctx context.Context, addr string) error {
	store := sfere.NewMemoryStore(sfere.MemoryOptions{})
	hub := sfere.NewHub(store, sfere.HubOptions{
		History: sfere.HistoryOptions{Size: 10_000, MaxAge: 2 * time.Minute}, // MaxReplay defaults to Size
		Retry:   time.Second,                                                 // each client waits 1-2 s (jittered) before reconnecting
	})
	defer hub.Shutdown(context.Background())
	var page chat

	mux := http.NewServeMux()
	mux.HandleFunc("POST /sse", func(w http.ResponseWriter, r *http.Request) {
		key := sfere.NewKey(sfere.DefaultScope, "chat", r.URL.Query().Get("user"))
		// Unchanged handler: the initial effects are the page's full state.
		err := hub.Serve(w, r, key, sfere.PatchElements(page.render()))
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("POST /message", func(w http.ResponseWriter, r *http.Request) {
		line := fmt.Sprintf("<p>%s</p>", html.EscapeString(r.URL.Query().Get("message")))
		page.add(line)
		if _, err := hub.Broadcast(sfere.InCategory("chat"), nil, sfere.AppendElements("#lines", line)); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})

	ln, err := sfere.Listen(ctx, "tcp", addr, sfere.ListenOptions{UserTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ConnContext: sfere.ConnContext}
	context.AfterFunc(ctx, func() { srv.Close() })
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// chat is the page's state: every line said so far.
type chat struct {
	mu    sync.Mutex
	lines []string
}

func (c *chat) add(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, line)
}

// render is the whole page's state, sent to a stream that cannot resume.
func (c *chat) render() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return `<div id="lines">` + strings.Join(c.lines, "") + `</div>`
}
