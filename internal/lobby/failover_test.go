package lobby_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/natstest"
	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/internal/testport"
)

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
	lobbyFailover(t, natstest.StartCluster(t))
}

// The same with NATS servers that die hard: nats-server processes killed
// with SIGKILL, their disks deleted.
func TestFailoverKilledNATSLosesNoLine(t *testing.T) {
	lobbyFailover(t, natstest.StartProcessCluster(t))
}

func lobbyFailover(t *testing.T, trio *natstest.Cluster) {
	names := []string{"phil", "carol", "dave"}
	nodes, people, streams := startFailoverLobby(t, trio, names)
	const logStream, claims = "SFERE_LOBBY_EVENTS", "KV_sfere_lobby_claims"
	for _, st := range []string{logStream, claims} {
		if r := replicas(t, trio.URLs(), st); r != 3 {
			t.Fatalf("%s has %d replicas on a three-server NATS cluster, want 3", st, r)
		}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	results := chatThrough(t, &wg, stop, names, people)
	wg.Go(func() { stealNames(t, stop, names, nodes) })
	for i := range 3 {
		time.Sleep(2 * time.Second) // pacing: chat between two losses
		lost := time.Now()
		trio.Replace(i)
		ssetest.Eventually(t, time.Minute, fmt.Sprintf("fresh NATS server %d caught up", i+1), func() bool {
			return trio.Current(i, logStream, claims)
		})
		t.Logf("NATS server %d lost with its disk; the fresh one caught up in %v", i+1, time.Since(lost).Round(time.Millisecond))
	}
	time.Sleep(2 * time.Second) // pacing: chat after the last loss
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
	for pi, s := range streams {
		checkFailoverStream(t, names, pi, s, results)
	}
}

// startFailoverLobby starts three lobby nodes on trio and one person per
// name on each node in turn, and waits until everyone lists the others.
func startFailoverLobby(t *testing.T, trio *natstest.Cluster, names []string) (nodes []*lobby.Server, people []*browser, streams []*stream) {
	const heartbeat = time.Second
	for _, id := range []string{"a", "b", "c"} {
		nodes = append(nodes, startServer(t, lobby.Options{NATS: trio.URLs(), NodeID: id, Heartbeat: heartbeat, TTL: 10 * heartbeat,
			NATSPublishTimeout: 3 * time.Second, MessageRate: 50, MessageBurst: 50}))
	}
	for i, name := range names {
		b := newBrowser(t, nodes[i])
		// A line waits for the event log up to the publish timeout, then
		// for the publish that settles its outcome: on a busy machine the
		// answer can take longer than waitLong, and a 503 is an answer.
		b.client.Timeout = 30 * time.Second
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
	return nodes, people, streams
}

// failoverSaid is what the lobby answered to one person's numbered lines:
// 2xx, 503 (refused), anything else.
type failoverSaid struct{ ok, refused, other []int }

// chatThrough has every person post a numbered line three times a second,
// on wg, until stop is closed; the results are complete once wg is done.
func chatThrough(t *testing.T, wg *sync.WaitGroup, stop chan struct{}, names []string, people []*browser) []failoverSaid {
	results := make([]failoverSaid, len(names))
	for i := range names {
		wg.Go(func() {
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
		})
	}
	return results
}

// stealNames keeps trying the present names on every node until stop is
// closed: none may be given to another session.
func stealNames(t *testing.T, stop chan struct{}, names []string, nodes []*lobby.Server) {
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
}

// checkFailoverStream checks what person pi's stream s saw: every line
// answered 2xx once, no refused line twice, each person's lines in order,
// nobody leaving or arriving twice, and the stream still open.
func checkFailoverStream(t *testing.T, names []string, pi int, s *stream, results []failoverSaid) {
	t.Helper()
	line := regexp.MustCompile(`line ([a-z]+)-(\d+)`)
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

// The walkthrough of docs/cluster.md: three lobby nodes, each embedding a NATS
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
