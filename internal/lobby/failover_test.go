package lobby_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/internal/testport"
	"github.com/sfere-go/sfere/natscluster"
)

// natsTrio is three in-process NATS servers routed into one cluster,
// each with its own store, on fixed ports so that each can be replaced
// by a fresh one at the same place.
type natsTrio struct {
	t    *testing.T
	opts [3]natscluster.ServerOptions
	bin  string // a nats-server binary: the servers are processes, killed with SIGKILL
	mu   sync.Mutex
	srv  [3]*natscluster.Server
	proc [3]*exec.Cmd
	mon  [3]string // the processes' monitoring addresses
}

// startNATSTrio starts the three servers: in this process, or as
// processes of the nats-server binary bin if it is not empty.
func startNATSTrio(t *testing.T, bin string) *natsTrio {
	t.Helper()
	n := &natsTrio{t: t, bin: bin}
	dir := t.TempDir()
	// Below the ephemeral range: a replaced server binds the same ports
	// again.
	addrs := testport.Addrs(t, 3*len(n.opts))
	var routes []string
	for i := range n.opts {
		name := "nats" + strconv.Itoa(i+1)
		n.opts[i] = natscluster.ServerOptions{Addr: addrs[3*i], Cluster: addrs[3*i+1], Name: name, StoreDir: filepath.Join(dir, name)}
		n.mon[i] = addrs[3*i+2]
		routes = append(routes, "nats://"+n.opts[i].Cluster)
	}
	for i := range n.opts {
		n.opts[i].Routes = routes
		n.start(i)
	}
	t.Cleanup(func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, s := range n.srv {
			if s != nil {
				s.Shutdown()
			}
		}
		for _, p := range n.proc {
			if p != nil {
				p.Process.Kill()
				p.Wait()
			}
		}
	})
	return n
}

func (n *natsTrio) start(i int) {
	n.t.Helper()
	if n.bin != "" {
		n.startProcess(i)
		return
	}
	s, err := natscluster.StartServerWith(n.opts[i])
	if err != nil {
		n.t.Fatal(err)
	}
	n.mu.Lock()
	n.srv[i] = s
	n.mu.Unlock()
}

func (n *natsTrio) urls() string {
	u := make([]string, len(n.opts))
	for i, o := range n.opts {
		u[i] = "nats://" + o.Addr
	}
	return strings.Join(u, ",")
}

// replace loses server i with its disk and starts a fresh one in its place.
func (n *natsTrio) replace(i int) {
	n.t.Helper()
	n.mu.Lock()
	s, p := n.srv[i], n.proc[i]
	n.srv[i], n.proc[i] = nil, nil
	n.mu.Unlock()
	if p != nil {
		p.Process.Kill()
		p.Wait()
	} else {
		s.Shutdown()
	}
	if err := os.RemoveAll(n.opts[i].StoreDir); err != nil {
		n.t.Fatal(err)
	}
	n.start(i)
}

// current reports whether server i is a current member of JetStream and
// of the replica groups of streams.
func (n *natsTrio) current(i int, streams ...string) bool {
	if n.bin != "" {
		return n.currentProcess(i, streams...)
	}
	n.mu.Lock()
	s := n.srv[i]
	n.mu.Unlock()
	if s == nil || !s.JetStreamIsCurrent() {
		return false
	}
	for _, st := range streams {
		if !s.JetStreamIsStreamCurrent("$G", st) {
			return false
		}
	}
	return true
}

var (
	natsBinOnce sync.Once
	natsBin     string
	natsBinErr  error
)

// natsServerBinary builds the nats-server command of the module the
// lobby depends on, once per test binary.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds nats-server")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build nats-server with")
	}
	natsBinOnce.Do(func() {
		// One binary per nats-server version, kept between runs in the
		// temporary directory; built beside it and renamed into place,
		// so test binaries building it at once do not collide.
		v, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/nats-io/nats-server/v2").Output()
		if err != nil {
			natsBinErr = fmt.Errorf("go list: %w", err)
			return
		}
		version := strings.TrimSpace(string(v))
		natsBin = filepath.Join(os.TempDir(), "sfere-test-nats-server-"+version)
		if _, err := os.Stat(natsBin); err == nil {
			return
		}
		tmp, err := os.MkdirTemp("", "sfere-nats-bin-")
		if err != nil {
			natsBinErr = err
			return
		}
		defer os.RemoveAll(tmp)
		out, err := exec.Command("go", "build", "-o", filepath.Join(tmp, "nats-server"), "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err == nil {
			err = os.Rename(filepath.Join(tmp, "nats-server"), natsBin)
		}
		if err != nil {
			natsBinErr, natsBin = err, string(out)
		}
	})
	if natsBinErr != nil {
		t.Fatalf("go build nats-server: %v\n%s", natsBinErr, natsBin)
	}
	return natsBin
}

// startProcess runs server i as a nats-server process and waits until it
// takes clients.
func (n *natsTrio) startProcess(i int) {
	n.t.Helper()
	o := n.opts[i]
	host, port, _ := net.SplitHostPort(o.Addr)
	_, mport, _ := net.SplitHostPort(n.mon[i])
	cmd := exec.Command(n.bin, "-a", host, "-p", port, "-n", o.Name, "-js", "-sd", o.StoreDir, "-m", mport,
		"--cluster_name", "sfere", "-cluster", "nats://"+o.Cluster, "-routes", strings.Join(o.Routes, ","))
	// The server's log goes beside its store (which a replacement
	// deletes), to be shown if it never takes clients.
	logPath := filepath.Join(filepath.Dir(o.StoreDir), o.Name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.mu.Lock()
	n.proc[i] = cmd
	n.mu.Unlock()
	const ready = 30 * time.Second
	for end := time.Now().Add(ready); ; time.Sleep(20 * time.Millisecond) {
		nc, err := nats.Connect("nats://"+o.Addr, nats.NoReconnect())
		if err == nil {
			nc.Close()
			return
		}
		if time.Now().After(end) {
			log, _ := os.ReadFile(logPath)
			n.t.Fatalf("nats-server %s takes no clients after %v: %v; its log:\n%s", o.Name, ready, err, tail(log, 4096))
		}
	}
}

// tail is the last n bytes of b.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// currentProcess is current for a server process: asked through the
// JetStream API, its replica of each stream is current and online, and
// asked the server itself (its monitoring port), its own copy holds every
// message the leader held a moment before. The leader's word alone is not
// enough: just after a kill it still reports the lost server's replica,
// under the same name, as current (one CI run took the next server down
// 83 ms after a replacement, with two of three copies then out of reach).
func (n *natsTrio) currentProcess(i int, streams ...string) bool {
	nc, err := nats.Connect(n.urls(), nats.NoReconnect())
	if err != nil {
		return false
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, name := range streams {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		if err != nil || info.Cluster == nil {
			return false
		}
		ok := info.Cluster.Leader == n.opts[i].Name
		for _, r := range info.Cluster.Replicas {
			if r.Name == n.opts[i].Name {
				ok = r.Current && !r.Offline && r.Lag == 0
			}
		}
		if !ok || n.localLastSeq(ctx, i, name) < info.State.LastSeq {
			return false
		}
	}
	return true
}

// localLastSeq is the last sequence number server process i's own copy of
// stream holds, as its monitoring endpoint reports it (0 if it has none).
func (n *natsTrio) localLastSeq(ctx context.Context, i int, stream string) uint64 {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.mon[i]+"/jsz?accounts=true&streams=true", nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var jsz server.JSInfo
	if err := json.NewDecoder(resp.Body).Decode(&jsz); err != nil {
		return 0
	}
	for _, a := range jsz.AccountDetails {
		for _, st := range a.Streams {
			if st.Name == stream {
				return st.State.LastSeq
			}
		}
	}
	return 0
}

// replicas returns the replica count of a JetStream stream.
func replicas(t *testing.T, urls, stream string) int {
	t.Helper()
	nc, err := nats.Connect(urls)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Config.Replicas
}

// postStatus posts a Datastar request and returns its status; unlike
// browser.post it may run on any goroutine.
func (b *browser) postStatus(path string, signals any) (int, error) {
	body, err := json.Marshal(signals)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequest(http.MethodPost, b.base.JoinPath(path).String(), bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Datastar-Request", "true")
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// The failover target: three NATS servers, three lobby nodes, phil, carol
// and dave on different nodes each saying 3 lines a second. Each NATS
// server in turn is lost with its disk and a fresh one takes its place;
// the next loss comes once it caught up. Every line answered 2xx reaches
// every other person exactly once, in the speaker's order; at least 90%
// are answered 2xx (the rest 503); nobody can take a present name;
// nobody is announced arriving or leaving twice; no page's stream ends.
func TestFailoverLosesNoLine(t *testing.T) {
	if testing.Short() {
		t.Skip("replaces three NATS servers")
	}
	lobbyFailover(t, startNATSTrio(t, ""))
}

// The same with NATS servers that die hard: nats-server processes killed
// with SIGKILL, their disks deleted.
func TestFailoverKilledNATSLosesNoLine(t *testing.T) {
	lobbyFailover(t, startNATSTrio(t, natsServerBinary(t)))
}

func lobbyFailover(t *testing.T, trio *natsTrio) {
	const heartbeat = time.Second
	node := func(id string) *lobby.Server {
		return startServer(t, lobby.Options{NATS: trio.urls(), NodeID: id, Heartbeat: heartbeat, TTL: 10 * heartbeat,
			NATSPublishTimeout: 3 * time.Second, MessageRate: 50, MessageBurst: 50})
	}
	nodes := []*lobby.Server{node("a"), node("b"), node("c")}
	names := []string{"phil", "carol", "dave"}
	var people []*browser
	var streams []*stream
	for i, name := range names {
		b := newBrowser(t, nodes[i])
		people = append(people, b)
		streams = append(streams, b.enter(name))
	}
	for i, s := range streams {
		for j, name := range names {
			if i != j {
				s.waitFor(`<li id="` + participantID(name) + `">`)
			}
		}
	}

	const logStream, claims = "SFERE_LOBBY_EVENTS", "KV_sfere_lobby_claims"
	for _, st := range []string{logStream, claims} {
		if r := replicas(t, trio.urls(), st); r != 3 {
			t.Fatalf("%s has %d replicas on a three-server NATS cluster, want 3", st, r)
		}
	}

	type said struct{ ok, refused, other []int }
	results := make([]said, len(names))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second / 3)
			defer tick.Stop()
			for n := 1; ; n++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				status, err := people[i].postStatus("/message", map[string]any{"message": fmt.Sprintf("line %s-%d", names[i], n)})
				switch {
				case err != nil:
					t.Errorf("%s's line %d: %v", names[i], n, err)
					results[i].other = append(results[i].other, n)
				case status/100 == 2:
					results[i].ok = append(results[i].ok, n)
				case status == http.StatusServiceUnavailable:
					results[i].refused = append(results[i].refused, n)
				default:
					t.Errorf("%s's line %d: status %d", names[i], n, status)
					results[i].other = append(results[i].other, n)
				}
			}
		}()
	}
	// Someone keeps trying the present names on every node.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			thief := newBrowser(t, nodes[k%3])
			status, err := thief.postStatus("/join", map[string]any{"username": names[(k/3)%3]})
			if err == nil && status/100 == 2 {
				t.Errorf("%s's name was given to another session on node %d", names[(k/3)%3], k%3)
			}
		}
	}()

	for i := range 3 {
		time.Sleep(2 * time.Second)
		lost := time.Now()
		trio.replace(i)
		ssetest.Eventually(t, time.Minute, fmt.Sprintf("fresh NATS server %d caught up", i+1), func() bool {
			return trio.current(i, logStream, claims)
		})
		t.Logf("NATS server %d lost with its disk; the fresh one caught up in %v", i+1, time.Since(lost).Round(time.Millisecond))
	}
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	total, ok := 0, 0
	for i, r := range results {
		total += len(r.ok) + len(r.refused) + len(r.other)
		ok += len(r.ok)
		t.Logf("%s: %d lines answered 2xx, %d refused (503)", names[i], len(r.ok), len(r.refused))
	}
	if ok*10 < total*9 {
		t.Errorf("%d of %d lines answered 2xx, want at least 90%%", ok, total)
	}
	line := regexp.MustCompile(`line ([a-z]+)-(\d+)`)
	for pi, s := range streams {
		for si, r := range results {
			if si == pi || len(r.ok) == 0 {
				continue
			}
			s.waitForWithin(fmt.Sprintf("line %s-%d<", names[si], r.ok[len(r.ok)-1]), 20*time.Second)
		}
		got := map[string][]int{}
		for _, e := range s.events() {
			for _, m := range line.FindAllStringSubmatch(e.Text(), -1) {
				n, _ := strconv.Atoi(m[2])
				got[m[1]] = append(got[m[1]], n)
			}
		}
		for si, r := range results {
			seen := map[int]int{}
			for _, n := range got[names[si]] {
				seen[n]++
			}
			for _, n := range r.ok {
				if seen[n] != 1 {
					t.Errorf("%s saw %s's line %d (answered 2xx) %d times", names[pi], names[si], n, seen[n])
				}
			}
			for _, n := range r.refused {
				if seen[n] > 1 {
					t.Errorf("%s saw %s's refused line %d %d times", names[pi], names[si], n, seen[n])
				}
			}
			seq := got[names[si]]
			for k := 1; k < len(seq); k++ {
				if seq[k] <= seq[k-1] {
					t.Errorf("%s saw %s's lines out of order: %d after %d", names[pi], names[si], seq[k], seq[k-1])
					break
				}
			}
		}
		for oi, other := range names {
			if oi == pi {
				continue
			}
			if n := s.count(leftLine(other)); n != 0 {
				t.Errorf("%s saw %s leave %d times", names[pi], other, n)
			}
			if n := s.count(joinedLine(other)); n > 1 {
				t.Errorf("%s saw %s arrive %d times", names[pi], other, n)
			}
		}
		select {
		case <-s.Done():
			t.Errorf("%s's stream ended: %v", names[pi], s.Err())
		default:
		}
	}
}

// The README's walkthrough: three lobby nodes, each embedding a NATS
// server routed to the others, need no other service, and killing one
// node (its NATS server and all) loses no line said on the others: the
// log and the claims have 3 replicas.
func TestEmbeddedClusterSurvivesLosingANode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-server NATS cluster")
	}
	var client, routes [3]string
	var all []string
	addrs := testport.Addrs(t, 6)
	for i := range 3 {
		client[i], routes[i] = addrs[2*i], addrs[2*i+1]
		all = append(all, "nats://"+routes[i])
	}
	const heartbeat = time.Second
	// The nodes start together: each waits for a majority of the NATS
	// servers before JetStream takes the log.
	nodes := make([]*lobby.Server, 3)
	errs := make(chan error, 3)
	for i, id := range []string{"a", "b", "c"} {
		go func() {
			srv, err := lobby.Start(t.Context(), lobby.Options{Addr: "127.0.0.1:0", NodeID: id, Heartbeat: heartbeat, TTL: 10 * heartbeat,
				Grace: testGrace, Resume: -1, NATSEmbed: client[i], NATSCluster: routes[i], NATSRoutes: all,
				NATSPublishTimeout: 3 * time.Second, Logger: ssetest.Logger(t, slog.LevelInfo)})
			nodes[i] = srv
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, srv := range nodes {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
		})
	}
	phil, carol := newBrowser(t, nodes[0]), newBrowser(t, nodes[1])
	ps, cs := phil.enter("phil"), carol.enter("carol")
	ds := newBrowser(t, nodes[2]).enter("dave")
	for _, s := range []*stream{ps, cs} {
		s.waitFor(joinedLine("dave"))
	}
	phil.say("before the loss")
	ds.waitFor("before the loss")

	lobby.KillForTest(nodes[2])
	for _, s := range []*stream{ps, cs} {
		s.waitForWithin(leftLine("dave"), 20*time.Second)
	}
	var ok []string
	for n := range 10 {
		text := fmt.Sprintf("after the loss %d", n)
		status, err := phil.postStatus("/message", map[string]any{"message": text})
		if err != nil {
			t.Fatal(err)
		}
		if status/100 == 2 {
			ok = append(ok, text)
		} else if status != http.StatusServiceUnavailable {
			t.Fatalf("line %d: status %d", n, status)
		}
	}
	if len(ok) < 9 {
		t.Fatalf("%d of 10 lines answered 2xx after losing a node", len(ok))
	}
	for _, text := range ok {
		cs.waitForWithin(text+"<", 20*time.Second)
		if n := cs.count(text + "<"); n != 1 {
			t.Errorf("carol saw %q %d times", text, n)
		}
	}
	// A newcomer cannot take a name still present.
	if status, err := newBrowser(t, nodes[1]).postStatus("/join", map[string]any{"username": "phil"}); err != nil || status != http.StatusConflict {
		t.Errorf("joining as phil after the loss: %d, %v; want 409", status, err)
	}
	for name, s := range map[string]*stream{"phil": ps, "carol": cs} {
		if n := s.count(leftLine("dave")); n != 1 {
			t.Errorf("%s saw dave leave %d times", name, n)
		}
	}
}
