package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// module writes a throwaway module with the given files (path → text)
// and returns its directory.
func module(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	files["go.mod"] = "module skipsdemo\n\ngo 1.22\n"
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// goTestJSON runs `go test -json ./...` in dir and returns its standard
// output (its status is what the tool must work out from the stream).
func goTestJSON(t *testing.T, dir string) []byte {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	cmd := exec.Command(gobin, "test", "-json", "-count=1", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOTOOLCHAIN=local", "GOWORK=off")
	var out bytes.Buffer
	cmd.Stdout = &out
	err = cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("go test: %v", err)
	}
	return out.Bytes()
}

const passing = `package good

import "testing"

func TestPasses(t *testing.T) { t.Log("a line a passing test logs") }

func TestSkipped(t *testing.T) { t.Skip("needs a thing this machine lacks") }

func TestParent(t *testing.T) {
	t.Run("sub", func(t *testing.T) { t.Skipf("set %s to run it", "SOME_VAR") })
	t.Run("runs", func(t *testing.T) {})
}

func TestQuietSkip(t *testing.T) { t.SkipNow() }
`

// A run where everything passes or skips: the package lines as go test
// prints them, no output of a passing test, every skip with its reason,
// status 0.
func TestPassingRunListsSkips(t *testing.T) {
	stream := goTestJSON(t, module(t, map[string]string{
		"good/good_test.go": passing,
		"empty/empty.go":    "package empty\n",
	}))
	var out, errOut bytes.Buffer
	if st := run(bytes.NewReader(stream), &out, &errOut); st != 0 {
		t.Fatalf("status %d, want 0; stdout:\n%s\nstderr:\n%s", st, &out, &errOut)
	}
	got := out.String()
	for _, want := range []string{
		"ok  \tskipsdemo/good\t",
		"?   \tskipsdemo/empty\t[no test files]",
		"skipped: 3 tests\nskipsdemo/good\n",
		"    TestSkipped: good_test.go:7: needs a thing this machine lacks\n",
		"    TestParent/sub: good_test.go:10: set SOME_VAR to run it\n",
		"    TestQuietSkip: (no reason given)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	for _, not := range []string{"a line a passing test logs", "=== RUN", "PASS\n", "--- SKIP"} {
		if strings.Contains(got, not) {
			t.Errorf("output shows %q:\n%s", not, got)
		}
	}
}

// A run with a failing test, a test that panics and a package that does
// not build: each failure's whole output, status 1, and the skips of the
// packages that ran.
func TestFailingRunFails(t *testing.T) {
	stream := goTestJSON(t, module(t, map[string]string{
		"good/good_test.go": passing,
		"bad/bad_test.go": `package bad

import "testing"

func TestFails(t *testing.T) {
	t.Log("what the failing test saw")
	t.Fatal("wanted 1, got 2")
}

func TestFine(t *testing.T) {}
`,
		"boom/boom_test.go": `package boom

import "testing"

func TestPanics(t *testing.T) { panic("boom in a test") }
`,
		"broken/broken_test.go": `package broken

import "testing"

func TestNeverBuilt(t *testing.T) { undefinedThing() }
`,
	}))
	var out, errOut bytes.Buffer
	if st := run(bytes.NewReader(stream), &out, &errOut); st != 1 {
		t.Fatalf("status %d, want 1; stdout:\n%s\nstderr:\n%s", st, &out, &errOut)
	}
	got := out.String()
	for _, want := range []string{
		"--- FAIL: TestFails",
		"skipped: 3 tests\n",
		"bad_test.go:6: what the failing test saw",
		"bad_test.go:7: wanted 1, got 2",
		"FAIL\tskipsdemo/bad\t",
		"panic: boom in a test",
		"FAIL\tskipsdemo/boom\t",
		"undefined: undefinedThing",
		"FAIL\tskipsdemo/broken [build failed]",
		"ok  \tskipsdemo/good\t",
		"    TestSkipped: good_test.go:7: needs a thing this machine lacks\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	for _, not := range []string{"TestFine", "=== RUN"} {
		if strings.Contains(got, not) {
			t.Errorf("output shows %q:\n%s", not, got)
		}
	}
}

// A stream that stops inside a package (its binary killed, the pipe cut)
// and one with no event at all fail.
func TestIncompleteStreamFails(t *testing.T) {
	for name, in := range map[string]string{
		"cut":     `{"Action":"start","Package":"p"}` + "\n" + `{"Action":"run","Package":"p","Test":"TestA"}` + "\n",
		"empty":   "",
		"no JSON": "go: cannot find main module\n",
	} {
		var out, errOut bytes.Buffer
		if st := run(strings.NewReader(in), &out, &errOut); st != 1 {
			t.Errorf("%s: status %d, want 1 (stdout %q, stderr %q)", name, st, &out, &errOut)
		}
		if errOut.Len() == 0 {
			t.Errorf("%s: nothing on stderr says why", name)
		}
	}
}
