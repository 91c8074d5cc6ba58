package dashboard

import (
	"bytes"
	"embed"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/sfere-go/sfere"
	"github.com/starfederation/datastar-go/datastar"
)

//go:embed templates/dashboard.html
var templateFiles embed.FS

// pageStatic is what every page of one dashboard shares.
type pageStatic struct {
	t   *template.Template
	csp string
}

func newPageStatic(opts Options) pageStatic {
	t := template.Must(template.New("dashboard").Funcs(template.FuncMap{
		"path": func() string { return opts.Path },
		// bar is the x of the i-th bar of a histogram: 5 bars of 40
		// units, 8 apart.
		"bar": func(i int) int { return 4 + i*48 },
	}).ParseFS(templateFiles, "templates/dashboard.html"))
	return pageStatic{t: t, csp: contentSecurityPolicy(opts.Script)}
}

// contentSecurityPolicy allows the page the Datastar client (from its URL,
// or this site), the eval Datastar needs for its expressions, its inline
// style, and requests to this site only.
func contentSecurityPolicy(script string) string {
	src := "'self'"
	if u, err := url.Parse(script); err == nil && u.Scheme != "" && u.Host != "" {
		src = u.Scheme + "://" + u.Host + u.EscapedPath()
	}
	return "default-src 'none'; script-src " + src + " 'unsafe-eval'; style-src 'unsafe-inline'; " +
		"connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}

// pageData is the whole page's.
type pageData struct {
	Script    string
	Integrity string
	Path      string
	Signals   string
	View      view
}

// render returns the whole page for the stream id conn.
func (p pageStatic) render(opts Options, conn string, v view) ([]byte, error) {
	sig, err := json.Marshal(signals{Conn: conn, Search: v.Streams.Search})
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	err = p.t.ExecuteTemplate(&b, "page", pageData{
		Script: opts.Script, Integrity: opts.Integrity, Path: opts.Path, Signals: string(sig), View: v,
	})
	return b.Bytes(), err
}

// panes renders the panes of v, each an element with its own id.
func (p pageStatic) panes(v view) (string, error) {
	var b strings.Builder
	err := p.t.ExecuteTemplate(&b, "panes", v)
	return b.String(), err
}

// effects returns what updates a page to v: its panes, patched by id.
func (d *Dashboard) effects(v view) []sfere.Effect {
	html, err := d.page.panes(v)
	if err != nil {
		// The templates are fixed and the view holds only strings and
		// numbers: an error is a bug, shown rather than hidden.
		html = `<section id="dash-overview"><p class="error">` + template.HTMLEscapeString(err.Error()) + `</p></section>`
	}
	return []sfere.Effect{sfere.PatchElements(html)}
}

// serveSearch answers a search: the Streams pane for the pattern given,
// or the reason it is not one. An open page's stream keeps the search
// from then on.
func (d *Dashboard) serveSearch(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	var sig signals
	if err := datastar.ReadSignals(r, &sig); err != nil {
		http.Error(w, "dashboard: malformed signals", http.StatusBadRequest)
		return
	}
	search := strings.TrimSpace(sig.Search)
	sv := d.streamsView(search)
	if sv.Err == "" && validConn(sig.Conn) {
		d.mu.Lock()
		if _, open := d.conns[sig.Conn]; open {
			d.conns[sig.Conn] = search
		}
		d.mu.Unlock()
	}
	var b strings.Builder
	if err := d.page.t.ExecuteTemplate(&b, "streams", sv); err != nil {
		http.Error(w, "dashboard: "+err.Error(), http.StatusInternalServerError)
		return
	}
	data, err := sfere.Render(sfere.PatchElements(b.String()))
	if err != nil {
		http.Error(w, "dashboard: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(data)
}
