// Command lobby is the README's first example: a lobby's streams, its
// messages and the heartbeat that finds dead clients, as a whole program.
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
	"syscall"
	"time"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/dashboard"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Print("serving on http://127.0.0.1:8080 (Ctrl-C stops)")
	if err := run(ctx, "127.0.0.1:8080"); err != nil {
		log.Fatal(err)
	}
}

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

	beat := sfere.NewHeartbeat(hub, sfere.InCategory("lobby"), 10*time.Second)
	stop := beat.Start()
	defer stop()
	// The live dashboard at /debug/dashboard (docs/dashboard.md): put it behind the app's guard
	// for debug routes (it shows keys and counts, never message contents).
	mux.Handle("/debug/dashboard/", dashboard.Must(dashboard.New(hub, dashboard.Options{Heartbeat: beat})))
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

// The app's own parts: a real app reads the user from its session and the
// message from the request's Datastar signals.

// userFromSession stands for the app's session lookup.
func userFromSession(r *http.Request) string { return r.URL.Query().Get("user") }

// participantList stands for the app's rendering of who is here.
func participantList() string { return `<ul id="participants"></ul>` }

// messageLine renders a chat message, escaping the user's text.
func messageLine(r *http.Request) string {
	return fmt.Sprintf(`<div class="message">%s: %s</div>`,
		html.EscapeString(userFromSession(r)), html.EscapeString(r.URL.Query().Get("message")))
}
