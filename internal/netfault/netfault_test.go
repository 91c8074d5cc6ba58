//go:build linux

package netfault

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tcpUserTimeout is TCP_USER_TIMEOUT from <linux/tcp.h>. The syscall package
// does not define it on amd64 and golang.org/x/sys is not a dependency.
const tcpUserTimeout = 18

// userTimeout is how long the server side tolerates unacknowledged data.
const userTimeout = 2 * time.Second

func TestDropConnVanishedPeer(t *testing.T) {
	skipUnlessAvailable(t)
	ln := listen(t)
	victim, victimSrv := pair(t, ln)
	other, otherSrv := pair(t, ln)
	if got := getUserTimeout(t, victimSrv); got != int(userTimeout/time.Millisecond) {
		t.Fatalf("accepted conn TCP_USER_TIMEOUT = %dms, want %v (inherited from listener)", got, userTimeout)
	}
	roundTrip(t, victim, victimSrv)
	roundTrip(t, other, otherSrv)

	DropConn(t, localPort(victim), ln.Addr().(*net.TCPAddr).Port)
	start := time.Now()

	// Write to the vanished client every 200ms until the kernel gives up.
	// Meanwhile the other client on the same listener must keep working.
	var werr error
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, werr = victimSrv.Write([]byte("x")); werr != nil {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("server write to dropped client still succeeding after %v", time.Since(start))
		}
		roundTrip(t, other, otherSrv)
		<-tick.C
	}
	elapsed := time.Since(start)
	t.Logf("server detected vanished peer after %v (TCP_USER_TIMEOUT %v): %v", elapsed.Round(time.Millisecond), userTimeout, werr)
	if !errors.Is(werr, syscall.ETIMEDOUT) {
		t.Fatalf("write error = %v, want ETIMEDOUT", werr)
	}
	if limit := userTimeout + 3*time.Second; elapsed > limit {
		t.Fatalf("detection took %v, want <= %v", elapsed, limit)
	}

	// The client saw nothing at all: no data, no FIN, no RST.
	victim.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := victim.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("dropped client Read = %d, %v; want deadline exceeded", n, err)
	}
	roundTrip(t, other, otherSrv)
}

// DropConn spares a connection that shares the dropped connection's local
// port with another peer, as Linux lets an ephemeral port serve several
// connections whose peers differ.
func TestDropConnSparesASharedPort(t *testing.T) {
	skipUnlessAvailable(t)
	ln1, ln2 := listen(t), listen(t)
	reuse := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
		})
		return errors.Join(err, serr)
	}}
	victim, err := reuse.Dial("tcp4", ln1.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	reuse.LocalAddr = victim.LocalAddr()
	sharer, err := reuse.Dial("tcp4", ln2.Addr().String())
	if err != nil {
		t.Skipf("cannot share local port %d with another peer here: %v", localPort(victim), err)
	}
	defer sharer.Close()
	victimSrv, err := ln1.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer victimSrv.Close()
	sharerSrv, err := ln2.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sharerSrv.Close()

	DropConn(t, localPort(victim), ln1.Addr().(*net.TCPAddr).Port)
	if _, err := victimSrv.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	victim.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := victim.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the dropped connection read %d, %v; want deadline exceeded", n, err)
	}
	roundTrip(t, sharer, sharerSrv) // same local port, another peer: untouched
}

func TestDropPortRestore(t *testing.T) {
	skipUnlessAvailable(t)
	ln := listen(t)
	c, s := pair(t, ln)
	roundTrip(t, c, s)

	restore := DropPort(t, localPort(c))
	name := fmt.Sprintf("sfere_netfault_%d_%d", os.Getpid(), seq.Load())
	if !tableExists(t, name) {
		t.Fatalf("table %s not listed after DropPort", name)
	}

	// While dropped, a byte written by the server does not arrive.
	if _, err := s.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read during drop = %d, %v; want deadline exceeded", n, err)
	}

	restore()
	start := time.Now()
	if tableExists(t, name) {
		t.Fatalf("table %s still listed after restore", name)
	}
	restore() // idempotent

	// The same connection heals: TCP retransmits the byte.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1)
	if _, err := io.ReadFull(c, buf); err != nil || buf[0] != 'a' {
		t.Fatalf("Read after restore = %q, %v; want \"a\"", buf, err)
	}
	t.Logf("retransmitted byte arrived %v after restore", time.Since(start).Round(time.Millisecond))
	roundTrip(t, c, s)

	// And a brand-new connection works.
	c2, s2 := pair(t, ln)
	roundTrip(t, c2, s2)
}

func skipUnlessAvailable(t *testing.T) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
}

// listen returns a loopback listener whose accepted connections inherit
// TCP_USER_TIMEOUT = userTimeout.
func listen(t *testing.T) net.Listener {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, int(userTimeout/time.Millisecond))
		})
		return errors.Join(err, serr)
	}}
	// Go listens with MPTCP by default, and an MPTCP socket rejects
	// TCP_USER_TIMEOUT with ENOPROTOOPT (Go would then quietly retry with
	// plain TCP). Ask for plain TCP explicitly.
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(t.Context(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// pair dials ln and returns the client and the accepted server side.
func pair(t *testing.T, ln net.Listener) (client, server net.Conn) {
	t.Helper()
	client, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// roundTrip sends a byte from client to server and echoes it back.
func roundTrip(t *testing.T, client, server net.Conn) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	client.SetDeadline(deadline)
	server.SetDeadline(deadline)
	defer client.SetDeadline(time.Time{})
	defer server.SetDeadline(time.Time{})
	buf := make([]byte, 1)
	if _, err := client.Write([]byte("p")); err != nil {
		t.Fatalf("round trip: client write: %v", err)
	}
	if _, err := io.ReadFull(server, buf); err != nil {
		t.Fatalf("round trip: server read: %v", err)
	}
	if _, err := server.Write(buf); err != nil {
		t.Fatalf("round trip: server write: %v", err)
	}
	if _, err := io.ReadFull(client, buf); err != nil || buf[0] != 'p' {
		t.Fatalf("round trip: client read = %q, %v", buf, err)
	}
}

func localPort(c net.Conn) int { return c.LocalAddr().(*net.TCPAddr).Port }

func getUserTimeout(t *testing.T, c net.Conn) int {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout)
	}); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

func tableExists(t *testing.T, name string) bool {
	t.Helper()
	out, err := exec.Command("nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables: %v: %s", err, out)
	}
	for line := range strings.Lines(string(out)) {
		if strings.TrimSpace(line) == "table inet "+name {
			return true
		}
	}
	return false
}

// DropFrom silences one loopback address's connections to a port, open
// and new, and leaves another address's connections to it alone.
func TestDropFromSilencesOneAddress(t *testing.T) {
	skipUnlessAvailable(t)
	ln := listen(t)
	victim, victimSrv := pair(t, ln)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	other, err := d.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	otherSrv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { otherSrv.Close() })

	restore := DropFrom(t, netip.MustParseAddr("127.0.0.1"), ln.Addr().(*net.TCPAddr).Port)
	if _, err := victimSrv.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	victim.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := victim.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read during drop = %d, %v; want deadline exceeded", n, err)
	}
	if c, err := net.DialTimeout("tcp4", ln.Addr().String(), 300*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("a new connection from the silenced address was made")
	}
	roundTrip(t, other, otherSrv) // the other address is not touched

	restore()
	victim.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1)
	if _, err := io.ReadFull(victim, buf); err != nil || buf[0] != 'a' {
		t.Fatalf("Read after restore = %q, %v; want \"a\"", buf, err)
	}
}
