// Command watchdog is docs/heartbeat.md's page watchdog as a whole program: a
// chat whose heartbeat the page can see, and a page that reopens its
// stream from its last position when the beats stop.
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
)

// interval is the heartbeat's: the page takes its stream for dead after
// 2.2 of them without any event (see page).
const interval = 10 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Print("serving on http://127.0.0.1:8080 (Ctrl-C stops)")
	if err := run(ctx, "127.0.0.1:8080", interval); err != nil {
		log.Fatal(err)
	}
}

// run serves the chat on addr until ctx ends, with a visible beat every
// interval.
func run(ctx context.Context, addr string, interval time.Duration) error {
	store := sfere.NewMemoryStore(sfere.MemoryOptions{})
	hub := sfere.NewHub(store, sfere.HubOptions{History: sfere.HistoryOptions{Size: 1000, PositionSignal: "_pos"}})
	defer hub.Shutdown(context.Background())
	beat, err := sfere.NewVisibleHeartbeat(hub, sfere.InCategory("lobby"), interval, "_beat")
	if err != nil {
		return err
	}
	defer beat.Start()()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, page(hub.Position().String(), interval))
	})
	mux.HandleFunc("POST /sse", func(w http.ResponseWriter, r *http.Request) {
		key := sfere.NewKey(sfere.DefaultScope, "lobby", r.URL.Query().Get("user"))
		if err := hub.Serve(w, r, key); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("POST /message", func(w http.ResponseWriter, r *http.Request) {
		line := fmt.Sprintf("<p>%s</p>", html.EscapeString(r.URL.Query().Get("message")))
		if _, err := hub.Broadcast(sfere.InCategory("lobby"), nil, sfere.AppendElements("#lines", line)); err != nil {
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

// page is the chat page rendered at position pos: its watchdog opens the
// stream from pos and, when no event (a beat or a line) has come for 2.2
// intervals, says "reconnecting…" and reopens it from the last position
// the page applied, every 1.5 s or so until events flow again. It reopens
// with the same URL, so Datastar aborts the request it replaces.
func page(pos string, interval time.Duration) string {
	silence := (interval * 22 / 10).Milliseconds()
	return fmt.Sprintf(`<!doctype html>
<script type="module" src="https://cdn.jsdelivr.net/gh/starfederation/datastar@1.0.2/bundles/datastar.js"></script>
<div data-signals="{_pos: '%[1]s', _seen: Date.now(), _lost: false}"
     data-init="@post('/sse?lastEventID=%[1]s')"
     data-on:datastar-fetch="evt.detail.el === el && evt.detail.type.startsWith('datastar-') && ($_seen = Date.now(), $_lost = false)"
     data-on-interval__duration.250ms="Date.now() - $_seen > %[2]d && ($_lost = true, $_seen = Date.now() - %[3]d,
       @post('/sse?lastEventID=%[1]s', {headers: {'Last-Event-ID': $_pos}}))">
  <p data-show="$_lost" data-text="$_lost ? 'reconnecting…' : ''"></p>
</div>
<div id="lines"></div>
`, html.EscapeString(pos), silence, silence-1500)
}
