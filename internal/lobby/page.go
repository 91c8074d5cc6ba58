package lobby

import (
	"embed"
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
	datastarJS string

	mu    sync.Mutex
	items map[string]string // name -> rendered list item
}

// maxCachedItems bounds the rendered list items kept; past it the cache
// starts over.
const maxCachedItems = 16384

func newViews(datastarJS string) (*views, error) {
	t, err := template.ParseFS(templateFiles, "templates/*.html")
	if err != nil {
		return nil, err
	}
	return &views{t: t, datastarJS: datastarJS, items: make(map[string]string)}, nil
}

type joinData struct {
	Notice string
	Errors map[string]string
}

type lobbyData struct {
	Name   string
	List   template.HTML // the rendered participant list
	Errors map[string]string
	// Position is the lobby's position when the page was rendered (empty
	// without a history): the stream opens from it (the lastEventID query
	// parameter: the Last-Event-ID header is for a client's reconnects),
	// so nothing said between the render and the stream's start is lost.
	Position string
}

type participantData struct{ ID, Name string }

type pageData struct {
	DatastarJS string
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
	d := pageData{DatastarJS: v.datastarJS, Join: joinData{Errors: joinErrors}}
	if inLobby {
		l, err := v.participantList(list)
		if err != nil {
			return "", err
		}
		d.Lobby = &lobbyData{Name: name, List: template.HTML(l), Errors: messageErrors, Position: pos}
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
	return v.exec("lobby", lobbyData{Name: name, List: template.HTML(l), Errors: messageErrors, Position: pos})
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
// opens from pos.
func (v *views) reconnect(pos string) (string, error) {
	return v.exec("reconnect", struct{ ID, Position string }{"reconnect-" + strconv.FormatInt(time.Now().UnixNano(), 36), pos})
}

func (v *views) chatLine(name, text string) (string, error) {
	return v.exec("chat", struct{ Name, Text string }{name, text})
}
