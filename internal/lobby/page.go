package lobby

import (
	"embed"
	"html/template"
	"strings"
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
		"400": "Names are 1-32 characters, with no control characters.",
		"409": "That name is already taken; please choose another.",
		"413": "That request was too large.",
		"503": "The lobby is shutting down; try again soon.",
	}
	messageErrors = map[string]string{
		"400": "Messages are 1-1000 characters, with no control characters.",
		"403": "You are no longer in the lobby; reload the page to join again.",
		"413": "That message was too large.",
		"503": "The lobby is shutting down.",
	}
)

// views renders the page and the HTML fragments the lobby patches in. All
// user text goes through html/template, so it is escaped.
type views struct {
	t          *template.Template
	datastarJS string
}

func newViews(datastarJS string) (*views, error) {
	t, err := template.ParseFS(templateFiles, "templates/*.html")
	if err != nil {
		return nil, err
	}
	return &views{t: t, datastarJS: datastarJS}, nil
}

type joinData struct {
	Notice string
	Errors map[string]string
}

type lobbyData struct {
	Name         string
	Participants []participantData
	Errors       map[string]string
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
func (v *views) page(name string, list []string, inLobby bool) (string, error) {
	d := pageData{DatastarJS: v.datastarJS, Join: joinData{Errors: joinErrors}}
	if inLobby {
		d.Lobby = &lobbyData{Name: name, Participants: items(list), Errors: messageErrors}
	}
	return v.exec("page", d)
}

// joinApp renders the #app element holding the join form, with an
// optional notice above it.
func (v *views) joinApp(notice string) (string, error) {
	return v.exec("join", joinData{Notice: notice, Errors: joinErrors})
}

// lobbyApp renders the #app element holding the lobby, whose data-init
// opens the stream.
func (v *views) lobbyApp(name string, list []string) (string, error) {
	return v.exec("lobby", lobbyData{Name: name, Participants: items(list), Errors: messageErrors})
}

func (v *views) participantList(names []string) (string, error) {
	return v.exec("list", items(names))
}

func (v *views) participantItem(name string) (string, error) {
	return v.exec("participant", participantData{ID: participantID(name), Name: name})
}

func (v *views) systemLine(text string) (string, error) { return v.exec("system", text) }

func (v *views) chatLine(name, text string) (string, error) {
	return v.exec("chat", struct{ Name, Text string }{name, text})
}

func items(names []string) []participantData {
	out := make([]participantData, len(names))
	for i, n := range names {
		out[i] = participantData{ID: participantID(n), Name: n}
	}
	return out
}
