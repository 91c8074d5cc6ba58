package lobby_test

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/ssetest"
)

var itemIDRE = regexp.MustCompile(`id="(participant-[0-9a-f]+)"`)

// listModel replays a stream's events onto a model of #participant-list,
// as the browser's DOM would apply them, and returns the item ids left.
func listModel(s *stream) map[string]bool { return listOf(s.events()) }

// listOf is listModel of a page's events, in the order it got them.
func listOf(events []ssetest.Event) map[string]bool {
	items := map[string]bool{}
	for _, e := range events {
		switch {
		case strings.Contains(e.Text(), `<ul id="participant-list">`):
			clear(items)
			for _, m := range itemIDRE.FindAllStringSubmatch(e.Text(), -1) {
				items[m[1]] = true
			}
		case strings.Contains(e.Text(), "selector #participant-list") && strings.Contains(e.Text(), "mode append"):
			for _, m := range itemIDRE.FindAllStringSubmatch(e.Text(), -1) {
				items[m[1]] = true
			}
		case strings.Contains(e.Text(), "mode remove"):
			for _, line := range strings.Split(e.Text(), "\n") {
				if id, ok := strings.CutPrefix(line, "selector #"); ok {
					delete(items, id)
				}
			}
		}
	}
	return items
}

// Many people arrive and depart at once, by every path (tab close, Leave,
// reload within grace), while another newcomer joins: every departure is
// announced exactly once, nothing is announced for a reload, and every
// stream's list ends up right, the late newcomer's included.
func TestChurnKeepsListsExact(t *testing.T) {
	const (
		n     = 18
		grace = time.Second
	)
	srv := startServer(t, lobby.Options{Grace: grace, Heartbeat: 200 * time.Millisecond, Debug: true})
	phil := newBrowser(t, srv)
	ps := phil.enter("phil")

	type person struct {
		name string
		b    *browser
		s    *stream
		act  string
	}
	people := make([]*person, n)
	for i := range people {
		people[i] = &person{name: fmt.Sprintf("user%02d", i), b: newBrowser(t, srv), act: []string{"close", "leave", "reload"}[i%3]}
	}
	var wg sync.WaitGroup
	for _, p := range people {
		wg.Go(func() { p.s = p.b.enter(p.name) })
	}
	wg.Wait()
	for _, p := range people {
		ps.waitFor(joinedLine(p.name))
	}

	var late *stream
	wg.Go(func() { late = newBrowser(t, srv).enter("late") })
	for _, p := range people {
		wg.Go(func() {
			switch p.act {
			case "close":
				p.s.close()
			case "leave":
				if r := p.b.post("/leave", nil); r.status != 200 {
					t.Errorf("%s leave: %d", p.name, r.status)
				}
			case "reload":
				p.s.close()
				p.b.get("/")
				p.s = p.b.openStream()
			}
		})
	}
	wg.Wait()
	// The departures come (a closed tab's at grace), and the lists settle.
	want := map[string]bool{participantID("phil"): true, participantID("late"): true}
	for _, p := range people {
		if p.act != "reload" {
			ps.waitForWithin(leftLine(p.name), grace+waitLong)
		} else {
			want[participantID(p.name)] = true
		}
	}
	for name, s := range map[string]*stream{"phil": ps, "late": late} {
		ssetest.Eventually(t, waitLong, name+"'s list settles", func() bool { return maps.Equal(listModel(s), want) })
	}
	time.Sleep(time.Second) // negative check: a second departure, or one for a reload, would come by now

	for _, p := range people {
		left, joined := ps.count(leftLine(p.name)), ps.count(joinedLine(p.name))
		gone := p.act != "reload"
		if gone && (left != 1 || ps.count(removal(p.name)) != 1) || !gone && left != 0 || joined != 1 {
			t.Errorf("%s (%s): Phil saw %d left, %d joined lines", p.name, p.act, left, joined)
		}
	}
	for name, s := range map[string]*stream{"phil": ps, "late": late} {
		if got := listModel(s); !maps.Equal(got, want) {
			t.Errorf("%s's list = %v, want %v", name, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
		}
	}
	if keys := debugKeys(t, phil); len(keys) != len(want) {
		t.Errorf("streams = %q, want %d", keys, len(want))
	}
}
