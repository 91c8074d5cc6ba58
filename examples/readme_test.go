package examples

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// goBlock is one ```go block of the README.
type goBlock struct {
	line int    // of its opening fence, from 1
	text string // between the fences
	file string // the file named under it, relative to the repository
}

// namedFile finds "[...](examples/....go)" in the first line after a block.
var namedFile = regexp.MustCompile(`\]\((examples/[^)]+\.go)\)`)

// readmeBlocks returns the README's ```go blocks and the file named
// under each (empty if none).
func readmeBlocks(readme []byte) ([]goBlock, error) {
	var (
		blocks []goBlock
		cur    *goBlock
		body   strings.Builder
		after  *goBlock // the block whose naming line is next
	)
	sc := bufio.NewScanner(bytes.NewReader(readme))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if cur != nil { // inside a block
			if strings.HasPrefix(line, "```") {
				cur.text = body.String()
				blocks = append(blocks, *cur)
				after, cur = &blocks[len(blocks)-1], nil
			} else {
				body.WriteString(line + "\n")
			}
			continue
		}
		if after != nil && strings.TrimSpace(line) != "" { // the line under a block
			if m := namedFile.FindStringSubmatch(line); m != nil {
				after.file = m[1]
			}
			after = nil
		}
		if line == "```go" {
			cur, after = &goBlock{line: n}, nil
			body.Reset()
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("README.md:%d: a ```go block never ends", cur.line)
	}
	return blocks, sc.Err()
}

// Every ```go block of the README is code that compiles: the first is a
// whole program (package main, its imports, main) equal to the file named
// under it; each other one is a whole file or a fragment of the file named
// under it (each of its lines appears in the file, in order, spaces aside).
// The files are programs under examples/ whose tests build and run them.
func TestREADMEGoBlocksAreExamples(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := readmeBlocks(readme)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) == 0 {
		t.Fatal("README.md has no ```go block")
	}
	for i, b := range blocks {
		if b.file == "" {
			t.Errorf("README.md:%d: the ```go block names no file under it; put the code in a program under examples/ and name it on the next line, e.g. \"From [examples/x/main.go](examples/x/main.go).\"", b.line)
			continue
		}
		src, err := os.ReadFile(filepath.Join("..", b.file))
		if err != nil {
			t.Errorf("README.md:%d: %v", b.line, err)
			continue
		}
		if i == 0 {
			if !strings.HasPrefix(b.text, "// ") && !strings.HasPrefix(b.text, "package main") || !strings.Contains(b.text, "\nfunc main() {") {
				t.Errorf("README.md:%d: the first ```go block is not a whole program (package main, imports, main)", b.line)
			}
			if b.text != string(src) {
				t.Errorf("README.md:%d: the first ```go block differs from %s: paste the file whole", b.line, b.file)
			}
			continue
		}
		if missing, ok := fragmentOf(b.text, string(src)); !ok {
			t.Errorf("README.md:%d: line %q of the ```go block is not in %s (in order)", b.line, missing, b.file)
		}
	}
}

// fragmentOf reports whether every non-blank line of block is a line of
// file, in order, comparing lines with their runs of spaces made one
// (gofmt aligns comments in a file); if not, it returns the first line
// that is not.
func fragmentOf(block, file string) (string, bool) {
	lines := strings.Split(file, "\n")
	at := 0
	for l := range strings.SplitSeq(block, "\n") {
		want := strings.Join(strings.Fields(l), " ")
		if want == "" {
			continue
		}
		for at < len(lines) && strings.Join(strings.Fields(lines[at]), " ") != want {
			at++
		}
		if at == len(lines) {
			return l, false
		}
		at++
	}
	return "", true
}

func TestFragmentOf(t *testing.T) {
	file := "func f() {\n\ta := 1 // one\n\tb := 2\n\treturn\n}\n"
	for _, tc := range []struct {
		block string
		ok    bool
	}{
		{"a := 1   // one\nreturn\n", true},
		{file, true},
		{"b := 2\na := 1 // one\n", false},
		{"a := 3\n", false},
	} {
		if _, ok := fragmentOf(tc.block, file); ok != tc.ok {
			t.Errorf("fragmentOf(%q) = %v, want %v", tc.block, ok, tc.ok)
		}
	}
	blocks, err := readmeBlocks([]byte("text\n```go\nx := 1\n```\n\nFrom [examples/a/main.go](examples/a/main.go).\n```go\ny\n```\nno name\n```sh\nls\n```\n"))
	if err != nil || len(blocks) != 2 || blocks[0].file != "examples/a/main.go" || blocks[0].text != "x := 1\n" || blocks[1].file != "" || blocks[1].line != 7 {
		t.Fatalf("readmeBlocks: %+v, %v", blocks, err)
	}
}
