package store

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// A read whose caller gives up while every reader is busy never runs, and
// its caller hears why; once the readers are closed a read is refused, and
// the read that was running when Close began still finishes.
func TestReadersGiveUpAndClose(t *testing.T) {
	r := newReaders(1)
	started, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- r.do(context.Background(), func() error {
			close(started)
			<-release
			return errors.New("the first read's own error")
		})
	}()
	<-started

	ran := make(chan int, 2)
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() { gaveUp <- r.do(ctx, func() error { ran <- 1; return nil }) }()
	cancel()
	err := <-gaveUp
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, "store:")

	closed := make(chan struct{})
	go func() { r.close(); close(closed) }()
	eventually(t, func() error {
		select {
		case <-r.quit:
			return nil
		default:
			return errors.New("close never closed quit")
		}
	})
	require.ErrorIs(t, r.do(context.Background(), func() error { ran <- 2; return nil }), errClosed)
	close(release)
	<-closed
	require.EqualError(t, <-first, "the first read's own error", "the running read's outcome reaches its caller")
	require.Empty(t, ran, "a read given up on, or asked for after close, ran")
	r.close() // again: nothing more
}

// Reads from many goroutines at once through the readers, some of them
// given up on: each caller gets its own answer, never another's.
func TestReadsConcurrent(t *testing.T) {
	s := open(t, sqliteDSN(t))
	require.NotNil(t, s.readers, "SQLite reads run on readers")
	ids := make([]string, 16)
	for i := range ids {
		ids[i] = player(t, s, fmt.Sprintf("reader%d", i), int64(100+i))
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	errs := concurrently(64, func(i int) error {
		for k := range 20 {
			id := ids[(i+k)%len(ids)]
			want := int64(100 + (i+k)%len(ids))
			if k%5 == 4 {
				if _, err := s.Profile(cancelled, id); !errors.Is(err, context.Canceled) {
					return fmt.Errorf("a read with its context ended: %v, want context.Canceled", err)
				}
				continue
			}
			p, err := s.Profile(context.Background(), id)
			if err != nil {
				return err
			}
			got, err := s.Balances(context.Background(), []string{id})
			if err != nil {
				return err
			}
			if p.Balance != want || got[id] != want {
				return fmt.Errorf("%s: profile %d, balances %d, want %d", id, p.Balance, got[id], want)
			}
		}
		return nil
	})
	for i, err := range errs {
		require.NoError(t, err, "goroutine %d", i)
	}
}

// The point of the readers: a goroutine that reads through the store keeps
// the small stack it started with instead of growing it into SQLite's
// depth. 500 goroutines parked after one read each: measured, they hold
// ~2 KiB of stack each this way and 8 KiB (16 KiB with -race) when the read
// runs on their own stacks.
func TestReadsLeaveTheCallersStackSmall(t *testing.T) {
	s := open(t, sqliteDSN(t))
	id := player(t, s, "deep", 7)
	stackInUse := func() uint64 {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.StackInuse
	}
	const n = 500
	before := stackInUse()
	hold := make(chan struct{})
	defer close(hold)
	done := make(chan error, n)
	for range n {
		go func() {
			_, err := s.Balances(context.Background(), []string{id})
			done <- err
			<-hold
		}()
	}
	for range n {
		require.NoError(t, <-done)
	}
	after := stackInUse()
	grown := after - min(before, after)
	require.Less(t, grown, uint64(n*6<<10), "%d goroutines parked after a read hold %d KiB of stack", n, grown>>10)
}
