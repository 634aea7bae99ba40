package bots

import (
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

// The own server's processes run with stack shrinking off, keeping any
// other GODEBUG setting of the bots', and a choice made there wins.
func TestServerEnv(t *testing.T) {
	for _, tc := range []struct {
		godebug string
		want    []string
	}{
		{"", []string{"GODEBUG=gcshrinkstackoff=1"}},
		{"gctrace=1", []string{"GODEBUG=gctrace=1,gcshrinkstackoff=1"}},
		{"gctrace=1,gcshrinkstackoff=0", nil},
	} {
		t.Setenv("GODEBUG", tc.godebug)
		require.Equal(t, tc.want, serverEnv(nil, "server"), "GODEBUG=%q", tc.godebug)
	}
	t.Setenv("GODEBUG", "")
	require.Equal(t, []string{"GODEBUG=gcshrinkstackoff=1", "GOGC=200", "GODEBUG=gctrace=1"},
		serverEnv([]string{"GOGC=200", "GODEBUG=gctrace=1"}, "server"), "--server-env comes last, to win")

	// A PROCESS: prefix keeps a setting to that process, without the prefix.
	extra := []string{"GOGC=200", "tables:GOMAXPROCS=3", "gate-1:GOGC=300", "tables:X=a:b=c"}
	for _, tc := range []struct {
		id   string
		want []string
	}{
		{"tables", []string{"GODEBUG=gcshrinkstackoff=1", "GOGC=200", "GOMAXPROCS=3", "X=a:b=c"}},
		{"gate-1", []string{"GODEBUG=gcshrinkstackoff=1", "GOGC=200", "GOGC=300"}},
		{"gate-2", []string{"GODEBUG=gcshrinkstackoff=1", "GOGC=200"}},
	} {
		require.Equal(t, tc.want, serverEnv(extra, tc.id), tc.id)
	}
	require.NoError(t, envProcesses(extra, []string{"tables", "gate-1"}))
	err := envProcesses(extra, []string{"server"})
	require.ErrorContains(t, err, `--server-env tables:GOMAXPROCS=3: the own server has no process "tables" (it has server)`)
}

// The bots' process collects at botsGCPercent unless GOGC chose: each of
// its collections made every bot's read late at once.
func TestCollectSeldom(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	for _, tc := range []struct {
		gogc string
		want int
	}{
		{"", botsGCPercent},
		{"150", 100}, // the environment's choice, which the runtime took at start (here the 100 set above)
	} {
		debug.SetGCPercent(100)
		t.Setenv("GOGC", tc.gogc)
		collectSeldom()
		require.Equal(t, tc.want, debug.SetGCPercent(100), "GOGC=%q", tc.gogc)
	}
}

// Where a process's bots collect before the window: gcLead (5 s) before the
// last bot starts, and not at all when the whole ramp is shorter.
func TestGCIndex(t *testing.T) {
	for _, tc := range []struct {
		players int
		ramp    float64
		want    int
	}{
		{10000, 50, 9750}, // 20,000 bots in two processes at --ramp 100
		{15000, 100, 14500},
		{100, 200, -1}, // the whole ramp is half a second
		{1000, 200, -1},
		{1001, 200, 1},
		{5, 0.5, 3},
		{5, 0.1, -1}, // under one bot in the lead
	} {
		require.Equal(t, tc.want, gcIndex(tc.players, tc.ramp), "%d bots at %g/s", tc.players, tc.ramp)
	}
}
