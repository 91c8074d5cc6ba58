package lobby_test

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/sfere-go/sfere/internal/lobby"
)

// Over TLS the session cookie is __Host- prefixed and Secure, for the whole
// site and no other host; an unprefixed cookie (planted over plain HTTP or
// by a sibling domain) is not read. Behind a trusted proxy that says
// https, the same.
func TestSecureCookiesOverTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	srv := startServer(t, lobby.Options{TLSCert: certFile, TLSKey: keyFile, Logger: slog.New(slog.DiscardHandler)})
	b := newH2Browser(t, srv.URL(), pool)
	resp := b.post("/join", `{"username":"brian"}`)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if strings.HasSuffix(c.Name, "lobby_session") {
			session = c
		}
	}
	if session == nil || session.Name != "__Host-lobby_session" || !session.Secure || session.Path != "/" || session.Domain != "" || !session.HttpOnly {
		t.Fatalf("session cookie over TLS: %+v; want __Host-lobby_session, Secure, HttpOnly, Path=/, no Domain", session)
	}

	// A planted plain cookie of a session the lobby knows is not read
	// over TLS.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, srv.URL()+"/message", strings.NewReader(`{"message":"hi"}`))
	req.Header.Set("Datastar-Request", "true")
	req.Header.Set("Content-Type", "application/json")
	req.AddCookie(&http.Cookie{Name: "lobby_session", Value: session.Value})
	r, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusForbidden {
		t.Fatalf("an unprefixed session cookie over TLS: status %d, want 403 (not read)", r.StatusCode)
	}

	// Behind a trusted proxy that says https.
	proxied := startServer(t, lobby.Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	pb := newBrowser(t, proxied)
	req, _ = http.NewRequest(http.MethodPost, proxied.URL()+"/join", strings.NewReader(`{"username":"phil"}`))
	req.Header.Set("Datastar-Request", "true")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-Proto", "https")
	rep := pb.do(req)
	if c := rep.header.Get("Set-Cookie"); !strings.HasPrefix(c, "__Host-lobby_session=") || !strings.Contains(c, "Secure") {
		t.Fatalf("behind a trusted https proxy the session cookie is %q", c)
	}
}
