package bots

import (
	"os"
	"strings"
	"syscall"
	"time"
)

// selfCPU is this process's user + system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// raiseFDLimit raises this process's open-file soft limit to its hard
// limit (workers and server children inherit it) and returns the limit now
// in force.
func raiseFDLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		next := rl
		next.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
			return rl.Cur, err
		}
		rl.Cur = rl.Max
	}
	return rl.Cur, nil
}

// loadAverage is the machine's 1, 5 and 15 minute load average, "" when
// unknown: other processes on the machine skew a benchmark's figures.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
