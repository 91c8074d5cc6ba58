package main

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// stopWithGoRun makes a lobby run by go run stop when the go command does.
//
// go run starts the program as its child and ignores SIGINT and SIGQUIT
// meanwhile (the terminal sends those to both), but a SIGTERM sent to the
// go command alone kills it the default way and leaves its child running.
// So when the parent is the go command, the kernel is asked to send the
// lobby SIGTERM when that parent dies (PR_SET_PDEATHSIG), which ends it
// gracefully like any SIGTERM. Call it after the SIGTERM handler is set,
// and call the function it returns once the lobby is stopping: the kernel
// may send the signal again (the parent's forking thread and the parent
// process can end apart), and a second SIGTERM kills a stopping lobby.
func stopWithGoRun() (disarm func()) {
	disarm = func() {}
	parent := os.Getppid()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", parent))
	if err != nil || filepath.Base(exe) != "go" {
		return disarm
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGTERM), 0, 0, 0); err != nil {
		return disarm
	}
	if os.Getppid() != parent { // the go command died before the request
		_ = unix.Kill(os.Getpid(), unix.SIGTERM)
	}
	return func() { _ = unix.Prctl(unix.PR_SET_PDEATHSIG, 0, 0, 0, 0) }
}
