package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sync/atomic"
	"time"
)

// dashboardClient reads one live dashboard's stream, as a browser's
// Datastar client would, for the whole of a trial: it costs the server
// what an operator watching costs (one update per interval), not a reload.
type dashboardClient struct {
	resp  *http.Response
	bytes atomic.Int64
	done  chan struct{}
}

// dashboardConn finds the page's stream id in its signals.
var dashboardConn = regexp.MustCompile(`&#34;conn&#34;:&#34;([0-9a-f]{32})&#34;`)

// openDashboard loads the dashboard's page on the server's control
// address ctl and opens its stream, and returns once the stream's first
// update arrived.
func openDashboard(ctl string) (*dashboardClient, error) {
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get("http://" + ctl + "/debug/dashboard")
	if err != nil {
		return nil, fmt.Errorf("dashboard page: %w", err)
	}
	page, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("dashboard page: status %d, %v", resp.StatusCode, err)
	}
	m := dashboardConn.FindSubmatch(page)
	if m == nil {
		return nil, errors.New("dashboard page: no conn signal")
	}
	sig := url.QueryEscape(`{"conn":"` + string(m[1]) + `","search":""}`)
	req, err := http.NewRequest(http.MethodGet, "http://"+ctl+"/debug/dashboard/stream?datastar="+sig, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Datastar-Request", "true")
	resp, err = (&http.Client{}).Do(req) // no timeout: the stream lasts the trial
	if err != nil {
		return nil, fmt.Errorf("dashboard stream: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("dashboard stream: status %d", resp.StatusCode)
	}
	d := &dashboardClient{resp: resp, done: make(chan struct{})}
	first := make(chan struct{})
	go func() {
		defer close(d.done)
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 && d.bytes.Add(int64(n)) == int64(n) {
				close(first)
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case <-first:
		return d, nil
	case <-d.done:
		return nil, errors.New("dashboard stream: ended before its first update")
	case <-time.After(10 * time.Second):
		resp.Body.Close()
		<-d.done
		return nil, errors.New("dashboard stream: no update within 10s")
	}
}

// close ends the stream and returns the bytes it read.
func (d *dashboardClient) close() int64 {
	d.resp.Body.Close()
	<-d.done
	return d.bytes.Load()
}
