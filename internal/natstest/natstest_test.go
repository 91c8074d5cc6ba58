package natstest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sfere-go/sfere/internal/natstest"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// ceiling bounds a wait that spans a server's replacement on a loaded
// machine: generous, a test that passes waits far less.
const ceiling = time.Minute

func TestReplacedServerCatchesUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-server NATS cluster")
	}
	catchUp(t, natstest.StartCluster(t))
}

func TestReplacedProcessCatchesUp(t *testing.T) {
	catchUp(t, natstest.StartProcessCluster(t))
}

// catchUp puts a stream with a replica on each server, loses each server
// in turn with its disk, and waits for the fresh one to hold the stream
// again; a stopped server is not current until it is started again.
func catchUp(t *testing.T, c *natstest.Cluster) {
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const stream = "NATSTEST"
	// JetStream takes requests once the servers elected a meta leader;
	// one asked earlier goes unanswered, so each try has a short life.
	ssetest.Eventually(t, ceiling, "the stream created", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{"natstest.>"}, Replicas: natstest.Size})
		return err == nil
	})
	// Each message is published until acknowledged, under its own id, so
	// that a retry after a lost acknowledgement does not store it twice.
	sent := 0
	publish := func(n int) {
		t.Helper()
		for range n {
			id := fmt.Sprintf("m%d", sent)
			ssetest.Eventually(t, ceiling, "message "+id+" acknowledged", func() bool {
				ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
				defer cancel()
				_, err := js.Publish(ctx, "natstest.m", []byte(id), jetstream.WithMsgID(id))
				return err == nil
			})
			sent++
		}
	}
	publish(10)
	if got := c.Names(); len(got) != natstest.Size || got[0] == got[1] || got[1] == got[2] || got[0] == got[2] {
		t.Fatalf("server names %q, want %d distinct ones", got, natstest.Size)
	}
	for i := range natstest.Size {
		ssetest.Eventually(t, ceiling, fmt.Sprintf("server %d current", i+1), func() bool { return c.Current(i, stream) })
	}
	for i := range natstest.Size {
		c.Replace(i)
		ssetest.Eventually(t, ceiling, fmt.Sprintf("fresh server %d caught up", i+1), func() bool { return c.Current(i, stream) })
		publish(5)
	}

	c.Stop(0)
	if c.Current(0, stream) {
		t.Fatal("a stopped server reported current")
	}
	publish(5)
	c.Start(0)
	ssetest.Eventually(t, ceiling, "restarted server 1 caught up", func() bool { return c.Current(0, stream) })
	ctx, cancel := context.WithTimeout(t.Context(), ceiling)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 30 {
		t.Fatalf("the stream holds %d messages after the losses, want 30", info.State.Msgs)
	}
}
