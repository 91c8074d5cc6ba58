package main

import (
	"net"
	"strings"
	"testing"
)

// What a new user meets first says what went wrong and what to do, in
// order, without a stuttering prefix.
func TestFirstHourMessages(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	noNATS := closed.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string // in this order
		not  []string
	}{
		{"busy port", []string{"-addr", busy.Addr().String()}, 1,
			[]string{`msg="lobby starting"`, "pid=", `msg="cannot start"`, "address already in use"},
			[]string{"lobby stopped", "lobby: lobby:"}},
		{"no NATS server", []string{"-addr", "127.0.0.1:0", "-nats", "nats://" + noNATS}, 1,
			[]string{`msg="lobby starting"`, `msg="cannot start"`, "connect to NATS at nats://" + noNATS, "nats-server -js", "-nats-embed"},
			[]string{"lobby: cluster: lobby:", "lobby stopped"}},
		{"duration without a unit", []string{"-heartbeat", "10"}, 2,
			[]string{"lobby: invalid value", "a duration needs a unit: -heartbeat 10s"},
			nil},
		{"a node without a cluster", []string{"-node", "a"}, 2,
			[]string{"lobby: -node names this node in a cluster: give -nats URL (or -nats-embed ADDR) too"},
			[]string{"lobby starting"}},
		{"a key file that is a directory", []string{"-session-key-file", t.TempDir()}, 2,
			[]string{"lobby: session key"},
			[]string{"lobby: lobby:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			if code := run(tc.args, &out); code != tc.code {
				t.Fatalf("exit code %d, want %d:\n%s", code, tc.code, out.String())
			}
			rest := out.String()
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("no %q (in order) in:\n%s", w, out.String())
				}
				rest = rest[i+len(w):]
			}
			for _, n := range tc.not {
				if strings.Contains(out.String(), n) {
					t.Errorf("%q in:\n%s", n, out.String())
				}
			}
		})
	}
}
