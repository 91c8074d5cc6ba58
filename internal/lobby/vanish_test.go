package lobby_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/netfault"
)

// Success criteria 2 and 3 for a machine that vanishes without closing its
// connection (no FIN, no RST: its packets are dropped): the heartbeat write
// goes unacknowledged, TCP_USER_TIMEOUT ends the connection, and Phil sees
// exactly one "brian left the lobby" within heartbeat + user timeout + 2 s:
// no grace period is added, since a peer TCP gave up on cannot be reloading.
// Phil's stream stays up.
//
// With LOBBY_DEFAULT_TIMING=1 it also runs with the command's defaults
// (heartbeat 10 s, user timeout 5 s, grace 2 s), which takes about 20 s.
func TestVanishedPeerAnnouncedOnce(t *testing.T) {
	if err := netfault.Available(); err != nil {
		t.Skip(err)
	}
	t.Run("short", func(t *testing.T) { testVanishedPeer(t, time.Second, 2*time.Second, testGrace) })
	t.Run("defaults", func(t *testing.T) {
		if os.Getenv("LOBBY_DEFAULT_TIMING") == "" {
			t.Skip("set LOBBY_DEFAULT_TIMING=1 to measure with the default heartbeat, user timeout and grace (about 20 s)")
		}
		d := lobby.DefaultOptions
		testVanishedPeer(t, d.Heartbeat, d.UserTimeout, d.Grace)
	})
}

func testVanishedPeer(t *testing.T, heartbeat, userTimeout, grace time.Duration) {
	srv := startServer(t, lobby.Options{Heartbeat: heartbeat, UserTimeout: userTimeout, Grace: grace, Debug: true})
	brian, phil := newBrowser(t, srv), newBrowser(t, srv)
	bs := brian.enter("brian")
	ps := phil.enter("phil")
	bs.waitFor(joinedLine("phil"))

	netfault.DropConn(t, bs.LocalPort(), bs.RemotePort())
	dropped := time.Now()
	limit := heartbeat + userTimeout + 2*time.Second
	left := ps.waitForWithin(leftLine("brian"), limit)
	rm := ps.waitFor(removal("brian"))
	if !strings.Contains(rm.Text(), "mode remove") {
		t.Errorf("removal event is not a remove: %s", rm.Text())
	}
	t.Logf("vanished peer -> \"brian left the lobby\" at Phil after %v (heartbeat %v, user timeout %v, grace %v; limit %v)",
		left.At.Sub(dropped).Round(time.Millisecond), heartbeat, userTimeout, grace, limit)

	time.Sleep(grace + min(2*heartbeat, 3*time.Second)) // negative check: a second departure (grace or heartbeat) would come by now
	if n := ps.count(leftLine("brian")); n != 1 {
		t.Errorf("Phil saw %d \"brian left\" lines, want 1:\n%s", n, ps.dump())
	}
	if n := ps.count(removal("brian")); n != 1 {
		t.Errorf("Phil saw %d removals, want 1", n)
	}
	phil.say("brian vanished")
	ps.waitFor("<strong>phil</strong>: brian vanished")
	if keys := debugPeople(t, phil); len(keys) != 1 || keys[0] != "phil" {
		t.Errorf("debug keys = %q", keys)
	}
	if r := phil.get("/metrics"); !strings.Contains(r.body, `lobby_departures_total{reason="closed"} 1`) {
		t.Errorf("departure not counted as closed")
	}
}
