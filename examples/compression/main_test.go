package main

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
)

const ceiling = 20 * time.Second

// A client that accepts gzip gets a gzip stream that decodes, event by
// event, to what a client that does not gets as it is.
func TestRunCompressesForClientsThatAcceptIt(t *testing.T) {
	addr := ssetest.Serve(t, ceiling, run).Addr
	zipped := ssetest.Open(t, addr, ssetest.Request{Method: http.MethodPost, Target: "/sse?user=brian",
		Header: http.Header{"Accept-Encoding": {"gzip"}}}, ssetest.Gunzip())
	plain := ssetest.Open(t, addr, ssetest.Request{Method: http.MethodPost, Target: "/sse?user=phil"})
	if enc := zipped.WaitHead(ceiling).Header.Get("Content-Encoding"); enc != "gzip" {
		t.Fatalf("Content-Encoding %q for a client that accepts gzip", enc)
	}
	if enc := plain.WaitHead(ceiling).Header.Get("Content-Encoding"); enc != "" {
		t.Fatalf("Content-Encoding %q for a client that does not accept gzip", enc)
	}
	say := func(msg string) {
		t.Helper()
		resp, err := http.Post("http://"+addr+"/message?message="+url.QueryEscape(msg), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	// Both hold their heads: the hub stored their streams before writing
	// them, so what is said now reaches both.
	for _, msg := range []string{"one", "<b>two</b>"} {
		say(msg)
	}
	for _, c := range []*ssetest.Client{zipped, plain} {
		c.Wait(ceiling, ssetest.Containing("<p>one</p>"))
		c.Wait(ceiling, ssetest.Containing("<p>&lt;b&gt;two&lt;/b&gt;</p>"))
	}
}
