// Command skips reads the output of `go test -json` on its standard input
// and prints what a plain `go test` prints (each package's result line, and
// the whole output of every test that failed), then every skipped test with
// the reason it gave, which a plain `go test` shows only with -v:
//
//	go test -race -json ./... | go run ./internal/cmd/skips
//
// It exits 1 when the stream reports a failure (a test, a package, a build),
// when a package started and never finished (the test binary was killed), or
// when the input holds no test event at all (go test failed before running
// anything, or ran without -json); otherwise 0. A shell pipeline's status is
// its last command's, so the pipeline fails when the tests fail; with
// `set -o pipefail` it also fails when go test does.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

func main() {
	os.Exit(run(os.Stdin, os.Stdout, os.Stderr))
}

// event is one line of `go test -json` (cmd/test2json's TestEvent, and
// the build events go test adds to it).
type event struct {
	Action     string // start, run, pause, cont, output, pass, fail, skip, bench, build-output, build-fail
	Package    string
	Test       string
	Output     string
	ImportPath string // of build-output and build-fail
}

// testID names one test (or subtest) of one package.
type testID struct{ pkg, test string }

// skipped is a test that called t.Skip, with the lines it logged.
type skipped struct {
	testID
	reason []string
}

// report follows the event stream: it keeps each running test's output
// until the test ends, prints it if the test failed, and records the
// reason of each test that skipped.
type report struct {
	out     io.Writer
	running map[testID][]string // output of tests not yet ended
	open    map[string]bool     // packages started and not yet ended
	skips   []skipped
	events  int
	failed  bool
}

// run reads the stream from in, writes the report to out and returns the
// exit status.
func run(in io.Reader, out, errOut io.Writer) int {
	r := &report{out: out, running: map[testID][]string{}, open: map[string]bool{}}
	br := bufio.NewReader(in)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			r.line(line)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fmt.Fprintf(errOut, "skips: reading the test output: %v\n", err)
			return 1
		}
	}
	return r.finish(errOut)
}

// line handles one line of input. A line that is not a test event (go
// test writes a few, such as a build failure's first line) is printed as
// it is.
func (r *report) line(raw []byte) {
	var ev event
	if raw[0] != '{' || json.Unmarshal(raw, &ev) != nil || ev.Action == "" {
		r.out.Write(raw)
		return
	}
	r.events++
	switch {
	case ev.Action == "build-output":
		io.WriteString(r.out, ev.Output)
	case ev.Action == "build-fail":
		r.failed = true
	case ev.Test == "":
		r.packageEvent(ev)
	default:
		r.testEvent(ev)
	}
}

// packageEvent handles an event of a package as a whole.
func (r *report) packageEvent(ev event) {
	switch ev.Action {
	case "start":
		r.open[ev.Package] = true
	case "output":
		if ev.Output != "PASS\n" { // a plain go test of several packages shows only "ok"
			io.WriteString(r.out, ev.Output)
		}
	case "pass", "skip", "fail":
		delete(r.open, ev.Package)
		if ev.Action == "fail" {
			r.failed = true
		}
		// Tests still running when their package ended (a panic, a
		// timeout) failed with it: print what they wrote.
		var left []testID
		for id := range r.running {
			if id.pkg == ev.Package {
				left = append(left, id)
			}
		}
		slices.SortFunc(left, func(a, b testID) int { return strings.Compare(a.test, b.test) })
		for _, id := range left {
			if ev.Action == "fail" {
				r.print(r.running[id])
			}
			delete(r.running, id)
		}
	}
}

// testEvent handles an event of one test.
func (r *report) testEvent(ev event) {
	id := testID{ev.Package, ev.Test}
	switch ev.Action {
	case "output":
		r.running[id] = append(r.running[id], ev.Output)
	case "pass":
		delete(r.running, id)
	case "fail":
		r.failed = true
		r.print(r.running[id])
		delete(r.running, id)
	case "skip":
		r.skips = append(r.skips, skipped{id, reason(r.running[id])})
		delete(r.running, id)
	}
}

// print writes a failed test's output without the lines that only frame
// it (=== RUN, === PAUSE, === CONT), as a plain go test shows it.
func (r *report) print(lines []string) {
	for _, l := range lines {
		if !strings.HasPrefix(l, "=== ") {
			io.WriteString(r.out, l)
		}
	}
}

// reason returns the lines a skipped test logged, without the framing
// lines (=== RUN, --- SKIP) that go test adds.
func reason(lines []string) []string {
	var rs []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP: ") {
			continue
		}
		rs = append(rs, t)
	}
	return rs
}

// finish prints the skipped tests, grouped by package in the order they
// ended, and returns the exit status.
func (r *report) finish(errOut io.Writer) int {
	if len(r.skips) == 0 {
		fmt.Fprintln(r.out, "skipped: none")
	} else {
		tests := "tests"
		if len(r.skips) == 1 {
			tests = "test"
		}
		fmt.Fprintf(r.out, "skipped: %d %s\n", len(r.skips), tests)
		pkg := ""
		for _, s := range r.skips {
			if s.pkg != pkg {
				pkg = s.pkg
				fmt.Fprintln(r.out, pkg)
			}
			why := "(no reason given)"
			if len(s.reason) > 0 {
				why = strings.Join(s.reason, "\n        ")
			}
			fmt.Fprintf(r.out, "    %s: %s\n", s.test, why)
		}
	}
	status := 0
	if r.failed {
		status = 1
	}
	for pkg := range r.open {
		fmt.Fprintf(errOut, "skips: %s started and never ended (was its test binary killed?)\n", pkg)
		status = 1
	}
	if r.events == 0 {
		fmt.Fprintln(errOut, "skips: no test event on stdin (run go test with -json)")
		status = 1
	}
	return status
}
