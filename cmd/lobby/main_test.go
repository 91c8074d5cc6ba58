package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
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
	for _, flag := range []string{"-addr", "-heartbeat", "-user-timeout", "-grace", "-store", "-ttl", "-datastar-js", "-debug",
		"-max-streams-per-ip", "-message-rate", "-message-burst", "-read-header-timeout", "-body-timeout",
		"-nats", "-nats-embed", "-nats-cluster", "-nats-routes", "-nats-store", "-nats-replicas", "-node", "-tls-cert", "-tls-key", "-presence-window", "-history", "-history-age", "-session-key-file", "-resume",
		"-join-rate", "-join-burst", "-stream-rate", "-stream-burst", "-address-message-rate", "-address-message-burst", "-names-per-ip",
		"-trusted-proxies", "-member-max-age", "-history-bytes", "-page-lines", "-visible-heartbeat", "-compress"} {
		if !strings.Contains(out.String(), flag+" ") && !strings.Contains(out.String(), flag+"\n") {
			t.Errorf("-h does not list %s:\n%s", flag, out.String())
		}
	}
}

func TestFlagDefaults(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // where the session key is kept by default
	opts, err := parse(nil, new(strings.Builder))
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.SessionKey) != 32 {
		t.Fatalf("default session key of %d bytes, want 32", len(opts.SessionKey))
	}
	again, err := parse(nil, new(strings.Builder))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.SessionKey, opts.SessionKey) {
		t.Fatal("a second start made a new session key: sessions would not survive a restart")
	}
	want := lobby.Options{Addr: "127.0.0.1:8080", Heartbeat: 10 * time.Second, UserTimeout: 5 * time.Second,
		Grace: 2 * time.Second, Store: "ttl", TTL: 30 * time.Second, JoinTimeout: lobby.DefaultOptions.JoinTimeout,
		MaxStreamsPerIP: 32, MessageRate: 5, MessageBurst: 10, ReadHeaderTimeout: 10 * time.Second, BodyTimeout: 10 * time.Second,
		PresenceWindow: lobby.DefaultOptions.PresenceWindow, History: 2000, HistoryAge: 2 * time.Minute, Resume: 2 * time.Minute, SessionKey: opts.SessionKey,
		JoinRate: 1, JoinBurst: 20, StreamRate: 2, StreamBurst: 40, AddressMessageRate: 10, AddressMessageBurst: 30, NamesPerAddress: 100,
		MemberMaxAge: 24 * time.Hour, HistoryBytes: 16 << 20, PageLines: 500,
		RevocationFile: lobby.RevocationFile(lobby.DefaultSessionKeyFile())}
	if !reflect.DeepEqual(opts, want) {
		t.Errorf("defaults = %+v, want %+v", opts, want)
	}
	opts, err = parse([]string{"-addr", "127.0.0.1:0", "-heartbeat", "1s", "-user-timeout", "2s", "-grace", "200ms",
		"-store", "memory", "-ttl", "1m", "-datastar-js", "/x/datastar.js", "-debug",
		"-max-streams-per-ip", "4", "-message-rate", "0.5", "-message-burst", "3", "-read-header-timeout", "2s", "-body-timeout", "3s",
		"-tls-cert", "/x/cert.pem", "-tls-key", "/x/key.pem", "-presence-window", "80ms",
		"-history", "50", "-history-age", "30s", "-session-key-file", "", "-resume", "0",
		"-join-rate", "0.5", "-join-burst", "2", "-stream-rate", "0", "-stream-burst", "4", "-address-message-rate", "3", "-address-message-burst", "6",
		"-names-per-ip", "7", "-trusted-proxies", "127.0.0.1, 10.0.0.0/8", "-member-max-age", "1h", "-history-bytes", "1000", "-page-lines", "0", "-visible-heartbeat=false", "-compress=false"}, new(strings.Builder))
	if err != nil {
		t.Fatal(err)
	}
	want = lobby.Options{Addr: "127.0.0.1:0", Heartbeat: time.Second, UserTimeout: 2 * time.Second, Grace: 200 * time.Millisecond,
		Store: "memory", TTL: time.Minute, DatastarJS: "/x/datastar.js", Debug: true, JoinTimeout: lobby.DefaultOptions.JoinTimeout,
		MaxStreamsPerIP: 4, MessageRate: 0.5, MessageBurst: 3, ReadHeaderTimeout: 2 * time.Second, BodyTimeout: 3 * time.Second,
		TLSCert: "/x/cert.pem", TLSKey: "/x/key.pem", PresenceWindow: 80 * time.Millisecond, History: 50, HistoryAge: 30 * time.Second, Resume: -1,
		JoinRate: 0.5, JoinBurst: 2, StreamRate: -1, StreamBurst: 4, AddressMessageRate: 3, AddressMessageBurst: 6, NamesPerAddress: 7,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")},
		MemberMaxAge:   time.Hour, HistoryBytes: 1000, PageLines: -1, HiddenHeartbeat: true, NoCompression: true}
	if !reflect.DeepEqual(opts, want) {
		t.Errorf("parsed = %+v, want %+v", opts, want)
	}
	opts, err = parse([]string{"-session-key-file", "", "-nats-embed", "127.0.0.1:4222", "-nats-cluster", "127.0.0.1:6222",
		"-nats-routes", "nats://127.0.0.1:6223, nats://127.0.0.1:6224", "-nats-store", "/x/nats", "-nats-replicas", "3"}, new(strings.Builder))
	if err != nil {
		t.Fatal(err)
	}
	if opts.NATSEmbed != "127.0.0.1:4222" || opts.NATSCluster != "127.0.0.1:6222" || opts.NATSStore != "/x/nats" || opts.NATSReplicas != 3 ||
		!reflect.DeepEqual(opts.NATSRoutes, []string{"nats://127.0.0.1:6223", "nats://127.0.0.1:6224"}) {
		t.Errorf("NATS flags parsed as %+v", opts)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err = parse([]string{"-session-key-file", "", "-dashboard", "-dashboard-token-file", tokenFile}, new(strings.Builder))
	if err != nil {
		t.Fatal(err)
	}
	if !opts.Dashboard || opts.Debug || opts.DashboardToken != "0123456789abcdef0123" {
		t.Errorf("dashboard flags parsed as dashboard %v, debug %v, token %q", opts.Dashboard, opts.Debug, opts.DashboardToken)
	}
}

func TestBadFlagsRefused(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	dangling := filepath.Join(t.TempDir(), "key")
	shortToken := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(shortToken, []byte("guessable"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(t.TempDir(), "nothing", "here"), dangling); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"-store", "redis"}, {"-heartbeat", "0s"}, {"-grace", "-1s"}, {"extra"}, {"-nope"},
		{"-max-streams-per-ip", "-1"}, {"-message-rate", "-2"}, {"-message-burst", "0"}, {"-body-timeout", "0s"}, {"-read-header-timeout", "-1s"},
		{"-tls-cert", "cert.pem"}, {"-tls-key", "key.pem"}, {"-history", "-1"}, {"-history-age", "0s"}, {"-resume", "-1s"},
		{"-join-rate", "-1"}, {"-join-burst", "0"}, {"-stream-rate", "-1"}, {"-names-per-ip", "-1"}, {"-trusted-proxies", "10.0.0.0/33"},
		{"-trusted-proxies", "proxy.example"}, {"-member-max-age", "0s"}, {"-history-bytes", "-1"}, {"-page-lines", "-1"},
		{"-session-key-file", dangling},
		{"-nats-replicas", "7"}, {"-nats-replicas", "-1"}, {"-nats-cluster", "127.0.0.1:6222"}, {"-nats-embed", "127.0.0.1:4222", "-nats-routes", "nats://127.0.0.1:6223"},
		{"-node", "a"}, {"-heartbeat", "10"},
		{"-dashboard-token-file", shortToken}, {"-dashboard", "-dashboard-token-file", shortToken},
		{"-dashboard", "-dashboard-token-file", filepath.Join(t.TempDir(), "missing")},
		{"-session-key-file", t.TempDir()}} { // a directory is no key file
		var out strings.Builder
		if code := run(args, &out); code != 2 {
			t.Errorf("%q: exit code %d, want 2 (%s)", args, code, out.String())
		}
	}
}

// A limit flag of 0 turns the limit off: Options say that with a negative
// number, since their zero means "the default".
func TestZeroLimitFlagsMeanNoLimit(t *testing.T) {
	opts, err := parse([]string{"-max-streams-per-ip", "0", "-message-rate", "0"}, new(strings.Builder))
	if err != nil {
		t.Fatal(err)
	}
	if opts.MaxStreamsPerIP >= 0 || opts.MessageRate >= 0 {
		t.Errorf("-max-streams-per-ip 0 -message-rate 0 gave %d, %v; want negative (no limit)", opts.MaxStreamsPerIP, opts.MessageRate)
	}
}

// An unwritable default place for the session key does not stop the
// lobby: it runs with a key of its own, and says so.
func TestUnwritableDefaultKeyFileIsNotFatal(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sfere-lobby"), []byte("a file, not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_CACHE_HOME", dir)
	var out strings.Builder
	opts, err := parse(nil, &out)
	if err != nil {
		t.Fatalf("the default key file's trouble stopped the lobby: %v", err)
	}
	if opts.SessionKey != nil || !strings.Contains(out.String(), "sessions will not survive a restart") {
		t.Fatalf("key %x, output %q: want no key and a warning", opts.SessionKey, out.String())
	}
}

// parse is parseFlags with its warnings logged to out.
func parse(args []string, out io.Writer) (lobby.Options, error) {
	return parseFlags(args, out, slog.New(slog.NewTextHandler(out, nil)))
}

// A dangling symbolic link or a directory at the default place of the
// session key does not stop the lobby (it once recursed until the stack
// overflowed): it runs with a key of its own and says so in a structured
// log line. At a path the operator named, the same is an error.
func TestUnusableDefaultKeyFileWarns(t *testing.T) {
	for name, make := range map[string]func(path string) error{
		"dangling symlink": func(path string) error { return os.Symlink(filepath.Join(filepath.Dir(path), "gone"), path) },
		"directory":        func(path string) error { return os.Mkdir(path, 0o700) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			t.Setenv("XDG_CACHE_HOME", dir)
			if err := os.MkdirAll(filepath.Join(dir, "sfere-lobby"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := make(lobby.DefaultSessionKeyFile()); err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			opts, err := parse(nil, &out)
			if err != nil {
				t.Fatalf("the default key file's trouble stopped the lobby: %v", err)
			}
			if opts.SessionKey != nil || opts.RevocationFile != "" || !strings.Contains(out.String(), "level=WARN") ||
				!strings.Contains(out.String(), "sessions will not survive a restart") {
				t.Fatalf("key %x, revocations %q, output %q: want no key, no file and a slog warning", opts.SessionKey, opts.RevocationFile, out.String())
			}
			var named strings.Builder
			if _, err := parse([]string{"-session-key-file", lobby.DefaultSessionKeyFile() + "x"}, &named); err != nil {
				t.Fatalf("a missing key file at a named path is made: %v", err)
			}
		})
	}
}
