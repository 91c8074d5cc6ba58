package sfere

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
)

// signalPatch returns the signals an event patches, if it is a Datastar
// signal patch.
func signalPatch(t testing.TB, e ssetest.Event) (map[string]any, bool) {
	t.Helper()
	if e.Type != "datastar-patch-signals" {
		return nil, false
	}
	text, ok := strings.CutPrefix(e.Text(), "signals ")
	if !ok {
		t.Fatalf("signal patch without signals: %v", e)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(text), &m); err != nil {
		t.Fatalf("signal patch %v: %v", e, err)
	}
	return m, true
}

// patching matches a signal patch that sets signal.
func patching(t testing.TB, signal string) ssetest.Match {
	return ssetest.Match{Desc: "patching " + signal, Test: func(e ssetest.Event) bool {
		m, ok := signalPatch(t, e)
		_, set := m[signal]
		return ok && set
	}}
}

// A visible beat is a Datastar signal patch with the time of the beat, no
// id and nothing else; the page's elements are untouched.
func TestVisibleHeartbeatPatchesTheTime(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, _ := newMemoryHub(t, HubOptions{NoHijack: noHijack})
		srv := testServer(t, hub)
		c := dial(t, srv, "brian")
		ssetest.Eventually(t, waitLong, "stream", func() bool { return hub.Count(All) == 1 })
		hb, err := NewVisibleHeartbeat(hub, All, time.Hour, "_beat")
		if err != nil {
			t.Fatal(err)
		}
		before := time.Now().UnixMilli()
		if res := hb.Beat(); res.Delivered != 1 {
			t.Fatalf("Beat = %+v", res)
		}
		e := c.Wait(waitLong, patching(t, "_beat"))
		m, _ := signalPatch(t, e)
		at, _ := m["_beat"].(float64)
		if len(m) != 1 || e.HasID || int64(at) < before || int64(at) > time.Now().UnixMilli() {
			t.Fatalf("beat %v: want only _beat, the time of the beat (%d or later), no id", e, before)
		}
		ssetest.Eventually(t, waitLong, "the beat counted as written", func() bool { return hb.Stats().Writes == 1 })
	})
}

// With a history that names a position signal, every event ends with a
// patch of the signal to its position (which carries the id), a stream's
// opening ends with one, and a visible beat carries the newest position.
// Beats are kept in no history: many more beats than the history holds
// push out no event, and a client that resumes from any position it was
// told gets exactly the events after it.
func TestVisibleHeartbeatCarriesThePosition(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, _ := newMemoryHub(t, HubOptions{NoHijack: noHijack, History: HistoryOptions{Size: 4, PositionSignal: "_pos"}})
		srv := testServer(t, hub, AppendElements("#m", "<p>initial</p>"))
		start := hub.Position()
		c := dial(t, srv, "brian")
		if e := c.Wait(waitLong, patching(t, "_pos")); !strings.Contains(c.Events()[e.Seq-1].Text(), "initial") || e.ID != start.String() {
			t.Fatalf("opening: %v", c.Events())
		} else if m, _ := signalPatch(t, e); m["_pos"] != start.String() {
			t.Fatalf("opening patched %v, want the position %v after the initial effects", m, start)
		}
		hub.Broadcast(All, nil, numbered(1))
		hub.Broadcast(All, nil, numbered(2))
		for n := 1; n <= 2; n++ {
			e := c.Wait(waitLong, patching(t, "_pos"))
			want := Position{Epoch: start.Epoch, Offset: start.Offset + uint64(n)}.String()
			if m, _ := signalPatch(t, e); m["_pos"] != want || e.ID != want {
				t.Fatalf("after event %d: %v, want _pos and id %s", n, e, want)
			}
			if prev := c.Events()[e.Seq-1]; !strings.Contains(prev.Text(), fmt.Sprintf("<p>%d</p>", n)) || prev.HasID {
				t.Fatalf("before the position of event %d: %v, want the event, without id", n, prev)
			}
		}
		top := hub.Position()
		hb, err := NewVisibleHeartbeat(hub, All, time.Hour, "_beat")
		if err != nil {
			t.Fatal(err)
		}
		for i := range 10 { // more than the history holds
			hb.Beat()
			e := c.Wait(waitLong, patching(t, "_beat"))
			if m, _ := signalPatch(t, e); m["_pos"] != top.String() || e.HasID {
				t.Fatalf("beat %d: %v, want _pos %v and no id", i, e, top)
			}
		}
		if hub.Position() != top {
			t.Fatalf("beats moved the history from %v to %v", top, hub.Position())
		}
		for _, tc := range []struct {
			from Position
			want string // the events replayed
		}{{start, "<p>1</p> <p>2</p>"}, {top, ""}} {
			r := dial(t, srv, "resume&lastEventID="+url.QueryEscape(tc.from.String()))
			// The opening ends with the position it brought the stream to.
			opened := r.Wait(waitLong, ssetest.Match{Desc: "the opening's position", Test: func(e ssetest.Event) bool {
				m, _ := signalPatch(t, e)
				return m["_pos"] == top.String() && !e.HasID
			}})
			var got []string
			for _, e := range r.Events()[:opened.Seq] {
				if _, isPatch := signalPatch(t, e); !isPatch {
					text := e.Text()
					got = append(got, text[strings.LastIndex(text, " ")+1:])
				}
			}
			if strings.Join(got, " ") != tc.want {
				t.Fatalf("resumed from %v: got %q before the opening's position, want %q", tc.from, got, tc.want)
			}
			r.Close()
			ssetest.Eventually(t, waitLong, "the resumed stream gone", func() bool { return hub.Count(All) == 1 })
		}
	})
}

// The position a stream is told never goes back, whatever races it:
// broadcasts, visible beats and streams opening at the same time. A page
// that reopens its stream from the last position it was told therefore
// gets nothing twice.
func TestVisiblePositionsNeverGoBack(t *testing.T) {
	bothPaths(t, func(t *testing.T, noHijack bool) {
		hub, _ := newMemoryHub(t, HubOptions{NoHijack: noHijack, History: HistoryOptions{Size: 4096, PositionSignal: "_pos"}})
		srv := testServer(t, hub)
		hb, err := NewVisibleHeartbeat(hub, All, time.Hour, "_beat")
		if err != nil {
			t.Fatal(err)
		}
		const total, streams = 300, 6
		quit := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-quit:
					return
				default:
					hb.Beat()
					time.Sleep(100 * time.Microsecond) // pacing: beats among the broadcasts
				}
			}
		})
		var clients []*ssetest.Client
		for n := 1; n <= total; n++ {
			hub.Broadcast(All, nil, numbered(n))
			if n%(total/streams) == 1 { // streams open while it all goes on
				clients = append(clients, dial(t, srv, fmt.Sprint("s", n)))
				ssetest.Eventually(t, waitLong, "stream stored", func() bool { return hub.Count(All) == len(clients) })
			}
		}
		hub.Broadcast(All, nil, AppendElements("#m", "<p>end</p>"))
		close(quit)
		wg.Wait()
		for i, c := range clients {
			end := c.Wait(waitLong, ssetest.Containing("<p>end</p>"))
			last := uint64(0)
			for _, e := range c.Events()[:end.Seq] {
				m, ok := signalPatch(t, e)
				if !ok {
					continue
				}
				pos, err := ParsePosition(m["_pos"].(string))
				if err != nil {
					t.Fatal(err)
				}
				if pos.Offset < last {
					t.Fatalf("stream %d was told position %d after %d (%v)", i, pos.Offset, last, e)
				}
				last = pos.Offset
			}
			if last != total {
				t.Fatalf("stream %d was last told %d before the end, want %d", i, last, total)
			}
		}
	})
}

func TestVisibleHeartbeatRefusesBadNames(t *testing.T) {
	hub := NewHub(NewMemoryStore(MemoryOptions{}), HubOptions{})
	for _, name := range []string{"", "1a", "a-b", "a b", `a"`, "a.b", "é"} {
		if _, err := NewVisibleHeartbeat(hub, All, time.Second, name); !errors.Is(err, ErrBadSignalName) {
			t.Errorf("NewVisibleHeartbeat(%q) = %v, want ErrBadSignalName", name, err)
		}
	}
	for _, name := range []string{"_beat", "beat2", "B_x"} {
		if _, err := NewVisibleHeartbeat(hub, All, time.Second, name); err != nil {
			t.Errorf("NewVisibleHeartbeat(%q) = %v", name, err)
		}
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "PositionSignal") {
			t.Fatalf("NewHub with a bad position signal: recovered %v, want a panic naming the option", r)
		}
	}()
	NewHub(NewMemoryStore(MemoryOptions{}), HubOptions{History: HistoryOptions{Size: 1, PositionSignal: "a-b"}})
}
