package natscluster

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/internal/natstest"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// replicatedNode starts a node with a history on the NATS cluster nc.
func replicatedNode(t *testing.T, nc *natstest.Cluster, name string, replicas int) *testNode {
	t.Helper()
	return newTestNodeOn(t, nc.URLs(), name, Options{Interval: interval, Replicas: replicas, Hub: sfere.HubOptions{
		History: sfere.HistoryOptions{Size: 4096},
	}})
}

// streamReplicas returns how many replicas the log's stream has.
func streamReplicas(t *testing.T, tn *testNode) int {
	t.Helper()
	js, err := jetstream.New(tn.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ceiling)
	defer cancel()
	s, err := js.Stream(ctx, streamName(DefaultPrefix))
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Config.Replicas
}

// On a three-server NATS cluster the log has 3 replicas by default, and a
// log made with one replica is raised to 3 by a node that wants them.
func TestLogReplicas(t *testing.T) {
	nc := natstest.StartCluster(t)
	a := replicatedNode(t, nc, "a", 1)
	if r := streamReplicas(t, a); r != 1 {
		t.Fatalf("log made with Replicas 1 has %d replicas", r)
	}
	b := replicatedNode(t, nc, "b", 0)
	if r := streamReplicas(t, b); r != AutoReplicas {
		t.Fatalf("after a node with automatic replicas joined, the log has %d replicas, want %d", r, AutoReplicas)
	}
	// One NATS server without a cluster: automatic means 1, and asking
	// for 3 is a clear error.
	lone := startNATS(t)
	if r := streamReplicas(t, historyNode(t, lone, "c")); r != 1 {
		t.Fatalf("on a lone server the log has %d replicas, want 1", r)
	}
	ncl, err := nats.Connect(lone.ClientURL(), nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer ncl.Close()
	_, err = New(ncl, sfere.NewMemoryStore(sfere.MemoryOptions{}), Options{Replicas: 3, Prefix: "other", StartTimeout: 5 * time.Second,
		Hub: sfere.HubOptions{History: sfere.HistoryOptions{Size: 8}}})
	if err == nil || !cannotPlace(errors.Unwrap(err)) && !regexp.MustCompile(`replicas`).MatchString(err.Error()) {
		t.Fatalf("3 replicas on a lone server: %v, want a refusal naming replicas", err)
	}
	if _, err := New(ncl, sfere.NewMemoryStore(sfere.MemoryOptions{}), Options{Replicas: -1}); !errors.Is(err, ErrBadReplicas) {
		t.Fatalf("Replicas -1: %v, want ErrBadReplicas", err)
	}
	// A connection that would keep a refused publish and send it later
	// is refused for a node with a history.
	buffered, err := nats.Connect(lone.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer buffered.Close()
	if _, err := New(buffered, sfere.NewMemoryStore(sfere.MemoryOptions{}), Options{Prefix: "buffered",
		Hub: sfere.HubOptions{History: sfere.HistoryOptions{Size: 8}}}); !errors.Is(err, ErrReconnectBuffer) {
		t.Fatalf("a connection with a reconnect buffer: %v, want ErrReconnectBuffer", err)
	}
}

// The failover target at the library's level: three NATS servers, a node
// on each, a stream on each node, and every node broadcasting while each
// NATS server in turn is lost with its disk and replaced by a fresh one.
// Every broadcast answered nil reaches every stream exactly once, in the
// order it was sent; a refused one reaches none more than once; the
// streams never end.
func TestFailoverLosesNoAcknowledgedBroadcast(t *testing.T) {
	if testing.Short() {
		t.Skip("replaces three NATS servers")
	}
	failover(t, natstest.StartCluster(t))
}

// The same with NATS servers that die hard: nats-server processes killed
// with SIGKILL (no leader hand-over, no goodbye), their disks deleted.
func TestFailoverKilledServersLoseNoAcknowledgedBroadcast(t *testing.T) {
	failover(t, natstest.StartProcessCluster(t))
}

// failover runs the failover target on nc.
func failover(t *testing.T, nc *natstest.Cluster) {
	nodes := []*testNode{replicatedNode(t, nc, "a", 0), replicatedNode(t, nc, "b", 0), replicatedNode(t, nc, "c", 0)}
	if r := streamReplicas(t, nodes[0]); r != 3 {
		t.Fatalf("log replicas %d, want 3", r)
	}
	var clients []*ssetest.Client
	for _, tn := range nodes {
		clients = append(clients, tn.connect(t, "reader-"+tn.name).Client)
	}
	type sent struct {
		acked, refused []int
	}
	results := make([]sent, len(nodes))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, tn := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for n := 1; ; n++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				_, err := tn.node.Broadcast(sfere.All, nil, sfere.AppendElements("#m", fmt.Sprintf("<p>%s-%d</p>", tn.name, n)))
				switch {
				case err == nil:
					results[i].acked = append(results[i].acked, n)
				case errors.Is(err, ErrNoLog):
					results[i].refused = append(results[i].refused, n)
				default:
					t.Errorf("broadcast %s-%d: %v", tn.name, n, err)
				}
			}
		}()
	}
	name := streamName(DefaultPrefix)
	for i := range 3 {
		time.Sleep(time.Second) // pacing: broadcasts between two losses
		start := time.Now()
		nc.Replace(i)
		ssetest.Eventually(t, time.Minute, fmt.Sprintf("fresh server %d caught up", i+1), func() bool { return nc.Current(i, name) })
		t.Logf("server %d lost with its disk; the fresh one caught up in %v", i+1, time.Since(start).Round(time.Millisecond))
	}
	time.Sleep(time.Second) // pacing: broadcasts after the last loss
	close(stop)
	wg.Wait()

	total, acked := 0, 0
	for i, r := range results {
		total += len(r.acked) + len(r.refused)
		acked += len(r.acked)
		t.Logf("node %s: %d broadcasts acknowledged, %d refused", nodes[i].name, len(r.acked), len(r.refused))
	}
	if total == 0 || acked*10 < total*9 {
		t.Errorf("%d of %d broadcasts acknowledged, want at least 90%%", acked, total)
	}
	line := regexp.MustCompile(`<p>([abc])-(\d+)</p>`)
	for ci, c := range clients {
		// Every acknowledged broadcast arrives: wait for each sender's last.
		for i, r := range results {
			if len(r.acked) > 0 {
				if _, err := c.Seen(ceiling, ssetest.Containing(fmt.Sprintf("<p>%s-%d</p>", nodes[i].name, r.acked[len(r.acked)-1]))); err != nil {
					t.Fatalf("stream on %s: %v", nodes[ci].name, err)
				}
			}
		}
		got := map[string][]int{}
		for _, e := range c.Events() {
			for _, d := range e.Data {
				for _, m := range line.FindAllStringSubmatch(d, -1) {
					n, _ := strconv.Atoi(m[2])
					got[m[1]] = append(got[m[1]], n)
				}
			}
		}
		for i, r := range results {
			seq := got[nodes[i].name]
			seen := map[int]int{}
			for _, n := range seq {
				seen[n]++
			}
			for _, n := range r.acked {
				if seen[n] != 1 {
					t.Errorf("stream on %s: acknowledged %s-%d arrived %d times", nodes[ci].name, nodes[i].name, n, seen[n])
				}
			}
			for _, n := range r.refused {
				if seen[n] > 1 {
					t.Errorf("stream on %s: refused %s-%d arrived %d times", nodes[ci].name, nodes[i].name, n, seen[n])
				}
				if seen[n] == 1 {
					t.Logf("stream on %s: refused %s-%d arrived all the same (its acknowledgement was lost)", nodes[ci].name, nodes[i].name, n)
				}
			}
			for k := 1; k < len(seq); k++ {
				if seq[k] <= seq[k-1] {
					t.Errorf("stream on %s: %s's broadcasts out of order: %d after %d", nodes[ci].name, nodes[i].name, seq[k], seq[k-1])
					break
				}
			}
		}
		select {
		case <-c.Done():
			t.Errorf("the stream on %s ended", nodes[ci].name)
		default:
		}
	}
	for _, tn := range nodes {
		st := tn.node.Stats()
		t.Logf("node %s: %d publishes retried, %d refused", tn.name, st.PublishRetries, st.LogRefused)
	}
}
