//go:build linux

package sfere

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestListenSetsUserTimeoutOnAcceptedSockets(t *testing.T) {
	ln, err := Listen(t.Context(), "tcp", "127.0.0.1:0", ListenOptions{UserTimeout: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.(*conn).Conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var timeout, keepalive int
	var serr error
	raw.Control(func(fd uintptr) {
		timeout, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
		if serr == nil {
			keepalive, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		}
	})
	if serr != nil {
		t.Fatal(serr)
	}
	if timeout != 1500 || keepalive != 1 {
		t.Fatalf("accepted socket: TCP_USER_TIMEOUT=%dms SO_KEEPALIVE=%d; want 1500 and 1", timeout, keepalive)
	}
}

// A Listen connection passes a file to the socket whole (ReadFrom, which
// net/http uses for files, goes through to the TCP connection's).
func TestListenConnServesFiles(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(t.Context(), "tcp", "127.0.0.1:0", ListenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, path) })}
	go srv.Serve(ln)
	defer srv.Close()
	defer http.DefaultClient.CloseIdleConnections()
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("got %d bytes (%v), want the file's %d", len(got), err, len(body))
	}
}
