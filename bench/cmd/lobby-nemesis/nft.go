package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// ErrNoNft says packet faults cannot run: nft is missing or not permitted.
var ErrNoNft = errors.New("nftables unavailable (packet faults need nft and root)")

// firewall holds the campaign's own nftables table; each packet fault is a
// chain of its own in it, hooked on output (loopback packets pass output
// once, in both directions), added at the fault's start and deleted at
// its end. The table is deleted at exit, whatever happened.
type firewall struct {
	table string
	mu    sync.Mutex
	made  bool
}

func newFirewall() *firewall {
	return &firewall{table: fmt.Sprintf("sfere_nemesis_%d", os.Getpid())}
}

func (f *firewall) nft(script string) error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}

// check makes the table, or says why it cannot.
func (f *firewall) check() error {
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("%w: %w", ErrNoNft, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.nft("add table inet " + f.table + "\n"); err != nil {
		return fmt.Errorf("%w: %w", ErrNoNft, err)
	}
	f.made = true
	return nil
}

// block drops, until unblock(chain), every packet rules matches: rules
// are nft matches, each made a drop rule.
func (f *firewall) block(chain string, rules ...string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "add chain inet %s %s { type filter hook output priority 0; policy accept; }\n", f.table, chain)
	for _, r := range rules {
		fmt.Fprintf(&b, "add rule inet %s %s %s drop\n", f.table, chain, r)
	}
	return f.nft(b.String())
}

// unblock removes a chain block added.
func (f *firewall) unblock(chain string) error {
	return f.nft(fmt.Sprintf("flush chain inet %[1]s %[2]s\ndelete chain inet %[1]s %[2]s\n", f.table, chain))
}

// close deletes the table and everything in it.
func (f *firewall) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.made {
		return nil
	}
	f.made = false
	return f.nft("delete table inet " + f.table + "\n")
}

// portSet is an nft set of ports: { 1, 2, 3 }.
func portSet(ports []int) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = fmt.Sprint(p)
	}
	return "{ " + strings.Join(s, ", ") + " }"
}
