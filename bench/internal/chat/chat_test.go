package chat

import (
	"html"
	"slices"
	"strings"
	"testing"
)

// A line is the lobby's chat element around an escaped name and text,
// with the stamp once at the end of the text; the same seq gives the same
// line.
func TestLineIsTheLobbysChatElement(t *testing.T) {
	l, err := New()
	if err != nil {
		t.Fatal(err)
	}
	escaped := 0
	for seq := range uint64(2000) {
		stamp := Stamp(seq, 1764745000123456789)
		line, err := l.Line(seq, stamp)
		if err != nil {
			t.Fatal(err)
		}
		name, text := Said(seq)
		inner, ok := strings.CutPrefix(line, `<p class="chat-message"><strong>`+name+`</strong>: `)
		if !ok || !strings.HasSuffix(inner, " "+stamp+"</p>") {
			t.Fatalf("seq %d: %q is not the lobby's chat line for %q", seq, line, name)
		}
		if got := html.UnescapeString(strings.TrimSuffix(inner, " "+stamp+"</p>")); got != text {
			t.Fatalf("seq %d: text %q, want %q", seq, got, text)
		}
		if strings.Count(line, "^") != 2 {
			t.Fatalf("seq %d: want the stamp's two markers only: %q", seq, line)
		}
		if strings.Contains(text, "'") || strings.Contains(text, "<") {
			if !strings.Contains(line, "&#39;") && !strings.Contains(line, "&lt;") {
				t.Fatalf("seq %d: %q not escaped in %q", seq, text, line)
			}
			escaped++
		}
		if again, _ := l.Line(seq, stamp); again != line {
			t.Fatalf("seq %d: two lines for one seq", seq)
		}
	}
	if escaped == 0 {
		t.Fatal("no line needed escaping: the lobby's escaping is not exercised")
	}
}

// The text is chat-like: short lines mostly (median a few words), some
// long ones, nearly all different, the most frequent word a few percent
// of all words, and every person speaks.
func TestSaidIsChatLike(t *testing.T) {
	const n = 5000
	lengths := make([]int, 0, n)
	texts := map[string]bool{}
	counts := map[string]int{}
	speakers := map[string]bool{}
	total := 0
	for seq := range uint64(n) {
		name, text := Said(seq)
		speakers[name] = true
		texts[text] = true
		ws := strings.Fields(text)
		lengths = append(lengths, len(ws))
		for _, w := range ws {
			counts[strings.ToLower(strings.Trim(w, ",.?!"))]++
			total++
		}
	}
	slices.Sort(lengths)
	if med := lengths[n/2]; med < 3 || med > 8 {
		t.Errorf("median words per line %d, want 3 to 8", med)
	}
	if lengths[n-1] < 20 {
		t.Errorf("longest line %d words, want some long ones (20+)", lengths[n-1])
	}
	if len(texts) < n*9/10 {
		t.Errorf("%d different texts in %d lines: too repetitive", len(texts), n)
	}
	top := 0
	for _, c := range counts {
		top = max(top, c)
	}
	if share := float64(top) / float64(total); share < 0.02 || share > 0.15 {
		t.Errorf("the most frequent word is %.1f%% of words, want 2-15%%", 100*share)
	}
	if len(counts) < 300 {
		t.Errorf("%d different words used, want most of the vocabulary", len(counts))
	}
	if len(speakers) != len(people) {
		t.Errorf("%d of %d people spoke", len(speakers), len(people))
	}
}
