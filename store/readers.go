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
// one whose read started waits for it (reads are short; see Store.read).
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

// do runs fn on a reader and returns its error. ctx bounds the wait for a
// free reader; once fn has started, the caller waits for it to end.
func (r *readers) do(ctx context.Context, fn func() error) error {
	// A select picks at random among ready cases: without this a caller
	// whose context has ended could still hand its read to a free reader.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
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

// read runs fn, which reads through s.r with the context it is given, on a
// reader goroutine on SQLite and on the caller's on PostgreSQL (pgx's calls
// are shallow).
//
// On SQLite fn's context keeps ctx's values but not its cancellation: the
// caller's context decides whether the read starts, not when it stops.
// Given a context that can end, database/sql starts a goroutine for each
// query to close its rows when it does (Rows.awaitDone) and modernc's
// SQLite another to interrupt the statement (interruptOnDone): two
// goroutines a read, each created, woken and run to its end, several
// hundred a second on a busy table node, for reads that are indexed,
// bounded and never wait for the writer (WAL) — a read that started ends
// within moments anyway. On PostgreSQL a query crosses the network and
// can wait on locks, so there it keeps the caller's context.
func (s *Store) read(ctx context.Context, fn func(context.Context) error) error {
	if s.readers == nil {
		return fn(ctx)
	}
	quiet := context.WithoutCancel(ctx)
	return s.readers.do(ctx, func() error { return fn(quiet) })
}

// readRow reads one row through s.r with s.read and decodes it with scan.
func readRow[T any](ctx context.Context, s *Store, scan func(*sql.Row) (T, error), query string, args ...any) (T, error) {
	var v T
	err := s.read(ctx, func(ctx context.Context) (err error) {
		v, err = scan(s.r.QueryRowContext(ctx, query, args...))
		return err
	})
	return v, err
}
