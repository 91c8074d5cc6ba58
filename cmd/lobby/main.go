// Command lobby serves the sfere lobby demo: a chat lobby that announces
// "<name> left the lobby" exactly once when someone leaves, closes the tab,
// or vanishes from the network.
//
//	go run ./cmd/lobby            # http://127.0.0.1:8080
//	go run ./cmd/lobby -h         # flags
//	go run ./cmd/lobby -tls-cert cert.pem -tls-key key.pem  # https://127.0.0.1:8080, HTTP/2
//
// The first go run compiles for a while (a minute or more on a busy
// machine) before the lobby prints anything; go build -o lobby ./cmd/lobby
// once, then ./lobby, starts at once. SIGINT and SIGTERM stop it
// gracefully. The go command passes SIGINT (Ctrl-C) on but dies of a
// SIGTERM sent to it alone, so a lobby run by go run stops with the go
// command on Linux (see stopWithGoRun); elsewhere send SIGTERM to the
// lobby's own pid, which it logs as it starts.
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
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sfere-go/sfere/internal/lobby"
)

// shutdownTimeout bounds a graceful shutdown after SIGINT or SIGTERM.
const shutdownTimeout = 5 * time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	opts, err := parseFlags(args, stderr, log)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		// The lobby package's own errors say "lobby:" already.
		fmt.Fprintln(stderr, "lobby:", strings.TrimPrefix(err.Error(), "lobby: "))
		return 2
	}
	opts.Logger = log
	// At once: an embedded NATS server or a cluster may take a while, and
	// the pid is what a SIGTERM needs.
	log.Info("lobby starting", "addr", opts.Addr, "pid", os.Getpid())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	disarm := stopWithGoRun()

	srv, err := lobby.Start(ctx, opts)
	if err != nil {
		if errors.Is(err, nats.ErrNoServers) {
			log.Error("cannot start", "err", err, "hint",
				"start a NATS server with JetStream there (nats-server -js), or run one in this process with -nats-embed 127.0.0.1:4222 instead of -nats")
			return 1
		}
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
	disarm()
	stop() // a second signal kills the process the default way
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Error("shutdown", "err", err)
		code = 1
	}
	return code
}

// parseFlags parses the command line into the lobby's options; warnings
// (an unusable default session key file) go to log.
func parseFlags(args []string, out io.Writer, log *slog.Logger) (lobby.Options, error) {
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
	visible := fs.Bool("visible-heartbeat", true, "send the heartbeat as a signal patch the page sees, and run the page's watchdog, which shows \"reconnecting…\" and reopens a stream silent for 2.2 heartbeats (false: an SSE comment, no watchdog)")
	compress := fs.Bool("compress", true, "send each stream gzipped to browsers that accept it, each broadcast compressed once for all streams (false: uncompressed)")
	fs.DurationVar(&opts.UserTimeout, "user-timeout", d.UserTimeout, "TCP user timeout: how long unacknowledged data may wait before a vanished client is dropped")
	fs.DurationVar(&opts.Grace, "grace", d.Grace, "how long a participant whose stream ended may come back (a reload) before it is announced as gone")
	fs.StringVar(&opts.Store, "store", d.Store, "stream store: ttl or memory")
	fs.DurationVar(&opts.TTL, "ttl", d.TTL, "sliding expiry of the ttl store (reset by every successful write)")
	fs.StringVar(&opts.DatastarJS, "datastar-js", "", "serve this local Datastar client file at /datastar.js instead of loading it from\n"+lobby.DatastarCDN)
	fs.BoolVar(&opts.Debug, "debug", false, "enable GET /debug/connections (the keys of the open streams)")
	fs.BoolVar(&opts.Dashboard, "dashboard", false, "serve the live dashboard at /debug/dashboard (streams, people, rates, latency, runtime, cluster; never message contents or session ids): to clients on this machine only, unless -dashboard-token-file")
	tokenFile := fs.String("dashboard-token-file", "", "with -dashboard: a file holding a token (16 bytes or more) that lets any client open the dashboard, given once as /debug/dashboard?token=TOKEN (kept as a cookie)")
	fs.IntVar(&opts.MaxStreamsPerIP, "max-streams-per-ip", d.MaxStreamsPerIP, "most open streams (lobby tabs) per client address, IPv4 or IPv6 /64; more are refused with 429 (0: no cap)")
	fs.Float64Var(&opts.MessageRate, "message-rate", d.MessageRate, "chat messages a second one session may send on average; more are refused with 429 (0: no limit)")
	fs.IntVar(&opts.MessageBurst, "message-burst", d.MessageBurst, "chat messages one session may send at once, above -message-rate")
	fs.Float64Var(&opts.JoinRate, "join-rate", d.JoinRate, "joins a second one client address may make on average; more are refused with 429 (0: no limit)")
	fs.IntVar(&opts.JoinBurst, "join-burst", d.JoinBurst, "joins one client address may make at once, above -join-rate")
	fs.Float64Var(&opts.StreamRate, "stream-rate", d.StreamRate, "streams a second one client address may open on average; more are refused with 429 (0: no limit)")
	fs.IntVar(&opts.StreamBurst, "stream-burst", d.StreamBurst, "streams one client address may open at once, above -stream-rate")
	fs.Float64Var(&opts.AddressMessageRate, "address-message-rate", d.AddressMessageRate, "chat messages a second all sessions of one client address may send on average, on top of -message-rate; more are refused with 429 (0: no limit)")
	fs.IntVar(&opts.AddressMessageBurst, "address-message-burst", d.AddressMessageBurst, "chat messages all sessions of one client address may send at once, above -address-message-rate")
	fs.IntVar(&opts.NamesPerAddress, "names-per-ip", d.NamesPerAddress, "most names one client address may hold at once (reserved, present, or kept for their resume window); more joins are refused with 429 (0: no cap)")
	trusted := fs.String("trusted-proxies", "", "comma-separated addresses or CIDR prefixes of reverse proxies whose Forwarded or X-Forwarded-For (and -Proto) headers give the client's address (empty: trust none)")
	fs.DurationVar(&opts.MemberMaxAge, "member-max-age", d.MemberMaxAge, "how long the cookie that lets a restarted lobby take a session back is honoured after it was signed (at each stream opening)")
	fs.DurationVar(&opts.ReadHeaderTimeout, "read-header-timeout", d.ReadHeaderTimeout, "how long a client may take to send a request's headers")
	fs.DurationVar(&opts.BodyTimeout, "body-timeout", d.BodyTimeout, "how long a client may take to send the body of a POST (streams are not timed)")
	fs.StringVar(&opts.NATS, "nats", "", "join the lobby cluster on these NATS servers (comma-separated URLs of one NATS cluster, JetStream enabled), e.g. nats://10.0.0.1:4222,nats://10.0.0.2:4222,nats://10.0.0.3:4222")
	fs.StringVar(&opts.NATSEmbed, "nats-embed", "", "also run a NATS server (with JetStream) in this process on this address, e.g. 127.0.0.1:4222; with -nats-cluster and -nats-routes the nodes' servers form one NATS cluster")
	fs.StringVar(&opts.NATSCluster, "nats-cluster", "", "the embedded NATS server takes routes from the other nodes' servers on this address, e.g. 127.0.0.1:6222")
	natsRoutes := fs.String("nats-routes", "", "the other embedded NATS servers' cluster addresses, comma-separated, e.g. nats://127.0.0.1:6223,nats://127.0.0.1:6224")
	fs.StringVar(&opts.NATSStore, "nats-store", "", "directory of the embedded NATS server's JetStream files (default: a temporary one, removed at exit)")
	fs.IntVar(&opts.NATSReplicas, "nats-replicas", 0, "how many NATS servers hold the chat log and the name claims (0: 3 when the NATS cluster has at least 3 JetStream servers, else 1)")
	fs.StringVar(&opts.NodeID, "node", "", "this node's id in the cluster (default: random)")
	fs.StringVar(&opts.TLSCert, "tls-cert", "", "serve HTTPS (and HTTP/2) with this PEM certificate file; needs -tls-key")
	fs.StringVar(&opts.TLSKey, "tls-key", "", "the PEM private key file of -tls-cert")
	fs.DurationVar(&opts.PresenceWindow, "presence-window", d.PresenceWindow, "arrivals and departures within this window reach each page as one update (0: each goes out alone)")
	keyFile := fs.String("session-key-file", lobby.DefaultSessionKeyFile(), "file holding the key that signs session cookies (made if missing), so that sessions survive a restart (empty: a new key each start)")
	fs.DurationVar(&opts.Resume, "resume", d.Resume, "how long a participant announced gone because its page vanished or did not come back within -grace may still come back (announced \"back\", sent what it missed), its name reserved meanwhile (0: no window)")
	fs.IntVar(&opts.History, "history", d.History, "how many of the latest events are kept for pages that reconnect, which are sent what they missed (0: none)")
	fs.DurationVar(&opts.HistoryAge, "history-age", d.HistoryAge, "how long events are kept for pages that reconnect")
	fs.IntVar(&opts.HistoryBytes, "history-bytes", d.HistoryBytes, "most bytes of events kept for pages that reconnect; the oldest go first (0: no byte bound)")
	fs.IntVar(&opts.PageLines, "page-lines", d.PageLines, "how many lines a page keeps in its message list; older ones are removed (0: all)")
	if err := fs.Parse(args); err != nil {
		return opts, withUnitHint(fs, err)
	}
	if fs.NArg() > 0 {
		return opts, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if *tokenFile != "" {
		if !opts.Dashboard {
			return opts, errors.New("-dashboard-token-file needs -dashboard")
		}
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return opts, fmt.Errorf("-dashboard-token-file: %w", err)
		}
		opts.DashboardToken = strings.TrimSpace(string(b))
		if len(opts.DashboardToken) < 16 {
			return opts, fmt.Errorf("-dashboard-token-file: %w", lobby.ErrDashboardToken)
		}
	}
	opts.HiddenHeartbeat = !*visible
	opts.NoCompression = !*compress
	if *natsRoutes != "" {
		for _, r := range strings.Split(*natsRoutes, ",") {
			if r = strings.TrimSpace(r); r != "" {
				opts.NATSRoutes = append(opts.NATSRoutes, r)
			}
		}
	}
	switch {
	case opts.NATSReplicas < 0 || opts.NATSReplicas > 5:
		return opts, fmt.Errorf("-nats-replicas must be 0 (automatic) to 5, not %d", opts.NATSReplicas)
	case opts.NATSEmbed == "" && (opts.NATSCluster != "" || len(opts.NATSRoutes) > 0 || opts.NATSStore != ""):
		return opts, errors.New("-nats-cluster, -nats-routes and -nats-store need -nats-embed")
	case opts.NATSCluster == "" && len(opts.NATSRoutes) > 0:
		return opts, errors.New("-nats-routes needs -nats-cluster")
	case opts.NodeID != "" && opts.NATS == "" && opts.NATSEmbed == "":
		return opts, errors.New("-node names this node in a cluster: give -nats URL (or -nats-embed ADDR) too")
	}
	if (opts.TLSCert == "") != (opts.TLSKey == "") {
		return opts, errors.New("-tls-cert and -tls-key go together")
	}
	if opts.Store != "ttl" && opts.Store != "memory" {
		return opts, fmt.Errorf("-store must be ttl or memory, not %q", opts.Store)
	}
	for name, v := range map[string]time.Duration{"heartbeat": opts.Heartbeat, "user-timeout": opts.UserTimeout, "grace": opts.Grace, "ttl": opts.TTL,
		"read-header-timeout": opts.ReadHeaderTimeout, "body-timeout": opts.BodyTimeout} {
		if v <= 0 {
			return opts, fmt.Errorf("-%s must be positive, not %v", name, v)
		}
	}
	switch {
	case opts.MaxStreamsPerIP < 0:
		return opts, fmt.Errorf("-max-streams-per-ip must not be negative, not %d", opts.MaxStreamsPerIP)
	case opts.MessageRate < 0:
		return opts, fmt.Errorf("-message-rate must not be negative, not %v", opts.MessageRate)
	case opts.MessageBurst < 1:
		return opts, fmt.Errorf("-message-burst must be at least 1, not %d", opts.MessageBurst)
	case opts.JoinRate < 0 || opts.StreamRate < 0 || opts.AddressMessageRate < 0:
		return opts, fmt.Errorf("-join-rate, -stream-rate and -address-message-rate must not be negative, not %v, %v, %v",
			opts.JoinRate, opts.StreamRate, opts.AddressMessageRate)
	case opts.JoinBurst < 1 || opts.StreamBurst < 1 || opts.AddressMessageBurst < 1:
		return opts, fmt.Errorf("-join-burst, -stream-burst and -address-message-burst must be at least 1, not %d, %d, %d",
			opts.JoinBurst, opts.StreamBurst, opts.AddressMessageBurst)
	case opts.NamesPerAddress < 0:
		return opts, fmt.Errorf("-names-per-ip must not be negative, not %d", opts.NamesPerAddress)
	case opts.MemberMaxAge <= 0:
		return opts, fmt.Errorf("-member-max-age must be positive, not %v", opts.MemberMaxAge)
	case opts.HistoryBytes < 0:
		return opts, fmt.Errorf("-history-bytes must not be negative, not %d", opts.HistoryBytes)
	case opts.PageLines < 0:
		return opts, fmt.Errorf("-page-lines must not be negative, not %d", opts.PageLines)
	}
	proxies, err := lobby.ParseTrustedProxies(*trusted)
	if err != nil {
		return opts, fmt.Errorf("-trusted-proxies: %w", err)
	}
	opts.TrustedProxies = proxies
	// The flags say "0: off"; Options say it with a negative number (their
	// zero means "the default").
	if opts.MaxStreamsPerIP == 0 {
		opts.MaxStreamsPerIP = -1
	}
	if opts.MessageRate == 0 {
		opts.MessageRate = -1
	}
	for _, rate := range []*float64{&opts.JoinRate, &opts.StreamRate, &opts.AddressMessageRate} {
		if *rate == 0 {
			*rate = -1
		}
	}
	for _, n := range []*int{&opts.NamesPerAddress, &opts.HistoryBytes, &opts.PageLines} {
		if *n == 0 {
			*n = -1
		}
	}
	if *keyFile != "" {
		key, err := lobby.LoadSessionKey(*keyFile)
		switch {
		case err != nil && *keyFile == lobby.DefaultSessionKeyFile():
			// The default place may be unusable (a read-only home, a
			// dangling link, a directory): the lobby still runs, its
			// sessions just do not survive a restart.
			log.Warn("session key: sessions will not survive a restart (see -session-key-file)", "file", *keyFile, "err", err)
		case err != nil:
			return opts, err
		default:
			opts.SessionKey = key
			opts.RevocationFile = lobby.RevocationFile(*keyFile)
		}
	}
	switch {
	case opts.Resume < 0:
		return opts, fmt.Errorf("-resume must not be negative, not %v", opts.Resume)
	case opts.Resume == 0:
		opts.Resume = -1
	}
	switch {
	case opts.History < 0:
		return opts, fmt.Errorf("-history must not be negative, not %d", opts.History)
	case opts.History == 0:
		opts.History = -1
	case opts.HistoryAge <= 0:
		return opts, fmt.Errorf("-history-age must be positive, not %v", opts.HistoryAge)
	}
	switch {
	case opts.PresenceWindow < 0:
		return opts, fmt.Errorf("-presence-window must not be negative, not %v", opts.PresenceWindow)
	case opts.PresenceWindow == 0:
		opts.PresenceWindow = -1
	}
	return opts, nil
}

// badValue is the flag package's error for a value a flag cannot parse.
var badValue = regexp.MustCompile(`^invalid value "([^"]*)" for flag -([^:]+):`)

// withUnitHint adds a hint to the error of a duration flag given a bare
// number (-heartbeat 10): Go durations need a unit.
func withUnitHint(fs *flag.FlagSet, err error) error {
	m := badValue.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	f := fs.Lookup(m[2])
	if f == nil {
		return err
	}
	if _, isDuration := f.Value.(flag.Getter).Get().(time.Duration); !isDuration {
		return err
	}
	if _, numErr := strconv.ParseFloat(m[1], 64); numErr != nil {
		return err
	}
	return fmt.Errorf("%w (a duration needs a unit: -%s %ss, or 500ms, 2m)", err, m[2], m[1])
}
