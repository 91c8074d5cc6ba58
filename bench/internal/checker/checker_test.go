package checker

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sfere-go/sfere/bench/internal/history"
)

// t0 is the start of every hand-made history; at(s) is s seconds after.
var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// hist builds a history by hand.
type hist []history.Record

func (h *hist) add(r history.Record) { *h = append(*h, r) }

func (h *hist) join(client, name string, sent, answered float64, status int) {
	h.add(history.Record{Kind: history.KindRequest, Client: client, Route: "/join", Name: name, Sent: at(sent), At: at(answered), Status: status})
}

func (h *hist) open(client string, page int, s float64) {
	h.add(history.Record{Kind: history.KindStream, Client: client, Page: page, Sent: at(s - 0.01), At: at(s), Status: 200})
	h.add(history.Record{Kind: history.KindPageOpen, Client: client, Page: page, At: at(s)})
}

func (h *hist) end(client string, page int, s float64, reason string) {
	h.add(history.Record{Kind: history.KindPageEnd, Client: client, Page: page, At: at(s), Reason: reason})
}

func (h *hist) say(client string, seq int, sent, answered float64, status int) {
	h.add(history.Record{Kind: history.KindRequest, Client: client, Route: "/message", Text: lineText(client, seq), Seq: seq, Sent: at(sent), At: at(answered), Status: status})
}

func (h *hist) leave(client string, sent, answered float64) {
	h.add(history.Record{Kind: history.KindRequest, Client: client, Route: "/leave", Sent: at(sent), At: at(answered), Status: 200})
}

func lineText(client string, seq int) string { return client + "-" + string(rune('0'+seq)) }

func (h *hist) got(client string, page int, s float64, speaker string, seq int) {
	h.add(history.Record{Kind: history.KindEvent, Client: client, Page: page, At: at(s), Chat: []history.Chat{{Speaker: speaker, Text: lineText(speaker, seq)}}})
}

func (h *hist) ann(client string, page int, s float64, name, what string) {
	h.add(history.Record{Kind: history.KindEvent, Client: client, Page: page, At: at(s), Ann: []history.Announce{{Name: name, What: what}}})
}

func (h *hist) list(client string, page int, s float64, names ...string) {
	h.add(history.Record{Kind: history.KindEvent, Client: client, Page: page, At: at(s), IsList: true, List: names})
}

func (h *hist) event(r history.Record) { h.add(r) }

// clean is a history in which every promise holds: ann and bob join, each
// opens a page, says two lines that reach both pages in order, and both
// end on a right list.
func clean() *hist {
	h := &hist{}
	h.add(history.Record{Kind: history.KindMeta, At: t0, Seed: 42})
	h.join("ann", "ann", 0, 0.1, 200)
	h.open("ann", 1, 0.2)
	h.list("ann", 1, 0.25, "ann")
	h.ann("ann", 1, 0.25, "ann", history.Joined)
	h.join("bob", "bob", 0.5, 0.6, 200)
	h.open("bob", 1, 0.7)
	h.list("bob", 1, 0.75, "ann", "bob")
	h.ann("bob", 1, 0.75, "bob", history.Joined)
	h.ann("ann", 1, 0.76, "bob", history.Joined)
	h.add(history.Record{Kind: history.KindFault, At: at(1), Fault: "kill", Target: "lobby-1", Phase: history.PhaseStart})
	for i, s := range []float64{2, 4} {
		seq := i + 1
		h.say("ann", seq, s, s+0.1, 200)
		h.got("ann", 1, s+0.05, "ann", seq)
		h.got("bob", 1, s+0.06, "ann", seq)
		h.say("bob", seq, s+0.5, s+0.6, 200)
		h.got("ann", 1, s+0.55, "bob", seq)
		h.got("bob", 1, s+0.56, "bob", seq)
	}
	h.add(history.Record{Kind: history.KindFault, At: at(6), Fault: "kill", Target: "lobby-1", Phase: history.PhaseEnd})
	h.add(history.Record{Kind: history.KindProc, At: at(1), Target: "lobby-1", PID: 7, Phase: history.PhaseBaseline, RSS: 20 << 20, Goroutines: 30})
	h.add(history.Record{Kind: history.KindProc, At: at(20), Target: "lobby-1", PID: 7, Phase: history.PhaseFinal, RSS: 24 << 20, Goroutines: 32})
	h.add(history.Record{Kind: history.KindTruth, At: at(20), Names: []string{"bob", "ann"}})
	h.add(history.Record{Kind: history.KindFinal, Client: "ann", Page: 1, At: at(20), Names: []string{"ann", "bob"}})
	h.add(history.Record{Kind: history.KindFinal, Client: "bob", Page: 1, At: at(20), Names: []string{"ann", "bob"}})
	return h
}

// without returns h without the records keep rejects.
func (h *hist) without(drop func(history.Record) bool) *hist {
	out := hist(slices.DeleteFunc(slices.Clone(*h), drop))
	return &out
}

func isDelivery(client string, page int, text string) func(history.Record) bool {
	return func(r history.Record) bool {
		return r.Kind == history.KindEvent && r.Client == client && r.Page == page && len(r.Chat) == 1 && r.Chat[0].Text == text
	}
}

func TestCleanHistoryPasses(t *testing.T) {
	r := Check(*clean(), Options{})
	want := Lines{Said: 4, Accepted: 4, Expected: 8, DeliveredOnce: 8}
	if r.Lines != want {
		t.Errorf("lines = %+v, want %+v", r.Lines, want)
	}
	if r.Failed() || r.Announcements.Missing != 0 || r.Lists.Wrong != 0 || r.Lists.Pages != 2 || len(r.Findings) != 0 {
		t.Errorf("clean history reported %+v", r)
	}
	if r.Announcements.Expected != 1 { // bob's arrival, owed to ann's page
		t.Errorf("announcements expected = %d, want 1", r.Announcements.Expected)
	}
	if r.Seed != 42 || r.Faults["kill"] != 1 || len(r.Procs) != 1 || r.Procs[0].NotBack {
		t.Errorf("seed, faults or procs wrong: %+v", r)
	}
	var out bytes.Buffer
	if err := r.Write(&out); err != nil || !strings.Contains(out.String(), "PASS (seed 42)") {
		t.Errorf("Write = %v:\n%s", err, out.String())
	}
}

func TestSilentLossIsCaught(t *testing.T) {
	h := clean().without(isDelivery("bob", 1, "ann-2"))
	r := Check(*h, Options{})
	if r.Lines.LostSilently != 1 || r.Lines.DeliveredOnce != 7 || !r.Failed() {
		t.Fatalf("lines = %+v, failed %v", r.Lines, r.Failed())
	}
	if r.LostDuring["kill"] != 1 || len(r.LostDuring) != 1 { // said at 4, the kill lasted 1-6
		t.Errorf("lost during = %v, want kill 1", r.LostDuring)
	}
	var out bytes.Buffer
	_ = r.Write(&out)
	if !strings.Contains(out.String(), `"ann-2"`) || !strings.Contains(out.String(), "FAIL (seed 42)") {
		t.Errorf("report does not name the lost line and the seed:\n%s", out.String())
	}
}

func TestDeclaredLossIsNotSilent(t *testing.T) {
	for _, tc := range []struct {
		name string
		tell func(h *hist)
	}{
		{"notice", func(h *hist) {
			h.event(history.Record{Kind: history.KindEvent, Client: "bob", Page: 1, At: at(4.5), Notice: true})
		}},
		{"join form", func(h *hist) {
			h.event(history.Record{Kind: history.KindEvent, Client: "bob", Page: 1, At: at(9), JoinForm: true})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := clean().without(isDelivery("bob", 1, "ann-2"))
			tc.tell(h)
			r := Check(*h, Options{})
			if r.Lines.DeclaredLost != 1 || r.Lines.LostSilently != 0 || r.Failed() {
				t.Errorf("lines = %+v, failed %v", r.Lines, r.Failed())
			}
		})
	}
	// A notice from before the line was said does not declare it.
	h := clean().without(isDelivery("bob", 1, "ann-2"))
	h.event(history.Record{Kind: history.KindEvent, Client: "bob", Page: 1, At: at(3), Notice: true})
	if r := Check(*h, Options{}); r.Lines.LostSilently != 1 {
		t.Errorf("an earlier notice declared the loss: %+v", r.Lines)
	}
}

func TestADroppedPageIsOwedOnlyAfterTheDrop(t *testing.T) {
	// bob's packets are dropped 3.9-6; his page is reloaded at 7, before
	// the drop's end plus the settle time: ann-2 and bob-2 (said 4, 4.5)
	// are not owed to it. Reloaded at 9, it owes them.
	for _, tc := range []struct {
		end  float64
		lost int
	}{{7, 0}, {9, 2}} {
		h := clean().without(func(r history.Record) bool {
			return r.Kind == history.KindEvent && r.Client == "bob" && len(r.Chat) == 1 && r.Chat[0].Text[len(r.Chat[0].Text)-1] == '2'
		})
		h.add(history.Record{Kind: history.KindFault, At: at(3.9), Fault: "drop", Target: "bob", Phase: history.PhaseStart})
		h.add(history.Record{Kind: history.KindFault, At: at(6), Fault: "drop", Target: "bob", Phase: history.PhaseEnd})
		h.end("bob", 1, tc.end, history.EndReload)
		r := Check(*h, Options{})
		if r.Lines.LostSilently != tc.lost || r.LostDuring["drop"] != tc.lost {
			t.Errorf("page reloaded at %v: lines %+v, lost during %v", tc.end, r.Lines, r.LostDuring)
		}
	}
}

func TestAPageOnACutNodeIsOwedOnlyAfterTheCut(t *testing.T) {
	// bob's stream is on lobby-2, cut off from NATS (or paused) 3.9-6:
	// reloaded at 7, before the cut's end plus the settle time, his page
	// is not owed ann-2 and bob-2 (said 4, 4.5); reloaded at 9, it is. On
	// lobby-1, it is owed them either way. A fault on a node is tied to
	// the streams it served by the nodes' addresses.
	for _, kind := range []string{"cut", "pause"} {
		for _, tc := range []struct {
			node string
			end  float64
			lost int
		}{{"127.0.0.1:2", 7, 0}, {"127.0.0.1:2", 9, 2}, {"127.0.0.1:1", 7, 2}, {"127.0.0.1:3, 127.0.0.1:2", 7, 0}} {
			h := clean().without(func(r history.Record) bool {
				return r.Kind == history.KindEvent && r.Client == "bob" && len(r.Chat) == 1 && r.Chat[0].Text[len(r.Chat[0].Text)-1] == '2'
			})
			for i, r := range *h {
				if r.Kind == history.KindStream && r.Client == "bob" {
					(*h)[i].Node = tc.node
				}
			}
			nodes := hist{
				{Kind: history.KindNode, Target: "lobby-1", Node: "127.0.0.1:1"},
				{Kind: history.KindNode, Target: "lobby-2", Node: "127.0.0.1:2"},
				{Kind: history.KindNode, Target: "lobby-3", Node: "127.0.0.1:3"},
			}
			*h = append(append(hist{(*h)[0]}, nodes...), (*h)[1:]...)
			h.add(history.Record{Kind: history.KindFault, At: at(3.9), Fault: kind, Target: "lobby-2", Phase: history.PhaseStart})
			h.add(history.Record{Kind: history.KindFault, At: at(6), Fault: kind, Target: "lobby-2", Phase: history.PhaseEnd})
			h.end("bob", 1, tc.end, history.EndReload)
			r := Check(*h, Options{})
			if r.Lines.LostSilently != tc.lost {
				t.Errorf("%s of lobby-2, bob's stream on %q, reloaded at %v: lines %+v", kind, tc.node, tc.end, r.Lines)
			}
		}
	}
	// A drop of a page's own packets that never ended: nothing is owed
	// to the page from then on.
	h := clean().without(func(r history.Record) bool {
		return r.Kind == history.KindEvent && r.Client == "bob" && len(r.Chat) == 1 && r.Chat[0].Text[len(r.Chat[0].Text)-1] == '2'
	})
	h.add(history.Record{Kind: history.KindFault, At: at(3.9), Fault: "drop", Target: "bob", Phase: history.PhaseStart})
	h.end("bob", 1, 9, history.EndReload)
	if r := Check(*h, Options{}); r.Lines.LostSilently != 0 {
		t.Errorf("a drop that never ended: lines %+v", r.Lines)
	}
}

func TestAPageThatEndedWhileReconnectingIsNotOwed(t *testing.T) {
	// bob's stream breaks at 3.5 and his page ends at 9 before a retry
	// got through: ann-2 and bob-2 (said 4, 4.5) are not owed to it.
	h := clean().without(func(r history.Record) bool {
		return r.Kind == history.KindEvent && r.Client == "bob" && len(r.Chat) == 1 && r.Chat[0].Text[len(r.Chat[0].Text)-1] == '2'
	})
	h.add(history.Record{Kind: history.KindStreamEnd, Client: "bob", Page: 1, At: at(3.5), Err: "unexpected EOF"})
	h.end("bob", 1, 9, history.EndLeft)
	if r := Check(*h, Options{}); r.Lines.LostSilently != 0 || r.Lines.Expected != 6 {
		t.Errorf("lines = %+v", r.Lines)
	}
	// Had it opened a stream again (and then been left), it owed them.
	h.open("bob", 1, 5)
	if r := Check(*h, Options{}); r.Lines.LostSilently != 2 {
		t.Errorf("after a new stream: lines = %+v", r.Lines)
	}
}

func TestAPageWhoseStreamBrokeBeforeTheLineCouldReachItIsNotOwed(t *testing.T) {
	// bob's stream breaks at 5.1, within Settle of ann-2's answer (4.1),
	// before it reached him (its node was slow to get it), and his page
	// ends at 9 while reconnecting: ann-2 is not owed to it. bob-2
	// (answered 4.6) reached it before the break.
	h := clean().without(isDelivery("bob", 1, lineText("ann", 2)))
	h.add(history.Record{Kind: history.KindStreamEnd, Client: "bob", Page: 1, At: at(5.1), Err: "unexpected EOF"})
	h.end("bob", 1, 9, history.EndLeft)
	if r := Check(*h, Options{}); r.Lines.LostSilently != 0 || r.Lines.Expected != 7 {
		t.Errorf("lines = %+v", r.Lines)
	}
	// Had the stream lived Settle past the answer, the line was owed.
	h = clean().without(isDelivery("bob", 1, lineText("ann", 2)))
	h.add(history.Record{Kind: history.KindStreamEnd, Client: "bob", Page: 1, At: at(6.2), Err: "unexpected EOF"})
	h.end("bob", 1, 9, history.EndLeft)
	if r := Check(*h, Options{}); r.Lines.LostSilently != 1 {
		t.Errorf("a stream that lived past Settle: lines = %+v", r.Lines)
	}
}

func TestAPageBlockedByOneFaultAfterAnotherIsOwedOnlyAfterBoth(t *testing.T) {
	// bob's packets are dropped 4-6 (ann-2 answered at 4.1), his stream
	// breaks at 6.5, and the node is paused 7.5-12, before he had Settle
	// free of the drop; his page reloads at 11, inside the pause.
	build := func(single bool) *hist {
		h := clean().without(isDelivery("bob", 1, lineText("ann", 2)))
		if single {
			h.add(history.Record{Kind: history.KindMeta, At: t0, Settings: map[string]string{"mode": "single"}})
		}
		h.add(history.Record{Kind: history.KindFault, At: at(4), Fault: "drop", Target: "bob", Phase: history.PhaseStart})
		h.add(history.Record{Kind: history.KindFault, At: at(6), Fault: "drop", Target: "bob", Phase: history.PhaseEnd})
		h.add(history.Record{Kind: history.KindStreamEnd, Client: "bob", Page: 1, At: at(6.5), Err: "unexpected EOF"})
		h.add(history.Record{Kind: history.KindFault, At: at(7.5), Fault: "pause", Target: "lobby-1", Phase: history.PhaseStart})
		h.add(history.Record{Kind: history.KindFault, At: at(12), Fault: "pause", Target: "lobby-1", Phase: history.PhaseEnd})
		h.end("bob", 1, 11, history.EndReload)
		return h
	}
	// One node: the broken page had nowhere else to go; not owed.
	if r := Check(*build(true), Options{}); r.Lines.LostSilently != 0 {
		t.Errorf("single node: lines = %+v", r.Lines)
	}
	// Several nodes: the pause was not on a node his page had a stream
	// on (it could have reconnected elsewhere); owed, and lost.
	if r := Check(*build(false), Options{}); r.Lines.LostSilently != 1 {
		t.Errorf("cluster: lines = %+v", r.Lines)
	}
}

func TestDoubleIsCaught(t *testing.T) {
	h := clean()
	h.got("bob", 1, 4.9, "ann", 2)
	r := Check(*h, Options{})
	if r.Lines.Doubled != 1 || r.Lines.DeliveredOnce != 7 || r.Lines.OutOfOrder != 0 || !r.Failed() {
		t.Errorf("lines = %+v, failed %v", r.Lines, r.Failed())
	}
}

func TestOutOfOrderIsCaught(t *testing.T) {
	h := clean().without(isDelivery("bob", 1, "ann-1"))
	h.got("bob", 1, 4.2, "ann", 1) // after ann-2 reached bob's page
	r := Check(*h, Options{})
	if r.Lines.OutOfOrder != 1 || r.Lines.DeliveredOnce != 8 || !r.Failed() {
		t.Errorf("lines = %+v, failed %v", r.Lines, r.Failed())
	}
}

func TestFailedLinesAreNotHeldToOrder(t *testing.T) {
	// ann-3's request failed (the client gave up: its packets were
	// dropped); the server got it late, after ann-4, and delivered it
	// twice: no promise was made for it.
	h := clean()
	h.say("ann", 3, 5, 15, 0)
	h.say("ann", 4, 15.1, 15.2, 200)
	h.got("bob", 1, 15.3, "ann", 4)
	h.got("bob", 1, 15.4, "ann", 3)
	h.got("bob", 1, 15.5, "ann", 3)
	h.got("ann", 1, 15.3, "ann", 4)
	r := Check(*h, Options{})
	if r.Lines.OutOfOrder != 0 || r.Lines.Doubled != 0 || r.Failed() || r.Lines.Accepted != 5 {
		t.Errorf("lines = %+v", r.Lines)
	}
}

func TestOnlyPresentPagesAreOwed(t *testing.T) {
	// cy's page opens after ann-1 was sent and before ann-2; dee's page
	// ends (reloaded) 1 s after ann-2's answer, inside the settle time.
	h := clean()
	h.join("cy", "cy", 2.5, 2.6, 200)
	h.open("cy", 1, 3)
	h.got("cy", 1, 4.05, "ann", 2)
	h.got("cy", 1, 4.55, "bob", 2)
	h.join("dee", "dee", 0.8, 0.9, 200)
	h.open("dee", 1, 1)
	h.got("dee", 1, 2.05, "ann", 1)
	h.got("dee", 1, 2.55, "bob", 1)
	h.end("dee", 1, 5.1, history.EndReload)
	// A line answered 500 is owed to no one, and it may arrive or not.
	h.say("cy", 1, 5, 5.1, 500)
	r := Check(*h, Options{})
	// ann-1, bob-1: ann, bob, dee; ann-2: ann, bob, cy; bob-2: ann, bob, cy
	// (dee's page ended 0.5 s after bob-2's answer).
	want := Lines{Said: 5, Accepted: 4, Expected: 12, DeliveredOnce: 12}
	if r.Lines != want || r.Failed() {
		t.Errorf("lines = %+v, want %+v", r.Lines, want)
	}
	// A shorter settle makes dee's page (ended 5.1) owe ann-2 and bob-2
	// (answered 4.1 and 4.6): it never showed them.
	if r := Check(*h, Options{Settle: 500 * time.Millisecond}); r.Lines.LostSilently != 2 {
		t.Errorf("with a 0.5 s settle: lines = %+v", r.Lines)
	}
}

func TestDoubledAnnouncementIsCaught(t *testing.T) {
	h := clean()
	h.ann("ann", 1, 3, "bob", history.Joined) // bob already announced here
	r := Check(*h, Options{})
	if r.Announcements.Doubled != 1 || !r.Failed() {
		t.Errorf("announcements = %+v, failed %v", r.Announcements, r.Failed())
	}
	// A departure and a return are two announcements, not a double.
	h = clean()
	h.ann("ann", 1, 3, "bob", history.Left)
	h.ann("ann", 1, 3.5, "bob", history.Back)
	if r := Check(*h, Options{}); r.Announcements.Doubled != 0 {
		t.Errorf("left then back counted as doubled: %+v", r.Announcements)
	}
	// A list restates the state: an arrival after it is not a double.
	h = clean()
	h.list("ann", 1, 3, "ann", "bob")
	h.ann("ann", 1, 3.1, "bob", history.Joined)
	if r := Check(*h, Options{}); r.Announcements.Doubled != 0 {
		t.Errorf("an arrival after a list counted as doubled: %+v", r.Announcements)
	}
	h = clean()
	h.ann("ann", 1, 3, "bob", history.Left)
	h.ann("ann", 1, 3.1, "bob", history.Left)
	if r := Check(*h, Options{}); r.Announcements.Doubled != 1 {
		t.Errorf("a departure announced twice: %+v", r.Announcements)
	}
}

func TestMissingAnnouncementsAreCaught(t *testing.T) {
	// bob's arrival never reaches ann's page.
	h := clean().without(func(r history.Record) bool {
		return r.Kind == history.KindEvent && r.Client == "ann" && len(r.Ann) == 1 && r.Ann[0].Name == "bob"
	})
	if r := Check(*h, Options{}); r.Announcements.Missing != 1 {
		t.Errorf("missing arrival: %+v", r.Announcements)
	}
	// bob leaves; ann's page is told only by a list without him.
	h = clean()
	h.leave("bob", 10, 10.1)
	h.end("bob", 1, 10, history.EndLeft)
	if r := Check(*h, Options{}); r.Announcements.Missing != 1 || r.Announcements.Expected != 2 {
		t.Errorf("missing departure: %+v", r.Announcements)
	}
	// A person who never opened a page (a thief who joined and left) owes
	// no one a departure.
	h2 := clean()
	h2.join("thief", "ann", 3, 3.1, 409)
	h2.join("cy", "cy", 3, 3.1, 200)
	h2.leave("cy", 3.2, 3.3)
	if r := Check(*h2, Options{}); r.Announcements.Expected != 1 || r.Announcements.Missing != 0 {
		t.Errorf("a departure without a page was owed: %+v", r.Announcements)
	}
	h.list("ann", 1, 10.3, "ann")
	if r := Check(*h, Options{}); r.Announcements.Missing != 0 {
		t.Errorf("a list without bob did not count as his departure: %+v", r.Announcements)
	}
}

func TestNameHeldTwiceIsCaught(t *testing.T) {
	h := clean()
	h.join("thief", "ANN", 3, 3.1, 200) // ann's page keeps receiving events after
	r := Check(*h, Options{})
	if r.NamesHeldTwice != 1 || !r.Failed() {
		t.Errorf("held twice = %d, failed %v", r.NamesHeldTwice, r.Failed())
	}
	// Refused: fine.
	h = clean()
	h.join("thief", "ann", 3, 3.1, 409)
	if r := Check(*h, Options{}); r.NamesHeldTwice != 0 {
		t.Errorf("a refused join counted: %d", r.NamesHeldTwice)
	}
	// After ann left: fine.
	h = clean()
	h.leave("ann", 5, 5.1)
	h.end("ann", 1, 5, history.EndLeft)
	h.join("thief", "ann", 6, 6.1, 200)
	if r := Check(*h, Options{}); r.NamesHeldTwice != 0 {
		t.Errorf("a join after the holder left counted: %d", r.NamesHeldTwice)
	}
	// The lobby refused ann's line (403: it did not know her session, a
	// single node that restarted) before the thief's join: not held twice,
	// and her hold starts again at her next accepted line.
	h = clean()
	h.say("ann", 3, 2.7, 2.8, 403)
	h.join("thief", "ann", 3, 3.1, 200)
	h.say("ann", 4, 3.5, 3.6, 200)
	h.join("thief", "ann", 3.7, 3.8, 200)
	if r := Check(*h, Options{}); r.NamesHeldTwice != 1 {
		t.Errorf("held twice = %d, want 1 (the second theft only)", r.NamesHeldTwice)
	}
	// ann's stream broke before the thief's join and came back after it
	// (a single node that restarted and took her back from her cookie):
	// not held twice.
	h = clean()
	h.add(history.Record{Kind: history.KindStreamEnd, Client: "ann", Page: 1, At: at(4.8), Err: "unexpected EOF"})
	h.join("thief", "ann", 5, 5.1, 200)
	h.open("ann", 1, 5.2)
	h.got("ann", 1, 5.3, "bob", 1)
	if r := Check(*h, Options{}); r.NamesHeldTwice != 0 {
		t.Errorf("a join while ann's stream was down counted: %d", r.NamesHeldTwice)
	}
	// ann's session no longer served (no event after the answer): not
	// provably held twice.
	h = clean()
	h.join("thief", "ann", 9, 9.1, 200)
	if r := Check(*h, Options{}); r.NamesHeldTwice != 0 {
		t.Errorf("a join after ann's pages went quiet counted: %d", r.NamesHeldTwice)
	}
}

func TestWrongFinalListIsCaught(t *testing.T) {
	h := clean().without(func(r history.Record) bool { return r.Kind == history.KindFinal && r.Client == "bob" })
	h.add(history.Record{Kind: history.KindFinal, Client: "bob", Page: 1, At: at(20), Names: []string{"bob"}})
	r := Check(*h, Options{})
	if r.Lists.Wrong != 1 || r.Lists.Pages != 2 {
		t.Errorf("lists = %+v", r.Lists)
	}
}

func TestProcessNotBackIsCaught(t *testing.T) {
	h := clean()
	h.add(history.Record{Kind: history.KindProc, At: at(1), Target: "nats-1", PID: 9, Phase: history.PhaseBaseline, RSS: 20 << 20, Goroutines: 30})
	h.add(history.Record{Kind: history.KindProc, At: at(20), Target: "nats-1", PID: 9, Phase: history.PhaseFinal, RSS: 20 << 20, Goroutines: 300})
	// A process restarted meanwhile (another PID) has nothing to compare.
	h.add(history.Record{Kind: history.KindProc, At: at(20), Target: "nats-2", PID: 11, Phase: history.PhaseFinal, RSS: 1 << 30, Goroutines: 3000})
	r := Check(*h, Options{})
	if len(r.Procs) != 3 || r.Procs[0].NotBack || !r.Procs[1].NotBack || !r.Procs[2].Restarted || r.Procs[2].NotBack {
		t.Errorf("procs = %+v", r.Procs)
	}
	var out bytes.Buffer
	_ = r.Write(&out)
	if !strings.Contains(out.String(), "nats-1 pid 9: 30 -> 300 goroutines, 20 -> 20 MiB RSS: NOT BACK") ||
		!strings.Contains(out.String(), "nats-2 pid 11: restarted during the campaign") {
		t.Errorf("report:\n%s", out.String())
	}
}
