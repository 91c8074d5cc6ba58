package sfere_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"time"

	"github.com/sfere-go/sfere"
)

// The server side of the page's watchdog (see docs/heartbeat.md): the hub keeps
// the page's position in a signal, and the heartbeat's beat is a signal
// patch the page sees. A page that has seen no event for about 2.5
// intervals reopens its stream from $_position. Here one stream opens,
// one line is said, and one beat goes out; the epoch (random) and the
// time of the beat are masked.
func ExampleNewVisibleHeartbeat() {
	hub := sfere.NewHub(sfere.NewMemoryStore(sfere.MemoryOptions{}), sfere.HubOptions{
		History: sfere.HistoryOptions{Size: 1000, PositionSignal: "_position"},
	})
	defer hub.Shutdown(context.Background())
	beat, err := sfere.NewVisibleHeartbeat(hub, sfere.InCategory("lobby"), 10*time.Second, "_beat")
	if err != nil {
		fmt.Println(err)
		return
	}
	stop := beat.Start() // every 10 s; Beat below sends one now
	defer stop()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hub.Serve(w, r, sfere.NewKey(sfere.DefaultScope, "lobby", "brian"))
	}))
	defer srv.Close()

	resp, err := http.Post(srv.URL, "application/json", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	// The stream is stored: it was before its response head came back.
	hub.Broadcast(sfere.InCategory("lobby"), nil, sfere.AppendElements("#messages", "<p>hello</p>"))
	beat.Beat()

	mask := regexp.MustCompile(`[0-9a-f]{16}-|"_beat":\d+`)
	lines, blank := bufio.NewScanner(resp.Body), false
	for lines.Scan() {
		if lines.Text() == "" && blank {
			continue // one blank line ends an event; more are nothing
		}
		blank = lines.Text() == ""
		line := mask.ReplaceAllStringFunc(lines.Text(), func(s string) string {
			if strings.HasPrefix(s, `"_beat"`) {
				return `"_beat":TIME`
			}
			return "EPOCH-"
		})
		fmt.Println(line)
		if strings.Contains(line, "_beat") {
			break
		}
	}
	// Output:
	// event: datastar-patch-signals
	// data: signals {"_position":"EPOCH-0"}
	//
	// event: datastar-patch-elements
	// data: selector #messages
	// data: mode append
	// data: elements <p>hello</p>
	//
	// event: datastar-patch-signals
	// data: signals {"_position":"EPOCH-1"}
	// id: EPOCH-1
	//
	// event: datastar-patch-signals
	// data: signals {"_beat":TIME,"_position":"EPOCH-1"}
}
