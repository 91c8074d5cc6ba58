package ssetest

import "syscall"

// recvBufferControl sets SO_RCVBUF on a socket before it connects (the
// window a peer may fill is settled at the handshake).
func recvBufferControl(n int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = setRecvBuffer(fd, n)
		}); err != nil {
			return err
		}
		return serr
	}
}
