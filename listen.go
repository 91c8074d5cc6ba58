package sfere

import (
	"context"
	"net"
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
	if opts.UserTimeout == 0 {
		opts.UserTimeout = DefaultUserTimeout
	}
	if opts.KeepAlive == 0 {
		opts.KeepAlive = DefaultKeepAlive
	}
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
// [net/http.Server] to Serve on.
func Listen(ctx context.Context, network, address string, opts ListenOptions) (net.Listener, error) {
	return ListenConfig(opts).Listen(ctx, network, address)
}
