package bots

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/stretchr/testify/require"
)

// A value's bucket holds it, at most 1/1024 above its highest value, and
// buckets follow the values' order.
func TestHistBuckets(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	check := func(v int64) {
		i := histIndex(v)
		require.True(t, i >= 0 && i < histBuckets, "value %d: bucket %d of %d", v, i, histBuckets)
		hi := histValue(i)
		require.GreaterOrEqual(t, hi, v, "value %d above its bucket %d's highest %d", v, i, hi)
		require.LessOrEqual(t, float64(hi-v), float64(v)/1024, "value %d: bucket %d's highest %d too far", v, i, hi)
		if i > 0 {
			require.Less(t, histValue(i-1), v, "value %d also fits bucket %d", v, i-1)
		}
	}
	for v := int64(histMin); v < 5000; v++ {
		check(v)
	}
	for range 100_000 {
		check(histMin + rng.Int64N(histMax))
	}
	check(histMax)
	require.Equal(t, histIndex(histMax), histIndex(histMax*10), "beyond the top: the top bucket")
	require.Equal(t, 1, histIndex(-5), "below the bottom: the lowest")
}

// What goroutines record, take returns once, summing as an HDR histogram
// of the values would; recording allocates nothing.
func TestHistTake(t *testing.T) {
	h := newHist()
	ref := hdrhistogram.New(histMin, histMax, histDigits)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range 5000 {
				d := time.Duration(rng.Int64N(int64(2*time.Second))) + time.Microsecond
				h.record(d)
				mu.Lock()
				_ = ref.RecordValue(d.Microseconds())
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	got := hdrhistogram.New(histMin, histMax, histDigits)
	addBuckets(got, h.take())
	require.Equal(t, ref.TotalCount(), got.TotalCount())
	for _, q := range []float64{1, 50, 90, 99, 99.9, 100} {
		want, have := ref.ValueAtPercentile(q), got.ValueAtPercentile(q)
		require.InDelta(t, float64(want), float64(have), float64(want)/500, "p%v", q)
	}
	require.Empty(t, h.take(), "taken: nothing left")
	require.Zero(t, testing.AllocsPerRun(100, func() { h.record(3 * time.Millisecond) }))
	require.Equal(t, []bucket{{histValue(histIndex(3000)), 101}}, h.take())
}

// The process's scheduling waits only grow, and the slow ones are a part
// of them.
func TestSchedWaits(t *testing.T) {
	all0, slow0 := schedWaits()
	var wg sync.WaitGroup
	for range 1000 { // the runtime samples one wakeup in several
		wg.Go(func() { time.Sleep(time.Millisecond) })
	}
	wg.Wait()
	all1, slow1 := schedWaits()
	require.Greater(t, all1, all0, "goroutines woke up")
	require.GreaterOrEqual(t, slow1, slow0)
	require.LessOrEqual(t, slow1, all1)
}

// The server's go_sched_latencies_seconds, as scraped, gives the count
// above the slowWait boundary; without that boundary it says it cannot.
func TestSchedFromMetrics(t *testing.T) {
	for _, tc := range []struct {
		name      string
		m         map[string]float64
		all, slow float64
		ok        bool
	}{
		{"the collector's buckets", map[string]float64{
			`go_sched_latencies_seconds_bucket{le="0.0009175039999999999"}`: 900,
			`go_sched_latencies_seconds_bucket{le="0.010485759999999998"}`:  990,
			`go_sched_latencies_seconds_bucket{le="0.11744051199999998"}`:   999,
			`go_sched_latencies_seconds_bucket{le="+Inf"}`:                  1000,
			`go_sched_latencies_seconds_count`:                              1000,
		}, 1000, 10, true},
		{"no such metric", map[string]float64{`process_cpu_seconds_total`: 3}, 0, 0, false},
		{"other buckets", map[string]float64{
			`go_sched_latencies_seconds_bucket{le="0.05"}`: 7,
			`go_sched_latencies_seconds_count`:             8,
		}, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			all, slow, ok := schedFromMetrics(tc.m)
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.all, all)
			require.Equal(t, tc.slow, slow)
		})
	}
}

func TestSummaryPhrases(t *testing.T) {
	require.Equal(t, "", byPhase(nil))
	require.Equal(t, " (into ready 1,180, end 12, grab 12)", byPhase(map[string]int64{"grab": 12, "ready": 1180, "end": 12}))
	require.Equal(t, "none measured", waits(0, 0))
	require.Equal(t, "0.125% of 8,000", waits(10, 8000))
}

// Late countdowns are counted by phase and by the gate that brought them,
// and the processes' counts add up; the two breakdowns agree with the total.
func TestLateByPhaseAndGate(t *testing.T) {
	a, b := newStats(), newStats()
	a.countdowns.Add(3)
	a.lateInto("ready", 0)
	a.lateInto("ready", 1)
	a.lateInto("grab", 1)
	b.countdowns.Add(1)
	b.lateInto("ready", 1)
	tot := newTotal(2)
	tot.add(0, a.snapshot())
	tot.add(1, b.snapshot())
	s := tot.sum()
	require.Equal(t, int64(4), s.Late)
	require.Equal(t, map[string]int64{"ready": 3, "grab": 1}, s.LateTo)
	require.Equal(t, map[string]int64{"0": 1, "1": 3}, s.LateVia)
	require.Equal(t, "gate-1 3, tables 1", byGate(map[string]int64{"tables": 1, "gate-1": 3}))
}
