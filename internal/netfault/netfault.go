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
	sweepStale()
	return nil
})

// DropPort silently drops every loopback TCP packet whose source or
// destination port is port: every connection to a server on port
// vanishes. Give the server a port from internal/testport, below the
// ephemeral range: a port in that range may be, at the same moment, the
// source port of unrelated connections (Linux reuses an ephemeral port
// for connections to other destinations), and those would vanish too. To
// make one connection vanish, use [DropConn].
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
	return install(t, fmt.Sprintf("port %d", port), fmt.Sprintf(`
		iifname "lo" tcp sport %[1]d drop
		iifname "lo" tcp dport %[1]d drop`, port))
}

// DropConn silently drops every loopback TCP packet between the ports
// local and remote, both ways: the one connection between them vanishes
// (pass a client's local port and its server's port), and every other
// connection keeps working, even one that reuses either port number with
// another peer (Linux gives an ephemeral port to several connections at
// once when their peers differ, so dropping all of one ephemeral port's
// packets once made unrelated dials of other tests time out). Like
// [DropPort] it drops on arrival (input hook); the returned restore
// function deletes the rules, and is also registered with t.Cleanup.
func DropConn(t testing.TB, local, remote int) (restore func()) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
	if local <= 0 || local > 65535 || remote <= 0 || remote > 65535 {
		t.Fatalf("netfault: DropConn(%d, %d): invalid port", local, remote)
	}
	return install(t, fmt.Sprintf("connection %d-%d", local, remote), fmt.Sprintf(`
		iifname "lo" tcp sport %[1]d tcp dport %[2]d drop
		iifname "lo" tcp sport %[2]d tcp dport %[1]d drop`, local, remote))
}

// install puts rules into the input chain of a table of their own, and
// returns the function that deletes the table (idempotent, also
// registered with t.Cleanup); what names them in errors.
func install(t testing.TB, what, rules string) (restore func()) {
	t.Helper()
	name := tableName()
	// Priority -300 (raw) runs before any ordinary filter chain, so no
	// other rule can accept, answer or reject the packets first.
	ruleset := fmt.Sprintf(`table inet %s {
	chain input {
		type filter hook input priority -300; policy accept;%s
	}
}
`, name, rules)
	if err := nft(ruleset, "-f", "-"); err != nil {
		t.Fatalf("netfault: installing drop rules for %s: %v", what, err)
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			if err := nft("", "delete", "table", "inet", name); err != nil {
				t.Errorf("netfault: removing drop rules for %s: %v", what, err)
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
	return install(t, fmt.Sprintf("%v to port %d", from, port), fmt.Sprintf(`
		iifname "lo" ip saddr %[1]s tcp dport %[2]d drop
		iifname "lo" ip daddr %[1]s tcp sport %[2]d drop`, from, port))
}

// tableName returns a table name unique to this process and call.
func tableName() string {
	return fmt.Sprintf("%s%d_%d", tablePrefix, os.Getpid(), seq.Add(1))
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
