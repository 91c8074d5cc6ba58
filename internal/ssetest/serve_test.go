package ssetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// serveHello serves "hello" over HTTP on addr until ctx ends.
func serveHello(ctx context.Context, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello") })}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func TestServeRunsUntilStopped(t *testing.T) {
	var returned atomic.Bool
	s := Serve(t, 20*time.Second, func(ctx context.Context, addr string) error {
		defer returned.Store(true)
		return serveHello(ctx, addr)
	})
	resp, err := http.Get("http://" + s.Addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "hello" {
		t.Fatalf("GET: %q, %v", body, err)
	}
	if returned.Load() {
		t.Fatal("run returned before Stop")
	}
	s.Stop()
	if !returned.Load() {
		t.Fatal("Stop returned before run")
	}
	s.Stop() // again: nothing more
	if _, err := http.Get("http://" + s.Addr + "/"); err == nil {
		t.Fatal("still served after Stop")
	}
}

// errRecorder is a recorder that also records errors.
type errRecorder struct {
	*recorder
	errs []string
}

func (r *errRecorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestServeSaysRunEndedEarly(t *testing.T) {
	r := &errRecorder{recorder: &recorder{TB: t}}
	r.run(func() {
		Serve(r, 20*time.Second, func(context.Context, string) error { return errors.New("address already in use") })
	})
	for _, f := range r.cleanups {
		f()
	}
	if !strings.Contains(r.fatal, "run ended before serving: address already in use") {
		t.Fatalf("failure %q", r.fatal)
	}
	if len(r.errs) != 0 {
		t.Fatalf("reported again at the end: %q", r.errs)
	}
}

func TestServeSaysRunDidNotReturn(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	r := &errRecorder{recorder: &recorder{TB: t}}
	var s *Served
	r.run(func() {
		s = Serve(r, 2*time.Second, func(ctx context.Context, addr string) error {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			defer l.Close()
			<-release // deaf to ctx
			return nil
		})
	})
	if r.fatal != "" {
		t.Fatalf("Serve failed: %s", r.fatal)
	}
	s.Stop()
	if len(r.errs) != 1 || !strings.Contains(r.errs[0], "run did not return 2s after its context ended") {
		t.Fatalf("errors %q", r.errs)
	}
}
