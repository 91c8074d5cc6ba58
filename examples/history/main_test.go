package main

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
)

const ceiling = 20 * time.Second

// A client that reconnects with the id of the last line it got is sent
// the line it missed, and not the full page.
func TestRunResumesAStream(t *testing.T) {
	addr := serve(t)
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

// serve runs the example on a free port until the test ends.
func serve(t *testing.T) string {
	t.Helper()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := free.Addr().String()
	free.Close()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- run(ctx, addr) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	ssetest.Eventually(t, ceiling, "the server to listen", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}
