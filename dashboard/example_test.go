package dashboard_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/dashboard"
)

// Mount a dashboard beside an app's streams, then read what an open page
// is sent: the hub's figures, the dashboard's own stream left out.
func Example() {
	hub := sfere.NewHub(sfere.NewMemoryStore(sfere.MemoryOptions{}), sfere.HubOptions{})
	dash, err := dashboard.New(hub, dashboard.Options{Path: "/debug/dashboard"})
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /sse", func(w http.ResponseWriter, r *http.Request) {
		_ = hub.Serve(w, r, sfere.NewKey(sfere.DefaultScope, "lobby", r.URL.Query().Get("id")), sfere.Comment("welcome"))
	})
	mux.Handle("/debug/dashboard", dash)  // the page (guard it like any debug route)
	mux.Handle("/debug/dashboard/", dash) // its stream and search
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer hub.Shutdown(context.Background())

	// Two app streams.
	for _, id := range []string{"brian", "phil"} {
		resp, err := http.Post(srv.URL+"/sse?id="+id, "application/json", nil)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer resp.Body.Close()
		// Its first line: the stream is stored.
		if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
			fmt.Println(err)
			return
		}
	}

	// A page's stream, as its data-init opens it (the page carries the
	// conn id; any 32 hex digits do here).
	signals := url.QueryEscape(`{"conn":"0123456789abcdef0123456789abcdef"}`)
	resp, err := http.Get(srv.URL + "/debug/dashboard/stream?datastar=" + signals)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(nil, 1<<20)
	for lines.Scan() {
		if line := lines.Text(); strings.Contains(line, `id="dash-streams-now"`) {
			fmt.Println(strings.TrimPrefix(line, "data: elements "))
			break
		}
	}
	fmt.Println(hub.Count(sfere.All), "streams on the hub")
	// Output:
	// <div class="card">streams<b id="dash-streams-now">2</b><span class="muted">+ 1 dashboard</span></div>
	// 3 streams on the hub
}
