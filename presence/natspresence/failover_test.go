package natspresence_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/internal/natstest"
	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/natscluster"
	"github.com/sfere-go/sfere/presence"
	"github.com/sfere-go/sfere/presence/natspresence"
)

// The claims bucket of the tests' nodes (natspresence's default prefix),
// and the JetStream stream that holds it.
const (
	bucket       = natscluster.DefaultPrefix + "_claims"
	bucketStream = "KV_" + bucket
	// ceiling bounds a wait that spans a NATS failover on a loaded
	// machine: generous, a test that passes waits far less.
	ceiling = time.Minute
	// failoverInterval is the nodes' Interval in the failover tests (the
	// default); their claims live as long as by default (DefaultClaimTTL).
	// At 500 ms (found lost after 1.5 s of silence), a node whose server
	// was killed was found lost three times while it reconnected, at load
	// 19 on two cores, and its people came back each time.
	failoverInterval = natscluster.DefaultInterval
)

// claimRace is two nodes claiming the same names at the same moments,
// round after round, while the test cuts NATS under them. A winner opens
// its person's stream at once, as the lobby's page does; each node also
// tries, every round, a name the other node won earlier.
type claimRace struct {
	t        *testing.T
	trio     *natstest.Cluster
	nodes    map[string]*node
	watchers map[string]*tab // a person on each node who sees everyone arrive
	admin    jetstream.JetStream

	mu      sync.Mutex
	round   int
	won     map[string]string // person -> the owner whose Claim returned nil first
	twice   []string          // "person: owner1 and owner2"
	streams map[string]*ssetest.Client
	errs    []error // streams that could not be opened
	refused int     // claims answered ErrTaken
	failed  int     // claims answered another error (NATS out of reach)
	lastErr error
	changed chan struct{} // closed and replaced after every round

	stop chan struct{}
	done sync.WaitGroup
}

func startClaimRace(t *testing.T) *claimRace {
	t.Helper()
	return startClaimRaceOn(t, natstest.StartCluster(t))
}

func startClaimRaceOn(t *testing.T, trio *natstest.Cluster) *claimRace {
	t.Helper()
	r := &claimRace{t: t, trio: trio, nodes: map[string]*node{}, watchers: map[string]*tab{},
		won: map[string]string{}, streams: map[string]*ssetest.Client{}, changed: make(chan struct{}), stop: make(chan struct{})}
	for _, id := range []string{"a", "b"} {
		r.nodes[id] = startNodeWith(t, trio.URLs(), id, 0, nodeOptions{Replicas: 3, Interval: failoverInterval})
	}
	for id, n := range r.nodes {
		if err := n.claim("watch-"+id, "w"+id); err != nil {
			t.Fatal(err)
		}
		r.watchers[id] = n.open("w" + id)
	}
	for _, w := range r.watchers {
		for id := range r.nodes {
			w.waitFor(`watch-` + id)
		}
	}
	nc, err := nats.Connect(trio.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if r.admin, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.halt()
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, c := range r.streams {
			c.Close()
		}
	})
	r.done.Go(r.run)
	return r
}

func (r *claimRace) run() {
	for round := 0; ; round++ {
		select {
		case <-r.stop:
			return
		default:
		}
		person := "p" + strconv.Itoa(round)
		var wg sync.WaitGroup
		for id, n := range r.nodes {
			wg.Go(func() { r.claim(id, n, person) })
			if earlier := r.wonByOther(id, round); earlier != "" {
				wg.Go(func() { r.claim(id, n, earlier) })
			}
		}
		wg.Wait()
		r.mu.Lock()
		r.round++
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
		select {
		case <-r.stop:
			return
		case <-time.After(interval):
		}
	}
}

// wonByOther returns a person another node's owner won, picked by round.
func (r *claimRace) wonByOther(id string, round int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var theirs []string
	for p, owner := range r.won {
		if !strings.HasPrefix(owner, id+":") {
			theirs = append(theirs, p)
		}
	}
	if len(theirs) == 0 {
		return ""
	}
	slices.Sort(theirs)
	return theirs[round%len(theirs)]
}

// claim claims person for this node's owner of it and opens its stream if
// it won.
func (r *claimRace) claim(id string, n *node, person string) {
	owner := id + ":" + person
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	_, err := n.tracker.Claim(ctx, presence.Claim{Person: person, Owner: owner})
	cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case errors.Is(err, presence.ErrTaken):
		r.refused++
		return
	case err != nil:
		r.failed++
		r.lastErr = err
		return
	}
	if prev, ok := r.won[person]; ok {
		if prev != owner {
			r.twice = append(r.twice, fmt.Sprintf("%s: %s and %s", person, prev, owner))
		}
		return
	}
	r.won[person] = owner
	c, err := ssetest.Dial(n.srv.Listener.Addr().String(), ssetest.Request{Method: http.MethodPost, Target: "/?owner=" + owner})
	if err != nil {
		r.errs = append(r.errs, err)
		return
	}
	r.streams[person] = c
}

// rounds waits until k more rounds of claims are done.
func (r *claimRace) rounds(k int) {
	r.t.Helper()
	r.mu.Lock()
	until := r.round + k
	r.mu.Unlock()
	deadline := time.After(ceiling)
	for {
		r.mu.Lock()
		at, changed := r.round, r.changed
		r.mu.Unlock()
		if at >= until {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			r.t.Fatalf("claims stuck at round %d, waiting for %d", at, until)
		}
	}
}

func (r *claimRace) halt() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.done.Wait()
}

// bucketOwner is the owner the claims bucket holds person for, as its
// key-value entry says ("" if none).
func (r *claimRace) bucketOwner(person string) string { return bucketOwner(r.admin, person) }

// bucketOwner is the owner of person's claim in the claims bucket, as
// JetStream holds it ("" if none, or out of reach).
func bucketOwner(js jetstream.JetStream, person string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return ""
	}
	e, err := kv.Get(ctx, "p."+hex.EncodeToString([]byte(person)))
	if err != nil {
		return ""
	}
	var v struct {
		Owner string `json:"owner"`
	}
	if json.Unmarshal(e.Value(), &v) != nil {
		return ""
	}
	return v.Owner
}

// check stops the race and checks what it left: no name was given to two
// owners; every winner's stream is open and its arrival reached each
// node's watcher exactly once, with no departure anywhere; both nodes
// show the same people; the bucket holds every winner's claim.
func (r *claimRace) check() {
	t := r.t
	t.Helper()
	r.halt()
	r.mu.Lock()
	won := make(map[string]string, len(r.won))
	for p, o := range r.won {
		won[p] = o
	}
	twice, errs := r.twice, r.errs
	t.Logf("%d rounds: %d names won, %d claims refused as taken, %d failed (last: %v)", r.round, len(won), r.refused, r.failed, r.lastErr)
	streams := make(map[string]*ssetest.Client, len(r.streams))
	for p, c := range r.streams {
		streams[p] = c
	}
	r.mu.Unlock()
	for _, d := range twice {
		t.Errorf("a name held twice: %s", d)
	}
	for _, err := range errs {
		t.Errorf("a winner's stream not opened: %v", err)
	}
	if len(won) < 10 {
		t.Errorf("only %d names won: the race did not go on through the cut", len(won))
	}
	for p, c := range streams {
		if resp, err := c.Head(waitLong); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("%s's stream: %v %v", p, resp, err)
		}
	}
	// Every arrival reached both watchers; then a last person, arrived
	// after everything else, marks the end of what was announced.
	for id, w := range r.watchers {
		for p := range won {
			if _, err := w.Seen(ceiling, ssetest.Containing(joined(p))); err != nil {
				t.Fatalf("watcher on %s never saw %s arrive: %v", id, p, err)
			}
		}
	}
	if err := r.nodes["a"].claim("last", "last"); err != nil {
		t.Fatal(err)
	}
	r.nodes["a"].open("last")
	for _, w := range r.watchers {
		w.waitFor(joined("last"))
	}
	want := []string{"last", "watch-a", "watch-b"}
	for p := range won {
		want = append(want, p)
	}
	slices.Sort(want)
	for id, n := range r.nodes {
		ssetest.Eventually(t, ceiling, "node "+id+" shows every winner", func() bool {
			got := strings.Split(names(n.tracker.Members()), ",")
			slices.Sort(got)
			return slices.Equal(got, want)
		})
	}
	for p, o := range won {
		ssetest.Eventually(t, ceiling, "the bucket holds "+p+"'s claim", func() bool { return r.bucketOwner(p) == o })
	}
	time.Sleep(grace + 4*interval) // negative check: what else would be announced, if anything
	for id, w := range r.watchers {
		for p := range won {
			if n := w.count(joined(p)); n != 1 {
				t.Errorf("watcher on %s saw %s arrive %d times", id, p, n)
			}
		}
		if n := w.count("data-reason"); n != 0 {
			t.Errorf("watcher on %s saw %d departures:\n%s", id, n, strings.Join(w.elements(), "\n"))
		}
		if w.isEnded() {
			t.Errorf("watcher on %s: stream ended: %v", id, w.Err())
		}
		w.replay(t, true)
	}
	for p, c := range streams {
		select {
		case <-c.Done():
			t.Errorf("%s's stream ended: %v", p, c.Err())
		default:
		}
	}
}

// Each NATS server in turn is lost with its disk and a fresh one takes
// its place, while two nodes race for the same names: no name is held
// twice and nobody is announced twice.
func TestClaimsThroughServerLoss(t *testing.T) {
	r := startClaimRace(t)
	r.rounds(5)
	for i := range 3 {
		r.trio.Replace(i)
		t.Logf("server %d replaced", i+1)
		r.rounds(5)
		ssetest.Eventually(t, ceiling, "the fresh server caught up", func() bool { return r.trio.Current(i, bucketStream) })
	}
	r.rounds(5)
	r.check()
}

// The NATS server that leads the bucket is killed (SIGKILL: no leader
// hand-over, the others elect one when they miss it) and replaced by a
// fresh one without its disk, three times, while two nodes race for the
// same names.
func TestClaimsThroughKilledLeader(t *testing.T) {
	r := startClaimRaceOn(t, natstest.StartProcessCluster(t))
	r.rounds(5)
	for range 3 {
		var leader string
		ssetest.Eventually(t, ceiling, "the bucket has a leader", func() bool {
			leader = r.bucketLeader()
			return leader != ""
		})
		i := slices.Index(r.trio.Names(), leader)
		r.trio.Replace(i)
		t.Logf("%s killed and replaced", leader)
		r.rounds(5)
		ssetest.Eventually(t, ceiling, "the fresh server caught up", func() bool { return r.trio.Current(i, bucketStream) })
	}
	r.rounds(5)
	r.check()
}

// The bucket's leader steps down, again and again, while two nodes race
// for the same names.
func TestClaimsThroughLeaderChange(t *testing.T) {
	r := startClaimRace(t)
	r.rounds(5)
	for range 3 {
		leader := r.bucketLeader()
		if _, err := r.admin.Conn().Request("$JS.API.STREAM.LEADER.STEPDOWN."+bucketStream, nil, waitLong); err != nil {
			t.Fatal(err)
		}
		ssetest.Eventually(t, ceiling, "a new leader of the bucket", func() bool {
			l := r.bucketLeader()
			return l != "" && l != leader
		})
		t.Logf("the bucket's leader moved from %s", leader)
		r.rounds(5)
	}
	r.check()
}

func (r *claimRace) bucketLeader() string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := r.admin.Stream(ctx, bucketStream)
	if err != nil {
		return ""
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil {
		return ""
	}
	return info.Cluster.Leader
}

// The bucket is lost whole (deleted) while two nodes race for the same
// names: the claims are re-asserted into a new one before anyone else
// gets them.
func TestClaimsThroughBucketLoss(t *testing.T) {
	r := startClaimRace(t)
	r.rounds(5)
	for range 2 {
		if err := r.admin.DeleteKeyValue(t.Context(), bucket); err != nil {
			t.Fatal(err)
		}
		t.Log("the bucket deleted")
		r.rounds(5)
	}
	r.check()
}

// A node cut off from NATS (its only server down) for longer than its
// claims live is lost to the others: its people depart there, and their
// names are free. A newcomer takes one through another node. When the
// cut node is back it finds the name held by another owner and gives it
// up: its person's stream ends and the name has one holder again.
func TestCutNodeGivesUpATakenName(t *testing.T) {
	trio := natstest.StartCluster(t)
	other := trio.URL(1) + "," + trio.URL(2)
	// Claims that lapse soon after the cut node is found lost.
	opts := nodeOptions{Replicas: 3, Interval: failoverInterval, ClaimTTL: 4 * failoverInterval}
	b := startNodeWith(t, other, "b", 0, opts)
	// a knows server 1 only, so that losing it cuts a off.
	nc, err := nats.Connect(trio.URL(0), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.IgnoreDiscoveredServers())
	if err != nil {
		t.Fatal(err)
	}
	a := startNodeOnConn(t, nc, "a", opts)
	if err := b.claim("watch", "w"); err != nil {
		t.Fatal(err)
	}
	watch := b.open("w")
	if err := a.claim("phil", "a:phil"); err != nil {
		t.Fatal(err)
	}
	phil := a.open("a:phil")
	watch.waitFor(joined("phil"))

	trio.Stop(0)
	watch.WaitSeen(ceiling, ssetest.Containing(left("phil", "node-lost")))
	ssetest.Eventually(t, ceiling, "phil's name free through b", func() bool { return b.claim("phil", "b:phil") == nil })
	newPhil := b.open("b:phil")

	trio.Start(0)
	ssetest.Eventually(t, ceiling, "the cut node's phil ends", phil.isEnded)
	ssetest.Eventually(t, ceiling, "a gave phil up", func() bool {
		m, ok := a.tracker.Lookup(t.Context(), "a:phil")
		return !ok || m.ID != "phil"
	})
	ssetest.Eventually(t, ceiling, "a shows b's phil", func() bool {
		_, err := a.tracker.Claim(t.Context(), presence.Claim{Person: "phil", Owner: "a:phil"})
		return errors.Is(err, presence.ErrTaken)
	})
	if newPhil.isEnded() {
		t.Errorf("the newcomer's stream ended: %v", newPhil.Err())
	}
}

// A claim life shorter than the time it takes to find a node lost is
// refused: such a node's names would be given out while it is alive.
func TestClaimTTLShorterThanLossRefused(t *testing.T) {
	ns := startNATS(t, "127.0.0.1:0")
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cnode, err := natscluster.New(nc, sfere.NewMemoryStore(sfere.MemoryOptions{}), natscluster.Options{Interval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cnode.Close()
	_, err = natspresence.New(t.Context(), cnode, room, natspresence.Options{ClaimTTL: 2 * time.Second})
	if !errors.Is(err, natspresence.ErrBadClaimTTL) {
		t.Fatalf("New with a 2 s claim life and a 1 s interval: %v, want ErrBadClaimTTL", err)
	}
}
