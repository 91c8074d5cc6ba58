package lobby_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/natscluster"
)

// cutter relays TCP connections to a target (a lobby node's way to NATS)
// and can cut them: while cut, every connection is closed and new ones are
// closed at once, as a node cut off from NATS sees it.
type cutter struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
}

func newCutter(t *testing.T, target string) *cutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		c.setCut(true)
		wg.Wait()
	})
	wg.Go(func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { c.relay(down) })
		}
	})
	return c
}

func (c *cutter) url() string { return "nats://" + c.ln.Addr().String() }

// track keeps conn until the cut, or closes it if the cut is on.
func (c *cutter) track(conn net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut {
		conn.Close()
		return false
	}
	c.conns[conn] = struct{}{}
	return true
}

// setCut cuts (closing every connection) or restores the way.
func (c *cutter) setCut(cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = cut
	if cut {
		for conn := range c.conns {
			conn.Close()
			delete(c.conns, conn)
		}
	}
}

func (c *cutter) relay(down net.Conn) {
	if !c.track(down) {
		return
	}
	up, err := net.Dial("tcp", c.target)
	if err != nil {
		down.Close()
		return
	}
	if !c.track(up) {
		down.Close()
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, down); done <- struct{}{} }()
	go func() { _, _ = io.Copy(down, up); done <- struct{}{} }()
	<-done
	up.Close()
	down.Close()
	<-done
}

// A page that reconnects to a node cut off from the cluster's log, from a
// position another node served it, is told to open its stream again in a
// moment (the reconnect element: nothing else, no position), rather than
// taken back to that node's older state, told lines were lost, and sent
// again, once the node catches up, the lines it had. Once the node has the
// log again, the page resumes there with nothing lost, doubled or
// declared lost.
func TestClusterResumeAheadOfCutOffNode(t *testing.T) {
	ns, err := natscluster.StartServer("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	way := newCutter(t, strings.TrimPrefix(ns.ClientURL(), "nats://"))
	opts := lobby.Options{Heartbeat: clusterHeartbeat, TTL: 10 * clusterHeartbeat, Grace: time.Minute}
	oa, ob := opts, opts
	oa.NATS, oa.NodeID = ns.ClientURL(), "a"
	ob.NATS, ob.NodeID = way.url(), "b"
	a, b := startServer(t, oa), startServer(t, ob)
	brian, phil := newBrowser(t, a), newBrowser(t, a)
	bs := brian.enter("brian")
	ps := phil.enter("phil")
	brian.say("before the cut")
	for _, s := range []*stream{bs, ps} {
		s.waitFor("<strong>brian</strong>: before the cut")
	}

	way.setCut(true)
	for i := 1; i <= 3; i++ {
		brian.say(fmt.Sprintf("line %d", i))
	}
	last := ps.idAfter("<strong>brian</strong>: line 3")
	ps.close()

	// Phil's page reconnects through b, which does not have the lines.
	told := phil.via(b).openStreamFrom(last)
	if err := told.waitEnd(waitLong + 3*time.Second); !errors.Is(err, io.EOF) {
		t.Fatalf("resuming from %s on the cut-off node: the answer did not end: %v", last, err)
	}
	if evs := told.events(); len(evs) != 1 || !strings.Contains(evs[0].Text(), `id="reconnect-`) || told.lastID() != "" {
		t.Fatalf("resuming from %s on the cut-off node: want the reconnect element alone, without an id; got:\n%s", last, told.dump())
	}

	way.setCut(false)
	// Told to reconnect until b has the log again (about AheadWait each
	// time), then served: the stream recovers (its opening ends with the
	// position signal; it holds the room's state, so no new list).
	var ps2 *stream
	ssetest.Eventually(t, 30*time.Second, "the node back on the log taking the stream", func() bool {
		s := phil.via(b).openStreamFrom(last)
		ended := func() bool {
			select {
			case <-s.Done():
				return true
			default:
				return false
			}
		}
		served := func() bool { // a position patch (count skips them)
			for _, e := range s.Events() {
				if strings.Contains(e.Text(), `"_streamPos"`) {
					return true
				}
			}
			return false
		}
		ssetest.Eventually(t, waitLong+3*time.Second, "an answer", func() bool { return served() || ended() })
		if served() {
			ps2 = s
			return true
		}
		return false
	})
	brian.say("after the cut")
	ps2.waitFor("<strong>brian</strong>: after the cut")
	for _, text := range []string{"before the cut", "line 1", "line 2", "line 3", recoveryNotice} {
		if n := ps2.count(text); n != 0 {
			t.Errorf("the resumed stream shows %q %d times, want none (the page had it):\n%s", text, n, ps2.dump())
		}
	}
}
