package lobby

import (
	"crypto/sha512"
	"embed"
	"encoding/base64"
	"html/template"
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed templates/*.html
var templateFiles embed.FS

// DatastarCDN is where the page loads the Datastar client from by default.
const DatastarCDN = "https://cdn.jsdelivr.net/gh/starfederation/datastar@1.0.2/bundles/datastar.js"

// DatastarCDNIntegrity is the subresource integrity hash of the Datastar
// v1.0.2 bundle at [DatastarCDN] (first line "// Datastar v1.0.2",
// sha256 2837d87a...d3fd24a): a browser refuses to run any other file
// from that URL.
const DatastarCDNIntegrity = "sha384-SnyFlWTdFL3c8+9/1WsPuMFBq6AQOGC1LmS9upY4YkM3En3wZr5q2UvydHaMgOVG"

// scriptIntegrity returns the subresource integrity value of a script.
func scriptIntegrity(script []byte) string {
	sum := sha512.Sum384(script)
	return "sha384-" + base64.StdEncoding.EncodeToString(sum[:])
}

// Messages the page shows when a request is refused, by HTTP status. The
// Datastar client does not read the body of a response that is not 200, so
// the page maps the status to its message itself (the server sends the
// precise message in the body for other clients).
var (
	joinErrors = map[string]string{
		"400": "Names are 1-32 characters with at least one letter, digit or symbol, and no control or invisible characters.",
		"403": "That request was refused: join from this site's own page.",
		"408": "That request took too long; try again.",
		"409": "That name is already taken; please choose another.",
		"413": "That request was too large.",
		"415": "That request was refused: it was not sent as JSON.",
		"429": "Too many joins, or too many names held, from your address: wait a moment and try again.",
		"503": "The lobby could not take you in just now (restarting, or a moment without its cluster); try again soon.",
	}
	messageErrors = map[string]string{
		"400": "Messages are 1-1000 characters, with no control characters.",
		"403": "You are no longer in the lobby; reload the page to join again.",
		"408": "That message took too long to send; try again.",
		"413": "That message was too large.",
		"415": "That request was refused: it was not sent as JSON.",
		"429": "Slow down: too many messages, or too many lobby tabs open from your address.",
		"503": "Not sent, try again: the lobby could not reach everyone just now.",
	}
	// streamErrors are shown when the page's stream cannot open.
	streamErrors = map[string]string{
		"429": "Too many lobby tabs, or too many reconnects, from your address: close a tab or wait a moment, then reload.",
		"503": "The lobby is shutting down.",
	}
)

// views renders the page and the HTML fragments the lobby patches in. All
// user text goes through html/template, so it is escaped.
//
// The participant list is sent to every newcomer and in every /join answer,
// often under the lobby's lock, so each name's list item is rendered once
// and kept (see [views.participantItem]): a list is then one concatenation,
// not one template run per name.
type views struct {
	t          *template.Template
	datastarJS string    // the script's URL
	integrity  string    // its subresource integrity value
	pageLines  int       // lines a page keeps in #messages; 0: all
	watchdog   *watchdog // the page's watchdog; nil: none (the heartbeat is a comment)

	mu    sync.Mutex
	items map[string]string // name -> rendered list item
}

// maxCachedItems bounds the rendered list items kept; past it the cache
// starts over.
const maxCachedItems = 16384

// newViews returns the views of a page that loads its script from
// datastarJS, checked against integrity, and keeps pageLines lines in
// #messages (0: all).
func newViews(datastarJS, integrity string, pageLines int) (*views, error) {
	t, err := template.ParseFS(templateFiles, "templates/*.html")
	if err != nil {
		return nil, err
	}
	return &views{t: t, datastarJS: datastarJS, integrity: integrity, pageLines: max(pageLines, 0), items: make(map[string]string)}, nil
}

type joinData struct {
	Notice string
	Errors map[string]string
}

type lobbyData struct {
	Name   string
	List   template.HTML // the rendered participant list
	Errors map[string]string
	// StreamErrors are the messages shown when the stream cannot open.
	StreamErrors map[string]string
	// PageLines is how many lines #messages keeps (0: all).
	PageLines int
	// Position is the lobby's position when the page was rendered (empty
	// without a history): the stream opens from it (the lastEventID query
	// parameter: the Last-Event-ID header is for a client's reconnects),
	// so nothing said between the render and the stream's start is lost.
	Position string
	// Watchdog, if set, opens the stream and reopens it when it falls
	// silent (watchdog.go); else the lobby's data-init opens it.
	Watchdog *watchdogData
}

type participantData struct{ ID, Name string }

type pageData struct {
	DatastarJS string
	Integrity  string
	Join       joinData
	Lobby      *lobbyData
}

func (v *views) exec(name string, data any) (string, error) {
	var b strings.Builder
	if err := v.t.ExecuteTemplate(&b, name, data); err != nil {
		return "", err
	}
	return b.String(), nil
}

// page renders the whole page: the lobby for a session that is in it,
// else the join form.
func (v *views) page(name string, list []string, inLobby bool, pos string) (string, error) {
	d := pageData{DatastarJS: v.datastarJS, Integrity: v.integrity, Join: joinData{Errors: joinErrors}}
	if inLobby {
		l, err := v.participantList(list)
		if err != nil {
			return "", err
		}
		d.Lobby = v.lobbyData(name, l, pos)
	}
	return v.exec("page", d)
}

// joinApp renders the #app element holding the join form, with an
// optional notice above it.
func (v *views) joinApp(notice string) (string, error) {
	return v.exec("join", joinData{Notice: notice, Errors: joinErrors})
}

// lobbyApp renders the #app element holding the lobby, whose data-init
// opens the stream from pos.
func (v *views) lobbyApp(name string, list []string, pos string) (string, error) {
	l, err := v.participantList(list)
	if err != nil {
		return "", err
	}
	return v.exec("lobby", v.lobbyData(name, l, pos))
}

func (v *views) lobbyData(name, list, pos string) *lobbyData {
	return &lobbyData{Name: name, List: template.HTML(list), Errors: messageErrors, StreamErrors: streamErrors,
		PageLines: v.pageLines, Position: pos, Watchdog: v.watchdog.data(pos)}
}

// participantList renders the list of names: what the "list" template
// renders, from the cached items.
func (v *views) participantList(names []string) (string, error) {
	var b strings.Builder
	b.WriteString(`<ul id="participant-list">`)
	for _, n := range names {
		item, err := v.participantItem(n)
		if err != nil {
			return "", err
		}
		b.WriteString(item)
	}
	b.WriteString(`</ul>`)
	return b.String(), nil
}

// participantItem renders a name's list item (the "participant" template),
// once per name.
func (v *views) participantItem(name string) (string, error) {
	v.mu.Lock()
	item, ok := v.items[name]
	v.mu.Unlock()
	if ok {
		return item, nil
	}
	item, err := v.exec("participant", participantData{ID: participantID(name), Name: name})
	if err != nil {
		return "", err
	}
	v.mu.Lock()
	if len(v.items) >= maxCachedItems {
		clear(v.items)
	}
	v.items[name] = item
	v.mu.Unlock()
	return item, nil
}

func (v *views) systemLine(text string) (string, error) { return v.exec("system", text) }

// reconnect renders an invisible element that opens the page's stream again
// after a moment, once; its id is new each time, so that it is a new
// element (Datastar runs data-init for new elements only). The stream
// opens from pos; on a page with a watchdog, the watchdog reopens it
// (from the page's own position, with the URL it opened the stream
// with, so that no second stream is left behind).
func (v *views) reconnect(pos string) (string, error) {
	name := "reconnect"
	if v.watchdog != nil {
		name = "reconnect-watchdog"
	}
	return v.exec(name, struct{ ID, Position string }{"reconnect-" + strconv.FormatInt(time.Now().UnixNano(), 36), pos})
}

func (v *views) chatLine(name, text string) (string, error) {
	return v.exec("chat", struct{ Name, Text string }{name, text})
}
