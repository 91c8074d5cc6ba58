package lobby_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// nginxConf is the proxy setup of docs/deploy.md, on loopback: nginx reaches the
// lobby from proxyAddr (proxy_bind), which the lobby trusts.
const nginxConf = `daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen %[2]s;
    location / {
      proxy_pass http://%[3]s;
      proxy_bind %[4]s;
      proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_buffering off;
      proxy_read_timeout 60s;
    }
  }
}
`

// startNginx runs Debian's nginx in the foreground from a config of its
// own, proxying a loopback port to upstream from proxyAddr, and returns
// the port's address. It skips the test without nginx.
func startNginx(t *testing.T, upstream, proxyAddr string) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		for _, p := range []string{"/usr/sbin/nginx", "/sbin/nginx"} {
			if _, err := os.Stat(p); err == nil {
				bin = p
			}
		}
	}
	if bin == "" {
		t.Skip("no nginx (apt-get install -y nginx) to run the proxy test")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, addr, upstream, proxyAddr)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", conf)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	ssetest.Eventually(t, waitLong, "nginx listening", func() bool {
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %s\n%s", out.String(), log)
		default:
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

// from returns a browser that reaches base from the loopback address src.
func from(t *testing.T, base, src string) *browser {
	b := newBrowserAt(t, base)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: waitLong}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	b.client.Transport = tr
	return b
}

// Behind the real nginx of docs/deploy.md, a lobby that trusts the proxy
// counts each client by its own address (X-Forwarded-For): one client's
// budget is not another's, a header a client forges is not believed, and
// a client that reaches the lobby directly cannot claim another address.
func TestTrustedProxyBehindNginx(t *testing.T) {
	const proxyAddr = "127.0.0.5"
	srv := startServer(t, lobby.Options{NamesPerAddress: 1,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix(proxyAddr + "/32")}})
	base := "http://" + startNginx(t, srv.Addr().String(), proxyAddr)

	join := func(b *browser, name string, hdr ...string) reply {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, b.base.JoinPath("/join").String(), strings.NewReader(fmt.Sprintf(`{"username":%q}`, name)))
		req.Header.Set("Datastar-Request", "true")
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		return b.do(req)
	}
	a := from(t, base, "127.0.0.2")
	if r := join(a, "anna"); r.status != http.StatusOK {
		t.Fatalf("anna through nginx: status %d %s", r.status, r.body)
	}
	// The stream works through the proxy too.
	s := a.openStream()
	s.waitFor("anna joined the lobby")

	if r := join(from(t, base, "127.0.0.2"), "anna2"); r.status != http.StatusTooManyRequests {
		t.Errorf("a second name from 127.0.0.2 through nginx: status %d, want 429", r.status)
	}
	// A forged X-Forwarded-For: nginx appends the real address, which
	// is what counts.
	if r := join(from(t, base, "127.0.0.2"), "anna3", "X-Forwarded-For", "203.0.113.9"); r.status != http.StatusTooManyRequests {
		t.Errorf("a forged X-Forwarded-For through nginx: status %d, want 429", r.status)
	}
	if r := join(from(t, base, "127.0.0.3"), "bert"); r.status != http.StatusOK {
		t.Errorf("another client (127.0.0.3) through nginx: status %d, want 200 (its own budget)", r.status)
	}
	// Directly, from an address the lobby does not trust: the header is
	// ignored, and the budget is the peer's own.
	direct := from(t, srv.URL(), "127.0.0.4")
	if r := join(direct, "carl", "X-Forwarded-For", "203.0.113.10"); r.status != http.StatusOK {
		t.Fatalf("direct client: status %d", r.status)
	}
	if r := join(from(t, srv.URL(), "127.0.0.4"), "carl2", "X-Forwarded-For", "203.0.113.11"); r.status != http.StatusTooManyRequests {
		t.Errorf("a direct client claiming another address: status %d, want 429 (the header is not trusted)", r.status)
	}
}
