package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// The lobby's cookies (internal/lobby/session.go): the session id, and the
// signed name that lets a restarted lobby take the session back.
const (
	sessionCookie = "lobby_session"
	memberCookie  = "lobby_member"
)

// client speaks the lobby's routes as the page's Datastar client does:
// POSTs with a JSON body of signals, header Datastar-Request: true, the
// session cookie, and Sec-Fetch-Site: same-origin (what a browser sends
// from the lobby's own page; the lobby refuses cross-site POSTs).
type client struct {
	base string
	// reqs carries /join, /message and /leave over a pool of keep-alive
	// connections; streams opens every stream on a connection of its own
	// (the lobby takes a stream's connection over and closes it at the
	// end), bound to the local port the request's context names.
	reqs    *http.Client
	streams *http.Client
}

// statusError is a refusal by the lobby: its status and its message.
type statusError struct {
	route  string
	status int
	msg    string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s: %d %s", e.route, e.status, e.msg)
}

type portKey struct{}

// withPort asks the stream opened under ctx to bind local port port (0:
// the kernel's choice).
func withPort(ctx context.Context, port int) context.Context {
	return context.WithValue(ctx, portKey{}, port)
}

// dialer dials addr, from the local port ctx names (see [withPort]).
func dialer(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if port, _ := ctx.Value(portKey{}).(int); port > 0 {
		// Below the ephemeral range: fault-injection rules other
		// programs on this machine put on ephemeral loopback ports
		// (nftables drops by port) cannot hit a long-lived stream.
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
		d.Control = reuseAddr
		conn, err := d.DialContext(ctx, network, addr)
		if !errors.Is(err, syscall.EADDRINUSE) {
			return conn, err
		}
		// Another program holds the port (tests of other packages take
		// ports below the ephemeral range too): the kernel's choice
		// rather than a person who never gets in.
		d.LocalAddr, d.Control = nil, nil
	}
	return d.DialContext(ctx, network, addr)
}

func newClient(base string, conc int, headerTimeout time.Duration) *client {
	return &client{
		base: strings.TrimRight(base, "/"),
		reqs: &http.Client{Transport: &http.Transport{
			DialContext:         dialer,
			MaxIdleConnsPerHost: 2 * conc,
			DisableCompression:  true,
		}},
		streams: &http.Client{Transport: &http.Transport{
			DialContext:           dialer,
			DisableKeepAlives:     true,
			DisableCompression:    true,
			ResponseHeaderTimeout: headerTimeout,
		}},
	}
}

func (c *client) request(ctx context.Context, path, sid, body string) *http.Request {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Datastar-Request", "true")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if sid != "" {
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: sid})
	}
	return req
}

// do sends a short request and reads its whole answer (the lobby answers
// with an SSE body; a /join answer carries the participant list).
func (c *client) do(ctx context.Context, route, sid, body string) (*http.Response, error) {
	resp, err := c.reqs.Do(c.request(ctx, route, sid, body))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", route, err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp, &statusError{route: route, status: resp.StatusCode, msg: resp.Header.Get("X-Lobby-Error")}
	}
	if err != nil {
		return resp, fmt.Errorf("%s: reading the answer: %w", route, err)
	}
	return resp, nil
}

// join posts /join as a new browser (no cookie) and returns the session
// the lobby gave it.
func (c *client) join(ctx context.Context, name string) (string, error) {
	sid, _, err := c.joinMember(ctx, name)
	return sid, err
}

// joinMember is join that also returns the member cookie the lobby set
// (its signed name, which a browser sends back with every request).
func (c *client) joinMember(ctx context.Context, name string) (sid, member string, err error) {
	resp, err := c.do(ctx, "/join", "", jsonObject("username", name))
	if err != nil {
		return "", "", err
	}
	for _, ck := range resp.Cookies() {
		switch ck.Name {
		case sessionCookie:
			sid = ck.Value
		case memberCookie:
			member = ck.Value
		}
	}
	if sid == "" {
		return "", "", errors.New("/join: answered 200 without a session cookie")
	}
	return sid, member, nil
}

// say posts one chat line.
func (c *client) say(ctx context.Context, sid, text string) error {
	_, err := c.do(ctx, "/message", sid, jsonObject("message", text))
	return err
}

// leave posts /leave.
func (c *client) leave(ctx context.Context, sid string) error {
	_, err := c.do(ctx, "/leave", sid, "{}")
	return err
}

// openStream posts /sse (the page's data-init) and returns the response
// once its headers arrived; its body is the stream. ctx ends the stream.
func (c *client) openStream(ctx context.Context, sid string, port int) (io.ReadCloser, error) {
	resp, err := c.streams.Do(c.request(withPort(ctx, port), "/sse", sid, "{}"))
	if err != nil {
		return nil, fmt.Errorf("/sse: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, &statusError{route: "/sse", status: resp.StatusCode, msg: resp.Header.Get("X-Lobby-Error")}
	}
	return resp.Body, nil
}

// jsonObject is {"key": value} with value as a JSON string; the tool's
// names and texts hold no character that needs escaping.
func jsonObject(key, value string) string {
	return `{"` + key + `":"` + value + `"}`
}

// reuseAddr sets SO_REUSEADDR, so that a fixed local port still in
// TIME_WAIT from an earlier trial can be bound again.
func reuseAddr(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	})
	return errors.Join(err, serr)
}

var addrRE = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+:\d+`)

// errKind names an error for the tallies: a refusal by its route and
// status, anything else by its route and a short text.
func errKind(err error) string {
	var se *statusError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s %d %s", se.route, se.status, se.msg)
	}
	// Addresses (a local port per stream) would make every error a kind
	// of its own.
	s := addrRE.ReplaceAllString(err.Error(), "ADDR")
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}
