package presence_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/presence"
)

// A chat room that shows who is here: each tab of a person is one stream,
// the person arrives with the first and departs when the last has been
// gone for the grace period.
func Example() {
	hub := sfere.NewHub(sfere.NewMemoryStore(sfere.MemoryOptions{}), sfere.HubOptions{})
	tracker, _ := presence.New(hub, presence.Options{
		Room:  "lobby",
		Grace: 2 * time.Second,
		Snapshot: func(ms []presence.Member) []sfere.Effect {
			var b strings.Builder
			for _, m := range ms {
				fmt.Fprintf(&b, "<li>%s</li>", m.Meta) // escape it in a real app
			}
			return []sfere.Effect{sfere.PatchElements(`<ul id="people">` + b.String() + `</ul>`)}
		},
		Diff: func(d presence.Diff) []sfere.Effect {
			var fx []sfere.Effect
			for _, l := range d.Leaves {
				fx = append(fx, sfere.RemoveElements("#person-"+l.ID))
			}
			for _, j := range d.Joins {
				fx = append(fx, sfere.AppendElements("#people", `<li id="person-`+j.ID+`">`+j.Meta+`</li>`))
			}
			return fx
		},
	})
	defer tracker.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /sse", func(w http.ResponseWriter, r *http.Request) {
		owner := r.URL.Query().Get("session") // a session cookie, in a real app
		if _, err := tracker.Detach(w, r, owner); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer hub.Shutdown(context.Background())

	// Brian claims his id (say, at login), then opens two tabs.
	if _, err := tracker.Claim(context.Background(), presence.Claim{Person: "u42", Owner: "session-of-brian", Meta: "Brian"}); err != nil {
		fmt.Println(err)
		return
	}
	for range 2 {
		resp, err := http.Post(srv.URL+"/sse?session=session-of-brian", "application/json", nil)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer resp.Body.Close()
		// Its first event is the room's state (a snapshot): the tracker
		// has recorded the stream.
		if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
			fmt.Println(err)
			return
		}
	}
	for _, m := range tracker.Members() {
		fmt.Println(m.ID, m.Meta, "present:", m.Present)
	}
	fmt.Println("streams:", hub.Count(presence.Everyone("lobby")))
	// Output:
	// u42 Brian present: true
	// streams: 2
}

// A person id has one owner at a time: a second owner is refused until
// the first departs.
func ExampleTracker_Claim() {
	hub := sfere.NewHub(sfere.NewMemoryStore(sfere.MemoryOptions{}), sfere.HubOptions{})
	tracker, _ := presence.New(hub, presence.Options{
		Room:     "lobby",
		Snapshot: func([]presence.Member) []sfere.Effect { return nil },
		Diff:     func(presence.Diff) []sfere.Effect { return nil },
	})
	defer tracker.Close()
	ctx := context.Background()

	_, err := tracker.Claim(ctx, presence.Claim{Person: "phil", Owner: "session-1", Meta: "Phil"})
	fmt.Println("session-1 claims phil:", err)
	_, err = tracker.Claim(ctx, presence.Claim{Person: "phil", Owner: "session-2", Meta: "Phil"})
	fmt.Println("session-2 claims phil:", errors.Is(err, presence.ErrTaken))
	m, ok := tracker.Lookup(ctx, "session-1")
	fmt.Println("session-1 holds:", m.ID, ok, "present:", m.Present)

	left, _ := tracker.Leave(ctx, "session-1")
	fmt.Println("left:", left)
	_, err = tracker.Claim(ctx, presence.Claim{Person: "phil", Owner: "session-2", Meta: "Phil"})
	fmt.Println("session-2 claims phil:", err)
	// Output:
	// session-1 claims phil: <nil>
	// session-2 claims phil: true
	// session-1 holds: phil true present: false
	// left: phil
	// session-2 claims phil: <nil>
}

// With a resume window, a person whose page lost its stream departs as
// ever, but keeps its name: when the page reconnects, the person is back.
func ExampleOptions_resume() {
	hub := sfere.NewHub(sfere.NewMemoryStore(sfere.MemoryOptions{}), sfere.HubOptions{})
	lines := make(chan string, 16)
	tracker, _ := presence.New(hub, presence.Options{
		Room:     "lobby",
		Grace:    -1, // depart as soon as the last stream ends
		Resume:   2 * time.Minute,
		Window:   -1, // every change at once
		Snapshot: func([]presence.Member) []sfere.Effect { return nil },
		Diff:     func(presence.Diff) []sfere.Effect { return nil }, // a real app renders the lines below
		OnDiff: func(d presence.Diff) {
			for _, l := range d.Leaves {
				lines <- fmt.Sprintf("%s left (%s, resumable: %v)", l.Meta, l.Reason, l.Resumable)
			}
			for _, j := range d.Joins {
				if j.Back {
					lines <- j.Meta + " is back"
				} else {
					lines <- j.Meta + " joined"
				}
			}
		},
	})
	defer tracker.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := tracker.Detach(w, r, "session-of-brian"); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
		}
	}))
	defer srv.Close()
	defer hub.Shutdown(context.Background())
	ctx := context.Background()

	if _, err := tracker.Claim(ctx, presence.Claim{Person: "u42", Owner: "session-of-brian", Meta: "Brian"}); err != nil {
		fmt.Println(err)
		return
	}
	resp, err := http.Post(srv.URL, "application/json", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(<-lines)
	resp.Body.Close() // the page loses its stream
	srv.CloseClientConnections()
	fmt.Println(<-lines)

	_, err = tracker.Claim(ctx, presence.Claim{Person: "u42", Owner: "session-of-someone-else", Meta: "Mallory"})
	fmt.Println("taken meanwhile:", errors.Is(err, presence.ErrTaken))
	m, _ := tracker.Lookup(ctx, "session-of-brian")
	fmt.Println("brian's session holds:", m.ID, "present:", m.Present)

	resp, err = http.Post(srv.URL, "application/json", nil) // the page reconnects
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	fmt.Println(<-lines)
	// Output:
	// Brian joined
	// Brian left (closed, resumable: true)
	// taken meanwhile: true
	// brian's session holds: u42 present: false
	// Brian is back
}
