package auth

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/hearthtest"
)

// A window fills at its limit, says how long until it has room, and has
// room again once the oldest event is older than the span.
func TestWindow(t *testing.T) {
	node := hearthtest.Start(t, hearth.Config{})
	ctx := context.Background()
	kv, err := node.KV(ctx, "window", time.Hour)
	require.NoError(t, err)
	w := window{kv, 3, time.Minute}
	t0 := time.UnixMilli(time.Now().UnixMilli()) // the window keeps milliseconds
	for i := range 3 {
		full, _ := w.full(ctx, "k", t0)
		require.False(t, full, "after %d events", i)
		ok, _, err := w.take(ctx, "k", t0.Add(time.Duration(i)*time.Second))
		require.NoError(t, err)
		require.True(t, ok)
	}
	full, wait := w.full(ctx, "k", t0.Add(3*time.Second))
	require.True(t, full)
	require.Equal(t, 57*time.Second, wait, "room again when the first event is a span old")
	ok, wait, err := w.take(ctx, "k", t0.Add(3*time.Second))
	require.NoError(t, err)
	require.False(t, ok)
	require.Equal(t, 57*time.Second, wait)

	later := t0.Add(time.Minute + time.Millisecond)
	full, _ = w.full(ctx, "k", later)
	require.False(t, full, "the first event aged out")
	ok, _, err = w.take(ctx, "k", later)
	require.NoError(t, err)
	require.True(t, ok)
}

// Concurrent takes on one key, as from several auth instances, never
// exceed the limit.
func TestWindowConcurrentTake(t *testing.T) {
	node := hearthtest.Start(t, hearth.Config{})
	ctx := context.Background()
	const limit, takers = 5, 20
	var ok [takers]bool
	var wg sync.WaitGroup
	for i := range takers {
		kv, err := node.KV(ctx, "window", time.Hour) // a handle per taker, like separate instances
		require.NoError(t, err)
		w := window{kv, limit, time.Minute}
		wg.Go(func() {
			for { // too much contention is an error: the taker tries again
				var err error
				if ok[i], _, err = w.take(ctx, "shared", time.Now()); err == nil {
					return
				}
			}
		})
	}
	wg.Wait()
	n := 0
	for _, o := range ok {
		if o {
			n++
		}
	}
	require.Equal(t, limit, n)
}
