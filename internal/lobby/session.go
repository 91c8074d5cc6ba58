package lobby

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
)

// sessionCookie names the cookie that carries a browser's session id.
const sessionCookie = "lobby_session"

// sessionID returns the session id the request carries, or "" if it
// carries none (or one that is not a well-formed id).
func sessionID(r *http.Request) string {
	c, err := r.Cookie(sessionCookie)
	if err != nil || !wellFormedSID(c.Value) {
		return ""
	}
	return c.Value
}

// newSessionID returns a random 128-bit session id in hex.
func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

func wellFormedSID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// setSession gives the browser the session cookie: HttpOnly (scripts cannot
// read it), SameSite=Lax (other sites cannot post with it), for the whole
// site, for the life of the browser session.
func setSession(w http.ResponseWriter, r *http.Request, sid string) {
	http.SetCookie(w, &http.Cookie{
		Name:     sessionCookie,
		Value:    sid,
		Path:     "/",
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		Secure:   r.TLS != nil,
	})
}
