package lobby_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sfere-go/sfere/internal/lobby"
	"github.com/sfere-go/sfere/internal/ssetest"
)

// Join/leave cycles by every path, many at once, names reused: afterwards no
// store entry, no participant and no goroutine is left, every name is free
// again, and an observer saw exactly as many "left" lines (and list
// removals) as "joined" lines for every name.
//
// The normal suite runs 600 cycles; SFERE_SOAK=1 runs 10,000.
func TestChurnCyclesLeaveNothing(t *testing.T) {
	cycles, workers := 600, 12
	if soak() {
		cycles, workers = 10_000, 50
	}
	ignore := goleak.IgnoreCurrent()
	// Long enough for a reload under load (a reload after grace is told to
	// join again, rightly, and would count as an error here).
	const grace = 250 * time.Millisecond
	srv, err := lobby.Start(t.Context(), lobby.Options{
		Addr: "127.0.0.1:0", Grace: grace, Heartbeat: time.Second, JoinTimeout: 2 * time.Second, Debug: true,
		MaxStreamsPerIP: -1, MessageRate: -1, JoinRate: -1, StreamRate: -1, AddressMessageRate: -1, NamesPerAddress: -1, Logger: ssetest.Logger(t, slog.LevelDebug),
		Resume: -1, // the workers reuse names with new sessions: a name must be free at its departure
	})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}
	defer stop()
	base := srv.URL()
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	obsClient := newLClient(base, tr)
	if err := obsClient.join("observer"); err != nil {
		t.Fatal(err)
	}
	obs, err := obsClient.openProbe(true, dialOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if err := obs.waitListed(waitLong); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	var (
		done     atomic.Int64
		errs     atomic.Int64
		firstErr atomic.Pointer[error]
		paths    [5]atomic.Int64
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		errs.Add(1)
		firstErr.CompareAndSwap(nil, &err)
	}
	open := func(c *lclient) *probe {
		p, err := c.openProbe(true, dialOpts{light: true})
		if err != nil {
			fail(err)
			return nil
		}
		if err := p.waitListed(waitLong); err != nil {
			fail(fmt.Errorf("%w: %s", err, p.dump()))
		}
		return p
	}
	leave := func(c *lclient) {
		if status, body, err := c.post("/leave", nil); err != nil || status != http.StatusOK {
			fail(fmt.Errorf("leave: %d %v %s", status, err, body))
		}
	}
	for w := range workers {
		wg.Go(func() {
			for n := w; n < cycles; n += workers {
				c := newLClient(base, tr)
				name := fmt.Sprintf("w%02d-%d", w, n%3) // names come back
				err := c.join(name)
				for try := 0; err != nil && try < 10; try++ {
					// The same name may still be on its way out (grace).
					time.Sleep(grace)
					err = c.join(name)
				}
				if err != nil {
					fail(err)
					continue
				}
				path := n % 5
				paths[path].Add(1)
				switch path {
				case 0: // join, stream, Leave
					p := open(c)
					leave(c)
					if p != nil {
						p.waitEnd(waitLong)
						p.close()
					}
				case 1: // join, stream, the tab closes (left after grace)
					if p := open(c); p != nil {
						p.close()
					}
				case 2: // a reload within grace, then Leave
					if p := open(c); p != nil {
						p.close()
					}
					if p := open(c); p != nil {
						leave(c)
						p.close()
					}
				case 3: // a rename (the old name leaves), then Leave
					p := open(c)
					if err := c.join(name + "-b"); err != nil {
						fail(err)
					}
					p2 := open(c)
					leave(c)
					for _, p := range []*probe{p, p2} {
						if p != nil {
							p.close()
						}
					}
				case 4: // join and Leave without ever opening the stream: never announced
					leave(c)
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if n := errs.Load(); n > 0 {
		t.Fatalf("%d errors in %d cycles; first: %v", n, done.Load(), *firstErr.Load())
	}

	// Nothing left behind: streams, participants.
	ssetest.Eventually(t, 10*time.Second, "only the observer is left", func() bool {
		v, err := metricValue(obsClient.hc, base, "lobby_participants")
		return err == nil && v == 1
	})
	db := newBrowser(t, srv)
	if keys := debugPeople(t, db); len(keys) != 1 || keys[0] != "observer" {
		t.Errorf("streams left: %q", keys)
	}
	db.client.CloseIdleConnections()
	time.Sleep(3 * grace)

	// Every arrival has exactly one departure, and one list removal.
	var joined, left int
	obs.with(func(p *probe) {
		if len(p.badLines) > 0 {
			t.Errorf("malformed SSE lines: %q", p.badLines)
		}
		for name, j := range p.joined {
			if name == "observer" {
				continue // its own arrival
			}
			l := p.left[name]
			joined, left = joined+j, left+l
			if j != l {
				t.Errorf("%s: joined %d times, left %d times", name, j, l)
			}
		}
		for name, l := range p.left {
			if p.joined[name] == 0 {
				t.Errorf("%s left %d times without joining", name, l)
			}
		}
		removed := 0
		for _, n := range p.removed {
			removed += n
		}
		if removed != left {
			t.Errorf("%d list removals for %d departures", removed, left)
		}
	})
	t.Logf("%d cycles by %d workers in %v (%.0f/s; paths leave/close/reload/rename/unannounced %d/%d/%d/%d/%d): %d joined lines, %d left lines",
		done.Load(), workers, took.Round(time.Millisecond), float64(done.Load())/took.Seconds(),
		paths[0].Load(), paths[1].Load(), paths[2].Load(), paths[3].Load(), paths[4].Load(), joined, left)
	if want := int(paths[0].Load() + paths[1].Load() + paths[2].Load() + 2*paths[3].Load()); joined != want {
		t.Errorf("%d joined lines, want %d (one per announced name)", joined, want)
	}

	// Every name is free again.
	for w := range workers {
		for k := range 3 {
			name := fmt.Sprintf("w%02d-%d", w, k)
			c := newLClient(base, tr)
			if err := c.join(name); err != nil {
				t.Errorf("name %s is not free: %v", name, err)
			}
			leave(c)
		}
	}

	// No goroutine outlives the server.
	obs.close()
	tr.CloseIdleConnections()
	stop()
	goleak.VerifyNone(t, ignore)
}
