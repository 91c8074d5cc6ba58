// Package host describes the machine a load tool runs on: its facts, its
// load, its open-file limit, and the kernel's network counters that
// explain latency tails no user-space code causes. Both load tools record
// them with their results.
package host

import (
	"os"
	"runtime"
	"strings"
	"syscall"
)

// Machine is what a results file says of the machine.
type Machine struct {
	CPUs      int    `json:"cpus"`
	Go        string `json:"go"`
	Kernel    string `json:"kernel"`
	CPU       string `json:"cpu"`
	MemTotal  string `json:"mem_total"`
	FileLimit uint64 `json:"file_limit"`
	LoadAvg   string `json:"loadavg_at_start"`
	// NetdevMaxBacklog is net.core.netdev_max_backlog: loopback packets
	// beyond it in one softirq burst are dropped (see Counters).
	NetdevMaxBacklog int `json:"netdev_max_backlog"`
}

// Describe returns the machine's facts now.
func Describe() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), FileLimit: FileLimit(), LoadAvg: LoadAvg(), NetdevMaxBacklog: MaxBacklog()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		m.MemTotal = strings.Join(strings.Fields(strings.TrimPrefix(line, "MemTotal:")), " ")
	}
	return m
}

// LoadAvg returns /proc/loadavg ("" if it cannot be read).
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// FileLimit returns the process's soft open-file limit.
func FileLimit() uint64 {
	var lim syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	return lim.Cur
}

// RaiseFileLimit lifts the soft open-file limit to the hard one and
// returns both.
func RaiseFileLimit() (cur, hard uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, err
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	return lim.Cur, lim.Max, err
}
