package bench

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBenchRooms runs a small rooms bench: every room opens, the timers
// fire, match.join seats players.
func TestBenchRooms(t *testing.T) {
	out, errOut, code := runBench(t, "rooms", "--rooms", "200", "--timer", "20ms", "--duration", "300ms",
		"--join-clients", "4", "--join-duration", "300ms", "--json")
	require.Equal(t, 0, code, errOut)
	var res RoomsResult
	require.NoError(t, json.Unmarshal([]byte(out), &res), out)
	require.Equal(t, 200, res.Rooms)
	require.Positive(t, res.RoomsPerSec)
	require.Positive(t, res.TimerEvents)
	require.Positive(t, res.Lateness.Count)
	require.Positive(t, res.Joins)
}
