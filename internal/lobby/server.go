package lobby

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/dashboard"
	"github.com/sfere-go/sfere/presence"
)

// Options configure a lobby server. The zero value of a field means its
// default (see [DefaultOptions]).
type Options struct {
	// Addr is the TCP address to listen on; "127.0.0.1:0" picks a port.
	Addr string
	// Heartbeat is the interval of the heartbeat that finds dead streams.
	// The beat is a signal patch the page sees, and the page's watchdog
	// reopens a stream that has been silent for about 2.2 intervals (at
	// least 2 s), unless HiddenHeartbeat.
	Heartbeat time.Duration
	// HiddenHeartbeat makes the heartbeat an SSE comment, which the page
	// never sees, and leaves out the page's watchdog: a stream that goes
	// silent (a network that drops packets) then stays dead on the page
	// until the browser's TCP notices, a minute or so later.
	HiddenHeartbeat bool
	// NoCompression writes every stream uncompressed. By default a page
	// whose browser accepts gzip (every browser does) is sent its stream
	// gzipped, each broadcast compressed once for all of them (see
	// sfere.CompressionOptions).
	NoCompression bool
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
	// Dashboard mounts the live dashboard (package dashboard) at
	// /debug/dashboard. It shows stream keys, people's names and the
	// server's figures, never message contents, session ids or client
	// addresses. With DashboardToken empty only clients on a loopback
	// address (as TrustedProxies tell it) may open it; with a token (16
	// bytes or more) any client that carries it: once in the page's
	// token query parameter, which the lobby turns into a cookie.
	Dashboard      bool
	DashboardToken string
	// JoinTimeout is how long a name reserved by /join waits for its
	// stream before it is released (silently: it was never announced).
	JoinTimeout time.Duration
	// MaxStreamsPerIP caps the open streams of one client address (an
	// IPv4 address, or an IPv6 /64); more are refused with 429 until one
	// ends. Negative means no cap.
	MaxStreamsPerIP int
	// MessageRate is how many chat messages a second one session may send
	// on average, and MessageBurst how many it may send at once; more are
	// refused with 429. A negative rate means no limit.
	MessageRate  float64
	MessageBurst int
	// Per-address budgets (see budget.go), on top of the limits above;
	// an address is an IPv4 address or an IPv6 /64, as TrustedProxies
	// tell it. JoinRate is how many /join requests a second one address
	// may make on average and JoinBurst how many at once; StreamRate and
	// StreamBurst the same for stream openings; AddressMessageRate and
	// AddressMessageBurst for chat lines from all of the address's
	// sessions together. More are refused with 429 and Retry-After. A
	// negative rate means no limit.
	JoinRate            float64
	JoinBurst           int
	StreamRate          float64
	StreamBurst         int
	AddressMessageRate  float64
	AddressMessageBurst int
	// NamesPerAddress caps the names one address holds at once (reserved
	// by /join, present, or kept for their resume window); more joins are
	// refused with 429. Negative means no cap.
	NamesPerAddress int
	// TrustedProxies are the proxies (addresses and prefixes) whose
	// Forwarded header, or X-Forwarded-For and X-Forwarded-Proto, tell a
	// request's client address and scheme; from any other peer those
	// headers are ignored. Empty trusts nobody.
	TrustedProxies []netip.Prefix
	// MemberMaxAge is how long a member cookie (which lets a restarted
	// lobby take a session back) is honoured after it was signed; it is
	// signed again at every stream opening. Zero means a day.
	MemberMaxAge time.Duration
	// RevocationFile, if set, keeps the sessions that ended (they left,
	// or their resume window ran out with no stream back), so that no
	// later run takes them back from their member cookies (each for
	// MemberMaxAge). The lobby command keeps it beside the session key.
	RevocationFile string
	// ReadHeaderTimeout bounds the time a client may take to send a
	// request's headers (slow-loris headers).
	ReadHeaderTimeout time.Duration
	// BodyTimeout bounds the time a client may take to send the body of a
	// POST (slow-loris bodies). Streams themselves are never timed.
	BodyTimeout time.Duration
	// NATS, if set, joins this node to a lobby shared by every node on
	// those NATS servers (comma-separated URLs of one NATS cluster, whose
	// servers need JetStream): e.g. nats://127.0.0.1:4222.
	NATS string
	// NATSEmbed, if set, also starts a NATS server (with JetStream) in this
	// process on that address; without NATS this node joins it. With
	// NATSCluster and NATSRoutes the embedded servers of several nodes
	// form one NATS cluster, and the lobby needs no other service.
	NATSEmbed string
	// NATSCluster is the address (host:port) the embedded server takes
	// routes from the other nodes' embedded servers on.
	NATSCluster string
	// NATSRoutes are the other embedded servers' cluster addresses, as
	// nats://host:port URLs.
	NATSRoutes []string
	// NATSStore keeps the embedded server's JetStream files; empty means
	// a temporary directory, removed at shutdown (in a cluster of 3 the
	// other servers hold every replica, so a node restarted without its
	// files gets them back).
	NATSStore string
	// NATSReplicas is how many NATS servers hold the event log and the
	// name claims. Zero means 3 where the NATS cluster has at least 3
	// JetStream servers, else 1.
	NATSReplicas int
	// NATSPublishTimeout bounds how long a chat line waits for the event
	// log to take it (through a NATS leader election or a lost server)
	// before it is refused with 503. Zero means
	// natscluster.DefaultPublishTimeout.
	NATSPublishTimeout time.Duration
	// NodeID names this node in the cluster; empty means a random id.
	NodeID string
	// TLSCert and TLSKey name PEM files of a certificate (chain) and its
	// key: with both, the lobby serves HTTPS, with HTTP/2 (see tls.go).
	TLSCert, TLSKey string
	// History is how many of the lobby's latest events (chat lines,
	// arrivals, departures) are kept for pages that reconnect, and
	// HistoryAge how long: a page that reconnects with the id of the last
	// event it got is sent what it missed (in a cluster, from a JetStream
	// log every node reads). Negative History keeps none.
	History    int
	HistoryAge time.Duration
	// HistoryBytes bounds the bytes of the events the history keeps (the
	// oldest go first); a replay is bounded by the stream's queue limit.
	// Negative means no byte bound.
	HistoryBytes int
	// PageLines is how many lines a page keeps in #messages; older ones
	// are removed as new ones arrive. Negative keeps them all.
	PageLines int
	// Resume is how long a participant announced gone because its streams
	// ended (a vanished machine, or no stream back within the grace
	// period) may come back: its name stays reserved, and when its page
	// reconnects it is announced back once and sent what it missed.
	// Negative means no window: the name is free at the departure.
	Resume time.Duration
	// SessionKey signs the cookie that lets a restarted lobby take a
	// session back without a new join (at least 16 bytes; keep it
	// secret). Empty means a random key: sessions then do not survive a
	// restart.
	SessionKey []byte
	// PresenceWindow batches presence changes: arrivals and departures
	// within it reach each stream as one event. Zero means
	// presence.DefaultWindow.
	PresenceWindow time.Duration
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

	MaxStreamsPerIP:     32,
	MessageRate:         5,
	MessageBurst:        10,
	JoinRate:            1,
	JoinBurst:           20,
	StreamRate:          2,
	StreamBurst:         40,
	AddressMessageRate:  10,
	AddressMessageBurst: 30,
	NamesPerAddress:     100,
	MemberMaxAge:        24 * time.Hour,
	HistoryBytes:        16 << 20,
	PageLines:           500,
	ReadHeaderTimeout:   10 * time.Second,
	BodyTimeout:         10 * time.Second,
	PresenceWindow:      presence.DefaultWindow,
	History:             2000,
	HistoryAge:          2 * time.Minute,
	Resume:              2 * time.Minute,
}

func (o Options) withDefaults() Options {
	d := DefaultOptions
	o.Addr = cmp.Or(o.Addr, d.Addr)
	o.Heartbeat = cmp.Or(o.Heartbeat, d.Heartbeat)
	o.UserTimeout = cmp.Or(o.UserTimeout, d.UserTimeout)
	o.Grace = cmp.Or(o.Grace, d.Grace)
	o.Store = cmp.Or(o.Store, d.Store)
	o.TTL = cmp.Or(o.TTL, d.TTL)
	o.JoinTimeout = cmp.Or(o.JoinTimeout, max(d.JoinTimeout, o.Grace))
	o.MaxStreamsPerIP = cmp.Or(o.MaxStreamsPerIP, d.MaxStreamsPerIP)
	o.MessageRate = cmp.Or(o.MessageRate, d.MessageRate)
	o.MessageBurst = cmp.Or(o.MessageBurst, d.MessageBurst)
	o.JoinRate = cmp.Or(o.JoinRate, d.JoinRate)
	o.JoinBurst = cmp.Or(o.JoinBurst, d.JoinBurst)
	o.StreamRate = cmp.Or(o.StreamRate, d.StreamRate)
	o.StreamBurst = cmp.Or(o.StreamBurst, d.StreamBurst)
	o.AddressMessageRate = cmp.Or(o.AddressMessageRate, d.AddressMessageRate)
	o.AddressMessageBurst = cmp.Or(o.AddressMessageBurst, d.AddressMessageBurst)
	o.NamesPerAddress = cmp.Or(o.NamesPerAddress, d.NamesPerAddress)
	o.MemberMaxAge = cmp.Or(o.MemberMaxAge, d.MemberMaxAge)
	o.HistoryBytes = cmp.Or(o.HistoryBytes, d.HistoryBytes)
	o.PageLines = cmp.Or(o.PageLines, d.PageLines)
	o.ReadHeaderTimeout = cmp.Or(o.ReadHeaderTimeout, d.ReadHeaderTimeout)
	o.BodyTimeout = cmp.Or(o.BodyTimeout, d.BodyTimeout)
	o.History = cmp.Or(o.History, d.History)
	o.HistoryAge = cmp.Or(o.HistoryAge, d.HistoryAge)
	o.Resume = cmp.Or(o.Resume, d.Resume)
	o.Logger = cmp.Or(o.Logger, slog.Default())
	return o
}

// Server is a running lobby: store, hub, heartbeat, listener and HTTP
// server, started in that order by [Start] (the listener is opened first,
// and served last) and stopped in reverse by [Server.Shutdown].
type Server struct {
	log       *slog.Logger
	lobby     *Lobby
	ttl       *sfere.TTLStore // nil for the memory store
	cluster   *cluster        // nil for a single node
	revoked   *revocations    // sessions that ended
	hub       *sfere.Hub
	heartbeat *sfere.Heartbeat
	stopBeat  func()
	stopWatch func()
	ln        *notifyListener
	views     *views
	http      *http.Server
	tls       *tls.Config // nil: plain HTTP
	served    chan error

	shutdownOnce sync.Once
	shutdownErr  error
}

// Start builds the lobby and serves it until [Server.Shutdown]. ctx bounds
// only the start (the listen call).
func Start(ctx context.Context, opts Options) (*Server, error) {
	opts = opts.withDefaults()
	if opts.Heartbeat < 0 || opts.UserTimeout < 0 || opts.Grace < 0 || opts.TTL < 0 || opts.JoinTimeout < 0 ||
		opts.ReadHeaderTimeout < 0 || opts.BodyTimeout < 0 || opts.HistoryAge < 0 {
		return nil, errors.New("lobby: durations must not be negative")
	}
	if opts.NATSEmbed == "" && (opts.NATSCluster != "" || len(opts.NATSRoutes) > 0 || opts.NATSStore != "") {
		return nil, errors.New("lobby: the embedded NATS server's cluster, routes and store need an embedded server (NATSEmbed)")
	}
	if opts.DashboardToken != "" && len(opts.DashboardToken) < minDashboardToken {
		return nil, ErrDashboardToken
	}
	if opts.Store == "ttl" && opts.TTL <= opts.Heartbeat {
		// Only successful writes keep a stream alive in the sliding TTL
		// store; with no heartbeat inside the TTL, every idle stream expires.
		return nil, fmt.Errorf("lobby: ttl (%v) must be longer than the heartbeat interval (%v)", opts.TTL, opts.Heartbeat)
	}
	var script []byte
	scriptURL, integrity := DatastarCDN, DatastarCDNIntegrity
	if opts.DatastarJS != "" {
		b, err := os.ReadFile(opts.DatastarJS)
		if err != nil {
			return nil, fmt.Errorf("lobby: datastar client: %w", err)
		}
		script, scriptURL, integrity = b, "/datastar.js", scriptIntegrity(b)
	}
	v, err := newViews(scriptURL, integrity, opts.PageLines)
	if err != nil {
		return nil, fmt.Errorf("lobby: templates: %w", err)
	}
	tlsConf, err := opts.tlsConfig()
	if err != nil {
		return nil, err
	}
	sessions, err := newSigner(opts.SessionKey, opts.MemberMaxAge)
	if err != nil {
		return nil, err
	}
	revoked, err := loadRevocations(opts.RevocationFile, opts.MemberMaxAge, time.Now, opts.Logger)
	if err != nil {
		return nil, err
	}
	// The listener first, so that a busy port fails the start before
	// anything runs (and nothing is stopped); served last. With
	// TCP_USER_TIMEOUT, so a vanished client's stream ends within
	// heartbeat + user timeout.
	ln, err := listen(ctx, "tcp", opts.Addr, sfere.ListenOptions{UserTimeout: opts.UserTimeout})
	if err != nil {
		return nil, fmt.Errorf("lobby: %w", err)
	}
	serving := false
	defer func() {
		if !serving {
			ln.Close()
		}
	}()

	m := newMetrics()
	s := &Server{log: opts.Logger, views: v, tls: tlsConf, served: make(chan error, 1)}
	s.lobby = newLobby(opts.Logger, m, v)

	// Store: every eviction goes to the lobby.
	var store sfere.Store
	switch opts.Store {
	case "ttl":
		s.ttl, err = sfere.NewTTLStore(sfere.TTLOptions{Duration: opts.TTL, Expiry: sfere.Sliding, OnEvict: s.evicted})
		if err != nil {
			return nil, fmt.Errorf("lobby: %w", err)
		}
		store = s.ttl
	case "memory":
		store = sfere.NewMemoryStore(sfere.MemoryOptions{OnEvict: s.evicted})
	default:
		return nil, fmt.Errorf("lobby: unknown store %q (want ttl or memory)", opts.Store)
	}

	// Hub over the store (the tracker follows its streams by itself). In
	// a cluster the node builds it, to announce the streams to the others.
	// With a history, every event carries its position as its SSE id, and
	// a page that reconnects is sent what it missed. Retry spreads the
	// pages' reconnects (a quarter to half the grace period, at most one
	// to two seconds), so a broken stream is back within the grace.
	hubOpts := sfere.HubOptions{Retry: min(max(opts.Grace/4, 10*time.Millisecond), time.Second)}
	hubOpts.History = HubHistory(opts)
	if !opts.NoCompression {
		hubOpts.Compression = &sfere.CompressionOptions{}
	}
	if !opts.HiddenHeartbeat {
		v.watchdog = newWatchdog(opts.Heartbeat)
	}
	popts := s.lobby.presenceOptions(opts)
	if opts.NATS != "" || opts.NATSEmbed != "" {
		if s.cluster, err = startCluster(ctx, opts, store, hubOpts); err != nil {
			if s.ttl != nil {
				s.ttl.Close()
			}
			return nil, fmt.Errorf("lobby: cluster: %w", err)
		}
		s.hub = s.cluster.node.Hub()
		m.watchCluster(s.cluster.node)
		s.lobby.cluster = s.cluster.node
		popts.Cluster = s.cluster.presence
	} else {
		s.hub = sfere.NewHub(store, hubOpts)
	}
	s.lobby.hub = s.hub
	s.revoked = revoked
	if s.cluster == nil {
		// Sessions whose resume window runs out are revoked like those
		// that left (in a cluster no node takes a session back).
		s.lobby.ends = newSessionEnds(revoked, opts.Resume, max(opts.PresenceWindow, presence.DefaultMaxWindow))
	}

	// The presence tracker: who is in the lobby, over their streams.
	if s.lobby.tracker, err = presence.New(s.hub, popts); err != nil {
		if s.cluster != nil {
			s.cluster.close()
		}
		if s.ttl != nil {
			s.ttl.Close()
		}
		return nil, fmt.Errorf("lobby: %w", err)
	}

	// Heartbeat over the lobby's streams: visible to the page's watchdog,
	// unless hidden.
	if opts.HiddenHeartbeat {
		s.heartbeat = sfere.NewHeartbeat(s.hub, everyone, opts.Heartbeat)
	} else if s.heartbeat, err = sfere.NewVisibleHeartbeat(s.hub, everyone, opts.Heartbeat, beatSignal); err != nil {
		panic("lobby: " + err.Error()) // a constant, valid name
	}
	m.watch(s.hub, s.heartbeat, s.lobby)
	s.stopBeat = s.heartbeat.Start()
	s.stopWatch = watchHeartbeat(s.heartbeat, opts.Heartbeat, opts.Logger)

	s.ln = &notifyListener{Listener: ln, closed: make(chan struct{})}

	var dash http.Handler
	if opts.Dashboard {
		dopts := dashboard.Options{Path: dashboardPath, Script: v.datastarJS, Integrity: v.integrity,
			Heartbeat: s.heartbeat, Trackers: []*presence.Tracker{s.lobby.tracker}}
		if s.cluster != nil {
			dopts.Node, dopts.NATS = s.cluster.node, s.cluster.nc
			dopts.Presence = s.cluster.presenceClusters()
		}
		d, err := dashboard.New(s.hub, dopts)
		if err != nil {
			panic("lobby: " + err.Error()) // constant options
		}
		dash = d
	}

	h := &handlers{lobby: s.lobby, views: v, metrics: m, datastarJS: script, sessions: sessions, debug: opts.Debug, log: opts.Logger,
		dashboard:      dash,
		dashboardToken: opts.DashboardToken,
		revoked:        revoked,
		clients:        clients{trusted: opts.TrustedProxies},
		bodyTimeout:    opts.BodyTimeout,
		budgets: budgets{
			joins:   newRateLimit(opts.JoinRate, opts.JoinBurst),
			streams: newRateLimit(opts.StreamRate, opts.StreamBurst),
			lines:   newRateLimit(opts.AddressMessageRate, opts.AddressMessageBurst),
			names:   newNameBudget(opts.NamesPerAddress, s.lobby.knows),
			open:    newStreamLimit(opts.MaxStreamsPerIP),
		},
		messages: newRateLimit(opts.MessageRate, opts.MessageBurst),
	}
	s.http = &http.Server{
		Handler:           h.routes(),
		ReadHeaderTimeout: opts.ReadHeaderTimeout,
		IdleTimeout:       2 * time.Minute,
		ConnContext:       sfere.ConnContext, // lets the hub tell a vanished peer from a closed tab
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
		// No ReadTimeout or WriteTimeout: streams live for hours. The
		// hub bounds each write to a client instead, and the handlers
		// bound the time of each POST body (Options.BodyTimeout).
	}
	if s.tls != nil {
		s.http.TLSConfig = s.tls
		go func() { s.served <- s.http.ServeTLS(s.ln, "", "") }() // HTTP/2 on, as net/http does by default
	} else {
		go func() { s.served <- s.http.Serve(s.ln) }()
	}
	serving = true
	opts.Logger.Info("lobby listening", "url", s.URL(), "store", opts.Store, "heartbeat", opts.Heartbeat, "visible_heartbeat", !opts.HiddenHeartbeat, "compression", !opts.NoCompression,
		"user_timeout", opts.UserTimeout, "grace", opts.Grace, "ttl", opts.TTL, "debug", opts.Debug, "tls", s.tls != nil)
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// URL returns the server's base URL, e.g. http://127.0.0.1:8080 (https
// with TLS).
func (s *Server) URL() string {
	if s.tls != nil {
		return "https://" + s.ln.Addr().String()
	}
	return "http://" + s.ln.Addr().String()
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.http.Handler }

// Done receives the HTTP server's error if it stops serving by itself.
func (s *Server) Done() <-chan error { return s.served }

// Shutdown stops the lobby in the reverse order of [Start]: the heartbeat,
// the lobby's state machine (stream ends stop being departures), the
// listener, every stream (each is told first that the server is going
// away, and its page reconnects a moment later: see [Server.farewell]),
// the HTTP server (connections still busy after the streams ended, such
// as a body trickling in or a client that stopped reading, are closed),
// the store's clean-up. It returns once all of them stopped or ctx ended.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { s.shutdownErr = s.stop(ctx) })
	return s.shutdownErr
}

func (s *Server) stop(ctx context.Context) error {
	s.stopBeat()
	s.stopWatch()
	s.lobby.tracker.Close()
	var errs []error
	httpDone := make(chan error, 1)
	if s.http != nil {
		// Stop accepting first: the pages told to reconnect must not
		// reach this server again.
		go func() { httpDone <- s.http.Shutdown(ctx) }()
		select {
		case <-s.ln.closed:
		case <-ctx.Done():
		}
		s.farewell(ctx)
	}
	errs = append(errs, s.hub.Shutdown(ctx))
	if s.http != nil {
		drain := time.NewTimer(drainTimeout)
		select {
		case err := <-httpDone:
			errs = append(errs, err)
		case <-drain.C:
			s.log.Warn("closing connections still busy after the streams ended", "waited", drainTimeout)
			errs = append(errs, s.http.Close(), <-httpDone)
		case <-ctx.Done():
			s.http.Close()
			errs = append(errs, <-httpDone) // ctx's error
		}
		drain.Stop()
		if err := <-s.served; !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	if s.ttl != nil {
		s.ttl.Close()
	}
	if s.cluster != nil {
		s.cluster.close()
	}
	if err := s.revoked.close(); err != nil {
		s.log.Warn("sessions that ended could be taken back after a restart", "err", err)
	}
	s.log.Info("lobby stopped")
	return errors.Join(errs...)
}

// listen opens the server's listener. Tests replace it with an in-memory
// listener, to run a whole server under testing/synctest's fake clock.
var listen = sfere.Listen

// Timing of a shutdown.
const (
	// farewellWait bounds the wait for the streams to write the farewell.
	farewellWait = time.Second
	// drainTimeout bounds the wait, once every stream has ended, for the
	// other connections to finish their requests before they are closed.
	drainTimeout = time.Second
)

// farewell tells every stream of this node that the server is going away,
// then ends it normally. The page shows a notice and opens its stream again
// after a moment: Datastar does not retry a stream that ended normally, so
// without this the page would sit there, silently dead. The new stream
// reaches the restarted server (or another node), which asks a session it
// does not know to join again; until a server is back, Datastar retries
// with backoff. It waits, at most farewellWait, until the streams have
// written it (the hub's shutdown ends the rest).
func (s *Server) farewell(ctx context.Context) {
	line, err1 := s.views.systemLine("The server is restarting; reconnecting…")
	recon, err2 := s.views.reconnect(s.lobby.position())
	if err := errors.Join(err1, err2); err != nil {
		s.log.Error("render farewell", "err", err)
		return
	}
	if _, err := s.hub.Broadcast(everyone, nil,
		sfere.AppendElements("#messages", line),
		sfere.AppendElements("#lobby", recon),
		sfere.CloseStream()); err != nil {
		s.log.Error("farewell", "err", err)
		return
	}
	wait := time.NewTimer(farewellWait)
	defer wait.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for s.hub.Count(everyone) > 0 {
		select {
		case <-tick.C:
		case <-wait.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// notifyListener tells when it is closed ([http.Server.Shutdown] closes
// it first of all).
type notifyListener struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
}

func (l *notifyListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() { close(l.closed) })
	return err
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

// evicted is the store's eviction callback.
func (s *Server) evicted(ev sfere.Eviction) {
	s.lobby.metrics.evictions.WithLabelValues(ev.Cause.String()).Inc()
}
