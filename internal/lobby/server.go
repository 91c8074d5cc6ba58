package lobby

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/sfere-go/sfere"
)

// Options configure a lobby server. The zero value of a field means its
// default (see [DefaultOptions]).
type Options struct {
	// Addr is the TCP address to listen on; "127.0.0.1:0" picks a port.
	Addr string
	// Heartbeat is the interval of the heartbeat that finds dead streams.
	Heartbeat time.Duration
	// UserTimeout is TCP_USER_TIMEOUT for client connections: how long
	// written data may stay unacknowledged before a vanished client's
	// connection is dropped.
	UserTimeout time.Duration
	// Grace is how long a participant whose stream ended may come back
	// (a reload) before everyone is told it left.
	Grace time.Duration
	// Store is "ttl" (streams expire after TTL without a successful write)
	// or "memory".
	Store string
	// TTL is the sliding expiry of the "ttl" store.
	TTL time.Duration
	// DatastarJS names a local file to serve at /datastar.js instead of
	// loading the Datastar client from its CDN.
	DatastarJS string
	// Debug enables GET /debug/connections.
	Debug bool
	// JoinTimeout is how long a name reserved by /join waits for its
	// stream before it is released (silently: it was never announced).
	JoinTimeout time.Duration
	// Logger receives the lobby's logs; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultOptions are the defaults of the lobby command's flags.
var DefaultOptions = Options{
	Addr:        "127.0.0.1:8080",
	Heartbeat:   10 * time.Second,
	UserTimeout: 5 * time.Second,
	Grace:       2 * time.Second,
	Store:       "ttl",
	TTL:         30 * time.Second,
	JoinTimeout: 15 * time.Second,
}

func (o Options) withDefaults() Options {
	d := DefaultOptions
	if o.Addr == "" {
		o.Addr = d.Addr
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = d.Heartbeat
	}
	if o.UserTimeout == 0 {
		o.UserTimeout = d.UserTimeout
	}
	if o.Grace == 0 {
		o.Grace = d.Grace
	}
	if o.Store == "" {
		o.Store = d.Store
	}
	if o.TTL == 0 {
		o.TTL = d.TTL
	}
	if o.JoinTimeout == 0 {
		o.JoinTimeout = max(d.JoinTimeout, o.Grace)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Server is a running lobby: store, hub, heartbeat, listener and HTTP
// server, started in that order by [Start] and stopped in reverse by
// [Server.Shutdown].
type Server struct {
	log       *slog.Logger
	lobby     *Lobby
	ttl       *sfere.TTLStore // nil for the memory store
	hub       *sfere.Hub
	heartbeat *sfere.Heartbeat
	stopBeat  func()
	stopWatch func()
	ln        net.Listener
	http      *http.Server
	served    chan error

	shutdownOnce sync.Once
	shutdownErr  error
}

// Start builds the lobby and serves it until [Server.Shutdown]. ctx bounds
// only the start (the listen call).
func Start(ctx context.Context, opts Options) (*Server, error) {
	opts = opts.withDefaults()
	if opts.Heartbeat < 0 || opts.UserTimeout < 0 || opts.Grace < 0 || opts.TTL < 0 || opts.JoinTimeout < 0 {
		return nil, errors.New("lobby: durations must not be negative")
	}
	if opts.Store == "ttl" && opts.TTL <= opts.Heartbeat {
		// Only successful writes keep a stream alive in the sliding TTL
		// store; with no heartbeat inside the TTL, every idle stream expires.
		return nil, fmt.Errorf("lobby: ttl (%v) must be longer than the heartbeat interval (%v)", opts.TTL, opts.Heartbeat)
	}
	var script []byte
	scriptURL := DatastarCDN
	if opts.DatastarJS != "" {
		b, err := os.ReadFile(opts.DatastarJS)
		if err != nil {
			return nil, fmt.Errorf("lobby: datastar client: %w", err)
		}
		script, scriptURL = b, "/datastar.js"
	}
	v, err := newViews(scriptURL)
	if err != nil {
		return nil, fmt.Errorf("lobby: templates: %w", err)
	}
	m := newMetrics()
	s := &Server{log: opts.Logger, served: make(chan error, 1)}
	s.lobby = newLobby(opts.Grace, opts.JoinTimeout, opts.Logger, m, v)

	// Store: every eviction goes to the lobby.
	var store sfere.Store
	switch opts.Store {
	case "ttl":
		s.ttl, err = sfere.NewTTLStore(sfere.TTLOptions{Duration: opts.TTL, Expiry: sfere.Sliding, OnEvict: s.lobby.onEvict})
		if err != nil {
			return nil, fmt.Errorf("lobby: %w", err)
		}
		store = s.ttl
	case "memory":
		store = sfere.NewMemoryStore(sfere.MemoryOptions{OnEvict: s.lobby.onEvict})
	default:
		return nil, fmt.Errorf("lobby: unknown store %q (want ttl or memory)", opts.Store)
	}

	// Hub over the store; it tells the lobby of each stream it stores.
	s.hub = sfere.NewHub(store, sfere.HubOptions{OnOpen: s.lobby.stored})
	s.lobby.hub = s.hub

	// Heartbeat over the lobby's streams.
	s.heartbeat = sfere.NewHeartbeat(s.hub, everyone, opts.Heartbeat)
	m.watch(s.hub, s.heartbeat, s.lobby)
	s.stopBeat = s.heartbeat.Start()
	s.stopWatch = watchHeartbeat(s.heartbeat, opts.Heartbeat, opts.Logger)

	// Listener with TCP_USER_TIMEOUT, so a vanished client's stream ends
	// within heartbeat + user timeout.
	s.ln, err = sfere.Listen(ctx, "tcp", opts.Addr, sfere.ListenOptions{UserTimeout: opts.UserTimeout})
	if err != nil {
		s.stop(context.Background())
		return nil, fmt.Errorf("lobby: %w", err)
	}

	h := &handlers{lobby: s.lobby, views: v, metrics: m, datastarJS: script, debug: opts.Debug, log: opts.Logger}
	s.http = &http.Server{
		Handler:           h.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ConnContext:       sfere.ConnContext, // lets the hub tell a vanished peer from a closed tab
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
		// No ReadTimeout or WriteTimeout: streams live for hours. The
		// hub bounds each write to a client instead.
	}
	go func() { s.served <- s.http.Serve(s.ln) }()
	opts.Logger.Info("lobby listening", "url", s.URL(), "store", opts.Store, "heartbeat", opts.Heartbeat,
		"user_timeout", opts.UserTimeout, "grace", opts.Grace, "ttl", opts.TTL, "debug", opts.Debug)
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// URL returns the server's base URL, e.g. http://127.0.0.1:8080.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.http.Handler }

// Done receives the HTTP server's error if it stops serving by itself.
func (s *Server) Done() <-chan error { return s.served }

// Shutdown stops the lobby in the reverse order of [Start]: the heartbeat,
// the lobby's state machine (stream ends stop being departures), every
// stream (the hub), the HTTP server, the store's clean-up. It returns once
// all of them stopped or ctx ended.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { s.shutdownErr = s.stop(ctx) })
	return s.shutdownErr
}

func (s *Server) stop(ctx context.Context) error {
	s.stopBeat()
	s.stopWatch()
	s.lobby.close()
	errs := []error{s.hub.Shutdown(ctx)}
	if s.http != nil {
		errs = append(errs, s.http.Shutdown(ctx))
		if err := <-s.served; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	if s.ttl != nil {
		s.ttl.Close()
	}
	s.log.Info("lobby stopped")
	return errors.Join(errs...)
}

// watchHeartbeat logs heartbeat failures (each is a stream found dead) once
// per interval. It returns a function that stops it and waits.
func watchHeartbeat(hb *sfere.Heartbeat, interval time.Duration, log *slog.Logger) (stop func()) {
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(interval)
		defer t.Stop()
		var seen uint64
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if st := hb.Stats(); st.Failures > seen {
					log.Warn("heartbeat failures: streams found dead", "new", st.Failures-seen, "total", st.Failures,
						"sweeps", st.Sweeps, "last_sweep", st.LastSweep)
					seen = st.Failures
				}
			}
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}
