package presence

import "time"

// clock is where a person's timers (claim timeout, grace period, resume
// window) and the storm rule's times come from: the real clock, or a
// test's, which moves only when the test says (export_test.go).
type clock interface {
	now() time.Time
	afterFunc(d time.Duration, f func()) stopper
}

// stopper is a timer: Stop reports whether it stopped it before it fired.
type stopper interface{ Stop() bool }

type realClock struct{}

func (realClock) now() time.Time { return time.Now() }

func (realClock) afterFunc(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) }
