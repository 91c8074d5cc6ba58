package sfere

import (
	"errors"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/netfault"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// A vanished peer found while the server keeps writing to it (a busy
// stream, not an idle one) is still reported as vanished: after TCP's user
// timeout aborts the connection, the kernel says ETIMEDOUT once, usually
// to net/http's background read, and EPIPE to every write after, so the
// write error alone does not tell.
func TestVanishedPeerUnderWritesIsVanished(t *testing.T) {
	if err := netfault.Available(); err != nil {
		t.Skip(err)
	}
	bothPaths(t, func(t *testing.T, noHijack bool) {
		const userTimeout = time.Second
		hub, ev := newMemoryHub(t, HubOptions{NoHijack: noHijack})
		ln, err := Listen(t.Context(), "tcp", "127.0.0.1:0", ListenOptions{UserTimeout: userTimeout})
		if err != nil {
			t.Fatal(err)
		}
		srv := testServerOn(t, ln, hub, Comment("hello"))
		brian := dial(t, srv, "brian")
		brian.Wait(waitLong, ssetest.Containing(": hello"))
		defer keepSending(hub, lobbyKey("brian"), Comment("busy"), time.Millisecond)()
		netfault.DropPort(t, brian.LocalPort())
		got := ev.next(t, userTimeout+3*time.Second)
		if got.Cause != CauseClosed || !errors.Is(got.Err, ErrPeerVanished) {
			t.Fatalf("eviction = %v (%v), want closed, vanished", got.Cause, got.Err)
		}
	})
}
