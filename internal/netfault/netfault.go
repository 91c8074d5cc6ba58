// Package netfault lets tests simulate a vanished TCP peer on loopback.
//
// It installs nftables rules that silently drop every TCP packet to and from
// one local port, so the connection using that port sees neither FIN nor RST:
// from the point of view of both ends the other machine simply disappeared.
// It needs Linux, the nft binary on PATH and CAP_NET_ADMIN (normally root);
// use [Available] to skip tests when those are missing.
package netfault

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// capNetAdmin is the bit number of CAP_NET_ADMIN in /proc/self/status CapEff.
const capNetAdmin = 12

// seq makes table names unique within this process.
var seq atomic.Uint64

// Available reports whether [DropPort] can work here: it returns nil if the
// process has CAP_NET_ADMIN, nft is on PATH and a throwaway nftables table can
// really be created and deleted. Otherwise the error says why, suitable for
// t.Skip. The result is computed once and cached.
func Available() error { return available() }

var available = sync.OnceValue(func() error {
	if !hasNetAdmin() {
		return errors.New("netfault: need CAP_NET_ADMIN (e.g. run as root) to install nftables rules")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("netfault: nft binary not found (apt-get install nftables): %w", err)
	}
	name := tableName()
	if err := nft("", "add", "table", "inet", name); err != nil {
		return fmt.Errorf("netfault: cannot create nftables table: %w", err)
	}
	if err := nft("", "delete", "table", "inet", name); err != nil {
		return fmt.Errorf("netfault: cannot delete nftables table %s: %w", name, err)
	}
	return nil
})

// DropPort silently drops every loopback TCP packet whose source or
// destination port is port. Pass the client's local (ephemeral) port so that
// only that one connection vanishes and the server's other connections keep
// working.
//
// Packets are dropped on arrival (input hook), never on departure: every
// loopback packet passes through input, and a drop in the output hook would
// make the sender's transmit fail locally with EPERM, which the kernel treats
// differently from loss on the wire (zero-window probing instead of
// retransmission). Dropping on input keeps the sender's view faithful: its
// segments leave, nothing comes back, and it retransmits with backoff.
//
// The rules live in their own nftables table (inet sfere_netfault_<pid>_<n>).
// The returned restore function deletes that table; it is idempotent and is
// also registered with t.Cleanup. DropPort calls t.Skip if [Available]
// reports an error, and t.Fatalf (with nft's stderr) if nft fails.
func DropPort(t testing.TB, port int) (restore func()) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
	if port <= 0 || port > 65535 {
		t.Fatalf("netfault: invalid port %d", port)
	}
	name := tableName()
	// Priority -300 (raw) runs before any ordinary filter chain, so no other
	// rule can accept, answer or reject the packets first.
	ruleset := fmt.Sprintf(`table inet %[1]s {
	chain input {
		type filter hook input priority -300; policy accept;
		iifname "lo" tcp sport %[2]d drop
		iifname "lo" tcp dport %[2]d drop
	}
}
`, name, port)
	if err := nft(ruleset, "-f", "-"); err != nil {
		t.Fatalf("netfault: installing drop rules for port %d: %v", port, err)
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			if err := nft("", "delete", "table", "inet", name); err != nil {
				t.Errorf("netfault: removing drop rules for port %d: %v", port, err)
			}
		})
	}
	t.Cleanup(restore)
	return restore
}

// DropFrom silently drops every loopback TCP packet between the local
// address from and the server port port, both ways: connections from
// from to that port, new or open, vanish (no FIN, no RST, no answer to a
// SYN), while clients that connect to the same port from another
// loopback address (say 127.0.0.2) keep working. It is the network of
// one machine going silent (a laptop lid, a train tunnel) for a server
// that other clients keep using. Like [DropPort] it drops on arrival
// (input hook); the returned restore function deletes the rules, and is
// also registered with t.Cleanup.
func DropFrom(t testing.TB, from netip.Addr, port int) (restore func()) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
	if !from.Is4() || !from.IsLoopback() || port <= 0 || port > 65535 {
		t.Fatalf("netfault: DropFrom(%v, %d): want an IPv4 loopback address and a port", from, port)
	}
	name := tableName()
	ruleset := fmt.Sprintf(`table inet %[1]s {
	chain input {
		type filter hook input priority -300; policy accept;
		iifname "lo" ip saddr %[2]s tcp dport %[3]d drop
		iifname "lo" ip daddr %[2]s tcp sport %[3]d drop
	}
}
`, name, from, port)
	if err := nft(ruleset, "-f", "-"); err != nil {
		t.Fatalf("netfault: installing drop rules for %v to port %d: %v", from, port, err)
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			if err := nft("", "delete", "table", "inet", name); err != nil {
				t.Errorf("netfault: removing drop rules for %v to port %d: %v", from, port, err)
			}
		})
	}
	t.Cleanup(restore)
	return restore
}

// tableName returns a table name unique to this process and call.
func tableName() string {
	return fmt.Sprintf("sfere_netfault_%d_%d", os.Getpid(), seq.Add(1))
}

// nft runs the nft CLI with args, feeding it stdin if non-empty. The error
// includes nft's stderr.
func nft(stdin string, args ...string) error {
	cmd := exec.Command("nft", args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// hasNetAdmin reports whether CAP_NET_ADMIN is in the process's effective
// capability set, falling back to "is root" if that cannot be read.
func hasNetAdmin() bool {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return os.Geteuid() == 0
	}
	for line := range strings.Lines(string(status)) {
		if hex, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			return err == nil && caps&(1<<capNetAdmin) != 0
		}
	}
	return os.Geteuid() == 0
}
