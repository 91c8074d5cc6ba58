package bench

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// TestNemesisSmokeSingle runs a short fault campaign against one lobby node
// (built from the repository by the command itself): the people join,
// speak, and the checker passes it with lines delivered.
func TestNemesisSmokeSingle(t *testing.T) {
	bin := buildTools(t, "./cmd/lobby-nemesis")
	run := exec.Command(filepath.Join(bin, "lobby-nemesis"), "-mode", "single", "-seed", "7",
		"-duration", "8s", "-faults", "kill,pause,storm,rolling", "-people", "4", "-warmup", "1s", "-quiet", "4s",
		"-dir", t.TempDir())
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("lobby-nemesis: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	if !regexp.MustCompile(`(?m)^PASS \(seed 7\)$`).Match(out) {
		t.Fatal("no PASS verdict with the seed")
	}
	m := regexp.MustCompile(`(\d+) delivered once, 0 lost silently`).FindSubmatch(out)
	if m == nil {
		t.Fatal("no line counts")
	}
	if n, _ := strconv.Atoi(string(m[1])); n == 0 {
		t.Fatal("no line was delivered: the campaign checked nothing")
	}
}
