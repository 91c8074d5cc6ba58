package lobby_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// tlsCeiling bounds each wait of the TLS tests for an event.
const tlsCeiling = 20 * time.Second

// selfSigned writes a certificate for 127.0.0.1 and its key as PEM files
// in a temporary directory and returns their paths and a pool that trusts
// the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sfere lobby test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// h2Browser is a browser that speaks HTTP/2 over TLS: one connection for
// the page, its requests and its stream, as a real browser does.
type h2Browser struct {
	t      *testing.T
	base   string
	client *http.Client
}

func newH2Browser(t *testing.T, base string, pool *x509.CertPool) *h2Browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &h2Browser{t: t, base: base, client: &http.Client{Jar: jar, Transport: tr}}
}

// post sends a Datastar request and returns the response, checking that
// it came over HTTP/2.
func (b *h2Browser) post(path, signals string) *http.Response {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.base+path, strings.NewReader(signals))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Datastar-Request", "true")
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("POST %s: %v", path, err)
	}
	if resp.ProtoMajor != 2 {
		resp.Body.Close()
		b.t.Fatalf("POST %s answered over %s, want HTTP/2", path, resp.Proto)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		b.t.Fatalf("POST %s: %s: %s", path, resp.Status, body)
	}
	return resp
}

func (b *h2Browser) do(path, signals string) {
	b.t.Helper()
	resp := b.post(path, signals)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// The lobby serves itself over TLS with HTTP/2: the page, the requests and
// the long-lived streams, which stay live (a join and a message on one
// node reach the other's stream), over real loopback TCP.
func TestLobbyServesStreamsOverTLSWithHTTP2(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	srv, err := lobby.Start(t.Context(), lobby.Options{
		Addr: "127.0.0.1:0", Heartbeat: time.Second, Grace: 200 * time.Millisecond,
		TLSCert: certFile, TLSKey: keyFile, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), tlsCeiling)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	if !strings.HasPrefix(srv.URL(), "https://") {
		t.Fatalf("URL %q, want https", srv.URL())
	}

	brian := newH2Browser(t, srv.URL(), pool)
	page, err := brian.client.Get(srv.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	page.Body.Close()
	if page.TLS == nil || page.TLS.NegotiatedProtocol != "h2" || page.ProtoMajor != 2 {
		t.Fatalf("page over %s (TLS %v), want HTTP/2 over TLS", page.Proto, page.TLS != nil)
	}
	brian.do("/join", `{"username":"brian"}`)
	bs := ssetest.FromResponse(t, brian.post("/sse", `{}`))
	bs.Wait(tlsCeiling, ssetest.Containing(`id="participant-list"`))

	phil := newH2Browser(t, srv.URL(), pool)
	phil.do("/join", `{"username":"phil"}`)
	ps := ssetest.FromResponse(t, phil.post("/sse", `{}`))
	ps.Wait(tlsCeiling, ssetest.Containing(`id="participant-list"`))
	bs.Wait(tlsCeiling, ssetest.Containing("phil joined the lobby"))
	phil.do("/message", `{"message":"hello over h2"}`)
	bs.Wait(tlsCeiling, ssetest.Containing("hello over h2"))
	ps.Wait(tlsCeiling, ssetest.Containing("hello over h2"))
}

func TestLobbyRefusesHalfATLSConfig(t *testing.T) {
	certFile, keyFile, _ := selfSigned(t)
	for _, opts := range []lobby.Options{{TLSCert: certFile}, {TLSKey: keyFile}, {TLSCert: keyFile, TLSKey: certFile}} {
		opts.Addr, opts.Logger = "127.0.0.1:0", slog.New(slog.DiscardHandler)
		srv, err := lobby.Start(t.Context(), opts)
		if err == nil {
			srv.Shutdown(context.Background())
			t.Fatalf("Start with cert %q and key %q succeeded", opts.TLSCert, opts.TLSKey)
		}
		if !strings.Contains(err.Error(), "TLS") {
			t.Errorf("Start with cert %q and key %q: %v, want a TLS error", opts.TLSCert, opts.TLSKey, err)
		}
	}
}
