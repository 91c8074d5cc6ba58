package sfere

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults of [ListenOptions].
const (
	DefaultUserTimeout = 5 * time.Second
	DefaultKeepAlive   = 15 * time.Second
)

// ListenOptions sets the socket options that bound how long a vanished
// client (gone without a FIN: power loss, a dropped network) can hold a
// stream. The zero value gives the defaults.
type ListenOptions struct {
	// UserTimeout is TCP_USER_TIMEOUT (Linux): how long written data may
	// stay unacknowledged before the kernel aborts the connection. With a
	// heartbeat, a vanished peer's stream ends within interval +
	// UserTimeout + about a second, instead of the ~15 minutes of TCP's
	// retransmission limit. It also aborts a connection whose peer keeps
	// a zero receive window (a client that stopped reading) for longer
	// than UserTimeout. Zero means [DefaultUserTimeout]; negative leaves
	// the system default. Ignored on other systems.
	UserTimeout time.Duration
	// KeepAlive is the idle time before TCP keepalive probes, and the
	// interval between them, for connections with nothing in flight.
	// Zero means [DefaultKeepAlive]; negative disables keepalive.
	KeepAlive time.Duration
}

// ListenConfig returns a [net.ListenConfig] whose listeners hand out
// connections with opts applied (accepted sockets inherit the listening
// socket's TCP_USER_TIMEOUT).
func ListenConfig(opts ListenOptions) *net.ListenConfig {
	opts.UserTimeout = cmp.Or(opts.UserTimeout, DefaultUserTimeout)
	opts.KeepAlive = cmp.Or(opts.KeepAlive, DefaultKeepAlive)
	lc := &net.ListenConfig{}
	// Go listens with MPTCP where the kernel has it, and MPTCP sockets
	// refuse TCP_USER_TIMEOUT: plain TCP keeps the bound on dead peers.
	lc.SetMultipathTCP(false)
	if opts.KeepAlive > 0 {
		lc.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: opts.KeepAlive, Interval: opts.KeepAlive, Count: 3}
	} else {
		lc.KeepAlive = -1
	}
	if opts.UserTimeout > 0 {
		lc.Control = userTimeoutControl(opts.UserTimeout)
	}
	return lc
}

// Listen announces on a TCP address with [ListenConfig] of opts, for an
// [net/http.Server] to Serve on. A stream whose client vanished ends with
// [ErrPeerVanished] beside [ErrClientGone] or [ErrWrite]. A connection the
// hub takes over (see [Hub.Serve]) tells so by itself; for streams that
// stay on net/http (HTTP/2, TLS, [HubOptions.NoHijack]) the listener's
// connections remember whether TCP gave up on the peer, and
// [net/http.Server.ConnContext] set to [ConnContext] passes that on.
func Listen(ctx context.Context, network, address string, opts ListenOptions) (net.Listener, error) {
	ln, err := ListenConfig(opts).Listen(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return listener{ln}, nil
}

// ErrPeerVanished is wrapped (beside [ErrClientGone] or [ErrWrite]) in the
// eviction error of a stream whose client stopped answering: TCP found no
// sign of it for the user timeout. Such a client cannot be reloading a
// page, so an app may announce its departure without a grace period.
var ErrPeerVanished = errors.New("sfere: client vanished (TCP user timeout)")

// ConnContext is for [net/http.Server.ConnContext]: it lets [Hub.Serve]
// see the connection of a request accepted by a [Listen] listener.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok { // TLS
		c = nc.NetConn()
	}
	if tc, ok := c.(*conn); ok {
		return context.WithValue(ctx, connKey{}, tc)
	}
	return ctx
}

type connKey struct{}

// markVanished adds [ErrPeerVanished] to err, what ended a stream, if the
// connection of ctx's request (see [ConnContext]) recorded that TCP gave
// up on the peer.
func markVanished(ctx context.Context, err error) error {
	if c, _ := ctx.Value(connKey{}).(*conn); c != nil {
		if v := c.vanished.Load(); v != nil {
			return peerVanished(err, *v)
		}
	}
	return err
}

// peerVanished adds [ErrPeerVanished] to what ended a stream (base),
// with the system's error that said so (cause: ETIMEDOUT).
func peerVanished(base, cause error) error {
	return fmt.Errorf("%w: %w: %w", base, ErrPeerVanished, cause)
}

// writeError wraps a failed write, marking a peer TCP gave up on.
func writeError(err error) error {
	if errors.Is(err, syscall.ETIMEDOUT) {
		return peerVanished(ErrWrite, err)
	}
	return fmt.Errorf("%w: %w", ErrWrite, err)
}

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c}, nil
}

// conn records the error of a read or a write that found TCP gave up on
// the peer (the kernel tells one call only): net/http's background read
// on an idle request's connection, or its HTTP/2 frame writer, gets it
// just before the request's context ends. A read that fails while a write
// is under way (the writer may hold the ETIMEDOUT the read did not get)
// returns once that write did, at most readerVerdictWait later, so the
// request's context ends after the verdict is recorded.
type conn struct {
	net.Conn
	vanished atomic.Pointer[error]
	writing  atomic.Int32
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if errors.Is(err, syscall.ETIMEDOUT) {
		c.vanished.CompareAndSwap(nil, &err)
	}
	for wait := time.Now().Add(readerVerdictWait); err != nil && c.writing.Load() > 0 && time.Now().Before(wait); {
		time.Sleep(time.Millisecond)
	}
	return n, err
}

func (c *conn) Write(p []byte) (int, error) {
	c.writing.Add(1)
	defer c.writing.Add(-1)
	n, err := c.Conn.Write(p)
	if errors.Is(err, syscall.ETIMEDOUT) {
		c.vanished.CompareAndSwap(nil, &err)
	}
	return n, err
}

// CloseWrite and ReadFrom keep what net/http does with a bare TCP
// connection: a graceful half-close, and sendfile for files (io.Copy uses
// the connection's ReadFrom).
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *conn) ReadFrom(r io.Reader) (int64, error) { return io.Copy(c.Conn, r) }
