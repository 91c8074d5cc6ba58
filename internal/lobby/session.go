package lobby

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
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

// memberCookie names the cookie that lets a restarted lobby take a session
// back without a new join: the session's name and the run of the lobby
// that signed it, signed with the lobby's session key (with the session
// id). It is set at /join and cleared at /leave.
//
// Only a later run honours it: a session this run does not know but
// signed itself has ended here (it left, or its resume window passed),
// and must join again.
const memberCookie = "lobby_member"

// sessionKeySize is the size of a session key, in bytes.
const sessionKeySize = 32

// signer signs and checks member cookies with the lobby's session key.
type signer struct {
	key []byte
	run string // this run of the lobby: random, new at each start
}

// newSigner returns a signer with key, or with a random key (valid for
// this run only) if key is empty.
func newSigner(key []byte) (signer, error) {
	if len(key) == 0 {
		key = make([]byte, sessionKeySize)
		_, _ = rand.Read(key)
	}
	if len(key) < 16 {
		return signer{}, errors.New("lobby: a session key must have at least 16 bytes")
	}
	var run [8]byte
	_, _ = rand.Read(run[:])
	return signer{key: key, run: hex.EncodeToString(run[:])}, nil
}

func (s signer) mac(sid, name, run string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("lobby member\x00" + sid + "\x00" + name + "\x00" + run))
	return m.Sum(nil)
}

// setMember gives the browser the member cookie of session sid under name,
// signed by this run, with the session cookie's attributes.
func (s signer) setMember(w http.ResponseWriter, r *http.Request, sid, name string) {
	b64 := base64.RawURLEncoding
	http.SetCookie(w, &http.Cookie{
		Name:     memberCookie,
		Value:    b64.EncodeToString([]byte(name)) + "." + s.run + "." + b64.EncodeToString(s.mac(sid, name, s.run)),
		Path:     "/",
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		Secure:   r.TLS != nil,
	})
}

// clearMember removes the member cookie.
func clearMember(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: memberCookie, Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
}

// earlierMember returns the name the request's member cookie signs for
// session sid, if it carries a valid one signed by an earlier run.
func (s signer) earlierMember(r *http.Request, sid string) (string, bool) {
	c, err := r.Cookie(memberCookie)
	if err != nil || sid == "" {
		return "", false
	}
	parts := strings.Split(c.Value, ".")
	if len(parts) != 3 || parts[1] == s.run {
		return "", false
	}
	b64 := base64.RawURLEncoding
	name, err1 := b64.DecodeString(parts[0])
	mac, err2 := b64.DecodeString(parts[2])
	if err1 != nil || err2 != nil || !hmac.Equal(mac, s.mac(sid, string(name), parts[1])) {
		return "", false
	}
	return string(name), true
}
