// Command lobby-load drives a real lobby process (cmd/lobby) black-box over
// loopback, as people would, and measures what presence costs:
//
//   - storm: N people join at once, -conc requests in flight. Each person
//     posts /join, opens its stream (POST /sse with the session cookie) and
//     waits for its own "<name> joined the lobby" line on that stream. The
//     tool reports, per person, the time from the storm's first request
//     until its own arrival showed (p50, p90, p99, max), and the time one
//     chat line said during the storm (when -chat-at of the people are in)
//     takes to reach everyone who was present when it was said.
//   - churn: -chatters people hold streams and chat (lines stamped with
//     their send time) while -churners clients join, see their own
//     arrival, stay a moment and leave, paced at -rate cycles a second.
//     The tool reports chat delivery p50/p99/max at the chatters' streams,
//     lines missing, and the cycle rate achieved.
//   - flood: the snapshot flood of issue 17. -members people with names
//     of -name-len characters hold a stream each while one more person
//     opens and closes extra streams of its own session (-flood-conc at a
//     time, for -flood-duration), each sent the whole participant list.
//     The tool samples the lobby process's RSS (/proc/PID/status) and
//     reports its growth over the RSS with everyone present (target: at
//     most -history-bytes + 10 MiB), then has everyone leave and reports
//     when the RSS is back within 10 MiB of that (target: within
//     -history-age, which the tool passes to the lobby with
//     -history-bytes). It needs a lobby the tool starts.
//   - reconnect: N people (default 5,000) join and hold a stream each while
//     -speakers of them chat (-chat-rate lines a second in all, numbered,
//     each speaker's in order). Then every stream's connection is reset
//     at once from the client side (a network break), and each reconnects
//     as the page's Datastar client does: after the retry the lobby sent
//     it, with Last-Event-ID set to the last id it read. The tool reports
//     the time until every stream is live again (it delivered a line said
//     after its reconnect request), per-stream resume p50/p99, the lobby's
//     CPU time, and checks every line of the window on every stream:
//     exactly once, in order, no "could not be recovered", no "left the
//     lobby". With -contrast (default) it breaks every stream again and
//     reconnects without Last-Event-ID, and reports the lines lost.
//
// By default the tool builds (or finds) the lobby binary and starts a fresh
// lobby process for every trial, on 127.0.0.1 with the per-address limits off
// (-max-streams-per-ip, -join-rate, -stream-rate, -address-message-rate and
// -names-per-ip 0: every client shares one address) and
// otherwise default flags, so client and server are two processes (the
// machine's 20,000 open files per process cannot hold both ends of 5,000
// streams plus requests in one). With -url it drives a lobby you started
// yourself (loopback only; one trial per start, since people stay in it).
//
//	go build -o bin/ ./cmd/lobby-load github.com/sfere-go/sfere/cmd/lobby
//	bin/lobby-load -scenario storm -n 1000,5000 -json storm.json
//	bin/lobby-load -scenario churn -json churn.json
//	bin/lobby-load -scenario reconnect -n 5000 -json reconnect.json
//	bin/lobby-load -scenario flood -json flood.json
//
// Every phase is bounded in time and the tool stops by itself.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sfere-go/sfere/bench/internal/host"
)

// Results is the JSON file the tool writes.
type Results struct {
	Started time.Time     `json:"started"`
	Machine host.Machine  `json:"machine"`
	Args    []string      `json:"args"`
	Lobby   string        `json:"lobby"` // the binary, or the URL of a lobby started by the user
	Storms  []StormResult `json:"storms,omitempty"`
	Churns  []ChurnResult `json:"churns,omitempty"`
	// Reconnects are the reconnect trials.
	Reconnects []ReconnectResult `json:"reconnects,omitempty"`
	// Floods are the snapshot floods.
	Floods []FloodResult `json:"floods,omitempty"`
}

type config struct {
	conc     int
	srcPort  int
	timeout  time.Duration
	progress bool

	chatAt float64 // storm: fraction of people in before the chat line

	churners, chatters int
	rate               float64 // churn cycles a second, offered
	chatRate           float64 // chat lines a second, all chatters together
	warmup, duration   time.Duration
	hold               [2]time.Duration

	speakers      int           // reconnect: people who chat
	pre, post     time.Duration // reconnect: chat before a break, and after everyone resumed
	resumeTimeout time.Duration // reconnect: give up on streams not resumed after this long
	contrast      bool          // reconnect: break again without positions
	positions     bool          // reconnect: false: only the storm without positions
}

func main() {
	var (
		scenario   = flag.String("scenario", "storm,churn", "scenarios to run: storm, churn, reconnect, flood (comma separated)")
		nFlag      = flag.String("n", "1000,5000", "storm and reconnect: people (a list runs each; reconnect's default is 5000)")
		conc       = flag.Int("conc", 64, "requests in flight while people join")
		chatAt     = flag.Float64("chat-at", 0.5, "storm: say the chat line once this fraction of the people have seen their own arrival")
		churners   = flag.Int("churners", 1000, "churn: clients that join and leave in a loop")
		chatters   = flag.Int("chatters", 100, "churn: people who stay and chat; chat delivery is measured at their streams")
		rate       = flag.Float64("rate", 200, "churn: join+leave cycles a second, offered")
		chatRate   = flag.Float64("chat-rate", 20, "churn and reconnect: chat lines a second, all chatters (speakers) together (each in turn; the lobby allows 5 a second per session by default)")
		speakers   = flag.Int("speakers", 5, "reconnect: people (of the N) who chat throughout, each its own numbered lines in order")
		pre        = flag.Duration("pre", 2*time.Second, "reconnect: chat this long before each break")
		post       = flag.Duration("post", 2*time.Second, "reconnect: chat this long after every stream resumed before the window closes")
		resumeTO   = flag.Duration("resume-timeout", time.Minute, "reconnect: give up on streams not resumed this long after the break")
		contrast   = flag.Bool("contrast", true, "reconnect: after the storm with positions, break every stream again and reconnect without Last-Event-ID (what is lost without positions)")
		positions  = flag.Bool("positions", true, "reconnect: reconnect with Last-Event-ID (false: run only the storm without, as a trial of its own)")
		warmup     = flag.Duration("warmup", 5*time.Second, "churn: churn and chat this long before measuring")
		duration   = flag.Duration("duration", 30*time.Second, "churn: measured time")
		holdFlag   = flag.String("hold", "1s,3s", "churn: a churner stays this long after seeing its arrival (uniform in min,max) before it leaves")
		srcPort    = flag.Int("src-port", 23000, "bind long-lived stream i (storm people, chatters) to local port src-port+i, below the ephemeral range (0: kernel's choice)")
		timeout    = flag.Duration("timeout", 5*time.Minute, "storm: give up on people not in after this long")
		lobbyBin   = flag.String("lobby", "", "lobby binary (default: next to this tool, on PATH as lobby, or go build of github.com/sfere-go/sfere/cmd/lobby)")
		lobbyArgs  = flag.String("lobby-args", "", "extra lobby flags, space separated")
		lobbyURL   = flag.String("url", "", "drive this running lobby (loopback only) instead of starting one per trial")
		jsonOut    = flag.String("json", "lobby-load.json", "results file")
		quiet      = flag.Bool("quiet", false, "no progress lines")
		maxTime    = flag.Duration("max-time", time.Hour, "exit after this long, whatever happens")
		members    = flag.Int("members", 150, "flood: people present, each holding a stream")
		nameLen    = flag.Int("name-len", 32, "flood: the length of their names (the lobby allows 32)")
		floodConc  = flag.Int("flood-conc", 4, "flood: extra streams the flooder opens at a time")
		floodDur   = flag.Duration("flood-duration", 30*time.Second, "flood: how long the flooder opens streams")
		histBytes  = flag.Int64("history-bytes", 16<<20, "flood: the lobby's -history-bytes (passed to it)")
		histAge    = flag.Duration("history-age", 2*time.Minute, "flood: the lobby's -history-age (passed to it)")
		scenarios  = map[string]bool{}
		stormSizes []int
	)
	flag.Parse()
	for _, s := range strings.Split(*scenario, ",") {
		s = strings.TrimSpace(s)
		if s != "storm" && s != "churn" && s != "reconnect" && s != "flood" {
			fatalf("unknown scenario %q (want storm, churn, reconnect or flood)", s)
		}
		scenarios[s] = true
	}
	nSet := false
	flag.Visit(func(f *flag.Flag) { nSet = nSet || f.Name == "n" })
	if !nSet {
		*nFlag = "1000,5000"
		if scenarios["reconnect"] && !scenarios["storm"] {
			*nFlag = "5000"
		}
	}
	for _, s := range strings.Split(*nFlag, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || v < 1 {
			fatalf("bad -n %q", s)
		}
		stormSizes = append(stormSizes, v)
	}
	lo, hi, ok := strings.Cut(*holdFlag, ",")
	minHold, err1 := time.ParseDuration(strings.TrimSpace(lo))
	maxHold, err2 := time.ParseDuration(strings.TrimSpace(hi))
	if !ok || err1 != nil || err2 != nil || minHold < 0 || maxHold < minHold {
		fatalf("bad -hold %q (want min,max, e.g. 1s,3s)", *holdFlag)
	}
	switch {
	case *conc < 1:
		fatalf("-conc must be at least 1")
	case *chatAt <= 0 || *chatAt > 1:
		fatalf("-chat-at must be in (0, 1]")
	case scenarios["churn"] && (*churners < 1 || *chatters < 2 || *rate <= 0 || *chatRate <= 0 || *duration <= 0):
		fatalf("churn needs -churners >= 1, -chatters >= 2, and positive -rate, -chat-rate and -duration")
	case scenarios["flood"] && (*members < 1 || *nameLen < 12 || *nameLen > 32 || *floodConc < 1 || *floodDur <= 0 || *histBytes < 0 || *histAge <= 0):
		fatalf("flood needs -members >= 1, -name-len in 12..32, -flood-conc >= 1, a positive -flood-duration and -history-age, and -history-bytes >= 0")
	case scenarios["flood"] && *lobbyURL != "":
		fatalf("flood measures the lobby process's memory: it starts its own lobby (no -url)")
	case scenarios["reconnect"] && (*speakers < 1 || *chatRate <= 0 || *pre < 0 || *post < 0 || *resumeTO <= 0):
		fatalf("reconnect needs -speakers >= 1, a positive -chat-rate and -resume-timeout, and -pre, -post >= 0")
	}
	long := 0 // the most long-lived streams one trial binds ports for
	if scenarios["churn"] {
		long = *chatters
	}
	if scenarios["storm"] || scenarios["reconnect"] {
		long = max(long, slices.Max(stormSizes))
	}
	if *srcPort > 0 && *srcPort+long > 32768 {
		fatalf("-src-port %d + %d streams passes 32768, into the ephemeral range", *srcPort, long)
	}
	if *lobbyURL != "" {
		if err := checkLoopback(*lobbyURL); err != nil {
			fatalf("%v", err)
		}
		if len(stormSizes)*(boolInt(scenarios["storm"])+boolInt(scenarios["reconnect"]))+boolInt(scenarios["churn"]) > 1 {
			fatalf("-url drives one lobby, which keeps its people between trials: run one trial (one -n, one scenario) per lobby start")
		}
	}
	time.AfterFunc(*maxTime, func() { fatalf("still running after -max-time %v; giving up", *maxTime) })

	cur, hard, err := host.RaiseFileLimit()
	if err != nil {
		logf("cannot raise the open-file limit: %v", err)
	}
	logf("open-file limit: %d (hard %d)", cur, hard)
	cfg := config{
		conc: *conc, srcPort: *srcPort, timeout: *timeout, progress: !*quiet, chatAt: *chatAt,
		churners: *churners, chatters: *chatters, rate: *rate, chatRate: *chatRate,
		warmup: *warmup, duration: *duration, hold: [2]time.Duration{minHold, maxHold},
		speakers: *speakers, pre: *pre, post: *post, resumeTimeout: *resumeTO, contrast: *contrast, positions: *positions,
	}

	res := Results{Started: time.Now().UTC(), Machine: host.Describe(), Args: os.Args[1:]}
	flood := floodConfig{members: *members, nameLen: *nameLen, conc: *floodConc, duration: *floodDur, historyBytes: *histBytes, historyAge: *histAge}
	var starter, floodStarter func() (*lobbyProc, error)
	if *lobbyURL != "" {
		res.Lobby = *lobbyURL
		starter = func() (*lobbyProc, error) { return &lobbyProc{url: strings.TrimRight(*lobbyURL, "/")}, nil }
	} else {
		bin, err := findLobby(*lobbyBin)
		if err != nil {
			fatalf("%v", err)
		}
		res.Lobby = bin
		args := append([]string{"-addr", "127.0.0.1:0", "-max-streams-per-ip", "0", "-join-rate", "0", "-stream-rate", "0", "-address-message-rate", "0", "-names-per-ip", "0"}, strings.Fields(*lobbyArgs)...)
		starter = func() (*lobbyProc, error) { return startLobby(bin, args) }
		floodStarter = func() (*lobbyProc, error) { return startLobby(bin, append(slices.Clip(args), flood.lobbyArgs()...)) }
	}
	failed := false
	if scenarios["storm"] {
		for _, n := range stormSizes {
			logf("storm: %d people, %d requests in flight", n, cfg.conc)
			r := runTrial(starter, func(l *lobbyProc) StormResult { return runStorm(cfg, l, n) })
			res.Storms = append(res.Storms, r)
			failed = failed || len(r.Errors) > 0
			printStorm(r)
			writeJSON(*jsonOut, &res)
		}
	}
	if scenarios["churn"] {
		logf("churn: %d churners at %.0f cycles/s, %d chatters saying %.0f lines/s, %v warm-up, %v measured",
			cfg.churners, cfg.rate, cfg.chatters, cfg.chatRate, cfg.warmup, cfg.duration)
		r := runTrial(starter, func(l *lobbyProc) ChurnResult { return runChurn(cfg, l) })
		res.Churns = append(res.Churns, r)
		failed = failed || len(r.Errors) > 0
		printChurn(r)
		writeJSON(*jsonOut, &res)
	}
	if scenarios["reconnect"] {
		for _, n := range stormSizes {
			logf("reconnect: %d people, %d speakers at %.0f lines/s", n, cfg.speakers, cfg.chatRate)
			r := runTrial(starter, func(l *lobbyProc) ReconnectResult { return runReconnect(cfg, l, n) })
			res.Reconnects = append(res.Reconnects, r)
			failed = failed || len(r.Errors) > 0
			for _, b := range r.Breaks {
				failed = failed || len(b.Errors) > 0
			}
			printReconnect(r)
			writeJSON(*jsonOut, &res)
		}
	}
	if scenarios["flood"] {
		logf("flood: %d members, the flooder %d streams at a time for %v; history %d bytes, %v",
			flood.members, flood.conc, flood.duration, flood.historyBytes, flood.historyAge)
		r := runTrial(floodStarter, func(l *lobbyProc) FloodResult { return runFlood(cfg, flood, l) })
		res.Floods = append(res.Floods, r)
		failed = failed || len(r.Errors) > 0
		printFlood(r)
		writeJSON(*jsonOut, &res)
	}
	logf("results: %s", *jsonOut)
	if failed {
		os.Exit(1)
	}
}

// runTrial starts a lobby, runs one scenario against it and stops it.
func runTrial[T any](start func() (*lobbyProc, error), run func(*lobbyProc) T) T {
	l, err := start()
	if err != nil {
		fatalf("start the lobby: %v", err)
	}
	defer l.stop()
	return run(l)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// checkLoopback refuses a lobby URL whose host is not a loopback address.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("-url %q: want http://127.0.0.1:PORT", raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-url %q: the load tool only talks to loopback addresses", raw)
	}
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s lobby-load: "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "lobby-load: "+format+"\n", args...)
	os.Exit(2)
}

func writeJSON(path string, v any) {
	if path == "" {
		return
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		logf("json: %v", err)
		return
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		logf("json: %v", err)
	}
}
