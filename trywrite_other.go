//go:build !unix

package sfere

import "syscall"

// canTryWrite says whether tryWrite can write without waiting here: not
// on this system, so every write of a held stream goes slow (Hub.writeSlow).
const canTryWrite = false

// tryWrite writes nothing here.
func tryWrite(syscall.RawConn, []byte) (int, error) { return 0, nil }
