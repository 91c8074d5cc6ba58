package main

import "testing"

// The id check orders a message's events by part, its last event (no
// part) after the others, and the next message after all of them.
func TestParseIDOrdersParts(t *testing.T) {
	ordered := []string{"e1-7.1", "e1-7.2", "e1-7", "e1-8.1", "e1-8", "e1-10"}
	var prevOff, prevPart uint64
	for i, id := range ordered {
		epoch, off, part, ok := parseID(id)
		if !ok || epoch != "e1" {
			t.Fatalf("parseID(%q) = %q, ok %v", id, epoch, ok)
		}
		if i > 0 && (off < prevOff || off == prevOff && part <= prevPart) {
			t.Errorf("%q does not come after %q", id, ordered[i-1])
		}
		prevOff, prevPart = off, part
	}
	for _, bad := range []string{"", "7", "-7", "e1-x", "e1-7.x"} {
		if _, _, _, ok := parseID(bad); ok {
			t.Errorf("parseID(%q) accepted it", bad)
		}
	}
	if epoch, _, _, _ := parseID("ab-cd-12.3"); epoch != "ab-cd" {
		t.Errorf("an epoch with a dash: got %q", epoch)
	}
}
