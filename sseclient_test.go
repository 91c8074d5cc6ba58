package sfere

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sfere-go/sfere/internal/ssetest"
)

// testServer serves hub streams at /sse?id=ID over real loopback TCP. Its
// cleanup shuts the hub down first, so no Serve is left blocking Close.
func testServer(t *testing.T, hub *Hub, initial ...Effect) *httptest.Server {
	t.Helper()
	return testServerOn(t, nil, hub, initial...)
}

// testServerOn is testServer on the given listener (nil: httptest's own).
func testServerOn(t *testing.T, ln net.Listener, hub *Hub, initial ...Effect) *httptest.Server {
	t.Helper()
	return serveWith(t, ln, hub, func(w http.ResponseWriter, r *http.Request, key Key) error {
		return hub.Serve(w, r, key, initial...)
	})
}

// serveWith serves streams at /sse?id=ID with open (Serve, Detach, ...)
// on ln (nil: httptest's own); its cleanup shuts the hub down first.
func serveWith(t *testing.T, ln net.Listener, hub *Hub, open func(w http.ResponseWriter, r *http.Request, key Key) error) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := NewKey(DefaultScope, "lobby", r.URL.Query().Get("id"))
		if err := open(w, r, key); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	}))
	if ln != nil {
		srv.Listener.Close()
		srv.Listener = ln
	}
	srv.Config.ConnContext = ConnContext
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hub.Shutdown(ctx); err != nil {
			t.Errorf("hub shutdown: %v", err)
		}
	})
	return srv
}

// dial opens a Datastar stream at /sse?id=id on srv with a raw TCP
// client of its own, so the test controls the socket: close it like a
// tab, reset it, stop reading (ssetest.NoRead), or drop its packets.
func dial(t testing.TB, srv *httptest.Server, id string, opts ...ssetest.Option) *ssetest.Client {
	t.Helper()
	return ssetest.Open(t, srv.Listener.Addr().String(), ssetest.DatastarPost("/sse?id="+id, "{}"), opts...)
}
