package sfere_test

import (
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/sfere-go/sfere"
)

// A hub with compression writes gzip to every client that accepts it.
// Each broadcast is compressed once for all of those streams.
func ExampleCompressionOptions() {
	hub := sfere.NewHub(sfere.NewMemoryStore(sfere.MemoryOptions{}), sfere.HubOptions{
		Compression: &sfere.CompressionOptions{}, // the defaults
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := sfere.NewKey(sfere.DefaultScope, "lobby", r.URL.Query().Get("name"))
		if err := hub.Serve(w, r, key, sfere.PatchElements(`<ul id="messages"></ul>`)); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	defer hub.Shutdown(context.Background())

	// A browser says Accept-Encoding: gzip (Go's client would too, and
	// decode by itself: here it is said, and decoded, by hand).
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"?name=brian", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	fmt.Println("Content-Encoding:", resp.Header.Get("Content-Encoding"))
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		fmt.Println(err)
		return
	}
	body := bufio.NewReader(zr)
	readEvent := func() string {
		var lines []string
		for {
			line, err := body.ReadString('\n')
			switch {
			case err != nil || line == "\n" && len(lines) > 0:
				return strings.Join(lines, " | ")
			case line != "\n":
				lines = append(lines, strings.TrimSuffix(line, "\n"))
			}
		}
	}
	fmt.Println(readEvent())

	hub.Broadcast(sfere.InCategory("lobby"), nil, sfere.AppendElements("#messages", "<li>hello</li>"))
	fmt.Println(readEvent())
	// Output:
	// Content-Encoding: gzip
	// event: datastar-patch-elements | data: elements <ul id="messages"></ul>
	// event: datastar-patch-elements | data: selector #messages | data: mode append | data: elements <li>hello</li>
}
