package lobby

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/presence"
	"github.com/starfederation/datastar-go/datastar"
)

// MaxBodyBytes bounds the body of every POST.
const MaxBodyBytes = 64 << 10

// Errors of the request checks; SECURITY.md lists them with their limits.
var (
	errCrossSite      = errors.New("cross-site request refused: only this site's own pages may change the lobby")
	errNotDatastar    = errors.New("not a Datastar request (header Datastar-Request: true is missing)")
	errContentType    = errors.New("unsupported content type: signals must be sent as application/json")
	errBodyTooLarge   = fmt.Errorf("request body too large: the limit is %d KiB", MaxBodyBytes>>10)
	errBodyTooSlow    = errors.New("request body too slow: it must arrive within the body timeout")
	errMalformed      = errors.New("malformed signals: the body must be a JSON object of signals")
	errTooManyStreams = errors.New("too many open streams from your address: close another tab of the lobby first")
	errTooFast        = errors.New("you are sending messages too fast: wait a moment")
	errNoRegistry     = errors.New("the lobby could not check that name just now; try again")
	// Per-address budgets (budget.go).
	errTooManyJoins    = errors.New("too many joins from your address: wait a moment and try again")
	errTooManyNames    = errors.New("your address holds too many names in the lobby: leave with some of them, or wait until they are released")
	errTooManyOpenings = errors.New("too many streams opened from your address: wait a moment")
	errAddressTooFast  = errors.New("too many messages from your address: wait a moment")
)

// dashboardPath is where the live dashboard is mounted (dashboard.go).
const dashboardPath = "/debug/dashboard"

// handlers serves the lobby's routes.
type handlers struct {
	lobby      *Lobby
	views      *views
	metrics    *metrics
	datastarJS []byte       // the local Datastar client, if one was given
	sessions   signer       // signs the member cookies
	revoked    *revocations // sessions that left: their member cookies take nothing back
	clients    clients      // who sent a request (trusted proxies)
	debug      bool
	dashboard  http.Handler // with Options.Dashboard: the live dashboard at dashboardPath (nil: none)
	// dashboardToken, if set, is what a client must carry to see the
	// dashboard; empty: loopback clients only (dashboard.go).
	dashboardToken string
	log            *slog.Logger

	// bodyTimeout bounds the time a request's body may take to arrive
	// (slow-loris bodies); zero means no bound.
	bodyTimeout time.Duration
	// budgets bound what one client address may use up.
	budgets budgets
	// messages limits the chat messages per session; nil means no limit.
	messages *rateLimit
}

// routes returns the lobby's handler: its routes behind the cross-origin
// check, which refuses state-changing requests (every POST) that a browser
// marks as coming from another site (Sec-Fetch-Site, or an Origin that is
// not this host). Requests with neither header (curl, tests) pass.
func (h *handlers) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.page)
	mux.HandleFunc("POST /join", h.join)
	mux.HandleFunc("POST /sse", h.sse)
	mux.HandleFunc("POST /message", h.message)
	mux.HandleFunc("POST /leave", h.leave)
	mux.Handle("GET /metrics", h.metrics.handler())
	if h.debug {
		mux.HandleFunc("GET /debug/connections", h.connections)
	}
	if h.dashboard != nil {
		guarded := h.guardDashboard(h.dashboard)
		mux.Handle(dashboardPath, guarded)
		mux.Handle(dashboardPath+"/", guarded)
	}
	if h.datastarJS != nil {
		mux.HandleFunc("GET /datastar.js", h.script)
	}
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.refuse(w, r, http.StatusForbidden, "cross_site", errCrossSite)
	}))
	return h.timeBodies(cop.Handler(mux))
}

// timeBodies bounds the time the body of any request may take to arrive:
// a handler that reads it, or net/http, which drains up to 256 KiB of an
// unread body after the handler (before the next request on the
// connection), get a read error once the body timeout has passed. A
// handler that has read its body clears the deadline (see
// [handlers.readBody]): a stream must never inherit it. Requests without a
// body are not timed, so their handlers never race a deadline (net/http's
// background read, which notices a closed connection, would fail on it).
func (h *handlers) timeBodies(next http.Handler) http.Handler {
	if h.bodyTimeout <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 { // -1: chunked
			// An error means a writer without deadlines (not a real
			// connection): nothing to time.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(h.bodyTimeout))
		}
		next.ServeHTTP(w, r)
	})
}

// page serves the whole page: the lobby itself for a session that is still
// in it (or within grace), whose data-init reopens the stream, so a reload
// needs no new join; the join form otherwise.
func (h *handlers) page(w http.ResponseWriter, r *http.Request) {
	pos := h.lobby.position() // before the state: what follows it is replayed
	secure := h.clients.of(r).secure
	sid := sessionID(r, secure)
	name, list, in := h.lobby.pageState(r.Context(), sid)
	if !in {
		// A session the lobby lost (it restarted) gets its lobby back:
		// its stream takes the name back (see [handlers.sse]).
		if name, in = h.resumable(r, secure, sid); in {
			list = h.lobby.present()
		}
	}
	html, err := h.views.page(name, list, in, pos)
	if err != nil {
		h.log.Error("render page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "same-origin")
	hdr.Set("Content-Security-Policy", contentSecurityPolicy(h.views.datastarJS))
	hdr.Set("X-Frame-Options", "DENY")
	_, _ = io.WriteString(w, html)
}

// contentSecurityPolicy is the page's CSP: scripts only from the exact URL
// of the Datastar client (its CDN URL, or this site's own /datastar.js:
// 'self'), and the page's tag checks its integrity hash; 'unsafe-eval'
// because Datastar compiles its data-* expressions with Function (see
// SECURITY.md); requests only to this site, no framing (clickjacking a
// Leave button), no plugins, no <base>.
func contentSecurityPolicy(scriptURL string) string {
	src := "'self'"
	if u, err := url.Parse(scriptURL); err == nil && u.Scheme != "" && u.Host != "" {
		src = u.String()
	}
	return "default-src 'none'; script-src " + src + " 'unsafe-eval'; style-src 'unsafe-inline'; " +
		"connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}

// join binds a name to a new session and answers with the lobby, whose
// data-init opens the stream. The session id is new at every join (never
// one the client brought: a planted cookie names nobody); a session the
// request carried that the lobby knows ends (it left, or renamed itself),
// after the new one took its name if it is the same name. The member
// cookie waits for the stream (see [handlers.openStream]).
func (h *handlers) join(w http.ResponseWriter, r *http.Request) {
	var sig struct {
		Username string `json:"username"`
	}
	if !h.readSignals(w, r, &sig) {
		return
	}
	cl := h.clients.of(r)
	addr := cl.key()
	if ok, wait := h.budgets.joins.take(addr); !ok {
		w.Header().Set("Retry-After", retryAfter(wait))
		h.refuse(w, r, http.StatusTooManyRequests, "join_rate", errTooManyJoins)
		return
	}
	name, err := cleanName(sig.Username)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err)
		return
	}
	ctx := r.Context()
	pos := h.lobby.position() // the stream opens from here: see [lobbyData]
	old := sessionID(r, cl.secure)
	var oldMember presence.Member
	oldKnown := false
	if old != "" {
		oldMember, oldKnown = h.lobby.tracker.Lookup(ctx, old)
	}
	sid := newSessionID()
	if !h.budgets.names.acquire(ctx, addr, sid) {
		w.Header().Set("Retry-After", "10")
		h.refuse(w, r, http.StatusTooManyRequests, "names_per_address", errTooManyNames)
		return
	}
	if oldKnown && oldMember.ID == nameIdentity(name) {
		// The name passes to the new session, in the spelling everyone
		// saw.
		h.endSession(ctx, old)
		name, oldKnown = displayName(oldMember), false
	}
	res, err := h.lobby.join(ctx, sid, name)
	if err != nil {
		h.budgets.names.release(addr, sid)
	} else {
		h.budgets.names.confirm(addr, sid)
	}
	switch {
	case errors.Is(err, ErrShutdown):
		h.fail(w, r, http.StatusServiceUnavailable, err)
		return
	case errors.Is(err, ErrNameTaken):
		h.fail(w, r, http.StatusConflict, err)
		return
	case err != nil:
		// The cluster's name registry out of reach (a NATS leader
		// election, an outage): the name is not known to be free.
		h.log.Warn("join", "err", err)
		h.fail(w, r, http.StatusServiceUnavailable, errNoRegistry)
		return
	}
	if oldKnown {
		h.endSession(ctx, old)
	}
	setSession(w, cl.secure, sid)
	// The list comes with the stream's first event (its snapshot), a
	// moment later: rendering it here too would cost every join O(people).
	app, err := h.views.lobbyApp(res.name, nil, pos)
	if err != nil {
		h.log.Error("render lobby", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h.respond(w, sfere.PatchElements(app))
}

// sse is the long-lived stream of a session that joined. A session the
// lobby does not know (it left, or the server restarted and the client is
// retrying) gets the join form back and its response ends: no participant
// is made up for it. One client address may hold at most the stream cap.
func (h *handlers) sse(w http.ResponseWriter, r *http.Request) {
	// Read the (small) body to its end first: then net/http notices a
	// closed connection at once.
	if !h.readSignals(w, r, nil) {
		return
	}
	cl := h.clients.of(r)
	addr := cl.key()
	if ok, wait := h.budgets.streams.take(addr); !ok {
		w.Header().Set("Retry-After", retryAfter(wait))
		h.refuse(w, r, http.StatusTooManyRequests, "stream_rate", errTooManyOpenings)
		return
	}
	if !h.budgets.open.acquire(addr) {
		w.Header().Set("Retry-After", "10")
		h.refuse(w, r, http.StatusTooManyRequests, "too_many_streams", errTooManyStreams)
		return
	}
	// Each tab is a stream of its own; the stream outlives this handler
	// (the hub took its connection over) and its slot is released when
	// it ends.
	s, err := h.openStream(w, r, cl.secure)
	if err != nil {
		h.budgets.open.release(addr)
		switch {
		case errors.Is(err, presence.ErrNotClaimed), errors.Is(err, ErrNameTaken):
			notice := "The lobby does not know you any more (it may have restarted): please join again."
			if errors.Is(err, ErrNameTaken) {
				notice = "Someone took your name while you were away: please join again."
			}
			form, err := h.views.joinApp(notice)
			if err != nil {
				h.log.Error("render join form", "err", err)
				http.Error(w, "internal error", http.StatusInternalServerError)
				return
			}
			h.respond(w, sfere.PatchElements(form))
		case errors.Is(err, sfere.ErrHubClosed), errors.Is(err, presence.ErrClosed):
			h.fail(w, r, http.StatusServiceUnavailable, ErrShutdown)
		case errors.Is(err, sfere.ErrPositionAhead):
			// The page was served further on another node than this
			// node has applied the cluster's log (it lags, or is cut off
			// from NATS): served here, it would be taken back to this
			// node's older state and sent again what it had. It is told
			// to open its stream again in a moment, from its own
			// position (the reconnect element, or its watchdog), which
			// may reach another node, or this one caught up. (A 503
			// would leave a Datastar page waiting for its watchdog to
			// find the silence: the client retries no error status.)
			h.log.Info("stream not opened: its position is ahead of this node's copy of the log", "err", err)
			recon, rerr := h.views.reconnect(resumePosition(r))
			if rerr != nil {
				h.log.Error("render reconnect", "err", rerr)
				http.Error(w, "internal error", http.StatusInternalServerError)
				return
			}
			h.respond(w, sfere.AppendElements("#lobby", recon))
		default:
			h.log.Warn("stream could not start", "err", err)
			http.Error(w, "the stream could not start", http.StatusInternalServerError)
		}
		return
	}
	if rec := s.Recovery(); rec.From != (sfere.Position{}) || rec.Err != nil {
		h.log.Debug("stream resumed", "from", rec.From, "recovered", rec.Recovered, "replayed", rec.Replayed, "err", rec.Err)
	}
	s.AfterEnd(func() { h.budgets.open.release(addr) })
}

// resumePosition is the position a stream request resumes from, as the
// hub reads it: the last of its Last-Event-ID headers' values, or its
// lastEventID query parameter.
func resumePosition(r *http.Request) string {
	text := strings.Join(r.Header.Values("Last-Event-ID"), ",")
	if text == "" {
		text = r.URL.Query().Get("lastEventID")
	}
	if i := strings.LastIndexByte(text, ','); i >= 0 {
		text = text[i+1:]
	}
	return strings.TrimSpace(text)
}

// openStream opens the stream of the request's session. A page that comes
// back with a position is sent what it missed; if the lobby no longer has
// it all (it restarted, or the page was away too long), nothing of it is
// sent but a line saying so (the initial effects), and either way the
// stream's snapshot brings the participant list up to date. A session the
// lobby does not know may still carry its signed name (the lobby
// restarted): it takes the name back, unless someone took it meanwhile
// ([ErrNameTaken]). The stream's response carries the session's member
// cookie, signed now: only a session that opened a stream can be taken
// back after a restart, and an active one's cookie stays fresh.
func (h *handlers) openStream(w http.ResponseWriter, r *http.Request, secure bool) (*sfere.Stream, error) {
	var initial []sfere.Effect
	if r.Header.Get("Last-Event-ID") != "" || r.URL.Query().Get("lastEventID") != "" {
		line, err := h.views.systemLine("Some lines said while you were away could not be recovered.")
		if err != nil {
			return nil, fmt.Errorf("render recovery notice: %w", err)
		}
		initial = append(initial, sfere.AppendElements("#messages", line))
	} else {
		// An empty signal patch: the opening then carries the stream's
		// position as its id (the snapshot that follows carries none),
		// so a client that got nothing else before a break still
		// resumes from where it opened.
		initial = append(initial, sfere.PatchSignals(json.RawMessage(`{}`)))
	}
	sid := sessionID(r, secure)
	if m, ok := h.lobby.tracker.Lookup(r.Context(), sid); ok {
		h.sessions.setMember(w, secure, sid, displayName(m))
	}
	s, err := h.lobby.tracker.Detach(w, r, sid, initial...)
	if !errors.Is(err, presence.ErrNotClaimed) {
		return s, err
	}
	name, ok := h.resumable(r, secure, sid)
	if !ok {
		return nil, err
	}
	if _, err := h.lobby.join(r.Context(), sid, name); err != nil {
		return nil, err
	}
	h.log.Info("session resumed from its cookie", "name", name)
	h.sessions.setMember(w, secure, sid, name) // signed by this run
	return h.lobby.tracker.Detach(w, r, sid, initial...)
}

// resumable returns the name of a session that an earlier run of this
// single-node lobby knew (its signed member cookie says so, within its
// lifetime) and that did not leave. In a cluster the sessions live in
// NATS and outlive any node: there, a session no node knows has ended.
func (h *handlers) resumable(r *http.Request, secure bool, sid string) (string, bool) {
	if h.lobby.cluster != nil || h.revoked.revoked(sid) {
		return "", false
	}
	return h.sessions.earlierMember(r, secure, sid)
}

// endSession makes session sid leave (if it is still here) and revokes it,
// so that no restart takes it back from its member cookie.
func (h *handlers) endSession(ctx context.Context, sid string) {
	_, _ = h.lobby.leave(ctx, sid)
	if err := h.revoked.revoke(sid); err != nil {
		h.log.Warn("a session that left could be taken back after a restart", "err", err)
	}
}

// message broadcasts a chat line from the session's participant (never
// from a name the request claims) and clears the sender's input.
func (h *handlers) message(w http.ResponseWriter, r *http.Request) {
	var sig struct {
		Message string `json:"message"`
	}
	if !h.readSignals(w, r, &sig) {
		return
	}
	text, err := cleanMessage(sig.Message)
	if err != nil {
		h.fail(w, r, http.StatusBadRequest, err)
		return
	}
	cl := h.clients.of(r)
	sid := sessionID(r, cl.secure)
	if !h.lobby.knows(r.Context(), sid) {
		h.fail(w, r, http.StatusForbidden, ErrNotJoined)
		return
	}
	if ok, wait := h.messages.take(sid); !ok {
		w.Header().Set("Retry-After", retryAfter(wait))
		h.refuse(w, r, http.StatusTooManyRequests, "rate_limited", errTooFast)
		return
	}
	if ok, wait := h.budgets.lines.take(cl.key()); !ok {
		w.Header().Set("Retry-After", retryAfter(wait))
		h.refuse(w, r, http.StatusTooManyRequests, "address_rate", errAddressTooFast)
		return
	}
	if _, err := h.lobby.say(r.Context(), sid, text); err != nil {
		switch {
		case errors.Is(err, ErrNotJoined):
			h.fail(w, r, http.StatusForbidden, err)
		case errors.Is(err, ErrNotSent):
			// Reached nobody: the page keeps the text to send again.
			w.Header().Set("Retry-After", "1")
			h.fail(w, r, http.StatusServiceUnavailable, ErrNotSent)
		default:
			h.log.Error("message", "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
		}
		return
	}
	h.respond(w, sfere.PatchSignals(json.RawMessage(`{"message":""}`)))
}

// leave makes the session's participant leave and puts the join form back.
func (h *handlers) leave(w http.ResponseWriter, r *http.Request) {
	if !h.readSignals(w, r, nil) {
		return
	}
	secure := h.clients.of(r).secure
	sid := sessionID(r, secure)
	if _, err := h.lobby.leave(r.Context(), sid); err != nil {
		h.fail(w, r, http.StatusForbidden, err)
		return
	}
	if err := h.revoked.revoke(sid); err != nil {
		h.log.Warn("a session that left could be taken back after a restart", "err", err)
	}
	clearMember(w, secure)
	form, err := h.views.joinApp("You left the lobby.")
	if err != nil {
		h.log.Error("render join form", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h.respond(w, sfere.PatchElements(form))
}

// connections lists the keys of the stored streams, as text: participant
// names only (which every participant sees anyway), never session ids,
// cookies or client addresses. It exists only with Options.Debug.
func (h *handlers) connections(w http.ResponseWriter, r *http.Request) {
	keys := h.lobby.hub.List(sfere.All)
	texts := make([]string, len(keys))
	for i, k := range keys {
		texts[i] = k.String()
	}
	slices.Sort(texts)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_ = json.NewEncoder(w).Encode(texts)
}

func (h *handlers) script(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(h.datastarJS)
}

// respond answers a Datastar request with effects, as one SSE response.
func (h *handlers) respond(w http.ResponseWriter, effects ...sfere.Effect) {
	h.write(w, http.StatusOK, effects...)
}

// errorSelector is the element of the page that shows a route's errors.
func errorSelector(r *http.Request) string {
	if r.URL.Path == "/join" {
		return "#join-error"
	}
	return "#message-error"
}

// fail answers with status and a clear message: as text for people and
// tools, and as a patch of the form's error line for clients that apply
// error bodies. (The Datastar v1 client does not read a non-200 body; the
// page maps the status to a message of its own.)
func (h *handlers) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	msg := err.Error()
	w.Header().Set("X-Lobby-Error", msg)
	h.write(w, status, sfere.PatchElementsAt(errorSelector(r), datastar.ElementPatchModeInner, template.HTMLEscapeString(msg)))
}

// refuse is fail for a request a limit or check turned away; it counts it.
// A refused request's connection is closed after the answer: its body may
// be unread (or still trickling in), and net/http would otherwise read up
// to 256 KiB of it before the next request.
func (h *handlers) refuse(w http.ResponseWriter, r *http.Request, status int, reason string, err error) {
	h.metrics.refused.WithLabelValues(reason).Inc()
	if r.ContentLength != 0 {
		w.Header().Set("Connection", "close")
	}
	h.fail(w, r, status, err)
}

func (h *handlers) write(w http.ResponseWriter, status int, effects ...sfere.Effect) {
	body, err := sfere.Render(effects...)
	if err != nil {
		h.log.Error("render effects", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// readSignals checks that r is a Datastar request with a JSON body of at
// most [MaxBodyBytes] that arrives within the body timeout, and reads it
// into v (or only drains it if v is nil). On failure it has answered the
// request (400 not Datastar or malformed, 408 too slow, 413 too large,
// 415 not JSON) and returns false.
func (h *handlers) readSignals(w http.ResponseWriter, r *http.Request, v any) bool {
	status, reason, err := h.readBody(w, r, v)
	if err == nil {
		return true
	}
	h.refuse(w, r, status, reason, err)
	return false
}

func (h *handlers) readBody(w http.ResponseWriter, r *http.Request, v any) (status int, reason string, err error) {
	if r.Header.Get("Datastar-Request") != "true" {
		return http.StatusBadRequest, "not_datastar", errNotDatastar
	}
	if r.ContentLength > MaxBodyBytes {
		// Refused before reading a byte of it.
		return http.StatusRequestEntityTooLarge, "body_too_large", errBodyTooLarge
	}
	if ct := r.Header.Get("Content-Type"); ct != "" || r.ContentLength != 0 {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return http.StatusUnsupportedMediaType, "content_type", errContentType
		}
	}
	// The body arrives under the deadline [handlers.timeBodies] set. Once
	// it is read, the deadline goes: a deadline left on the connection
	// would end a stream (net/http's background read would fail on it),
	// or a slow handler's request context. On error it stays, and the
	// connection is closed after the answer (see [handlers.refuse]).
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	if v == nil {
		_, err = io.Copy(io.Discard, r.Body)
	} else {
		err = datastar.ReadSignals(r, v)
	}
	if err == nil {
		if h.bodyTimeout > 0 && r.ContentLength != 0 {
			_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
		}
		return 0, "", nil
	}
	if tooBig := new(http.MaxBytesError); errors.As(err, &tooBig) {
		return http.StatusRequestEntityTooLarge, "body_too_large", errBodyTooLarge
	}
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		return http.StatusRequestTimeout, "body_timeout", errBodyTooSlow
	}
	if v == nil {
		return http.StatusBadRequest, "malformed", fmt.Errorf("cannot read request body: %w", err)
	}
	return http.StatusBadRequest, "malformed", errMalformed
}
