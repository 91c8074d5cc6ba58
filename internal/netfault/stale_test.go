//go:build linux

package netfault

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// A table left by a process that has ended (a test binary killed before
// its cleanups ran) is deleted; a live process's table is kept.
func TestSweepStaleDeletesDeadProcessesTables(t *testing.T) {
	skipUnlessAvailable(t)
	ended := exec.Command("true")
	if err := ended.Run(); err != nil {
		t.Fatal(err)
	}
	dead := ended.Process.Pid
	if alive(dead) {
		t.Skipf("pid %d was taken again at once", dead)
	}
	stale := fmt.Sprintf("%s%d_1", tablePrefix, dead)
	mine := fmt.Sprintf("%s%d_999999", tablePrefix, os.Getpid())
	for _, name := range []string{stale, mine} {
		if err := nft("", "add", "table", "inet", name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nft("", "delete", "table", "inet", name) })
	}
	sweepStale()
	out, err := exec.Command("nft", "list", "tables").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), stale+"\n") {
		t.Errorf("the table of ended process %d is still there:\n%s", dead, out)
	}
	if !strings.Contains(string(out), mine+"\n") {
		t.Errorf("the live process's table %s was deleted:\n%s", mine, out)
	}
}

func TestTablePID(t *testing.T) {
	for name, want := range map[string]int{
		tablePrefix + "123_4": 123,
		tablePrefix + "x_4":   0,
		tablePrefix + "123":   0,
		"other_123_4":         0,
	} {
		if got, ok := tablePID(name); got != want || ok != (want != 0) {
			t.Errorf("tablePID(%q) = %d, %v; want %d", name, got, ok, want)
		}
	}
}
