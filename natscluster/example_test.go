package natscluster_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/natscluster"
)

// startNode joins a node named id to the cluster on url and serves its
// hub's streams over HTTP.
func startNode(url, id string) (node *natscluster.Node, srv *httptest.Server, stop func(), err error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, nil, nil, err
	}
	store := sfere.NewMemoryStore(sfere.MemoryOptions{})
	node, err = natscluster.New(nc, store, natscluster.Options{NodeID: id})
	if err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	hub := node.Hub()
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := sfere.NewKey(sfere.DefaultScope, "lobby", r.URL.Query().Get("name"))
		hub.Serve(w, r, key, sfere.Comment("welcome to "+id))
	}))
	stop = func() {
		hub.Shutdown(context.Background())
		srv.Close()
		node.Close()
		nc.Close()
	}
	return node, srv, stop, nil
}

// greet works on a single hub and on a cluster node alike.
func greet(p sfere.Publisher, name string) error {
	_, err := p.Send(sfere.NewKey(sfere.DefaultScope, "lobby", name), sfere.Comment("hello "+name))
	return err
}

// Two nodes on one NATS: a stream opened on node a is reached from node b.
func Example() {
	ns, err := natscluster.StartServer("127.0.0.1:0", "")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ns.Shutdown()
	_, srvA, stopA, err := startNode(ns.ClientURL(), "a")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stopA()
	b, _, stopB, err := startNode(ns.ClientURL(), "b")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stopB()

	resp, err := http.Get(srvA.URL + "?name=phil")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	readComment := func() string {
		for lines.Scan() {
			if c, ok := strings.CutPrefix(lines.Text(), ": "); ok {
				return c
			}
		}
		return "stream ended"
	}
	fmt.Println(readComment())

	// b learns of phil's stream from a's announcement, within milliseconds.
	// Polls (an Example has no testing.T for ssetest.Eventually).
	for deadline := time.Now().Add(10 * time.Second); b.Count(sfere.All) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			fmt.Println("b never saw phil")
			return
		}
	}
	if err := greet(b, "phil"); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(readComment())
	fmt.Println("streams in the cluster:", b.Count(sfere.All))
	// Output:
	// welcome to a
	// hello phil
	// streams in the cluster: 1
}
