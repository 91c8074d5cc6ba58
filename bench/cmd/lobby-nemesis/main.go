// Command lobby-nemesis runs a fault campaign against the real lobby: it
// starts the system under test as separate processes (three NATS servers
// with JetStream, three lobby nodes and nginx in front; or one lobby node
// with -mode single), lets simulated people use it as the Datastar
// browser client does, injects random faults on a seeded schedule (the
// nemesis), and after a quiet period checks the recorded history (package
// checker): lines lost silently, doubled or out of order, announcements
// doubled, names held twice. It exits 1 on any of those, printing the seed
// to replay the run with.
//
//	cd bench && go run ./cmd/lobby-nemesis -mode single -seed 1 -duration 60s
//	cd bench && go run ./cmd/lobby-nemesis -duration 20m            # cluster, all faults
//	cd bench && go run ./cmd/lobby-nemesis -check history.jsonl     # check a kept history again
//
// It builds cmd/lobby (from the repository root) and nats-server (a tool
// of the bench module) unless -lobby and -nats-server name binaries. The
// packet faults (cut, drop) need nft and root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sfere-go/sfere/bench/internal/checker"
	"github.com/sfere-go/sfere/bench/internal/history"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// config is the campaign's flags.
type config struct {
	mode              string
	seed              int64
	duration          time.Duration
	faults            []string
	people            int
	every             time.Duration
	warmup, quiet     time.Duration
	settle            time.Duration
	findings          int
	dir, historyPath  string
	keep              bool
	ownDir            bool // -dir or -history named: never removed
	lobbyBin, natsBin string
	check             string
}

// Exit codes.
const (
	exitPass  = 0
	exitFail  = 1 // a promise broke
	exitSetup = 2 // bad flags, or the campaign could not run
)

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("lobby-nemesis", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.mode, "mode", "cluster", "cluster (3 NATS servers, 3 lobby nodes, nginx) or single (one lobby node, no NATS)")
	fs.Int64Var(&c.seed, "seed", 0, "seed of the schedule and of the people's choices (0: from the clock; printed either way)")
	fs.DurationVar(&c.duration, "duration", time.Minute, "how long the nemesis injects faults")
	faults := fs.String("faults", "", "comma-separated fault kinds: "+strings.Join(allFaults, ",")+" (default: all that apply to the mode; none: \"none\")")
	fs.IntVar(&c.people, "people", 8, "simulated people (each a browser with one or two tabs)")
	fs.DurationVar(&c.every, "every", time.Second, "interval between one person's lines")
	fs.DurationVar(&c.warmup, "warmup", 3*time.Second, "time after everyone joined before the faults start")
	fs.DurationVar(&c.quiet, "quiet", 20*time.Second, "quiet period after the faults, before the final lists are read (longer than the clients' TCP keepalive, 15 s: a page left half-open by a drop learns it from there)")
	fs.DurationVar(&c.settle, "settle", checker.DefaultSettle, "how long a page must outlive a line's answer to be owed it")
	fs.IntVar(&c.findings, "findings", 5, "examples of each kind of violation to print")
	fs.StringVar(&c.dir, "dir", "", "working directory (stores, logs, history); default: a new temp dir, removed after a passing run")
	fs.StringVar(&c.historyPath, "history", "", "where to write the history (default: DIR/history.jsonl)")
	fs.BoolVar(&c.keep, "keep", false, "keep the working directory after a passing run")
	fs.StringVar(&c.lobbyBin, "lobby", "", "lobby binary (default: built from the repository)")
	fs.StringVar(&c.natsBin, "nats-server", "", "nats-server binary (default: built from the bench module's tool)")
	fs.StringVar(&c.check, "check", "", "only check this history file and report")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if c.mode != "cluster" && c.mode != "single" {
		return c, fmt.Errorf("-mode must be cluster or single, not %q", c.mode)
	}
	valid := allFaults
	if c.mode == "single" {
		valid = singleFaults
	}
	switch *faults {
	case "":
		c.faults = valid
	case "none":
	default:
		for _, f := range strings.Split(*faults, ",") {
			if !slices.Contains(valid, f) {
				return c, fmt.Errorf("-faults: %q is not a fault of %s mode (%s)", f, c.mode, strings.Join(valid, ","))
			}
			c.faults = append(c.faults, f)
		}
	}
	switch {
	case c.duration < 0 || c.warmup < 0 || c.quiet < 0 || c.settle < 0:
		return c, errors.New("-duration, -warmup, -quiet and -settle must not be negative")
	case c.people < 2 || c.people >= thiefHost:
		return c, fmt.Errorf("-people must be 2 to %d, not %d", thiefHost-1, c.people)
	case c.every <= 0:
		return c, fmt.Errorf("-every must be positive, not %v", c.every)
	}
	c.ownDir = c.dir != "" || c.historyPath != ""
	if c.seed == 0 {
		c.seed = time.Now().UnixNano() % 1_000_000
	}
	return c, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitPass
	}
	if err != nil {
		fmt.Fprintln(stderr, "lobby-nemesis:", err)
		return exitSetup
	}
	if cfg.check != "" {
		return checkFile(cfg.check, checker.Options{Settle: cfg.settle, Findings: cfg.findings}, stdout, stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	path, err := campaign(ctx, &cfg, stdout)
	if path == "" {
		fmt.Fprintf(stderr, "lobby-nemesis: %v (seed %d)\n", err, cfg.seed)
		return exitSetup
	}
	code := checkFile(path, checker.Options{Settle: cfg.settle, Findings: cfg.findings}, stdout, stderr)
	if err != nil {
		// The history is whole up to the error: it is checked all the
		// same, and the run fails.
		fmt.Fprintf(stderr, "lobby-nemesis: %v (seed %d)\n", err, cfg.seed)
		code = max(code, exitSetup)
	}
	if code == exitPass && !cfg.keep && !cfg.ownDir {
		os.RemoveAll(cfg.dir)
	} else {
		fmt.Fprintf(stdout, "history and logs kept in %s\n", cfg.dir)
	}
	return code
}

// checkFile checks a history and prints the report.
func checkFile(path string, opts checker.Options, stdout, stderr io.Writer) int {
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintln(stderr, "lobby-nemesis:", err)
		return exitSetup
	}
	defer f.Close()
	recs, err := history.Read(f)
	if err != nil {
		fmt.Fprintln(stderr, "lobby-nemesis:", err)
		return exitSetup
	}
	r := checker.Check(recs, opts)
	if err := r.Write(stdout); err != nil {
		fmt.Fprintln(stderr, "lobby-nemesis:", err)
		return exitSetup
	}
	if r.Failed() {
		return exitFail
	}
	return exitPass
}

// campaign runs the whole campaign and returns the history's path; with
// an error too if a fault could not be carried out (a process that did
// not come back) or the campaign was stopped: the history is then
// checked all the same.
func campaign(ctx context.Context, cfg *config, stdout io.Writer) (string, error) {
	if cfg.dir == "" {
		dir, err := os.MkdirTemp("", "lobby-nemesis-")
		if err != nil {
			return "", err
		}
		cfg.dir = dir
	} else if err := os.MkdirAll(cfg.dir, 0o755); err != nil {
		return "", err
	}
	if cfg.historyPath == "" {
		cfg.historyPath = filepath.Join(cfg.dir, "history.jsonl")
	}
	fmt.Fprintf(stdout, "lobby-nemesis: %s mode, seed %d, %v of faults (%s), %d people, dir %s\n",
		cfg.mode, cfg.seed, cfg.duration, strings.Join(cfg.faults, ","), cfg.people, cfg.dir)
	fw := newFirewall()
	defer fw.close()
	for _, f := range cfg.faults {
		if packetFaults[f] {
			if err := fw.check(); err != nil {
				return "", fmt.Errorf("fault %s: %w", f, err)
			}
			break
		}
	}
	if err := buildBinaries(ctx, cfg); err != nil {
		return "", err
	}
	out, err := os.Create(cfg.historyPath)
	if err != nil {
		return "", err
	}
	defer out.Close()
	log := history.NewLog(out)
	log.Add(history.Record{Kind: history.KindMeta, Seed: cfg.seed, Settings: map[string]string{
		"mode": cfg.mode, "duration": cfg.duration.String(), "faults": strings.Join(cfg.faults, ","),
		"people": fmt.Sprint(cfg.people), "every": cfg.every.String(), "quiet": cfg.quiet.String(),
	}})

	cl, err := startCluster(ctx, clusterConfig{single: cfg.mode == "single", nodes: 3, dir: cfg.dir,
		lobbyBin: cfg.lobbyBin, natsBin: cfg.natsBin, lobbyFlags: lobbyFlags(cfg.dir)})
	if err != nil {
		return "", err
	}
	defer cl.stop()
	for _, n := range cl.nodes {
		log.Add(history.Record{Kind: history.KindNode, Target: n.name, Node: hostPort(n.port)})
	}

	rng := rand.New(rand.NewPCG(uint64(cfg.seed), 0x6c6f6262))
	people := make([]*person, cfg.people)
	byName := make(map[string]*person)
	how := defaultBehaviour
	how.every = cfg.every
	for i := range people {
		name := fmt.Sprintf("p%02d", i+1)
		ip := clientIP(i + 1)
		people[i] = newPerson(name, ip, newBrowser(name, cl.front, ip, log), rng.Uint64(), how)
		byName[name] = people[i]
	}
	pctx, stopPeople := context.WithCancel(ctx)
	defer stopPeople()
	var wg sync.WaitGroup
	for _, p := range people {
		if !p.join(pctx, time.Now().Add(joinCeiling)) {
			return "", fmt.Errorf("%s could not join within %v (see %s/lobby-*.log)", p.name, joinCeiling, cfg.dir)
		}
	}
	quiet := make(chan struct{})
	for _, p := range people {
		wg.Go(func() { p.live(pctx, quiet) })
	}
	// The schedule is drawn first, and the thief's generator from the
	// same seed: one seed, one schedule.
	schedule := plan(rng, cfg.duration, cfg.faults, cl, people)
	thiefRNG := rand.New(rand.NewPCG(rng.Uint64(), 1))
	tctx, stopThief := context.WithCancel(pctx)
	wg.Go(func() { thief(tctx, cl.front, clientIP(thiefHost), log, thiefRNG, people) })
	sleep(ctx, cfg.warmup)
	sampleAll(ctx, log, cl, history.PhaseBaseline)

	for _, f := range schedule {
		log.Add(history.Record{Kind: history.KindSchedule, Fault: f.kind, Target: f.target, Offset: f.offset, Length: f.length})
	}
	fmt.Fprintf(stdout, "nemesis: %d faults over %v\n", len(schedule), cfg.duration)
	nem := &nemesis{c: cl, people: byName, fw: fw, log: log, single: cfg.mode == "single", busy: make(map[string]bool)}
	started := time.Now()
	nemErr := nem.run(ctx, schedule)
	sleep(ctx, cfg.duration-time.Since(started)) // a schedule may end early
	stopThief()
	close(quiet)
	fmt.Fprintf(stdout, "nemesis done; quiet for %v\n", cfg.quiet)
	sleep(ctx, cfg.quiet)

	var here []string
	for _, p := range people {
		if p.finish() {
			here = append(here, p.name)
		}
	}
	log.Add(history.Record{Kind: history.KindTruth, Names: here})
	sampleAll(ctx, log, cl, history.PhaseFinal)
	stopPeople()
	wg.Wait()
	for _, p := range people {
		p.close()
	}
	if err := log.Flush(); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return cfg.historyPath, fmt.Errorf("stopped: %w", err)
	}
	return cfg.historyPath, nemErr
}

// joinCeiling bounds the wait for each person's first join.
const joinCeiling = time.Minute

// thiefHost is the thief's host number in the clients' network.
const thiefHost = 254

// clientIP is the loopback source address of client host (1-254): each
// browser has its own, so that a packet fault drops one browser alone. The
// network, 127.A.B.0/24, comes from the process id, so that campaigns
// running side by side drop only their own clients.
func clientIP(host int) net.IP {
	pid := os.Getpid()
	return net.IPv4(127, byte(2+pid%250), byte(pid/250%250), byte(host))
}

// lobbyFlags are the flags of every lobby node: a short heartbeat and
// grace (faults are found within seconds), history and the resume window
// on, one session key for all nodes, no per-address or rate limits (the
// campaign tests faults, not budgets), and nginx trusted for the clients'
// addresses.
func lobbyFlags(dir string) []string {
	return []string{"-heartbeat", "2s", "-grace", "2s", "-user-timeout", "5s", "-resume", "60s",
		"-history", "20000", "-history-age", "10m", "-max-streams-per-ip", "0", "-message-rate", "0",
		"-address-message-rate", "0", "-join-rate", "0", "-stream-rate", "0", "-names-per-ip", "0",
		"-trusted-proxies", "127.0.0.1", "-session-key-file", filepath.Join(dir, "session.key")}
}

// buildBinaries builds what -lobby and -nats-server do not name: cmd/lobby
// from the repository root (the bench module's replacement of the sfere
// module), nats-server from the bench module's tool dependency.
func buildBinaries(ctx context.Context, cfg *config) error {
	if cfg.lobbyBin == "" {
		root, err := goOutput(ctx, "", "list", "-m", "-f", "{{.Dir}}", "github.com/sfere-go/sfere")
		if err != nil {
			return fmt.Errorf("find the repository (run from bench/, or pass -lobby): %w", err)
		}
		cfg.lobbyBin = filepath.Join(cfg.dir, "lobby")
		if _, err := goOutput(ctx, root, "build", "-o", cfg.lobbyBin, "./cmd/lobby"); err != nil {
			return err
		}
	}
	if cfg.natsBin == "" && cfg.mode == "cluster" {
		cfg.natsBin = filepath.Join(cfg.dir, "nats-server")
		if _, err := goOutput(ctx, "", "build", "-o", cfg.natsBin, "github.com/nats-io/nats-server/v2"); err != nil {
			return fmt.Errorf("build nats-server (run from bench/, or pass -nats-server): %w", err)
		}
	}
	return nil
}

func goOutput(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		return "", fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}
