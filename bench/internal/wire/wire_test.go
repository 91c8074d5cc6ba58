package wire

import (
	"strconv"
	"strings"
	"testing"
)

// A lobby line carries its stamp once, between markers, and no other
// marker; it is about size bytes, and the same for the same seq.
func TestLobbyHTML(t *testing.T) {
	for seq := uint64(0); seq < 500; seq++ {
		s := LobbyHTML(seq, 1764745000123456789, 200)
		if strings.Count(s, string(Marker)) != 2 || !strings.Contains(s, "^"+strconv.FormatUint(seq, 10)+":1764745000123456789^") {
			t.Fatalf("seq %d: stamp not found once in %q", seq, s)
		}
		if len(s) < 190 || len(s) > 200 {
			t.Fatalf("seq %d: %d bytes, want 190 to 200: %q", seq, len(s), s)
		}
		if s != LobbyHTML(seq, 1764745000123456789, 200) {
			t.Fatalf("seq %d: two lines for one seq", seq)
		}
	}
}
