package main

import (
	"strings"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/lobby"
)

func TestHelpListsEveryFlag(t *testing.T) {
	var out strings.Builder
	if code := run([]string{"-h"}, &out); code != 0 {
		t.Fatalf("-h exit code %d", code)
	}
	for _, flag := range []string{"-addr", "-heartbeat", "-user-timeout", "-grace", "-store", "-ttl", "-datastar-js", "-debug"} {
		if !strings.Contains(out.String(), flag+" ") && !strings.Contains(out.String(), flag+"\n") {
			t.Errorf("-h does not list %s:\n%s", flag, out.String())
		}
	}
}

func TestFlagDefaults(t *testing.T) {
	opts, err := parseFlags(nil, new(strings.Builder))
	if err != nil {
		t.Fatal(err)
	}
	want := lobby.Options{Addr: "127.0.0.1:8080", Heartbeat: 10 * time.Second, UserTimeout: 5 * time.Second,
		Grace: 2 * time.Second, Store: "ttl", TTL: 30 * time.Second, JoinTimeout: lobby.DefaultOptions.JoinTimeout}
	if opts != want {
		t.Errorf("defaults = %+v, want %+v", opts, want)
	}
	opts, err = parseFlags([]string{"-addr", "127.0.0.1:0", "-heartbeat", "1s", "-user-timeout", "2s", "-grace", "200ms",
		"-store", "memory", "-ttl", "1m", "-datastar-js", "/x/datastar.js", "-debug"}, new(strings.Builder))
	if err != nil {
		t.Fatal(err)
	}
	want = lobby.Options{Addr: "127.0.0.1:0", Heartbeat: time.Second, UserTimeout: 2 * time.Second, Grace: 200 * time.Millisecond,
		Store: "memory", TTL: time.Minute, DatastarJS: "/x/datastar.js", Debug: true, JoinTimeout: lobby.DefaultOptions.JoinTimeout}
	if opts != want {
		t.Errorf("parsed = %+v, want %+v", opts, want)
	}
}

func TestBadFlagsRefused(t *testing.T) {
	for _, args := range [][]string{{"-store", "redis"}, {"-heartbeat", "0s"}, {"-grace", "-1s"}, {"extra"}, {"-nope"}} {
		var out strings.Builder
		if code := run(args, &out); code != 2 {
			t.Errorf("%q: exit code %d, want 2 (%s)", args, code, out.String())
		}
	}
}
