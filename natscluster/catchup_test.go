package natscluster

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// A node whose consumer of the log is lost and cannot be made anew (as
// when a NATS server's loss leaves JetStream's meta leader unelected for
// seconds, while the log's stream still takes events and serves them)
// still delivers what the log takes: it reads the events from the stream
// itself, in order, once each. Here the stream refuses new consumers
// (MaxConsumers, filled by another) once the node's is deleted.
func TestLogAppliedWhileNoConsumerCanBeMade(t *testing.T) {
	a, c, js, st, ctx := oneEventApplied(t)
	var theirs []string
	for n := range st.ConsumerNames(ctx).Name() {
		theirs = append(theirs, n)
	}
	if len(theirs) != 1 {
		t.Fatalf("the log has consumers %q, want the node's one", theirs)
	}
	// Another consumer takes the last place, then the node's goes.
	if _, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "squatter", AckPolicy: jetstream.AckNonePolicy}); err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.MaxConsumers = 2
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteConsumer(ctx, theirs[0]); err != nil {
		t.Fatal(err)
	}
	cfg.MaxConsumers = 1
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{AckPolicy: jetstream.AckNonePolicy}); err == nil {
		t.Fatal("the stream still takes a consumer: the test cannot stop the node making one")
	}

	for n := 2; n <= 4; n++ {
		if _, err := a.node.Broadcast(sfere.All, nil, numbered(n)); err != nil {
			t.Fatal(err)
		}
	}
	c.Wait(ceiling, ssetest.Containing("<p>4</p>"))
	if got, _ := elements(c); len(got) != 4 || got[1] != "<p>2</p>" || got[2] != "<p>3</p>" {
		t.Fatalf("the stream got %q, want 1 to 4 once each, in order", got)
	}
	// The consumer is made once it can be: live delivery again.
	cfg.MaxConsumers = -1
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a consumer made anew", func() bool {
		n := 0
		for range st.ConsumerNames(ctx).Name() {
			n++
		}
		return n == 2
	})
	if _, err := a.node.Broadcast(sfere.All, nil, numbered(5)); err != nil {
		t.Fatal(err)
	}
	c.Wait(ceiling, ssetest.Containing("<p>5</p>"))
	if got, _ := elements(c); len(got) != 5 {
		t.Fatalf("the stream got %q, want 1 to 5 once each", got)
	}
}

// A node whose consumer of the log delivers nothing without failing (it
// stalls: here JetStream pauses it) still applies, soon after the log
// acknowledged them, the events it published itself: it reads them from
// the stream.
func TestPublishedEventAppliedWhileTheConsumerStalls(t *testing.T) {
	a, c, js, st, ctx := oneEventApplied(t)
	for n := range st.ConsumerNames(ctx).Name() {
		if _, err := js.PauseConsumer(ctx, st.CachedInfo().Config.Name, n, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	for n := 2; n <= 3; n++ {
		if _, err := a.node.Broadcast(sfere.All, nil, numbered(n)); err != nil {
			t.Fatal(err)
		}
	}
	c.Wait(ceiling, ssetest.Containing("<p>3</p>"))
	if got, _ := elements(c); len(got) != 3 || got[1] != "<p>2</p>" {
		t.Fatalf("the stream got %q, want 1 to 3 once each, in order", got)
	}
}

// oneEventApplied starts node a with a history and a stream c that got
// the log's first event, and gives an admin's handle on the log's stream
// (js, st), with a context for its requests that ends with the test.
func oneEventApplied(t *testing.T) (a *testNode, c *ssetest.Client, js jetstream.JetStream, st jetstream.Stream, ctx context.Context) {
	t.Helper()
	ns := startNATS(t)
	a = historyNode(t, ns, "a")
	c = a.resume(t, "")
	if _, err := a.node.Broadcast(sfere.All, nil, numbered(1)); err != nil {
		t.Fatal(err)
	}
	c.Wait(ceiling, ssetest.Containing("<p>1</p>"))
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ceiling)
	t.Cleanup(cancel)
	if st, err = js.Stream(ctx, streamName(DefaultPrefix)); err != nil {
		t.Fatal(err)
	}
	return a, c, js, st, ctx
}
