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
