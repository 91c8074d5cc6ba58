package lobby

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
)

// The live dashboard (package dashboard) at dashboardPath, mounted with
// Options.Dashboard. It shows stream keys, people's names and the
// server's figures, never message contents, session ids or addresses, and
// it is guarded: with no token only loopback clients reach it (as
// TrustedProxies tell the client's address); with Options.DashboardToken
// a client must carry the token, wherever it is.

// dashboardCookie holds the dashboard's token in a browser that gave it
// once in the token query parameter.
const dashboardCookie = "lobby_dashboard"

// minDashboardToken is the shortest token the lobby accepts.
const minDashboardToken = 16

// ErrDashboardToken is returned by [Start] for a dashboard token shorter
// than 16 bytes: it could be guessed.
var ErrDashboardToken = errors.New("lobby: the dashboard token must be at least 16 bytes")

var errDashboardRefused = errors.New("the dashboard is open to this server's own machine, or to whoever has its token")

// guardDashboard lets a request through to the dashboard if its client
// may see it (see above). A page request that carries the right token in
// its query gets it as a cookie (HttpOnly, SameSite=Strict, for the
// dashboard's path only) and is sent to the same page without it, so the
// token stays out of the address bar and the history.
func (h *handlers) guardDashboard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := h.dashboardToken
		if token == "" {
			if a := h.clients.of(r).addr; a.IsValid() && a.IsLoopback() {
				next.ServeHTTP(w, r)
				return
			}
			h.refuse(w, r, http.StatusForbidden, "dashboard", errDashboardRefused)
			return
		}
		if q := r.URL.Query().Get("token"); q != "" && r.Method == http.MethodGet && r.URL.Path == dashboardPath {
			if !sameToken(q, token) {
				h.refuse(w, r, http.StatusForbidden, "dashboard", errDashboardRefused)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: dashboardCookie, Value: url.QueryEscape(token), Path: dashboardPath,
				HttpOnly: true, Secure: h.clients.of(r).secure, SameSite: http.SameSiteStrictMode})
			http.Redirect(w, r, dashboardPath, http.StatusSeeOther)
			return
		}
		if c, err := r.Cookie(dashboardCookie); err == nil {
			if v, err := url.QueryUnescape(c.Value); err == nil && sameToken(v, token) {
				next.ServeHTTP(w, r)
				return
			}
		}
		h.refuse(w, r, http.StatusForbidden, "dashboard", errDashboardRefused)
	})
}

// sameToken compares a token given with the dashboard's in constant time.
func sameToken(given, token string) bool {
	return subtle.ConstantTimeCompare([]byte(given), []byte(token)) == 1
}
