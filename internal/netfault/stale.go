package netfault

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// tablePrefix begins the name of every table this package installs; the
// process id that follows it says whose the table is.
const tablePrefix = "sfere_netfault_"

// sweepStale deletes the tables of processes that have ended. A test
// binary killed mid-test (its -timeout, a signal, a crash) never runs its
// cleanups, and its rules would go on dropping the packets of whatever
// later connection uses the port they name: a dial that times out after
// 30 s in an unrelated test, hours later. A table whose process is alive
// is left alone, and one that another process deletes first is no error.
func sweepStale() {
	out, err := exec.Command("nft", "list", "tables").Output()
	if err != nil {
		return
	}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line) // table inet <name>
		if len(f) != 3 || f[0] != "table" || f[1] != "inet" {
			continue
		}
		if pid, ok := tablePID(f[2]); ok && !alive(pid) {
			_ = nft("", "delete", "table", "inet", f[2])
		}
	}
}

// tablePID returns the process id in a table name this package made.
func tablePID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, tablePrefix)
	if !ok {
		return 0, false
	}
	pid, _, ok := strings.Cut(rest, "_")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(pid)
	return n, err == nil && n > 0
}

// alive reports whether process pid exists (nftables is Linux's, and so
// is /proc).
func alive(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return err == nil
}
