package lobby_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// What the page's watchdog relies on, checked in Chromium with the real
// Datastar client: an action re-issued while the old request still hangs
// aborts the old one (requestCancellation "auto") only if it has the same
// method and URL, wherever it is issued from: Datastar 1.0.2 keys the
// cancellation by method and URL, not by element. A re-issue with another
// URL leaves the old request open, so a page that reopens its stream
// with another URL would hold two streams. The watchdog therefore
// reissues the stream's request with the same URL and passes its
// position in a header.
func TestBrowserDatastarCancelsTheSameURL(t *testing.T) {
	jsFile, chromium := browserPrerequisites(t)
	js, err := os.ReadFile(jsFile)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	opened, ended := map[string]int{}, map[string]int{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /datastar.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		w.Write(js)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, `<!doctype html><script type="module" src="/datastar.js"></script>
<div id="a" data-init="@post('/hang?n=1')"></div>
<button id="same" data-on:click="@post('/hang?n=1', {headers: {'Last-Event-ID': 'x-1'}})"></button>
<button id="other" data-on:click="@post('/hang?n=2')"></button>`)
	})
	// /hang opens a stream that says nothing, and counts openings and ends
	// by the URL and the Last-Event-ID the request carried.
	mux.HandleFunc("POST /hang", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("n") + r.Header.Get("Last-Event-ID")
		mu.Lock()
		opened[name]++
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
		mu.Lock()
		ended[name]++
		mu.Unlock()
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	counts := func(name string) (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return opened[name], ended[name]
	}
	waitCounts := func(what, name string, o, e int) {
		t.Helper()
		deadline := time.Now().Add(waitLong)
		for {
			if go_, ge := counts(name); go_ == o && ge == e {
				return
			}
			if time.Now().After(deadline) {
				go_, ge := counts(name)
				t.Fatalf("%s: request %q opened %d and ended %d times, want %d and %d", what, name, go_, ge, o, e)
			}
			time.Sleep(20 * time.Millisecond) // polls: the counts are the server log
		}
	}

	browserCtx, stop := startChromium(t, chromium)
	defer stop()
	tab, closeTab := chromedp.NewContext(browserCtx)
	defer closeTab()
	if err := chromedp.Do(tab, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}
	waitCounts("the page opens its request", "1", 1, 0)

	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS("#other"))); err != nil {
		t.Fatal(err)
	}
	waitCounts("another URL opens", "2", 1, 0)
	time.Sleep(300 * time.Millisecond) // negative check: an abort would have reached the server by now
	waitCounts("another URL leaves the first request open", "1", 1, 0)

	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS("#same"))); err != nil {
		t.Fatal(err)
	}
	waitCounts("the same URL from another element opens", "1x-1", 1, 0)
	waitCounts("the same URL from another element aborts the hanging request", "1", 1, 1)
	waitCounts("the other URL stays open", "2", 1, 0)
}
