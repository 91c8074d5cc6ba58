package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// stopWithGoRun makes a lobby run by go run stop when the go command does.
//
// go run starts the program as its child and ignores SIGINT and SIGQUIT
// meanwhile (the terminal sends those to both), but a SIGTERM sent to the
// go command alone kills it the default way and leaves its child running.
// So when the parent is the go command, the kernel is asked to send the
// lobby SIGTERM when that parent dies (see signalOnParentDeath), which ends
// it gracefully like any SIGTERM. Call it after the SIGTERM handler is set,
// and call the function it returns once the lobby is stopping: the kernel
// sends the signal again each time the lobby passes from one of the dying
// parent's threads to another, and a SIGTERM after the handler is gone
// kills a stopping lobby.
func stopWithGoRun() (disarm func()) {
	parent := os.Getppid()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", parent))
	if err != nil || filepath.Base(exe) != "go" {
		return func() {}
	}
	return signalOnParentDeath(parent, unix.SIGTERM)
}

// signalOnParentDeath asks the kernel to send this process sig when its
// parent, whose pid is parent, dies (PR_SET_PDEATHSIG), until disarm
// returns. disarm may be called from any goroutine, more than once.
//
// The request belongs to the thread that makes it, not to the process: a
// request cleared from another thread stays set on the first one, and its
// signal still comes. So one goroutine, locked to its thread, makes the
// request and clears it.
func signalOnParentDeath(parent int, sig syscall.Signal) (disarm func()) {
	armed := make(chan error)
	release := make(chan struct{})
	released := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(released)
		err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(sig), 0, 0, 0)
		armed <- err
		if err != nil {
			return
		}
		<-release
		_ = unix.Prctl(unix.PR_SET_PDEATHSIG, 0, 0, 0, 0)
	}()
	if err := <-armed; err != nil {
		return func() {}
	}
	if os.Getppid() != parent { // the parent died before the request
		_ = unix.Kill(os.Getpid(), sig)
	}
	var once sync.Once
	return func() {
		once.Do(func() { close(release) })
		<-released
	}
}
