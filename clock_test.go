package sfere

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
)

// Timers under a fake clock (testing/synctest): heartbeat intervals, the
// eviction of a stream whose writes fail, and TTL expiry, each at its exact
// fake time, and no beat once the heartbeat stopped. The real-time
// counterparts, with generous bounds, are TestHeartbeatWritesCommentsAndStops,
// TestHeartbeatFindsVanishedPeer and TestTTLStoreExpiresRealTime below.

// fakeWriter is a ResponseWriter whose flushes can be made to fail, as a
// connection to a client that went away does.
type fakeWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	hdr   http.Header
	fail  atomic.Bool
	beats []time.Time
}

func (w *fakeWriter) Header() http.Header {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.hdr == nil {
		w.hdr = http.Header{}
	}
	return w.hdr
}

func (w *fakeWriter) WriteHeader(int) {}

func (w *fakeWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if bytes.Equal(p, []byte(": heartbeat\n\n")) {
		w.beats = append(w.beats, time.Now())
	}
	return w.buf.Write(p)
}

func (w *fakeWriter) FlushError() error {
	if w.fail.Load() {
		return errors.New("broken pipe")
	}
	return nil
}

func (w *fakeWriter) beatTimes() []time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Time(nil), w.beats...)
}

// serveFake serves key on w until ctx ends; it returns when Serve does.
func serveFake(hub *Hub, key Key, w *fakeWriter, ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/sse", nil)
	go func() {
		defer close(done)
		hub.Serve(w, r, key)
	}()
	return done
}

func TestHeartbeatFakeClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 10 * time.Second
		var (
			mu      sync.Mutex
			evicted []Eviction
			at      []time.Time
		)
		store := NewMemoryStore(MemoryOptions{OnEvict: func(ev Eviction) {
			mu.Lock()
			evicted, at = append(evicted, ev), append(at, time.Now())
			mu.Unlock()
		}})
		hub := NewHub(store, HubOptions{})
		start := time.Now()
		brian, phil := &fakeWriter{}, &fakeWriter{}
		bdone := serveFake(hub, lobbyKey("brian"), brian, context.Background())
		pdone := serveFake(hub, lobbyKey("phil"), phil, context.Background())
		hb := NewHeartbeat(hub, All, interval)
		stop := hb.Start()

		time.Sleep(interval - time.Nanosecond)
		synctest.Wait()
		if n := len(brian.beatTimes()); n != 0 {
			t.Fatalf("%d beats before the first interval", n)
		}
		time.Sleep(time.Nanosecond + 6*interval)
		synctest.Wait()
		for i, ts := range brian.beatTimes() {
			if want := start.Add(time.Duration(i+1) * interval); !ts.Equal(want) {
				t.Errorf("beat %d at +%v, want +%v", i+1, ts.Sub(start), want.Sub(start))
			}
		}
		if n := len(brian.beatTimes()); n != 7 {
			t.Errorf("%d beats in 7 intervals, want 7", n)
		}

		// Brian's connection breaks: the next beat's flush fails and ends
		// his stream, at that beat's exact time; Phil's goes on.
		brian.fail.Store(true)
		time.Sleep(interval)
		synctest.Wait()
		<-bdone
		mu.Lock()
		if len(evicted) != 1 || evicted[0].Key != lobbyKey("brian") || evicted[0].Cause != CauseClosed || !errors.Is(evicted[0].Err, ErrWrite) {
			t.Errorf("evictions = %+v, want brian closed by a failed write", evicted)
		} else if took := at[0].Sub(start); took != 8*interval {
			t.Errorf("brian evicted at +%v, want +%v (the first beat after the break)", took, 8*interval)
		}
		mu.Unlock()
		if st := hb.Stats(); st.Sweeps != 8 || st.Failures != 1 || st.Writes != 15 {
			t.Errorf("stats = %+v, want 8 sweeps, 15 writes, 1 failure", st)
		}
		stop()
		// Stopped means stopped: ten more intervals pass without a sweep.
		time.Sleep(10 * interval)
		synctest.Wait()
		if st := hb.Stats(); st.Sweeps != 8 || len(phil.beatTimes()) != 8 {
			t.Errorf("after stop and ten intervals: stats %+v, phil %d beats; want 8 sweeps and beats", st, len(phil.beatTimes()))
		}
		hub.Shutdown(context.Background())
		<-pdone
	})
}

func TestTTLExpiryFakeClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl, interval = 30 * time.Second, 10 * time.Second
		var (
			mu      sync.Mutex
			ev      = map[string]time.Time{}
			closing atomic.Bool
		)
		store, err := NewTTLStore(TTLOptions{Duration: ttl, OnEvict: func(e Eviction) {
			if closing.Load() {
				return
			}
			if e.Cause != CauseExpired {
				t.Errorf("%v evicted: %v", e.Key, e.Cause)
			}
			mu.Lock()
			ev[e.Key.ID] = time.Now()
			mu.Unlock()
		}})
		if err != nil {
			t.Fatal(err)
		}
		hub := NewHub(store, HubOptions{})
		start := time.Now()
		// beaten gets a heartbeat (each write restarts its sliding timer);
		// idle is in another category the heartbeat does not reach.
		beaten, idle := &fakeWriter{}, &fakeWriter{}
		serveFake(hub, lobbyKey("beaten"), beaten, context.Background())
		serveFake(hub, NewKey(DefaultScope, "quiet", "idle"), idle, context.Background())
		stop := NewHeartbeat(hub, InCategory("lobby"), interval).Start()

		time.Sleep(ttl - time.Nanosecond)
		synctest.Wait()
		mu.Lock()
		if len(ev) != 0 {
			t.Errorf("evicted before the TTL: %v", ev)
		}
		mu.Unlock()
		// The cache notices expiry on its clean-up, once a second.
		time.Sleep(time.Second + time.Nanosecond)
		synctest.Wait()
		mu.Lock()
		if at, ok := ev["idle"]; !ok || at.Sub(start) < ttl || at.Sub(start) > ttl+time.Second {
			t.Errorf("idle stream evicted at +%v (%v), want within a second after %v", at.Sub(start), ok, ttl)
		}
		mu.Unlock()
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		mu.Lock()
		if at, ok := ev["beaten"]; ok {
			t.Errorf("a stream the heartbeat writes to expired at +%v", at.Sub(start))
		}
		mu.Unlock()
		stop()
		closing.Store(true)
		hub.Shutdown(context.Background())
		store.Close()
	})
}

// The same in real time, with generous bounds: a stream nobody writes to
// expires about TTL after it was stored; one under a heartbeat stays.
func TestTTLStoreExpiresRealTime(t *testing.T) {
	const ttl = 300 * time.Millisecond
	ev := newEvictions()
	store, err := NewTTLStore(TTLOptions{Duration: ttl, OnEvict: ev.record})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	hub := NewHub(store, HubOptions{})
	srv := testServer(t, hub)
	start := time.Now()
	dial(t, srv, "beaten")
	ssetest.Eventually(t, waitLong, "the stream", func() bool { return hub.Count(All) == 1 })
	stop := NewHeartbeat(hub, lobbyKey("beaten").Pattern(), ttl/3).Start()
	defer stop()
	dial(t, srv, "quiet") // the heartbeat does not reach it
	got := ev.next(t, ttl+3*time.Second)
	took := time.Since(start)
	t.Logf("idle stream expired after %v (TTL %v)", took.Round(time.Millisecond), ttl)
	if got.Cause != CauseExpired || got.Key.ID != "quiet" || took < ttl {
		t.Fatalf("eviction after %v = %+v, want quiet expired after %v", took, got, ttl)
	}
	ev.none(t, 3*ttl)
	if hub.Count(All) != 1 {
		t.Errorf("the stream under the heartbeat is gone")
	}
}
