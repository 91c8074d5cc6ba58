//go:build !unix

package ssetest

import "errors"

func setRecvBuffer(uintptr, int) error {
	return errors.New("ssetest: RecvBuffer needs a Unix system")
}
