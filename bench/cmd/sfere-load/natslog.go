package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

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

// startNATS starts n NATS servers, routed into one cluster when n > 1
// (each with its own temporary store): in this process, or as processes
// of the nats-server binary bin if it is not empty. It returns their
// client URLs, comma separated.
func (c *nodes) startNATS(n int, bin string) (string, error) {
	if bin != "" {
		return c.startNATSProcesses(n, bin)
	}
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

// natsProc is a nats-server process and its store.
type natsProc struct {
	cmd *exec.Cmd
	dir string
}

// stop ends the process (SIGTERM, then SIGKILL after 5 s) and removes
// its store.
func (p *natsProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	os.RemoveAll(p.dir)
}

// startNATSProcesses is startNATS with nats-server processes.
func (c *nodes) startNATSProcesses(n int, bin string) (string, error) {
	type addrs struct{ client, cluster string }
	all := make([]addrs, n)
	var routes, urls []string
	for i := range all {
		var err error
		if all[i].client, err = freeAddr(); err != nil {
			return "", err
		}
		if all[i].cluster, err = freeAddr(); err != nil {
			return "", err
		}
		routes = append(routes, "nats://"+all[i].cluster)
		urls = append(urls, "nats://"+all[i].client)
	}
	for i, a := range all {
		dir, err := os.MkdirTemp("", "sfere-load-nats-")
		if err != nil {
			return "", err
		}
		host, port, _ := net.SplitHostPort(a.client)
		args := []string{"-a", host, "-p", port, "-n", fmt.Sprintf("nats%d", i), "-js", "-sd", dir}
		if n > 1 {
			args = append(args, "--cluster_name", "sfere", "-cluster", "nats://"+a.cluster, "-routes", strings.Join(routes, ","))
		}
		cmd := exec.Command(bin, args...)
		if err := cmd.Start(); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("nats-server: %w", err)
		}
		c.procs = append(c.procs, &natsProc{cmd: cmd, dir: dir})
		deadline := time.Now().Add(10 * time.Second)
		for {
			conn, err := net.DialTimeout("tcp", a.client, time.Second)
			if err == nil {
				conn.Close()
				break
			}
			if time.Now().After(deadline) {
				return "", fmt.Errorf("nats-server on %s not ready after 10s: %w", a.client, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return strings.Join(urls, ","), nil
}
