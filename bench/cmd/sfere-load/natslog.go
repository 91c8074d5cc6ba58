package main

import (
	"fmt"
	"net"
	"strings"

	"github.com/sfere-go/sfere/natscluster"
)

// logSpec is one configuration of the cluster's event log under several
// nodes: none (broadcasts travel as plain NATS messages) or a history
// kept in a JetStream log of so many replicas.
type logSpec struct {
	name              string
	history, replicas int
}

// logSpecs are the configurations -cluster-log names.
var logSpecs = map[string]logSpec{
	"none": {name: "none"},
	"r1":   {name: "r1", history: 1000, replicas: 1},
	"r3":   {name: "r3", history: 1000, replicas: 3},
}

// suffix marks a trial's label with its log ("" for none).
func (l logSpec) suffix() string {
	if l.history == 0 {
		return ""
	}
	return "+log-" + l.name
}

// startNATS starts n NATS servers in this process, routed into one
// cluster when n > 1 (each with its own temporary store), and returns
// their client URLs, comma separated.
func (c *nodes) startNATS(n int) (string, error) {
	if n == 1 {
		ns, err := natscluster.StartServer("127.0.0.1:0", "")
		if err != nil {
			return "", err
		}
		c.nats = append(c.nats, ns)
		return ns.ClientURL(), nil
	}
	opts := make([]natscluster.ServerOptions, n)
	var routes []string
	for i := range opts {
		client, err := freeAddr()
		if err != nil {
			return "", err
		}
		cluster, err := freeAddr()
		if err != nil {
			return "", err
		}
		opts[i] = natscluster.ServerOptions{Addr: client, Cluster: cluster, Name: fmt.Sprintf("nats%d", i)}
		routes = append(routes, "nats://"+cluster)
	}
	var urls []string
	for i := range opts {
		opts[i].Routes = routes
		ns, err := natscluster.StartServerWith(opts[i])
		if err != nil {
			return "", err
		}
		c.nats = append(c.nats, ns)
		urls = append(urls, ns.ClientURL())
	}
	return strings.Join(urls, ","), nil
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
