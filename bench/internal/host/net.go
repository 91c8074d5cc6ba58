package host

import (
	"os"
	"strconv"
	"strings"
)

// Counters are the kernel's counts of packets dropped on the way into
// the network stack (softnet backlog overflow: on loopback, a burst larger
// than net.core.netdev_max_backlog) and of TCP segments retransmitted.
// A dropped loopback packet costs its stream a retransmission timeout
// (200 ms and up), so these explain latency tails that no user-space code
// causes.
type Counters struct {
	SoftnetDrops int64 `json:"softnet_drops"`
	RetransSegs  int64 `json:"tcp_retrans_segs"`
	// SynRetrans counts SYNs sent again (a connection attempt that got
	// no answer within 1 s), ListenOverflows connections a full accept
	// queue turned away (TcpExt counters).
	SynRetrans      int64 `json:"tcp_syn_retrans"`
	ListenOverflows int64 `json:"tcp_listen_overflows"`
}

// Read returns the counters now. They are machine-wide: other programs'
// traffic counts too.
func Read() Counters {
	var c Counters
	if b, err := os.ReadFile("/proc/net/softnet_stat"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 1 {
				v, _ := strconv.ParseInt(f[1], 16, 64)
				c.SoftnetDrops += v
			}
		}
	}
	tcp := procCounters("/proc/net/snmp", "Tcp: ")
	ext := procCounters("/proc/net/netstat", "TcpExt: ")
	c.RetransSegs, c.SynRetrans, c.ListenOverflows = tcp["RetransSegs"], ext["TCPSynRetrans"], ext["ListenOverflows"]
	return c
}

// procCounters reads one table of a /proc/net counters file (snmp,
// netstat): a line of names after prefix, then a line of values after it.
func procCounters(path, prefix string) map[string]int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var names []string
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		if names == nil {
			names = strings.Fields(rest)
			continue
		}
		out := make(map[string]int64, len(names))
		for i, v := range strings.Fields(rest) {
			if i < len(names) {
				out[names[i]], _ = strconv.ParseInt(v, 10, 64)
			}
		}
		return out
	}
	return nil
}

// Sub returns the counts from d to c.
func (c Counters) Sub(d Counters) Counters {
	return Counters{SoftnetDrops: c.SoftnetDrops - d.SoftnetDrops, RetransSegs: c.RetransSegs - d.RetransSegs,
		SynRetrans: c.SynRetrans - d.SynRetrans, ListenOverflows: c.ListenOverflows - d.ListenOverflows}
}

// MaxBacklog returns net.core.netdev_max_backlog, or 0 if it cannot be read.
func MaxBacklog() int {
	b, err := os.ReadFile("/proc/sys/net/core/netdev_max_backlog")
	if err != nil {
		return 0
	}
	v, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return v
}
