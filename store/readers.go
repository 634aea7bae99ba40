package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

// readers runs SQLite's reads on a few long-lived goroutines instead of the
// caller's. modernc's SQLite is C translated to Go, and a query runs deep
// in it: the first read on a goroutine grows that goroutine's stack several
// times over. A room's goroutine that reads its players' balances at every
// round kept such a stack, and at each collection the runtime halved it
// (it was idle, using little of it) only for the next round to grow it
// again (docs/benchmarks.md § bots, sessions 25 and 26). On a reader
// goroutine the stack stays grown, and the callers' stay small.
//
// The hand-over is a channel without a buffer: a caller whose context ends
// while every reader is busy gives up without its read ever starting, and
// one whose read started waits for it (the read sees the same context and
// ends soon).
type readers struct {
	jobs chan *readJob
	quit chan struct{} // closed by close, once
	once sync.Once
	wg   sync.WaitGroup
	// free recycles jobs: one is put back only once its reader is done
	// with it, so a reused job is never still in a reader's hands.
	free sync.Pool
}

type readJob struct {
	fn   func() error
	err  error         // written by the reader before done is signalled
	done chan struct{} // capacity 1: the reader sends when err is final
}

func newReaders(n int) *readers {
	r := &readers{jobs: make(chan *readJob), quit: make(chan struct{})}
	r.free.New = func() any { return &readJob{done: make(chan struct{}, 1)} }
	r.wg.Add(n)
	for range n {
		go r.run()
	}
	return r
}

func (r *readers) run() {
	defer r.wg.Done()
	for {
		select {
		case j := <-r.jobs:
			j.err = j.fn()
			j.done <- struct{}{}
		case <-r.quit:
			return
		}
	}
}

// do runs fn on a reader and returns its error; fn's context is ctx.
func (r *readers) do(ctx context.Context, fn func() error) error {
	j := r.free.Get().(*readJob)
	j.fn = fn
	select {
	case r.jobs <- j:
	case <-ctx.Done():
		j.fn = nil
		r.free.Put(j)
		return fmt.Errorf("store: %w", ctx.Err())
	case <-r.quit:
		j.fn = nil
		r.free.Put(j)
		return errClosed
	}
	<-j.done
	err := j.err
	j.fn, j.err = nil, nil
	r.free.Put(j)
	return err
}

// close stops the readers once they finish the reads they are running.
// Closing again does nothing more.
func (r *readers) close() {
	r.once.Do(func() { close(r.quit) })
	r.wg.Wait()
}

// read runs fn, which reads through s.r, on a reader goroutine on SQLite
// and on the caller's on PostgreSQL (pgx's calls are shallow).
func (s *Store) read(ctx context.Context, fn func() error) error {
	if s.readers == nil {
		return fn()
	}
	return s.readers.do(ctx, fn)
}

// readRow reads one row through s.r with s.read and decodes it with scan.
func readRow[T any](ctx context.Context, s *Store, scan func(*sql.Row) (T, error), query string, args ...any) (T, error) {
	var v T
	err := s.read(ctx, func() (err error) {
		v, err = scan(s.r.QueryRowContext(ctx, query, args...))
		return err
	})
	return v, err
}
