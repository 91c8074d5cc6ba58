//go:build !unix

package sfere

import "syscall"

// canTryWrite says whether a rawWriter can write without waiting here: not
// on this system, so every write to a taken-over connection waits (Hub.writeSlow).
const canTryWrite = false

// rawWriter writes nothing here.
type rawWriter struct{}

func newRawWriter() *rawWriter { return &rawWriter{} }

func (*rawWriter) try(syscall.RawConn, []byte) (int, error) { return 0, nil }
