// Command compression is docs/compression.md's compressed streams as a whole
// program: a chat whose streams are gzip for every client that accepts
// it, each line compressed once for all of them.
package main

import (
	"context"
	"errors"
	"fmt"
	"html"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

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

// run serves the chat on addr until ctx ends.
func run(ctx context.Context, addr string) error {
	store := sfere.NewMemoryStore(sfere.MemoryOptions{})
	hub := sfere.NewHub(store, sfere.HubOptions{
		Compression: &sfere.CompressionOptions{}, // gzip for every client that accepts it; defaults below
	})
	defer hub.Shutdown(context.Background())

	mux := http.NewServeMux()
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

	ln, err := net.Listen("tcp", addr)
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
