package bots

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// The probe reports a cost per call for each operation, and a loopback
// write — a system call with work in it — costs more than one that does
// nothing.
func TestProbeMachine(t *testing.T) {
	p, err := probeMachine()
	require.NoError(t, err)
	for name, v := range map[string]float64{"syscall": p.SyscallNS, "loopback write": p.LoopbackWriteNS} {
		require.False(t, math.IsNaN(v) || math.IsInf(v, 0), "%s: %v", name, v)
		require.Greater(t, v, 0.0, "%s", name)
		require.Less(t, v, 1e7, "%s: over 10 ms a call is not a per-call figure", name)
	}
	require.Greater(t, p.LoopbackWriteNS, p.SyscallNS, "a write to a socket cheaper than getpid")
}
