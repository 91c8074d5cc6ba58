package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
)

const ceiling = 20 * time.Second

// A client that reconnects with the id of the last line it got is sent
// the line it missed, and not the full page.
func TestRunResumesAStream(t *testing.T) {
	addr := ssetest.Serve(t, ceiling, run).Addr
	first := ssetest.Open(t, addr, ssetest.Request{Method: http.MethodPost, Target: "/sse?user=brian"})
	first.Wait(ceiling, ssetest.Containing(`elements <div id="lines"></div>`))
	for _, m := range []string{"one", "two"} {
		resp, err := http.Post("http://"+addr+"/message?message="+m, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	one := first.Wait(ceiling, ssetest.Containing("<p>one</p>"))
	first.Wait(ceiling, ssetest.Containing("<p>two</p>"))
	if !one.HasID {
		t.Fatalf("a broadcast without a position: %v", one)
	}
	first.Close()

	again := ssetest.Open(t, addr, ssetest.Request{Method: http.MethodPost, Target: "/sse?user=brian",
		Header: http.Header{"Last-Event-Id": {one.ID}}})
	if e := again.Wait(ceiling, ssetest.OfType("datastar-patch-elements")); e.Text() != "selector #lines\nmode append\nelements <p>two</p>" {
		t.Fatalf("the resumed stream's first event is %v, want the missed line", e)
	}
}
