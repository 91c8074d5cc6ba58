package lobby

import (
	"context"
	"net"
	"sync"

	"github.com/sfere-go/sfere"
)

// StartCrashable is Start on a listener that remembers its connections,
// so that CrashForTest can break them all.
func StartCrashable(ctx context.Context, opts Options) (*Server, error) {
	ln, err := sfere.Listen(ctx, "tcp", opts.Addr, sfere.ListenOptions{UserTimeout: opts.UserTimeout})
	if err != nil {
		return nil, err
	}
	defer swapListen(&crashListener{Listener: ln})()
	return Start(ctx, opts)
}

// crashListener remembers every connection it accepts.
type crashListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *crashListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

// CrashForTest stops a server started by StartCrashable the way a crash
// looks to its clients: the listener and every connection close at once,
// mid-stream, and nothing is said to anyone. (Shut it down afterwards to
// release the rest.) The streams' connections are not net/http's (the hub
// took them over), so the listener's record of them is what breaks them.
func CrashForTest(s *Server) {
	s.http.Close()
	cl := s.ln.Listener.(*crashListener)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for _, c := range cl.conns {
		c.Close()
	}
}
