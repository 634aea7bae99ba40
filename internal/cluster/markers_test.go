package cluster

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// streamState is the message and subject counts of kv's stream.
func streamState(t *testing.T, b *Bus, kv jetstream.KeyValue) (msgs, subjects uint64) {
	t.Helper()
	s, err := b.kvStream(context.Background(), kv)
	require.NoError(t, err)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	return info.State.Msgs, info.State.NumSubjects
}

// Deleted and purged keys leave a marker each in a bucket without a TTL;
// a sweep removes those old enough, at most its limit a time, and leaves
// live keys and keys written again after their deletion as they are.
func TestSweepMarkers(t *testing.T) {
	b := connect(t, Config{Name: "n1"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := b.OpenKV(ctx, "sweep", 0)
	require.NoError(t, err)
	withTTL, err := b.OpenKV(ctx, "expiring", time.Minute)
	require.NoError(t, err)
	n, err := b.SweepMarkers(ctx, kv, 0, MarkerSweepLimit)
	require.NoError(t, err, "an empty bucket")
	require.Zero(t, n)
	require.Contains(t, b.Sweepable(), kv.Bucket())
	require.NotContains(t, b.Sweepable(), withTTL.Bucket(), "a TTL expires a bucket's markers; it needs no sweep")

	put := func(key, value string) {
		_, err := kv.PutString(ctx, key, value)
		require.NoError(t, err)
	}
	for i := range 10 {
		put(fmt.Sprintf("live%d", i), "v")
	}
	for i := range 50 {
		key := fmt.Sprintf("gone%d", i)
		put(key, "v")
		require.NoError(t, kv.Delete(ctx, key))
	}
	for i := range 5 {
		key := fmt.Sprintf("back%d", i)
		put(key, "old")
		require.NoError(t, kv.Delete(ctx, key))
		put(key, "new")
	}
	for i := range 2 {
		key := fmt.Sprintf("purged%d", i)
		put(key, "v")
		require.NoError(t, kv.Purge(ctx, key))
	}
	msgs, subjects := streamState(t, b, kv)
	require.Equal(t, uint64(67), msgs, "one message a key: 15 values and 52 markers")
	require.Equal(t, uint64(67), subjects)

	n, err = b.SweepMarkers(ctx, kv, time.Hour, MarkerSweepLimit)
	require.NoError(t, err)
	require.Zero(t, n, "markers younger than the age are kept")

	n, err = b.SweepMarkers(ctx, kv, 0, 20)
	require.NoError(t, err)
	require.Equal(t, 20, n, "a sweep purges at most its limit")
	n, err = b.SweepMarkers(ctx, kv, 0, MarkerSweepLimit)
	require.NoError(t, err)
	require.Equal(t, 32, n)
	msgs, subjects = streamState(t, b, kv)
	require.Equal(t, uint64(15), msgs, "the markers are gone from the stream")
	require.Equal(t, uint64(15), subjects)
	keys, err := b.KVKeys(ctx, kv)
	require.NoError(t, err)
	require.Len(t, keys, 15)
	for i := range 5 {
		e, err := kv.Get(ctx, fmt.Sprintf("back%d", i))
		require.NoError(t, err)
		require.Equal(t, "new", string(e.Value()), "a key written again after its deletion keeps its value")
	}
	e, err := kv.Get(ctx, "live3")
	require.NoError(t, err)
	require.Equal(t, "v", string(e.Value()))
	_, err = kv.Get(ctx, "gone7")
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound)

	n, err = b.SweepMarkers(ctx, kv, 0, MarkerSweepLimit)
	require.NoError(t, err)
	require.Zero(t, n, "nothing left to sweep")
}

// A marker's purge stops at its own sequence: a key written again between
// the sweep's look and its purge keeps the new value.
func TestPurgeMarkerKeepsLaterWrite(t *testing.T) {
	b := connect(t, Config{Name: "n1"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := b.OpenKV(ctx, "race", 0)
	require.NoError(t, err)
	_, err = kv.PutString(ctx, "k", "old")
	require.NoError(t, err)
	require.NoError(t, kv.Delete(ctx, "k"))
	h, err := kv.History(ctx, "k")
	require.NoError(t, err)
	marker := h[len(h)-1]
	require.Equal(t, jetstream.KeyValueDelete, marker.Operation())
	_, err = kv.PutString(ctx, "k", "new") // after the sweep saw the marker
	require.NoError(t, err)

	s, err := b.kvStream(ctx, kv)
	require.NoError(t, err)
	require.NoError(t, purgeMarker(ctx, s, kv.Bucket(), "k", marker.Revision()))
	e, err := kv.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "new", string(e.Value()))
	msgs, _ := streamState(t, b, kv)
	require.Equal(t, uint64(1), msgs)
}

// RunSweeper sweeps every bucket opened without a TTL until its context
// ends.
func TestRunSweeper(t *testing.T) {
	b := connect(t, Config{Name: "n1"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var kvs []jetstream.KeyValue
	for _, name := range []string{"one", "two"} {
		kv, err := b.OpenKV(ctx, name, 0)
		require.NoError(t, err)
		_, err = kv.PutString(ctx, "k", "v")
		require.NoError(t, err)
		require.NoError(t, kv.Delete(ctx, "k"))
		kvs = append(kvs, kv)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.RunSweeper(sctx, 10*time.Millisecond, 0)
	}()
	require.Eventually(t, func() bool {
		return !slices.ContainsFunc(kvs, func(kv jetstream.KeyValue) bool {
			msgs, _ := streamState(t, b, kv)
			return msgs != 0
		})
	}, 20*time.Second, 10*time.Millisecond, "a bucket's marker was never swept")
	stop()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("RunSweeper did not return when its context ended")
	}
}
