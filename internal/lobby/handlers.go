package lobby

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"slices"

	"github.com/sfere-go/sfere"
	"github.com/starfederation/datastar-go/datastar"
)

// MaxBodyBytes bounds the body of every POST.
const MaxBodyBytes = 64 << 10

// handlers serves the lobby's routes.
type handlers struct {
	lobby      *Lobby
	views      *views
	metrics    *metrics
	datastarJS []byte // the local Datastar client, if one was given
	debug      bool
	log        *slog.Logger
}

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
	if h.datastarJS != nil {
		mux.HandleFunc("GET /datastar.js", h.script)
	}
	return mux
}

// page serves the whole page: the lobby itself for a session that is still
// in it (or within grace), whose data-init reopens the stream, so a reload
// needs no new join; the join form otherwise.
func (h *handlers) page(w http.ResponseWriter, r *http.Request) {
	name, list, in := h.lobby.pageState(sessionID(r))
	html, err := h.views.page(name, list, in)
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
	_, _ = io.WriteString(w, html)
}

// join binds a name to the browser's session and answers with the lobby,
// whose data-init opens the stream.
func (h *handlers) join(w http.ResponseWriter, r *http.Request) {
	const errorSel = "#join-error"
	var sig struct {
		Username string `json:"username"`
	}
	if status, err := readSignals(w, r, &sig); err != nil {
		h.fail(w, status, err, errorSel)
		return
	}
	name, err := cleanName(sig.Username)
	if err != nil {
		h.fail(w, http.StatusBadRequest, err, errorSel)
		return
	}
	sid := sessionID(r)
	fresh := sid == "" || !h.lobby.knows(sid)
	if fresh {
		sid = newSessionID()
	}
	res, err := h.lobby.join(sid, name)
	switch {
	case errors.Is(err, ErrShutdown):
		h.fail(w, http.StatusServiceUnavailable, err, errorSel)
		return
	case err != nil:
		h.fail(w, http.StatusConflict, err, errorSel)
		return
	}
	if fresh {
		setSession(w, r, sid)
	}
	if res.renamed != "" {
		h.log.Info("session changed name", "from", res.renamed, "to", name)
	}
	_, list, _ := h.lobby.pageState(sid)
	app, err := h.views.lobbyApp(name, list)
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
// is made up for it.
func (h *handlers) sse(w http.ResponseWriter, r *http.Request) {
	// Read the (small) body to its end first: then net/http notices a
	// closed connection at once.
	if status, err := readSignals(w, r, nil); err != nil {
		h.fail(w, status, err, "#join-error")
		return
	}
	p := h.lobby.open(sessionID(r))
	if p == nil {
		form, err := h.views.joinApp("The lobby does not know you any more (it may have restarted): please join again.")
		if err != nil {
			h.log.Error("render join form", "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		h.respond(w, sfere.PatchElements(form))
		return
	}
	if err := h.lobby.hub.Serve(w, r, p.key); err != nil {
		h.lobby.openFailed(p)
		if errors.Is(err, sfere.ErrHubClosed) {
			h.fail(w, http.StatusServiceUnavailable, ErrShutdown, "#message-error")
			return
		}
		h.log.Warn("stream could not start", "name", p.name, "err", err)
	}
}

// message broadcasts a chat line from the session's participant (never
// from a name the request claims) and clears the sender's input.
func (h *handlers) message(w http.ResponseWriter, r *http.Request) {
	const errorSel = "#message-error"
	var sig struct {
		Message string `json:"message"`
	}
	if status, err := readSignals(w, r, &sig); err != nil {
		h.fail(w, status, err, errorSel)
		return
	}
	text, err := cleanMessage(sig.Message)
	if err != nil {
		h.fail(w, http.StatusBadRequest, err, errorSel)
		return
	}
	if _, err := h.lobby.say(sessionID(r), text); err != nil {
		if errors.Is(err, ErrNotJoined) {
			h.fail(w, http.StatusForbidden, err, errorSel)
		} else {
			h.log.Error("message", "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
		}
		return
	}
	h.respond(w, sfere.PatchSignals(json.RawMessage(`{"message":""}`)))
}

// leave makes the session's participant leave and puts the join form back.
func (h *handlers) leave(w http.ResponseWriter, r *http.Request) {
	if status, err := readSignals(w, r, nil); err != nil {
		h.fail(w, status, err, "#message-error")
		return
	}
	if _, err := h.lobby.leave(sessionID(r)); err != nil {
		h.fail(w, http.StatusForbidden, err, "#message-error")
		return
	}
	form, err := h.views.joinApp("You left the lobby.")
	if err != nil {
		h.log.Error("render join form", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h.respond(w, sfere.PatchElements(form))
}

// connections lists the keys of the stored streams, as text: no cookies,
// no addresses.
func (h *handlers) connections(w http.ResponseWriter, r *http.Request) {
	keys := h.lobby.hub.List(sfere.All)
	texts := make([]string, len(keys))
	for i, k := range keys {
		texts[i] = k.String()
	}
	slices.Sort(texts)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(texts)
}

func (h *handlers) script(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(h.datastarJS)
}

// respond answers a Datastar request with effects, as one SSE response.
func (h *handlers) respond(w http.ResponseWriter, effects ...sfere.Effect) {
	h.write(w, http.StatusOK, effects...)
}

// fail answers with status and a clear message: as text for people and
// tools, and as a patch of the form's error line for clients that apply
// error bodies. (The Datastar v1 client does not read a non-200 body; the
// page maps the status to a message of its own.)
func (h *handlers) fail(w http.ResponseWriter, status int, err error, selector string) {
	msg := err.Error()
	w.Header().Set("X-Lobby-Error", msg)
	h.write(w, status, sfere.PatchElementsAt(selector, datastar.ElementPatchModeInner, template.HTMLEscapeString(msg)))
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
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// readSignals checks that r is a Datastar request and reads its JSON body,
// at most [MaxBodyBytes], into v (or only drains it if v is nil). On error
// it returns the status to answer with: 413 for a body too large, 400 for
// anything malformed.
func readSignals(w http.ResponseWriter, r *http.Request, v any) (int, error) {
	if r.Header.Get("Datastar-Request") != "true" {
		return http.StatusBadRequest, errors.New("not a Datastar request (header Datastar-Request: true is missing)")
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	var err error
	if v == nil {
		_, err = io.Copy(io.Discard, r.Body)
	} else {
		err = datastar.ReadSignals(r, v)
	}
	if err == nil {
		return 0, nil
	}
	if tooBig := new(http.MaxBytesError); errors.As(err, &tooBig) {
		return http.StatusRequestEntityTooLarge, fmt.Errorf("request body too large: the limit is %d KiB", MaxBodyBytes>>10)
	}
	if v == nil {
		return http.StatusBadRequest, fmt.Errorf("cannot read request body: %w", err)
	}
	return http.StatusBadRequest, errors.New("malformed signals: the body must be a JSON object of signals")
}
