package bench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseStat(t *testing.T) {
	const tick = 10 * time.Millisecond // 100 ticks a second
	for _, tc := range []struct {
		name string
		in   string
		want MachineTimes
	}{
		{
			name: "steal apart from busy",
			// user nice system idle iowait irq softirq steal guest guest_nice
			in:   "cpu  100 2 30 5000 7 1 4 250 0 0\ncpu0 50 1 15 2500 3 0 2 125 0 0\n",
			want: MachineTimes{Busy: 137 * tick, IRQ: 5 * tick, Steal: 250 * tick, OK: true},
		},
		{
			name: "no steal column",
			in:   "cpu  100 2 30 5000 7 1 4\n",
		},
		{
			name: "not the cpu line",
			in:   "intr 1 2 3 4 5 6 7 8 9\n",
		},
		{
			name: "not a number",
			in:   "cpu  100 2 30 x 7 1 4 250\n",
		},
		{
			name: "negative",
			in:   "cpu  100 2 30 5000 7 1 4 -1\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, parseStat([]byte(tc.in), 100))
		})
	}
}

func TestMachineSince(t *testing.T) {
	a := MachineTimes{Busy: 10 * time.Second, IRQ: time.Second, Steal: 2 * time.Second, OK: true}
	b := MachineTimes{Busy: 28 * time.Second, IRQ: 2 * time.Second, Steal: 3 * time.Second, OK: true}
	busy, stolen, ok := b.Since(a, 10*time.Second)
	require.True(t, ok)
	require.Equal(t, 1.8, busy)
	require.Equal(t, 0.1, stolen)

	_, _, ok = b.Since(MachineTimes{}, 10*time.Second)
	require.False(t, ok, "an unreadable start")
	_, _, ok = b.Since(a, 0)
	require.False(t, ok, "no time passed")
}
