package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
)

// ceiling bounds each wait for an event: generous, free when all is well.
const ceiling = 20 * time.Second

func TestRunSaysThePortIsBusy(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	err = run(context.Background(), busy.Addr().String())
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("run on a busy port: %v, want address already in use", err)
	}
}

func TestRunServesALobby(t *testing.T) {
	var logged syncBuffer
	log.SetOutput(&logged)
	defer log.SetOutput(os.Stderr)

	srv := ssetest.Serve(t, ceiling, run)
	phil := openStream(t, srv.Addr, "phil")
	brian := openStream(t, srv.Addr, "brian")
	for _, c := range []*ssetest.Client{phil, brian} {
		c.Wait(ceiling, ssetest.Containing(`elements <ul id="participants"></ul>`))
	}

	if status := post(t, "http://"+srv.Addr+"/message?user=brian&message=%3Cb%3Ehi"); status != http.StatusOK {
		t.Fatalf("message: %d", status)
	}
	phil.Wait(ceiling, ssetest.Containing(`elements <div class="message">brian: &lt;b&gt;hi</div>`))
	brian.Wait(ceiling, ssetest.Containing(`signals {"message":""}`))
	if status := post(t, "http://"+srv.Addr+"/message?user=nobody&message=hi"); status != http.StatusConflict {
		t.Fatalf("message without a stream: %d, want 409", status)
	}

	brian.Close() // brian closes the tab
	ssetest.Eventually(t, ceiling, "brian's departure logged", func() bool {
		return strings.Contains(logged.String(), "default/lobby/brian left: closed")
	})
	srv.Stop()
	phil.WaitEnd(ceiling)
}

// The one line that mounts the dashboard serves its page (at
// /debug/dashboard, which the mux sends on to /debug/dashboard/) and its
// stream, which counts the lobby's stream.
func TestRunServesTheDashboard(t *testing.T) {
	srv := ssetest.Serve(t, ceiling, run)
	phil := openStream(t, srv.Addr, "phil")
	phil.Wait(ceiling, ssetest.Containing(`elements <ul id="participants"></ul>`))
	resp, err := http.Get("http://" + srv.Addr + "/debug/dashboard")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "sfere dashboard") {
		t.Fatalf("dashboard page: %v, status %d:\n%s", err, resp.StatusCode, body)
	}
	m := regexp.MustCompile(`&#34;conn&#34;:&#34;([0-9a-f]{32})&#34;`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no conn signal in the page:\n%s", body)
	}
	dash := ssetest.Open(t, srv.Addr, ssetest.Request{Target: "/debug/dashboard/stream?datastar=" +
		url.QueryEscape(`{"conn":"`+string(m[1])+`"}`)})
	dash.Wait(ceiling, ssetest.Containing(`id="dash-streams-now">1<`))
	dash.Close()
	srv.Stop()
}

// openStream opens user's stream.
func openStream(t *testing.T, addr, user string) *ssetest.Client {
	t.Helper()
	return ssetest.Open(t, addr, ssetest.Request{Method: http.MethodPost, Target: "/sse?user=" + user})
}

func post(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// syncBuffer is a log output a test reads while streams write to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
