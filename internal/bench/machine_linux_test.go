package bench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestReadMachine(t *testing.T) {
	a := ReadMachine()
	if !a.OK {
		t.Fatalf("ReadMachine on this machine: %+v (no /proc/stat?)", a)
	}
	deadline := time.Now().Add(5 * time.Second)
	b := ReadMachine()
	// Spin until the machine's busy time moves on: this test's own CPU.
	for b.Busy == a.Busy && time.Now().Before(deadline) {
		b = ReadMachine()
	}
	require.Greater(t, b.Busy, a.Busy, "busy time did not advance in 5 s of spinning")
	require.GreaterOrEqual(t, b.Steal, a.Steal)
	require.LessOrEqual(t, b.IRQ, b.Busy)
}
