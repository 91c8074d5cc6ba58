package main

import (
	"fmt"
	"io"
	"net"
	"sync"
)

// forwarder relays TCP connections from a loopback port to a target
// address: a lobby node's own way to one NATS server.
type forwarder struct {
	port   int
	target string
	ln     net.Listener

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
}

func newForwarder(port int, target string) (*forwarder, error) {
	ln, err := net.Listen("tcp", hostPort(port))
	if err != nil {
		return nil, fmt.Errorf("forwarder to %s: %w", target, err)
	}
	f := &forwarder{port: port, target: target, ln: ln, conns: make(map[net.Conn]struct{})}
	go f.serve()
	return f, nil
}

func (f *forwarder) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		go f.relay(c)
	}
}

func (f *forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

// relay copies both ways until either side ends, then closes both: the
// node sees the server go as the server's end of the connection goes.
func (f *forwarder) relay(down net.Conn) {
	if !f.track(down) {
		down.Close()
		return
	}
	defer f.untrack(down)
	up, err := net.Dial("tcp", f.target)
	if err != nil {
		return
	}
	if !f.track(up) {
		up.Close()
		return
	}
	defer f.untrack(up)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, down); done <- struct{}{} }()
	go func() { _, _ = io.Copy(down, up); done <- struct{}{} }()
	<-done
}

// close stops accepting and closes every relayed connection.
func (f *forwarder) close() {
	f.ln.Close()
	f.mu.Lock()
	f.done = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
}
