package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
)

const ceiling = 20 * time.Second

// The page carries its watchdog at the position it was rendered at; its
// stream gets visible beats with the newest position, and a stream
// reopened from a beat's position gets exactly the line said after it.
func TestRunBeatsAndResumes(t *testing.T) {
	addr := ssetest.Serve(t, ceiling, func(ctx context.Context, addr string) error {
		return run(ctx, addr, 100*time.Millisecond)
	}).Addr
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), "reconnecting…") || !strings.Contains(string(body), "Last-Event-ID") {
		t.Fatalf("the page has no watchdog:\n%s", body)
	}

	first := ssetest.Open(t, addr, ssetest.Request{Method: http.MethodPost, Target: "/sse?user=brian"})
	first.Wait(ceiling, ssetest.Containing(`"_beat":`))
	post(t, addr, "one")
	first.Wait(ceiling, ssetest.Containing("<p>one</p>"))
	// The line's message ends with a patch of the page's position, which
	// carries the event's id; later beats carry that position too.
	pos := first.Wait(ceiling, ssetest.Where("with an id", func(e ssetest.Event) bool { return e.HasID }))
	if !strings.Contains(pos.Text(), `"_pos":"`+pos.ID+`"`) {
		t.Fatalf("the line's position patch is %v", pos)
	}
	first.Wait(ceiling, ssetest.Where("a beat at the line's position", func(e ssetest.Event) bool {
		return strings.Contains(e.Text(), `"_beat":`) && strings.Contains(e.Text(), `"_pos":"`+pos.ID+`"`)
	}))
	first.Close()
	post(t, addr, "two")

	again := ssetest.Open(t, addr, ssetest.Request{Method: http.MethodPost, Target: "/sse?user=brian",
		Header: http.Header{"Last-Event-Id": {pos.ID}}})
	if e := again.Wait(ceiling, ssetest.OfType("datastar-patch-elements")); !strings.Contains(e.Text(), "<p>two</p>") {
		t.Fatalf("the reopened stream's first element patch is %v, want the missed line", e)
	}
}

func post(t *testing.T, addr, msg string) {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/message?message="+msg, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}
