package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"time"

	"github.com/sfere-go/sfere/bench/internal/history"
)

// requestTimeout bounds a short request (join, message, leave, page).
const requestTimeout = 10 * time.Second

// browser is one person's browser: a cookie jar (the lobby's session and
// member cookies), its own loopback source address (so the nemesis can
// drop its packets alone), and requests shaped as the Datastar client
// sends them: POST, header Datastar-Request: true, the signals as a JSON
// body, and Sec-Fetch-Site: same-origin, as from the lobby's own page.
type browser struct {
	name string // the person, as the history names it
	base string // the lobby's URL, without a trailing slash
	log  *history.Log
	// reqs carries short requests over keep-alive connections; streams
	// opens each stream on a connection of its own.
	reqs, streams *http.Client
}

func newBrowser(name, base string, ip net.IP, log *history.Log) *browser {
	jar, _ := cookiejar.New(nil) // never fails without options
	// Keepalive as Go's default (a browser's is longer): it is what ends a
	// stream left half-open by a drop.
	dial := (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second, LocalAddr: &net.TCPAddr{IP: ip}}).DialContext
	return &browser{
		name: name, base: strings.TrimRight(base, "/"), log: log,
		reqs: &http.Client{Jar: jar, Timeout: requestTimeout, Transport: &http.Transport{
			DialContext: dial, MaxIdleConnsPerHost: 4, DisableCompression: true, IdleConnTimeout: 30 * time.Second,
		}},
		streams: &http.Client{Jar: jar, Transport: &http.Transport{
			DialContext: dial, DisableKeepAlives: true, DisableCompression: true, ResponseHeaderTimeout: requestTimeout,
		}},
	}
}

// closeIdle closes the browser's idle connections.
func (b *browser) closeIdle() {
	b.reqs.CloseIdleConnections()
	b.streams.CloseIdleConnections()
}

// newRequest is a request as the Datastar client sends it: signals as a
// JSON body on POST, none on GET (a page load is a plain GET).
func (b *browser) newRequest(ctx context.Context, method, target, signals string) (*http.Request, error) {
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(signals)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.base+target, body)
	if err != nil {
		return nil, fmt.Errorf("request %s %s: %w", method, target, err)
	}
	if method == http.MethodPost {
		req.Header.Set("Datastar-Request", "true")
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return req, nil
}

// answer is a short request's answer.
type answer struct {
	status int
	body   string
	err    error
}

// do sends a short request, reads its whole answer, and records both in
// the history (rec carries the route's own fields: Name, Text, Seq, Page).
func (b *browser) do(ctx context.Context, method, target, signals string, rec history.Record) answer {
	rec.Kind, rec.Client, rec.Route = history.KindRequest, b.name, target
	rec.Sent = time.Now()
	var a answer
	req, err := b.newRequest(ctx, method, target, signals)
	if err == nil {
		var resp *http.Response
		resp, err = b.reqs.Do(req)
		if err == nil {
			var body []byte
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			a.status, a.body = resp.StatusCode, string(body)
			rec.Status, rec.Node = resp.StatusCode, resp.Header.Get("X-Upstream")
		}
	}
	a.err = err
	if err != nil {
		rec.Err = err.Error()
	}
	rec.At = time.Now()
	b.log.Add(rec)
	return a
}

// jsonString quotes s as a JSON string; the campaign's names and lines are
// plain ASCII letters, digits and dashes.
func jsonString(s string) string { return `"` + s + `"` }
