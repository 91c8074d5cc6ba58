package natscluster_test

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/natscluster"
)

// freePort returns a loopback address that was free a moment ago.
func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Three NATS servers, as three app processes would each embed one, routed
// into one NATS cluster: a node with a history gets an event log of 3
// replicas, and a broadcast returns nil only once a majority of them
// holds the event (or fails with ErrNoLog, delivered nowhere).
func ExampleStartServerWith() {
	var opts []natscluster.ServerOptions
	var routes, urls []string
	for i := range 3 {
		o := natscluster.ServerOptions{Addr: freePort(), Cluster: freePort(), Name: fmt.Sprintf("nats-%d", i)}
		opts = append(opts, o)
		routes = append(routes, "nats://"+o.Cluster)
		urls = append(urls, "nats://"+o.Addr)
	}
	for _, o := range opts {
		o.Routes = routes
		s, err := natscluster.StartServerWith(o)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer s.Shutdown()
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.ReconnectBufSize(-1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	// New waits for the NATS cluster to elect its JetStream leader.
	node, err := natscluster.New(nc, sfere.NewMemoryStore(sfere.MemoryOptions{}), natscluster.Options{
		Hub: sfere.HubOptions{History: sfere.HistoryOptions{Size: 100}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()
	_, err = node.Broadcast(sfere.All, nil, sfere.Comment("in the log"))
	switch {
	case errors.Is(err, natscluster.ErrNoLog):
		fmt.Println("not sent; try again")
	case err != nil:
		fmt.Println(err)
	default:
		fmt.Println("in the log, on a majority of 3 replicas")
	}
	// Output: in the log, on a majority of 3 replicas
}
