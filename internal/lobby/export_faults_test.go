package lobby

import (
	"context"
	"net"
	"sync"

	"github.com/sfere-go/sfere"
)

// StartCrashable is Start with its listener wrapped in one that remembers
// its connections, so that CrashForTest can break them all.
func StartCrashable(ctx context.Context, opts Options) (*Server, error) {
	old := listen
	defer func() { listen = old }()
	listen = func(ctx context.Context, network, address string, lo sfere.ListenOptions) (net.Listener, error) {
		ln, err := old(ctx, network, address, lo)
		if err != nil {
			return nil, err
		}
		return &crashListener{Listener: ln}, nil
	}
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
