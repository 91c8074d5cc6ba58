//go:build !linux

package main

// stopWithGoRun does nothing here: stop a lobby run by go run with
// SIGINT, or send SIGTERM to the lobby's own pid (see gorun_linux.go).
func stopWithGoRun() (disarm func()) { return func() {} }
