package natscluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sfere-go/sfere"
)

// A stream's end reaches the other nodes as a close message, not only
// through the next snapshot: with an hour between snapshots, b sees
// brian come and go.
func TestStreamEndIsAnnounced(t *testing.T) {
	ns := startNATS(t)
	a := newTestNodeWith(t, ns, "a", Options{Interval: time.Hour})
	b := newTestNodeWith(t, ns, "b", Options{Interval: time.Hour})
	brian := a.connect(t, "brian")
	waitFor(t, "b sees brian open", func() bool { return b.node.Count(sfere.All) == 1 })
	brian.Close() // the tab closes
	<-brian.Done()
	waitFor(t, "a's stream evicted", func() bool { return len(a.evictions()) == 1 })
	waitFor(t, "b sees brian closed", func() bool { return b.node.Count(sfere.All) == 0 })
	if ev := a.evictions()[0]; ev.Cause != sfere.CauseClosed || ev.Key != lobbyKey("brian") {
		t.Fatalf("a's eviction = %+v, want brian closed", ev)
	}
	if n := localStreams(a.node); n != 0 {
		t.Fatalf("a still tracks %d local streams", n)
	}
}

// The app's OnOpen runs before the node's, and a stream that ended before
// the node saw it leaves nothing behind: no local entry, no key in a
// peer's view, no Send subscription.
func TestStreamEndedInOnOpenLeavesNothing(t *testing.T) {
	ns := startNATS(t)
	var a *testNode
	a = newTestNodeWith(t, ns, "a", Options{Interval: time.Hour, Hub: sfere.HubOptions{
		OnOpen: func(s *sfere.Stream) {
			if s.Key().ID == "doomed" {
				a.hub.Store().PurgeStream(s, sfere.CauseClosed, errors.New("refused by the app"))
			}
		},
	}})
	b := newTestNodeWith(t, ns, "b", Options{Interval: time.Hour})
	doomed := a.open(t, "doomed")
	doomed.waitEnd(t)
	waitFor(t, "the doomed stream evicted", func() bool { return len(a.evictions()) == 1 })
	// brian's open follows doomed's close on a's connection, so once b
	// sees brian it has seen everything a said about doomed.
	a.connect(t, "brian")
	waitFor(t, "b sees brian", func() bool { return b.node.Count(lobbyKey("brian").Pattern()) == 1 })
	if keys := b.node.List(sfere.All); len(keys) != 1 {
		t.Fatalf("b sees %v, want brian only", keys)
	}
	if n := localStreams(a.node); n != 1 {
		t.Fatalf("a tracks %d local streams, want 1 (brian)", n)
	}
	if _, err := b.node.Send(lobbyKey("doomed"), sfere.Comment("?")); !errors.Is(err, sfere.ErrNoStream) {
		t.Fatalf("Send to the doomed key: %v, want ErrNoStream", err)
	}
}

func localStreams(n *Node) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.local)
}

// Send waits Options.SendTimeout for a node that does not answer, and
// SendContext as long as its context allows.
func TestSendTimeout(t *testing.T) {
	ns := startNATS(t)
	const timeout = 300 * time.Millisecond
	a := newTestNodeWith(t, ns, "a", Options{SendTimeout: timeout})
	// A subscriber that takes the request and never answers.
	mute, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	key := lobbyKey("mute")
	if _, err := mute.Subscribe(a.node.sendSubject(key), func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := mute.Flush(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = a.node.Send(key, sfere.Comment("hello?"))
	if took := time.Since(start); took < timeout {
		t.Fatalf("Send gave up after %v, before its timeout of %v", took, timeout)
	}
	if err == nil || errors.Is(err, sfere.ErrNoStream) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send to a mute node: %v, want a deadline error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.node.SendContext(ctx, key, sfere.Comment("hello?")); !errors.Is(err, context.Canceled) {
		t.Fatalf("SendContext with a cancelled context: %v, want context.Canceled", err)
	}
}

// Code written against sfere.Publisher runs on a hub or a cluster node.
func TestPublisherIsAHubOrANode(t *testing.T) {
	a, b, _ := threeNodes(t)
	phil := b.connect(t, "phil")
	waitFor(t, "a sees phil", func() bool { return a.node.Count(sfere.All) == 1 })
	for name, p := range map[string]sfere.Publisher{"b's hub": b.hub, "a's node": a.node} {
		if n := p.Count(sfere.All); n != 1 {
			t.Fatalf("%s counts %d streams, want 1", name, n)
		}
		if _, err := p.Send(lobbyKey("phil"), sfere.Comment("via "+name)); err != nil {
			t.Fatalf("Send via %s: %v", name, err)
		}
		phil.wait(t, ": via "+name)
	}
}
