package examples

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// docFiles returns the markdown files whose ```go blocks and links are
// checked, relative to the repository: the README first, then docs/*.md.
func docFiles(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"README.md"}
	for _, d := range docs {
		files = append(files, filepath.ToSlash(strings.TrimPrefix(d, "../")))
	}
	return files
}

// goBlock is one ```go block of a markdown file.
type goBlock struct {
	doc  string // the markdown file, relative to the repository
	line int    // of its opening fence, from 1
	text string // between the fences
	link string // the .go file linked on the first line under it, as written
}

// where names the block in a failure message: "docs/history.md:9".
func (b goBlock) where() string { return fmt.Sprintf("%s:%d", b.doc, b.line) }

// file returns the linked file relative to the repository, resolving the
// link from the markdown file's directory; it must lie under examples/.
func (b goBlock) file() (string, error) {
	p := path.Join(path.Dir(b.doc), b.link)
	if !strings.HasPrefix(p, "examples/") {
		return "", fmt.Errorf("%s: the block names %s, which is %s from the repository's root, not a file under examples/", b.where(), b.link, p)
	}
	return p, nil
}

// namedFile finds a link to a .go file, "[...](examples/x/main.go)" in the
// README or "[...](../examples/x/main.go)" in docs/.
var namedFile = regexp.MustCompile(`\]\(((?:\.\./)*[^)\s]+\.go)\)`)

// goBlocks returns the ```go blocks of the markdown file doc (its text
// given) and the .go file linked on the first non-blank line under each
// (empty if none).
func goBlocks(doc string, text []byte) ([]goBlock, error) {
	var (
		blocks []goBlock
		cur    *goBlock
		body   strings.Builder
		after  *goBlock // the block whose naming line is next
	)
	sc := bufio.NewScanner(bytes.NewReader(text))
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
				after.link = m[1]
			}
			after = nil
		}
		if line == "```go" {
			cur, after = &goBlock{doc: doc, line: n}, nil
			body.Reset()
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%s: a ```go block never ends", cur.where())
	}
	return blocks, sc.Err()
}

// Every ```go block of the README and of docs/*.md is code that compiles:
// the README's first is a whole program (package main, its imports, main)
// equal to the file named under it; each other one is a whole file or a
// fragment of the file named under it (each of its lines appears in the
// file, in order, spaces aside). The files are programs under examples/
// whose tests build and run them.
func TestDocGoBlocksAreExamples(t *testing.T) {
	for _, doc := range docFiles(t) {
		text, err := os.ReadFile(filepath.Join("..", doc))
		if err != nil {
			t.Fatal(err)
		}
		blocks, err := goBlocks(doc, text)
		if err != nil {
			t.Error(err)
			continue
		}
		if doc == "README.md" && len(blocks) == 0 {
			t.Error("README.md has no ```go block")
		}
		for i, b := range blocks {
			checkBlock(t, b, doc == "README.md" && i == 0)
		}
	}
}

// checkBlock checks one block against the file named under it; whole says
// the block must be that file, whole.
func checkBlock(t *testing.T, b goBlock, whole bool) {
	t.Helper()
	if b.link == "" {
		up := strings.Repeat("../", strings.Count(b.doc, "/"))
		t.Errorf("%s: the ```go block names no file under it; put the code in a program under examples/ and name it on the next line, e.g. \"From [examples/x/main.go](%sexamples/x/main.go).\"", b.where(), up)
		return
	}
	file, err := b.file()
	if err != nil {
		t.Error(err)
		return
	}
	src, err := os.ReadFile(filepath.Join("..", file))
	if err != nil {
		t.Errorf("%s: %v", b.where(), err)
		return
	}
	if whole {
		if !strings.HasPrefix(b.text, "// ") && !strings.HasPrefix(b.text, "package main") || !strings.Contains(b.text, "\nfunc main() {") {
			t.Errorf("%s: the first ```go block is not a whole program (package main, imports, main)", b.where())
		}
		if b.text != string(src) {
			t.Errorf("%s: the first ```go block differs from %s: paste the file whole", b.where(), file)
		}
		return
	}
	if missing, ok := fragmentOf(b.text, string(src)); !ok {
		t.Errorf("%s: line %q of the ```go block is not in %s (in order)", b.where(), missing, file)
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

// mdLink is one relative link of a markdown file.
type mdLink struct {
	line   int
	target string // as written: path, path#anchor or #anchor
}

var (
	linkRE     = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	codeSpanRE = regexp.MustCompile("`[^`]*`")
)

// scanMarkdown returns the relative links of a markdown file and the
// anchors of its headings, both outside fenced blocks and code spans.
func scanMarkdown(text []byte) (links []mdLink, anchors map[string]bool) {
	anchors = map[string]bool{}
	seen := map[string]int{}
	fenced := false
	sc := bufio.NewScanner(bytes.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		if h := strings.TrimLeft(line, "#"); len(h) < len(line) && len(line)-len(h) <= 6 && strings.HasPrefix(h, " ") {
			a := anchor(h)
			if k := seen[a]; k > 0 { // GitHub numbers repeated headings
				anchors[fmt.Sprintf("%s-%d", a, k)] = true
			} else {
				anchors[a] = true
			}
			seen[a]++
		}
		for _, m := range linkRE.FindAllStringSubmatch(codeSpanRE.ReplaceAllString(line, ""), -1) {
			t := m[1]
			if strings.Contains(t, "://") || strings.HasPrefix(t, "mailto:") {
				continue
			}
			links = append(links, mdLink{n, t})
		}
	}
	return links, anchors
}

// anchor is the id GitHub gives a heading: lower case, punctuation
// dropped (letters, digits, spaces, hyphens and underscores stay), each
// space a hyphen.
func anchor(heading string) string {
	heading = strings.TrimSpace(strings.TrimRight(strings.TrimSpace(heading), "#"))
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Every relative link of the README, docs/*.md, CHANGELOG.md, SECURITY.md
// and bench/BENCHMARKS.md names a file or directory that exists, and a
// link with an anchor into a markdown file names one of its headings.
func TestDocLinksResolve(t *testing.T) {
	files := append(docFiles(t), "CHANGELOG.md", "SECURITY.md", "bench/BENCHMARKS.md")
	anchorsOf := map[string]map[string]bool{} // markdown file → its anchors
	read := func(doc string) ([]mdLink, map[string]bool, error) {
		text, err := os.ReadFile(filepath.Join("..", doc))
		if err != nil {
			return nil, nil, err
		}
		links, anchors := scanMarkdown(text)
		anchorsOf[doc] = anchors
		return links, anchors, nil
	}
	for _, doc := range files {
		links, _, err := read(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			target, frag, _ := strings.Cut(l.target, "#")
			file := doc
			if target != "" {
				file = path.Join(path.Dir(doc), target)
				if strings.HasPrefix(file, "../") {
					t.Errorf("%s:%d: link %s leaves the repository", doc, l.line, l.target)
					continue
				}
				if _, err := os.Stat(filepath.Join("..", file)); err != nil {
					t.Errorf("%s:%d: link %s names %s, which does not exist", doc, l.line, l.target, file)
					continue
				}
			}
			if frag == "" || !strings.HasSuffix(file, ".md") {
				continue
			}
			anchors, ok := anchorsOf[file]
			if !ok {
				if _, anchors, err = read(file); err != nil {
					t.Errorf("%s:%d: %v", doc, l.line, err)
					continue
				}
			}
			if !anchors[frag] {
				t.Errorf("%s:%d: link %s: %s has no heading with the anchor #%s", doc, l.line, l.target, file, frag)
			}
		}
	}
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
}

func TestGoBlocks(t *testing.T) {
	blocks, err := goBlocks("README.md", []byte("text\n```go\nx := 1\n```\n\nFrom [examples/a/main.go](examples/a/main.go).\n```go\ny\n```\nno name\n```sh\nls\n```\n"))
	if err != nil || len(blocks) != 2 || blocks[0].link != "examples/a/main.go" || blocks[0].text != "x := 1\n" || blocks[1].link != "" || blocks[1].line != 7 {
		t.Fatalf("goBlocks: %+v, %v", blocks, err)
	}
	if f, err := blocks[0].file(); f != "examples/a/main.go" || err != nil {
		t.Errorf("README.md's examples/a/main.go is %q, %v", f, err)
	}
	_, err = goBlocks("docs/x.md", []byte("```go\nx\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "docs/x.md:1: ") {
		t.Errorf("an unended block in docs/x.md: %v", err)
	}
	for link, want := range map[string]string{
		"../examples/a/main.go": "examples/a/main.go",
		"examples/a/main.go":    "", // docs/examples/a/main.go: not under examples/
		"../../etc/x.go":        "",
	} {
		b := goBlock{doc: "docs/x.md", line: 3, link: link}
		f, err := b.file()
		if f != want || (want == "") != (err != nil) {
			t.Errorf("docs/x.md's %s is %q, %v; want %q", link, f, err, want)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "docs/x.md:3: ") {
			t.Errorf("the error does not name the file and line: %v", err)
		}
	}
}

func TestScanMarkdown(t *testing.T) {
	links, anchors := scanMarkdown([]byte("# The page's half: a visible beat\n" +
		"## Hot paths (`go test -bench`)\n## Notes\n## Notes\n" +
		"See [a](a.md#x), [b](https://x.org/y), `[c](not-a-link.md)`, [d](#notes-1).\n" +
		"```sh\n# not a heading\n[e](inside.md)\n```\n"))
	for _, a := range []string{"the-pages-half-a-visible-beat", "hot-paths-go-test--bench", "notes", "notes-1"} {
		if !anchors[a] {
			t.Errorf("no anchor %q in %v", a, anchors)
		}
	}
	if anchors["not-a-heading"] {
		t.Error("a comment in a fenced block counted as a heading")
	}
	if len(links) != 2 || links[0] != (mdLink{5, "a.md#x"}) || links[1] != (mdLink{5, "#notes-1"}) {
		t.Errorf("links: %+v", links)
	}
}
