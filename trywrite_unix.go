//go:build unix

package sfere

import (
	"io"
	"os"
	"syscall"
)

// canTryWrite says whether tryWrite can write without waiting here.
const canTryWrite = true

// tryWrite writes as much of p as the socket takes now, without waiting
// for room: it returns short, with no error, when the socket buffer is
// full. With raw nil it writes nothing.
func tryWrite(raw syscall.RawConn, p []byte) (int, error) {
	if raw == nil {
		return 0, nil
	}
	var (
		n    int
		werr error
	)
	err := raw.Write(func(fd uintptr) bool {
		for n < len(p) {
			k, err := syscall.Write(int(fd), p[n:])
			if k > 0 {
				n += k
			}
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				return true // full: the caller waits elsewhere
			case err != nil:
				werr = os.NewSyscallError("write", err)
				return true
			case k == 0:
				werr = io.ErrShortWrite
				return true
			}
		}
		return true
	})
	if err != nil {
		return n, err
	}
	return n, werr
}
