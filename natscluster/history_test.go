package natscluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/internal/netfault"
	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/internal/testport"
)

// historyNode starts a node whose hub keeps the cluster's history.
func historyNode(t *testing.T, ns *Server, name string) *testNode {
	t.Helper()
	return newTestNodeWith(t, ns, name, Options{Interval: interval, Hub: sfere.HubOptions{
		History: sfere.HistoryOptions{Size: 64},
	}})
}

// resume opens brian's stream on tn from the position from (none if empty).
func (tn *testNode) resume(t *testing.T, from string) *ssetest.Client {
	t.Helper()
	target := "/?id=brian"
	if from != "" {
		target += "&lastEventID=" + url.QueryEscape(from)
	}
	c := ssetest.Open(t, tn.srv.Listener.Addr().String(), ssetest.DatastarPost(target, "{}"))
	waitFor(t, "brian's stream", func() bool { return tn.hub.Count(lobbyKey("brian").Pattern()) == 1 })
	return c
}

// elements returns the elements c was sent, with the id of the last
// event that carried one.
func elements(c *ssetest.Client) (got []string, lastID string) {
	for _, e := range c.Events() {
		for _, d := range e.Data {
			if p, ok := strings.CutPrefix(d, "elements "); ok {
				got = append(got, p)
			}
		}
		if e.HasID {
			lastID = e.ID
		}
	}
	return got, lastID
}

func numbered(n int) sfere.Effect { return sfere.AppendElements("#m", fmt.Sprintf("<p>%d</p>", n)) }

// A client that reconnects to another node resumes there: positions are
// the log's, valid on every node, and the missed broadcasts and sends
// come exactly once, in order.
func TestResumeOnAnotherNode(t *testing.T) {
	ns := startNATS(t)
	a, b, c := historyNode(t, ns, "a"), historyNode(t, ns, "b"), historyNode(t, ns, "c")
	first := a.resume(t, "")
	waitFor(t, "every node sees brian", func() bool { return b.node.Count(sfere.All) == 1 && c.node.Count(sfere.All) == 1 })
	for n := 1; n <= 2; n++ {
		if _, err := c.node.Broadcast(sfere.All, nil, numbered(n)); err != nil {
			t.Fatal(err)
		}
	}
	first.Wait(ceiling, ssetest.Containing("<p>2</p>"))
	first.Close()
	<-first.Done()
	waitFor(t, "brian gone everywhere", func() bool { return c.node.Count(sfere.All) == 0 })
	got, lastID := elements(first)
	if strings.Join(got, " ") != "<p>1</p> <p>2</p>" {
		t.Fatalf("first connection got %q", got)
	}
	// Missed: two broadcasts from b and a send to brian's key.
	b.node.Broadcast(sfere.All, nil, numbered(3))
	b.node.Broadcast(sfere.All, sfere.Keys(lobbyKey("brian")), numbered(99))
	if _, err := a.node.Send(lobbyKey("brian"), numbered(4)); !errors.Is(err, sfere.ErrNoStream) {
		t.Fatalf("send while brian is away: %v, want ErrNoStream (kept in the log all the same)", err)
	}
	b.node.Broadcast(sfere.All, nil, numbered(5))
	waitFor(t, "c applied the log", func() bool { return c.hub.Position().Offset == b.hub.Position().Offset && b.hub.Position().Offset >= 6 })
	second := c.resume(t, lastID)
	c.node.Broadcast(sfere.All, nil, numbered(6))
	second.Wait(ceiling, ssetest.Containing("<p>6</p>"))
	got, _ = elements(second)
	if strings.Join(got, " ") != "<p>3</p> <p>4</p> <p>5</p> <p>6</p>" {
		t.Fatalf("resumed on another node, got %q, want 3 4 5 then live 6", got)
	}
	s, _ := c.hub.Store().Get(lobbyKey("brian"))
	if rec := s.Recovery(); !rec.Recovered || rec.Replayed != 3 {
		t.Fatalf("recovery = %+v", rec)
	}
	waitFor(t, "every node at the same position", func() bool {
		return a.hub.Position() == c.hub.Position() && b.hub.Position() == c.hub.Position()
	})
}

// A message of several events carries a position on each of them, the
// same on every node (each renders the log's event alike): a client cut
// after the first event of a three-event message resumes on another node
// with only the two it had not read.
func TestCutInsideAMessageResumesOnAnotherNode(t *testing.T) {
	ns := startNATS(t)
	a, b := historyNode(t, ns, "a"), historyNode(t, ns, "b")
	first := a.resume(t, "")
	waitFor(t, "b sees brian", func() bool { return b.node.Count(sfere.All) == 1 })
	if _, err := b.node.Broadcast(sfere.All, nil, numbered(1), numbered(2), numbered(3)); err != nil {
		t.Fatal(err)
	}
	first.Wait(ceiling, ssetest.Containing("<p>3</p>"))
	var ids []string
	for _, e := range first.Events() {
		if e.HasID {
			ids = append(ids, e.ID)
		}
	}
	if len(ids) != 3 {
		t.Fatalf("ids of a three-event message: %q, want one per event", ids)
	}
	// The connection breaks after the first event: the client resumes
	// from the id of the last event it read.
	first.Close()
	<-first.Done()
	waitFor(t, "brian gone everywhere", func() bool { return b.node.Count(sfere.All) == 0 })
	waitFor(t, "b applied the log", func() bool { return b.hub.Position() == a.hub.Position() && b.hub.Position().Offset >= 1 })
	second := b.resume(t, ids[0])
	b.node.Broadcast(sfere.All, nil, numbered(4))
	second.Wait(ceiling, ssetest.Containing("<p>4</p>"))
	if got, _ := elements(second); strings.Join(got, " ") != "<p>2</p> <p>3</p> <p>4</p>" {
		t.Fatalf("resumed on another node after the first event, got %q, want 2 3 then live 4", got)
	}
	s, _ := b.hub.Store().Get(lobbyKey("brian"))
	if rec := s.Recovery(); !rec.Recovered || rec.Replayed != 1 {
		t.Fatalf("recovery = %+v, want the rest of the message replayed", rec)
	}
}

// When JetStream loses the log (a NATS server without storage restarted),
// the log is made anew in a new epoch: positions of the old one are not
// recovered (the client gets the full state), and new events flow.
func TestResumeAfterJetStreamRestart(t *testing.T) {
	ns := startNATS(t)
	addr := ns.Addr().String()
	a, b := historyNode(t, ns, "a"), historyNode(t, ns, "b")
	first := a.resume(t, "")
	waitFor(t, "b sees brian", func() bool { return b.node.Count(sfere.All) == 1 })
	b.node.Broadcast(sfere.All, nil, numbered(1))
	first.Wait(ceiling, ssetest.Containing("<p>1</p>"))
	_, lastID := elements(first)
	old := a.hub.Position().Epoch
	ns.Shutdown()
	ns2, err := StartServer(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns2.Shutdown)
	waitFor(t, "both nodes on the new log", func() bool {
		return a.node.events.currentEpoch() != old && b.node.events.currentEpoch() == a.node.events.currentEpoch()
	})
	first.Close()
	<-first.Done()
	second := b.resume(t, lastID)
	second.Wait(ceiling, ssetest.Containing("hello b"))
	s, _ := b.hub.Store().Get(lobbyKey("brian"))
	if rec := s.Recovery(); rec.Recovered || !errors.Is(rec.Err, sfere.ErrPositionUnknown) {
		t.Fatalf("recovery across a lost log = %+v, want ErrPositionUnknown", rec)
	}
	if _, err := a.node.Broadcast(sfere.All, nil, numbered(2)); err != nil {
		t.Fatal(err)
	}
	e := second.Wait(ceiling, ssetest.Containing("<p>2</p>"))
	if !strings.HasPrefix(e.ID, a.node.events.currentEpoch()+"-") {
		t.Fatalf("event id %q, want the new epoch %q", e.ID, a.node.events.currentEpoch())
	}
}

// While the log is out of reach, a broadcast is refused and delivered
// nowhere, not even on its own node: a line reaches every node or none.
func TestBroadcastWithoutTheLogGoesNowhere(t *testing.T) {
	ns := startNATS(t)
	addr := ns.Addr().String()
	a := newTestNodeWith(t, ns, "a", Options{Interval: interval, PublishTimeout: 500 * time.Millisecond, Hub: sfere.HubOptions{
		History: sfere.HistoryOptions{Size: 64},
	}})
	c := a.resume(t, "")
	ns.Shutdown()
	start := time.Now()
	res, err := a.node.Broadcast(sfere.All, nil, numbered(1))
	if !errors.Is(err, ErrNoLog) || res != (sfere.Result{}) {
		t.Fatalf("broadcast without NATS: %+v, %v; want no delivery and ErrNoLog", res, err)
	}
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Fatalf("gave up after %v, before the publish timeout", took)
	}
	if _, err := a.node.Send(lobbyKey("brian"), numbered(2)); !errors.Is(err, ErrNoLog) {
		t.Fatalf("send without NATS: %v, want ErrNoLog", err)
	}
	ns2, err := StartServer(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns2.Shutdown)
	ssetest.Eventually(t, ceiling, "a broadcast taken by the log again", func() bool {
		_, err := a.node.Broadcast(sfere.All, nil, numbered(3))
		return err == nil
	})
	c.Wait(ceiling, ssetest.Containing("<p>3</p>"))
	for _, refused := range []string{"<p>1</p>", "<p>2</p>"} {
		if _, ok := c.Find(ssetest.Containing(refused)); ok {
			t.Fatalf("a refused event (%s) was delivered", refused)
		}
	}
	if st := a.node.Stats(); st.LogRefused < 2 {
		t.Fatalf("LogRefused = %d, want at least 2", st.LogRefused)
	}
}

// A refusal stays true when the publish's bytes reach JetStream after it
// was given: the network to NATS goes silent (packets dropped, no FIN) as
// a broadcast is made, and comes back after the publisher gave up. TCP
// delivers the stuck publish then and JetStream stores it, late: the
// broadcast was refused, and no node delivers it, now or on a replay.
func TestRefusedBroadcastStoredLateGoesNowhere(t *testing.T) {
	if err := netfault.Available(); err != nil {
		t.Skip(err)
	}
	// A port below the ephemeral range, so that dropping it catches no
	// other test's connection (see netfault.DropPort).
	ns, err := StartServer(testport.Addr(t), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	const timeout = time.Second
	opts := Options{Interval: interval, PublishTimeout: timeout, Hub: sfere.HubOptions{History: sfere.HistoryOptions{Size: 64}}}
	a, b := newTestNodeWith(t, ns, "a", opts), newTestNodeWith(t, ns, "b", opts)
	ca := a.resume(t, "")
	cb := ssetest.Open(t, b.srv.Listener.Addr().String(), ssetest.DatastarPost("/?id=phil", "{}"))
	waitFor(t, "phil's stream", func() bool { return b.hub.Count(lobbyKey("phil").Pattern()) == 1 })
	if _, err := a.node.Broadcast(sfere.All, nil, numbered(1)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*ssetest.Client{ca, cb} {
		c.Wait(ceiling, ssetest.Containing("<p>1</p>"))
	}

	restore := netfault.DropPort(t, ns.Addr().(*net.TCPAddr).Port)
	start := time.Now()
	refused := make(chan error, 1)
	go func() {
		_, err := a.node.Broadcast(sfere.All, nil, numbered(2))
		refused <- err
	}()
	// Back after the event's deadline (the give-up plus clockSkew): the
	// retransmitted publish is stored after it.
	time.Sleep(time.Until(start.Add(timeout + clockSkew + 300*time.Millisecond))) // pacing: waits out the event's deadline, wall time compared across nodes
	restore()
	select {
	case err = <-refused:
	case <-time.After(ceiling):
		t.Fatal("the broadcast never returned")
	}
	if !errors.Is(err, ErrNoLog) {
		t.Fatalf("a broadcast made while NATS was silent: %v, want ErrNoLog", err)
	}
	waitFor(t, "the late event stored and skipped on both nodes", func() bool {
		return a.node.Stats().LogLate == 1 && b.node.Stats().LogLate == 1
	})
	if _, err := a.node.Broadcast(sfere.All, nil, numbered(3)); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*ssetest.Client{"a": ca, "b": cb} {
		c.Wait(ceiling, ssetest.Containing("<p>3</p>"))
		if _, ok := c.Find(ssetest.Containing("<p>2</p>")); ok {
			t.Fatalf("the refused event was delivered on %s", name)
		}
	}
	// Nor on a replay from before it, on either node.
	from := firstID(t, ca)
	for _, tn := range []*testNode{a, b} {
		c := tn.resume(t, from)
		c.Wait(ceiling, ssetest.Containing("<p>3</p>"))
		if _, ok := c.Find(ssetest.Containing("<p>2</p>")); ok {
			t.Fatalf("the refused event was replayed on %s", tn.name)
		}
	}
}

// firstID returns the id of the first event c was sent that carried one.
func firstID(t *testing.T, c *ssetest.Client) string {
	t.Helper()
	for _, e := range c.Events() {
		if e.HasID {
			return e.ID
		}
	}
	t.Fatal("no event with an id")
	return ""
}

// Send reads the view of the peers under the node's lock while presence
// messages change it (run with -race: it reported the unlocked read).
func TestSendWhilePeersChange(t *testing.T) {
	ns := startNATS(t)
	a := historyNode(t, ns, "a")
	pub, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			b, _ := json.Marshal(presence{Node: fmt.Sprintf("peer%d", i%7), Op: opOpen,
				Keys: []presenceKey{{Key: lobbyKey(fmt.Sprintf("p%d", i)), Stamp: stamp{At: int64(i + 1), Node: "peer"}}}})
			if err := pub.Publish(DefaultPrefix+subjectPresence, b); err != nil {
				t.Error(err)
				return
			}
		}
		pub.Flush()
	}()
	for i := 0; ; i++ {
		if _, err := a.node.Send(lobbyKey(fmt.Sprintf("p%d", i%200)), numbered(i)); err != nil && !errors.Is(err, sfere.ErrNoStream) {
			t.Fatal(err)
		}
		select {
		case <-done:
			waitFor(t, "every presence message applied", func() bool { return a.node.Count(sfere.All) == 200 })
			return
		default:
		}
	}
}

// A publish acknowledged after its deadline (its process paused while the
// attempt was under way) is checked against the time the log stored the
// event: stored after the deadline, no node delivers it, and the
// publisher must not be told it was.
func TestStoredInTimeTellsALateEvent(t *testing.T) {
	ns := startNATS(t)
	a := historyNode(t, ns, "a")
	if _, err := a.node.Broadcast(sfere.All, nil, numbered(1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a applied it", func() bool { return a.hub.Position().Offset == 1 })
	const seq = 1
	ctx := t.Context()
	if err := a.node.events.storedInTime(ctx, seq, time.Now().Add(time.Minute)); err != nil {
		t.Fatalf("an event stored before its deadline: %v, want nil", err)
	}
	if err := a.node.events.storedInTime(ctx, seq, time.Now().Add(-time.Minute)); !errors.Is(err, errLate) {
		t.Fatalf("an event stored after its deadline: %v, want errLate", err)
	}
}
