package hearthtest

import (
	"runtime"
	"strings"
)

// GoroutineStates returns the scheduler state ("IO wait", "syscall",
// "chan receive", …) of each goroutine in the process whose stack names
// fn, a function as a stack trace prints it ("gate.(*readPoller).run").
// Tests use it to see how a long-lived goroutine waits: on the runtime's
// poller, or holding a thread in a system call.
func GoroutineStates(fn string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var states []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, fn) {
			continue
		}
		// "goroutine 7 [IO wait, 2 minutes]:"
		head, _, _ := strings.Cut(g, "\n")
		_, st, _ := strings.Cut(head, "[")
		st, _, _ = strings.Cut(st, "]")
		st, _, _ = strings.Cut(st, ",")
		states = append(states, st)
	}
	return states
}
