package presence_test

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/internal/netfault"
	"github.com/sfere-go/sfere/internal/ssetest"
	"github.com/sfere-go/sfere/presence"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const grace = 300 * time.Millisecond

func leaves(id string) string { return id + ":" }

// Two tabs of one person are one person: both receive, closing one says
// nothing, closing the last says one departure after the grace period.
func TestTwoTabsOnePerson(t *testing.T) {
	r := newRigClock(t, presence.Options{Grace: grace})
	r.claim("brian", "s1")
	tab1 := r.open("s1")
	tab1.waitList("brian")
	tab2 := r.open("s1")
	tab2.waitList("brian")
	// The first tab opened before brian was in: its snapshot is empty and
	// his arrival comes after it, once. The second tab's snapshot has him.
	if n := tab1.count(`data-joins="brian"`); n != 1 {
		t.Errorf("brian's first tab was told of brian joining %d times, want 1", n)
	}
	if n := tab2.count(`data-joins="brian"`); n != 0 {
		t.Errorf("brian's second tab was told of brian joining (%d)", n)
	}

	r.claim("phil", "s2")
	ps := r.open("s2")
	ps.waitList("brian", "phil")
	for _, tb := range []*tab{tab1, tab2} {
		tb.waitFor(`data-joins="phil"`)
	}
	if got := r.tracker.Members(); len(got) != 2 || got[0].ID != "brian" || got[1].ID != "phil" {
		t.Fatalf("members = %+v", got)
	}

	tab1.Close()
	r.waitState("brian", "present", 1)
	r.clock.Advance(2 * grace)
	r.checkState("brian", "present")
	r.settle(ps)
	if n := ps.count(leaves("brian")); n != 0 {
		t.Fatalf("closing one of two tabs announced a departure:\n%s", strings.Join(ps.all(), "\n"))
	}
	tab2.Close()
	r.waitState("brian", "grace", 0)
	r.clock.Advance(grace - time.Millisecond)
	r.checkState("brian", "grace") // not before the grace period ends
	r.clock.Advance(time.Millisecond)
	ps.waitFor(`data-leaves="brian:closed"`)
	r.clock.Advance(2 * grace)
	r.settle(ps)
	if n := ps.count(leaves("brian")); n != 1 {
		t.Errorf("phil saw %d departures of brian, want 1", n)
	}
	if got := r.tracker.Members(); len(got) != 1 || got[0].ID != "phil" {
		t.Errorf("members = %+v", got)
	}
	if _, ok := r.tracker.Lookup(t.Context(), "s1"); ok {
		t.Errorf("brian's owner still holds a person after the departure")
	}
}

// A reload (the only tab closes and a new one opens within grace) says
// nothing to anyone.
func TestReloadWithinGraceSilent(t *testing.T) {
	r := newRigClock(t, presence.Options{Grace: grace})
	r.claim("phil", "s2")
	ps := r.open("s2")
	ps.waitList("phil")
	r.claim("brian", "s1")
	bs := r.open("s1")
	ps.waitFor(`data-joins="brian"`)
	bs.Close()
	bs2 := r.open("s1")
	bs2.waitList("phil", "brian")
	r.waitState("brian", "present", 1) // the first tab's end is recorded
	r.clock.Advance(2 * grace)
	r.checkState("brian", "present")
	r.settle(ps)
	if n := ps.count(leaves("brian")) + ps.count(`data-joins="brian"`); n != 1 {
		t.Errorf("a reload was announced:\n%s", strings.Join(ps.all(), "\n"))
	}
}

// Leave departs at once (no grace) and ends every stream of the person.
func TestLeaveEndsEveryTab(t *testing.T) {
	r := newRig(t, presence.Options{Grace: time.Minute})
	r.claim("phil", "s2")
	ps := r.open("s2")
	r.claim("brian", "s1")
	tab1, tab2 := r.open("s1"), r.open("s1")
	ps.waitFor(`data-joins="brian"`)
	tab2.waitList("phil", "brian")
	if st := r.post("/leave?owner=s1"); st != http.StatusOK {
		t.Fatalf("leave: %d", st)
	}
	ps.waitFor(`data-leaves="brian:left"`)
	tab1.waitEnd()
	tab2.waitEnd()
	if st := r.post("/leave?owner=s1"); st != http.StatusForbidden {
		t.Errorf("second leave: status %d, want 403", st)
	}
	// The id is free again.
	r.claim("brian", "s3")
}

// A person id has one owner; a claim with no stream lapses silently; an
// unknown owner opens no stream.
func TestClaims(t *testing.T) {
	r := newRig(t, presence.Options{ClaimTimeout: 200 * time.Millisecond})
	r.claim("phil", "s2")
	ps := r.open("s2")
	r.claim("brian", "s1")
	if st := r.post("/claim?id=brian&owner=s9"); st != http.StatusConflict {
		t.Errorf("brian claimed by another owner: status %d, want 409", st)
	}
	r.claim("brian", "s1") // its own again: fine
	if st := r.post("/sse?owner=nobody"); st != http.StatusForbidden {
		t.Errorf("stream of an unknown owner: status %d, want 403", st)
	}
	ssetest.Eventually(t, waitLong, "the unused claim lapses", func() bool {
		return r.post("/claim?id=brian&owner=s9") == http.StatusOK
	})
	// Renaming: s2 claims another id; phil departs (renamed).
	r.claim("philip", "s2")
	ps.waitEnd()
	ps2 := r.open("s2")
	ps2.waitList("philip")
	if n := len(r.batches()); n == 0 {
		t.Fatal("no batch recorded")
	}
	var sawRename bool
	for _, d := range r.batches() {
		for _, l := range d.Leaves {
			sawRename = sawRename || l.ID == "phil" && l.Reason == presence.ReasonRenamed
		}
		for _, j := range d.Joins {
			if j.ID == "brian" {
				t.Errorf("an unused claim was announced")
			}
		}
	}
	if !sawRename {
		t.Errorf("phil's rename was not a departure: %+v", r.batches())
	}
}

// A peer that vanished (TCP gave up on it) departs without waiting for
// the grace period.
func TestVanishedPeerSkipsGrace(t *testing.T) {
	if err := netfault.Available(); err != nil {
		t.Skip(err)
	}
	r := newRigUserTimeout(t, presence.Options{Grace: time.Minute}, time.Second)
	r.claim("phil", "s2")
	ps := r.open("s2")
	r.claim("brian", "s1")
	bs := r.open("s1")
	ps.waitFor(`data-joins="brian"`)
	netfault.DropConn(t, bs.LocalPort(), bs.RemotePort())
	dropped := time.Now()
	// Something must be written for TCP to notice: a broadcast every 200 ms.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				r.ping()
			}
		}
	})
	defer wg.Wait()
	defer close(stop)
	ps.waitFor(`data-leaves="brian:closed"`)
	t.Logf("vanished peer departed after %v (user timeout 1 s, grace 1 min)", time.Since(dropped).Round(time.Millisecond))
	if d := r.lastLeave("brian"); d.Err == nil || !strings.Contains(d.Err.Error(), "vanished") {
		t.Errorf("departure error = %v, want a vanished peer", d.Err)
	}
}

// N people arriving at once reach every stream in few batches: at most
// one per window after the first, never one per arrival, and every
// arrival exactly once.
func TestStormIsBatched(t *testing.T) {
	const n = 200
	const window = 100 * time.Millisecond
	r := newRig(t, presence.Options{Window: window})
	r.claim("observer", "o")
	obs := r.open("o")
	obs.waitList("observer")
	before := len(obs.all())
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("p%03d", i)
			r.claim(id, "s"+id)
			r.open("s" + id)
		})
	}
	wg.Wait()
	want := []string{"observer"}
	for i := range n {
		want = append(want, fmt.Sprintf("p%03d", i))
	}
	obs.waitMembers(want...)
	elapsed := time.Since(start)
	diffs := len(obs.all()) - before
	t.Logf("%d arrivals over %v reached the observer in %d events (window %v)", n, elapsed.Round(time.Millisecond), diffs, window)
	if limit := int(elapsed/window) + 2; diffs > limit {
		t.Errorf("%d diff events in %v, more than one per window (%d)", diffs, elapsed, limit)
	}
	if diffs >= n/2 {
		t.Errorf("%d diff events for %d arrivals: not batched", diffs, n)
	}
	seen := map[string]int{}
	for _, id := range joined(obs) {
		seen[id]++
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("%s announced %d times", id, c)
		}
	}
}

var (
	idsAttr    = regexp.MustCompile(`data-ids="([^"]*)"`)
	joinsAttr  = regexp.MustCompile(`data-joins="([^"]*)"`)
	leavesAttr = regexp.MustCompile(`data-leaves="([^"]*)"`)
)

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func joined(tb *tab) []string {
	var out []string
	for _, e := range tb.all() {
		if m := joinsAttr.FindStringSubmatch(e); m != nil {
			out = append(out, split(m[1])...)
		}
	}
	return out
}

// view replays what a stream received: its snapshot, then the diffs. It
// fails if a diff joins someone already in view or drops someone not in
// it: a newcomer's snapshot must never cross a change it then receives.
func view(t *testing.T, tb *tab) map[string]bool {
	t.Helper()
	v := map[string]bool{}
	snap := false
	for _, e := range tb.all() {
		if m := idsAttr.FindStringSubmatch(e); m != nil {
			if snap {
				t.Errorf("a second snapshot: %s", e)
			}
			snap = true
			for _, id := range split(m[1]) {
				v[id] = true
			}
			continue
		}
		if !snap {
			t.Errorf("a diff before the snapshot: %s", e)
			continue
		}
		for _, l := range split(leavesAttr.FindStringSubmatch(e)[1]) {
			id := l[:strings.IndexByte(l, ':')]
			if !v[id] {
				t.Errorf("%s leaves but was not in view", id)
			}
			delete(v, id)
		}
		for _, id := range split(joinsAttr.FindStringSubmatch(e)[1]) {
			if v[id] {
				t.Errorf("%s joins but was in view already", id)
			}
			v[id] = true
		}
	}
	return v
}

// Concurrent arrivals and departures: every stream's snapshot plus the
// diffs it received ends equal to the room, with no name missing or
// doubled on the way.
func TestSnapshotAndDiffsConsistent(t *testing.T) {
	const n = 60
	r := newRig(t, presence.Options{Window: 20 * time.Millisecond, Grace: -1})
	tabs := make([]*tab, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("p%02d", i)
			r.claim(id, "s"+id)
			tabs[i] = r.open("s" + id)
			if i%3 == 0 { // a third leave again at once
				tabs[i].Close()
			}
		})
	}
	wg.Wait()
	want := map[string]bool{}
	for i := range n {
		if i%3 != 0 {
			want[fmt.Sprintf("p%02d", i)] = true
		}
	}
	ssetest.Eventually(t, waitLong, "the room settles", func() bool { return len(r.tracker.Members()) == len(want) })
	for i, tb := range tabs {
		if i%3 == 0 {
			continue
		}
		ssetest.Eventually(t, waitLong, "the stream catches up", func() bool {
			return mapsEqual(viewQuiet(tb), want)
		})
		if got := view(t, tb); !mapsEqual(got, want) {
			t.Errorf("p%02d's view: %v, want %v", i, keys(got), keys(want))
		}
	}
}

// viewQuiet is view without failing, for polling.
func viewQuiet(tb *tab) map[string]bool {
	v := map[string]bool{}
	for _, e := range tb.all() {
		if m := idsAttr.FindStringSubmatch(e); m != nil {
			for _, id := range split(m[1]) {
				v[id] = true
			}
			continue
		}
		if m := leavesAttr.FindStringSubmatch(e); m != nil {
			for _, l := range split(m[1]) {
				delete(v, l[:strings.IndexByte(l, ':')])
			}
		}
		if m := joinsAttr.FindStringSubmatch(e); m != nil {
			for _, id := range split(m[1]) {
				v[id] = true
			}
		}
	}
	return v
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// The application's own traffic never waits for presence: while a batch
// is held for its window, a broadcast reaches the streams at once.
func TestAppTrafficNotHeldBehindBatch(t *testing.T) {
	r := newRig(t, presence.Options{Window: time.Hour}) // only the first change goes out before the hour ends
	r.claim("observer", "o")
	obs := r.open("o") // its snapshot was the first change
	r.claim("brian", "s1")
	bs := r.openNoWait("s1") // brian's arrival waits for the window, and so does his snapshot
	// His stream is stored (or the broadcast below could precede it).
	ssetest.Eventually(t, 5*time.Second, "brian's stream stored", func() bool { return r.hub.Count(presence.StreamsOf(room, "brian")) == 1 })
	if _, err := r.hub.Broadcast(presence.Everyone(room), nil, sfere.PatchElements(`<p id="chat">hello</p>`)); err != nil {
		t.Fatal(err)
	}
	obs.waitFor(`id="chat"`)
	bs.waitFor(`id="chat"`)
	if n := obs.count(`data-joins="brian"`) + bs.count(`id="snapshot"`); n != 0 {
		t.Fatalf("the batch went out before its window ended (%d)", n)
	}
	if got := r.tracker.Members(); len(got) != 1 {
		t.Errorf("members before the batch = %+v, want the observer alone", got)
	}
}
