package lobby_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/ssetest"
)

var (
	watchdogSilenceRE = regexp.MustCompile(`\$_streamSeen &gt;\s+(\d+)\s`)
	positionPatchRE   = regexp.MustCompile(`^signals \{"_streamPos":"([^"]+)"\}$`)
)

// By default the page carries the watchdog (its silence 2.2 heartbeats),
// the stream's beats are signal patches, and every line is followed by
// the page's new position, which is also the line's id: a page that
// reopens its stream from the last position it was told gets nothing
// twice. With HiddenHeartbeat the page opens its stream as before, and
// the beats are comments.
func TestVisibleHeartbeatAndWatchdog(t *testing.T) {
	const heartbeat = 2 * time.Second
	srv := startServer(t, lobby.Options{Heartbeat: heartbeat})
	brian, phil := newBrowser(t, srv), newBrowser(t, srv)
	page := brian.join("brian").body
	if m := watchdogSilenceRE.FindStringSubmatch(page); !strings.Contains(page, `id="stream-watchdog"`) || m == nil || m[1] != "4400" {
		t.Fatalf("the lobby does not carry the watchdog with a silence of 4400 ms:\n%s", page)
	}
	bs := brian.openStream()
	bs.waitFor(`id="participant-list"`)
	phil.enter("phil")
	phil.say("hello")
	line := bs.waitFor("phil</strong>: hello")
	next, err := bs.Seen(waitLong, ssetest.Where("the next event", func(e ssetest.Event) bool { return e.Seq == line.Seq+1 }))
	if err != nil {
		t.Fatal(err)
	}
	m := positionPatchRE.FindStringSubmatch(next.Text())
	if m == nil || next.Type != "datastar-patch-signals" || !next.HasID || next.ID != m[1] || line.HasID {
		t.Fatalf("after the line %v came %v: want the position patch carrying the line's id", line, next)
	}
	beat := bs.WaitSeen(2*heartbeat+waitLong, ssetest.Where("a visible beat", func(e ssetest.Event) bool {
		return e.Type == "datastar-patch-signals" && strings.Contains(e.Text(), `"_streamBeat":`)
	}))
	if beat.HasID || !strings.Contains(beat.Text(), `"_streamPos":"`) {
		t.Fatalf("beat %v: want the time and the position, no id", beat)
	}

	hidden := startServer(t, lobby.Options{Heartbeat: 300 * time.Millisecond, HiddenHeartbeat: true})
	carol := newBrowser(t, hidden)
	page = carol.join("carol").body
	if strings.Contains(page, "stream-watchdog") || !strings.Contains(page, `data-init="@post('/sse?lastEventID=`) {
		t.Fatalf("with a hidden heartbeat the lobby still carries the watchdog, or does not open its stream:\n%s", page)
	}
	cs := carol.openStream()
	cs.WaitSeen(waitLong, ssetest.CommentIs("heartbeat"))
	carol.say("hi")
	cs.waitFor("carol</strong>: hi")
	for _, e := range cs.Events() {
		if e.Type == "datastar-patch-signals" && strings.Contains(e.Text(), "_stream") {
			t.Fatalf("a hidden heartbeat's stream carries %v", e)
		}
	}
}
