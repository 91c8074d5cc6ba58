//go:build unix

package sfere

import (
	"io"
	"os"
	"syscall"
)

// canTryWrite says whether a rawWriter can write without waiting here.
const canTryWrite = true

// rawWriter writes to sockets without waiting for room. One is reused for
// many writes: the function handed to RawConn.Write is made once, so a
// write allocates nothing.
type rawWriter struct {
	p   []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

func newRawWriter() *rawWriter {
	w := &rawWriter{}
	w.fn = w.write
	return w
}

// try writes as much of p as the socket takes now: it returns short, with
// no error, when the socket buffer is full. With raw nil it writes
// nothing.
func (w *rawWriter) try(raw syscall.RawConn, p []byte) (int, error) {
	if raw == nil {
		return 0, nil
	}
	w.p, w.n, w.err = p, 0, nil
	if err := raw.Write(w.fn); err != nil {
		w.err = err
	}
	n, err := w.n, w.err
	w.p, w.err = nil, nil
	return n, err
}

// write is the RawConn.Write callback: it never asks to wait.
func (w *rawWriter) write(fd uintptr) bool {
	for w.n < len(w.p) {
		k, err := syscall.Write(int(fd), w.p[w.n:])
		if k > 0 {
			w.n += k
		}
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return true // full: the caller waits elsewhere
		case err != nil:
			w.err = os.NewSyscallError("write", err)
			return true
		case k == 0:
			w.err = io.ErrShortWrite
			return true
		}
	}
	return true
}
