// Command tls is docs/deploy.md's TLS example as a whole program: streams over
// HTTPS, where browsers speak HTTP/2. It reads cert.pem and key.pem from
// the working directory; for a local try,
//
//	go run "$(go env GOROOT)/src/crypto/tls/generate_cert.go" --host 127.0.0.1
//
// writes both.
package main

import (
	"context"
	"errors"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sfere-go/sfere"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Print("serving on https://127.0.0.1:8443 (Ctrl-C stops)")
	if err := run(ctx, "127.0.0.1:8443"); err != nil {
		log.Fatal(err)
	}
}

// run serves streams over TLS on addr until ctx ends.
func run(ctx context.Context, addr string) error {
	hub := sfere.NewHub(sfere.NewMemoryStore(sfere.MemoryOptions{}), sfere.HubOptions{})
	defer hub.Shutdown(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("POST /sse", func(w http.ResponseWriter, r *http.Request) {
		key := sfere.NewKey(sfere.DefaultScope, "lobby", r.URL.Query().Get("user"))
		if err := hub.Serve(w, r, key, sfere.PatchElements(`<p id="proto">`+r.Proto+`</p>`)); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})

	ln, err := sfere.Listen(ctx, "tcp", addr, sfere.ListenOptions{UserTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ConnContext: sfere.ConnContext}
	context.AfterFunc(ctx, func() { srv.Close() })
	err = srv.ServeTLS(ln, "cert.pem", "key.pem") // ln from sfere.Listen
	if !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
