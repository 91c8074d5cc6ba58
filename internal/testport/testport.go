// Package testport hands tests loopback addresses for servers that stop
// and start again at the same place (a NATS server replaced by a fresh
// one, a node restarted).
//
// An address from listening on port 0 lies in the kernel's ephemeral
// range, where any outgoing connection of any process may take it as its
// local port while the server is down; the server's restart then fails
// with "address already in use". The addresses handed out here lie below
// that range, where no connection is given a port unasked.
package testport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// low is the first port handed out: above the ports services commonly
// take, and above the spans the load tools bind their streams to by
// default (sfere-load from 12000, lobby-load from 23000, one port a
// stream: up to 6,000 streams), so a test beside a load run keeps clear.
const low = 29000

// ErrNoPort is returned when no free port below the ephemeral range was
// found.
var ErrNoPort = errors.New("testport: no free port below the ephemeral range")

// Addrs returns n distinct loopback addresses ("127.0.0.1:port") that
// were free a moment ago, below the kernel's ephemeral range. It fails
// the test if there are none.
func Addrs(t testing.TB, n int) []string {
	t.Helper()
	addrs, err := Reserve(n)
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

// Addr is Addrs for one address.
func Addr(t testing.TB) string {
	t.Helper()
	return Addrs(t, 1)[0]
}

// Reserve is Addrs for code without a testing.TB (example functions, the
// load tools): it holds every port it picks open until it has all n, so
// they differ, then releases them for the caller to take.
func Reserve(n int) ([]string, error) {
	hi := EphemeralStart()
	if hi-low < 10*n {
		return nil, fmt.Errorf("%w: %d wanted below %d", ErrNoPort, n, hi)
	}
	var (
		addrs []string
		held  []net.Listener
	)
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for tries := 0; len(addrs) < n; tries++ {
		if tries > 100*n {
			return nil, ErrNoPort
		}
		addr := "127.0.0.1:" + strconv.Itoa(low+rand.IntN(hi-low))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken
		}
		held = append(held, l)
		addrs = append(addrs, addr)
	}
	return addrs, nil
}

// EphemeralStart is the first port of the kernel's ephemeral range
// (32768, Linux's default, where the range cannot be read).
func EphemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 0 {
				return v
			}
		}
	}
	return 32768
}
