package lobby_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sfere-go/sfere/internal/lobby"
)

// Names are identities compared under PRECIS: while phil is here, "PHIL"
// and a full-width "ｐｈｉｌ" are taken; phil joining again as "PHIL" keeps
// the spelling everyone sees; once phil has left, "PHIL" may join.
func TestNamesThatLookAlikeAreOneName(t *testing.T) {
	srv := startServer(t, lobby.Options{Grace: testGrace})
	bs := newBrowser(t, srv).enter("brian")
	phil := newBrowser(t, srv)
	phil.enter("phil")
	bs.waitFor(joinedLine("phil"))
	for _, name := range []string{"PHIL", "Phil", "ｐｈｉｌ"} {
		if r := newBrowser(t, srv).post("/join", map[string]any{"username": name}); r.status != http.StatusConflict {
			t.Fatalf("joining as %q while phil is here: status %d, want 409", name, r.status)
		}
	}
	// The same session again, spelled otherwise: still "phil".
	if r := phil.join("PHIL"); !strings.Contains(r.body, "<strong>phil</strong>") {
		t.Fatalf("phil joining again as PHIL: the page says\n%s", r.body)
	}
	if r := phil.post("/leave", map[string]any{}); r.status != http.StatusOK {
		t.Fatalf("leave: status %d", r.status)
	}
	bs.waitFor(leftLine("phil"))
	newBrowser(t, srv).enter("PHIL")
	bs.waitFor(joinedLine("PHIL"))
}

// An identity is taken on every node of a cluster.
func TestNamesThatLookAlikeAreOneNameAcrossNodes(t *testing.T) {
	node := newCluster(t, lobby.Options{})
	a, b := node("a"), node("b")
	ps := newBrowser(t, a).enter("phil")
	ps.waitFor(joinedLine("phil"))
	if r := newBrowser(t, b).post("/join", map[string]any{"username": "PHIL"}); r.status != http.StatusConflict {
		t.Fatalf("joining as PHIL on another node while phil is here: status %d, want 409", r.status)
	}
}
