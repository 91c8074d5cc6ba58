//go:build linux

package sfere

import (
	"net"
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
