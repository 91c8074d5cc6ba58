package testport_test

import (
	"net"
	"strconv"
	"testing"

	"github.com/sfere-go/sfere/internal/testport"
)

// The addresses differ, lie below the ephemeral range, and can be
// listened on.
func TestAddrsAreFreeDistinctAndBelowTheEphemeralRange(t *testing.T) {
	addrs := testport.Addrs(t, 20)
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Fatalf("%s handed out twice", a)
		}
		seen[a] = true
		_, p, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		port, _ := strconv.Atoi(p)
		if port >= testport.EphemeralStart() || port < 29000 {
			t.Errorf("port %d outside [29000, %d)", port, testport.EphemeralStart())
		}
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("listen on %s: %v", a, err)
		}
		l.Close()
	}
}
