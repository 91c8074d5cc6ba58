// Command presence is docs/presence.md's example as a whole program: a
// room that shows who is here, one entry per person however many tabs
// they have open.
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
	"syscall"
	"time"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/presence"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Print("serving on http://127.0.0.1:8080 (Ctrl-C stops)")
	if err := run(ctx, "127.0.0.1:8080"); err != nil {
		log.Fatal(err)
	}
}

// run serves the room on addr until ctx ends.
func run(ctx context.Context, addr string) error {
	hub := sfere.NewHub(sfere.NewMemoryStore(sfere.MemoryOptions{}), sfere.HubOptions{})
	// The tracker follows the hub's streams from here on: nothing to wire.
	tracker, err := presence.New(hub, presence.Options{
		Room:  "lobby",
		Grace: 2 * time.Second,
		Snapshot: func(ms []presence.Member) []sfere.Effect {
			return []sfere.Effect{sfere.PatchElements(peopleList(ms))}
		},
		Diff: func(d presence.Diff) []sfere.Effect { return diffEffects(d) }, // d.Leaves, then d.Joins
	})
	if err != nil {
		return err
	}
	defer tracker.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /join", func(w http.ResponseWriter, r *http.Request) {
		// The person's id, the owner (a secret such as the session id), metadata.
		if _, err := tracker.Claim(r.Context(), presence.Claim{Person: userID(r), Owner: sessionID(r), Meta: displayName(r)}); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
		}
	})
	mux.HandleFunc("POST /sse", func(w http.ResponseWriter, r *http.Request) {
		// Each tab's stream: a new key per tab.
		if _, err := tracker.Detach(w, r, sessionID(r)); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
		}
	})
	mux.HandleFunc("POST /leave", func(w http.ResponseWriter, r *http.Request) {
		// Leave now, closing every tab.
		if _, err := tracker.Leave(r.Context(), sessionID(r)); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
		}
	})

	defer hub.Shutdown(context.Background())
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

// The app's own parts: a real app takes the ids from its session (a
// cookie) and the display name from the request's Datastar signals.

func userID(r *http.Request) string      { return r.URL.Query().Get("user") }
func sessionID(r *http.Request) string   { return r.URL.Query().Get("session") }
func displayName(r *http.Request) string { return r.URL.Query().Get("name") }

// peopleList renders everyone present.
func peopleList(ms []presence.Member) string {
	var b strings.Builder
	b.WriteString(`<ul id="people">`)
	for _, m := range ms {
		b.WriteString(person(m))
	}
	b.WriteString(`</ul>`)
	return b.String()
}

// diffEffects renders a batch of changes: departures, then arrivals.
func diffEffects(d presence.Diff) []sfere.Effect {
	var fx []sfere.Effect
	for _, l := range d.Leaves {
		fx = append(fx, sfere.RemoveElements("#person-"+l.ID))
	}
	for _, j := range d.Joins {
		fx = append(fx, sfere.AppendElements("#people", person(j)))
	}
	return fx
}

// person renders one person; ids here are made of letters and digits.
func person(m presence.Member) string {
	return fmt.Sprintf(`<li id="person-%s">%s</li>`, m.ID, html.EscapeString(m.Meta))
}
