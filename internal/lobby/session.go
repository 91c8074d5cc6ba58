package lobby

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Cookie names. Over TLS (directly, or through a trusted proxy that says
// so) the cookies take the __Host- prefix: a browser keeps such a cookie
// only if it is Secure, for the whole site, and set by this host itself,
// so a sibling subdomain or a plain-HTTP page cannot plant one. Over plain
// HTTP the browser would refuse a prefixed cookie, so the plain names are
// used there (and only there: a request over TLS never reads them).
const (
	sessionCookie       = "lobby_session"
	memberCookie        = "lobby_member"
	hostPrefix          = "__Host-"
	secureSessionCookie = hostPrefix + sessionCookie
	secureMemberCookie  = hostPrefix + memberCookie
)

func sessionCookieName(secure bool) string {
	if secure {
		return secureSessionCookie
	}
	return sessionCookie
}

func memberCookieName(secure bool) string {
	if secure {
		return secureMemberCookie
	}
	return memberCookie
}

// sessionID returns the session id the request carries, or "" if it
// carries none (or one that is not a well-formed id). A session id only
// names a session the lobby made: /join never adopts one a client brings.
func sessionID(r *http.Request, secure bool) string {
	c, err := r.Cookie(sessionCookieName(secure))
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
// site, for the life of the browser session; Secure and __Host- prefixed
// over TLS.
func setSession(w http.ResponseWriter, secure bool, sid string) {
	http.SetCookie(w, &http.Cookie{
		Name:     sessionCookieName(secure),
		Value:    sid,
		Path:     "/",
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		Secure:   secure,
	})
}

// The member cookie lets a restarted lobby take a session back without a
// new join: the session's name, the run of the lobby that signed it and
// when, under an HMAC (with the session id) by the lobby's session key. It
// is set when a stream of the session opens (so a /join whose stream never
// opened leaves nothing to resume), renewed at every stream opening, and
// cleared at /leave; it expires [Options.MemberMaxAge] after it was
// signed, and a session that ended (it left, or its resume window ran out)
// is revoked for that long (see revocations.go), so no restart brings it
// back.
//
// Only a later run honours it: a session this run does not know but
// signed itself has ended here (it left, or its resume window passed),
// and must join again.

// sessionKeySize is the size of a session key, in bytes.
const sessionKeySize = 32

// signer signs and checks member cookies with the lobby's session key.
type signer struct {
	key    []byte
	run    string        // this run of the lobby: random, new at each start
	maxAge time.Duration // how long a member cookie is honoured
	now    func() time.Time
}

// newSigner returns a signer with key, or with a random key (valid for
// this run only) if key is empty, whose cookies are honoured for maxAge.
func newSigner(key []byte, maxAge time.Duration) (signer, error) {
	if len(key) == 0 {
		key = make([]byte, sessionKeySize)
		_, _ = rand.Read(key)
	}
	if len(key) < 16 {
		return signer{}, errors.New("lobby: a session key must have at least 16 bytes")
	}
	if maxAge <= 0 {
		return signer{}, errors.New("lobby: the member cookie's lifetime must be positive")
	}
	var run [8]byte
	_, _ = rand.Read(run[:])
	return signer{key: key, run: hex.EncodeToString(run[:]), maxAge: maxAge, now: time.Now}, nil
}

func (s signer) mac(sid, name, run, issued string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("lobby member\x00" + sid + "\x00" + name + "\x00" + run + "\x00" + issued))
	return m.Sum(nil)
}

// setMember gives the browser the member cookie of session sid under name,
// signed by this run now, with the session cookie's attributes and an
// expiry.
func (s signer) setMember(w http.ResponseWriter, secure bool, sid, name string) {
	b64 := base64.RawURLEncoding
	issued := strconv.FormatInt(s.now().Unix(), 10)
	http.SetCookie(w, &http.Cookie{
		Name:     memberCookieName(secure),
		Value:    b64.EncodeToString([]byte(name)) + "." + s.run + "." + issued + "." + b64.EncodeToString(s.mac(sid, name, s.run, issued)),
		Path:     "/",
		MaxAge:   int(s.maxAge / time.Second),
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		Secure:   secure,
	})
}

// clearMember removes the member cookie.
func clearMember(w http.ResponseWriter, secure bool) {
	http.SetCookie(w, &http.Cookie{Name: memberCookieName(secure), Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: secure})
}

// earlierMember returns the name the request's member cookie signs for
// session sid, if it carries a valid one signed by an earlier run less
// than maxAge ago.
func (s signer) earlierMember(r *http.Request, secure bool, sid string) (string, bool) {
	c, err := r.Cookie(memberCookieName(secure))
	if err != nil || sid == "" {
		return "", false
	}
	parts := strings.Split(c.Value, ".")
	if len(parts) != 4 || parts[1] == s.run {
		return "", false
	}
	b64 := base64.RawURLEncoding
	name, err1 := b64.DecodeString(parts[0])
	mac, err2 := b64.DecodeString(parts[3])
	if err1 != nil || err2 != nil || !hmac.Equal(mac, s.mac(sid, string(name), parts[1], parts[2])) {
		return "", false
	}
	issued, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return "", false
	}
	if age := s.now().Sub(time.Unix(issued, 0)); age < -time.Minute || age >= s.maxAge {
		return "", false // expired, or from a clock far ahead
	}
	return string(name), true
}
