// Command lobby serves the sfere lobby demo: a chat lobby that announces
// "<name> left the lobby" exactly once when someone leaves, closes the tab,
// or vanishes from the network.
//
//	go run ./cmd/lobby            # http://127.0.0.1:8080
//	go run ./cmd/lobby -h         # flags
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sfere-go/sfere/internal/lobby"
)

// shutdownTimeout bounds a graceful shutdown after SIGINT or SIGTERM.
const shutdownTimeout = 5 * time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "lobby:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	opts.Logger = log

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	srv, err := lobby.Start(ctx, opts)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	code := 0
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", shutdownTimeout)
	case err := <-srv.Done():
		log.Error("server stopped", "err", err)
		code = 1
	}
	stop() // a second signal kills the process the default way
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Error("shutdown", "err", err)
		code = 1
	}
	return code
}

func parseFlags(args []string, out io.Writer) (lobby.Options, error) {
	d := lobby.DefaultOptions
	opts := d
	fs := flag.NewFlagSet("lobby", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: lobby [flags]\n\nServes the sfere lobby demo.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&opts.Addr, "addr", d.Addr, "TCP address to listen on")
	fs.DurationVar(&opts.Heartbeat, "heartbeat", d.Heartbeat, "interval of the heartbeat that finds dead streams")
	fs.DurationVar(&opts.UserTimeout, "user-timeout", d.UserTimeout, "TCP user timeout: how long unacknowledged data may wait before a vanished client is dropped")
	fs.DurationVar(&opts.Grace, "grace", d.Grace, "how long a participant whose stream ended may come back (a reload) before it is announced as gone")
	fs.StringVar(&opts.Store, "store", d.Store, "stream store: ttl or memory")
	fs.DurationVar(&opts.TTL, "ttl", d.TTL, "sliding expiry of the ttl store (reset by every successful write)")
	fs.StringVar(&opts.DatastarJS, "datastar-js", "", "serve this local Datastar client file at /datastar.js instead of loading it from\n"+lobby.DatastarCDN)
	fs.BoolVar(&opts.Debug, "debug", false, "enable GET /debug/connections (the keys of the open streams)")
	if err := fs.Parse(args); err != nil {
		return opts, err
	}
	if fs.NArg() > 0 {
		return opts, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if opts.Store != "ttl" && opts.Store != "memory" {
		return opts, fmt.Errorf("-store must be ttl or memory, not %q", opts.Store)
	}
	for name, v := range map[string]time.Duration{"heartbeat": opts.Heartbeat, "user-timeout": opts.UserTimeout, "grace": opts.Grace, "ttl": opts.TTL} {
		if v <= 0 {
			return opts, fmt.Errorf("-%s must be positive, not %v", name, v)
		}
	}
	return opts, nil
}
