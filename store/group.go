package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// groupCommit runs SQLite's write transactions. SQLite has one writer and
// syncs its log at every commit (synchronous=FULL), so a transaction that
// queues behind another waits mostly for that sync. The writer goroutine
// takes every transaction waiting and runs them as one SQLite transaction,
// each in a savepoint of its own: a member that fails is rolled back to its
// savepoint and leaves the others be, and one commit — one sync — makes
// them all durable. A caller hears of its outcome only after that commit,
// so nothing is reported done that is not on disk; a member whose caller
// gave up before it started is never run.
//
// A lone transaction runs at once: groups form only from what queued while
// the writer was busy, so an idle store pays nothing and a busy one commits
// more per sync.
type groupCommit struct {
	w    *pool
	wake chan struct{} // capacity 1: there is something in queue
	quit chan struct{} // closed by close
	done chan struct{} // closed when the writer has stopped

	mu     sync.Mutex
	queue  []*member // guarded by mu
	closed bool      // guarded by mu
}

// maxGroup bounds the transactions one commit takes, so that the first of
// a long queue does not wait for all of it.
const maxGroup = 64

// member states
const (
	queued int32 = iota
	running
	abandoned // its caller gave up while it queued: never run
)

type member struct {
	ctx    context.Context
	fn     func(context.Context, *txn) error
	queued int64 // unix nanoseconds it joined the queue
	state  atomic.Int32
	err    error         // written by the writer before result closes
	result chan struct{} // closed when err is final
}

// errClosed is what a transaction gets once the store is closed.
var errClosed = errors.New("store: closed")

func newGroupCommit(w *pool) *groupCommit {
	g := &groupCommit{w: w, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go g.run()
	return g
}

// tx runs fn in the next group and returns its outcome.
func (g *groupCommit) tx(ctx context.Context, fn func(context.Context, *txn) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	m := &member{ctx: ctx, fn: fn, queued: time.Now().UnixNano(), result: make(chan struct{})}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return errClosed
	}
	g.queue = append(g.queue, m)
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
	select {
	case <-m.result:
		return m.err
	case <-ctx.Done():
		if m.state.CompareAndSwap(queued, abandoned) {
			return fmt.Errorf("store: begin: %w", ctx.Err())
		}
		<-m.result // running: its group decides it within moments
		return m.err
	}
}

// backlog is how long the oldest transaction still in the queue has
// waited for the writer; 0 when none waits.
func (g *groupCommit) backlog(now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) == 0 {
		return 0
	}
	return time.Duration(now.UnixNano() - g.queue[0].queued)
}

func (g *groupCommit) run() {
	defer close(g.done)
	for {
		var quit bool
		select {
		case <-g.wake:
		case <-g.quit:
			quit = true // closed is set: nothing more can queue
		}
		for {
			g.mu.Lock()
			n := min(len(g.queue), maxGroup)
			batch := append([]*member(nil), g.queue[:n]...)
			g.queue = g.queue[n:]
			if len(g.queue) == 0 {
				g.queue = nil // let the array go
			}
			g.mu.Unlock()
			if n == 0 {
				break
			}
			g.commit(batch)
		}
		if quit {
			return
		}
	}
}

// commit runs batch as one transaction.
func (g *groupCommit) commit(batch []*member) {
	// The transaction is no caller's: one caller's deadline must not roll
	// back the others' work. Members are taken only once it has begun
	// (BEGIN may wait out busy_timeout on a lock held by another process),
	// so until then a caller may still give up on its own; one whose
	// deadline has passed when its turn comes is skipped.
	ctx := context.Background()
	sqlTx, err := g.w.BeginTx(ctx, nil)
	var run []*member
	for _, m := range batch {
		if m.state.CompareAndSwap(queued, running) {
			run = append(run, m)
		}
	}
	defer func() {
		for _, m := range run {
			close(m.result)
		}
	}()
	if err != nil {
		for _, m := range run {
			m.err = fmt.Errorf("store: begin: %w", err)
		}
		return
	}
	if len(run) == 0 {
		_ = sqlTx.Rollback()
		return
	}
	t := &txn{Tx: sqlTx, p: g.w}
	defer t.prepareMissed(ctx)
	alone := len(run) == 1
	var ok []*member // members whose work waits for the commit
	var broken error // the transaction cannot go on
	for _, m := range run {
		if broken != nil {
			m.err = broken
			continue
		}
		if err := m.ctx.Err(); err != nil {
			m.err = fmt.Errorf("store: begin: %w", err)
			continue
		}
		if alone {
			if m.err = call(m.ctx, m.fn, t); m.err == nil {
				ok = append(ok, m)
			} else {
				broken = m.err
			}
			continue
		}
		if _, err := sqlTx.ExecContext(ctx, "SAVEPOINT member"); err != nil {
			broken = fmt.Errorf("store: savepoint: %w", err)
			m.err = broken
			continue
		}
		m.err = call(m.ctx, m.fn, t)
		var err error
		if m.err != nil {
			_, err = sqlTx.ExecContext(ctx, "ROLLBACK TO member")
		}
		if err == nil {
			_, err = sqlTx.ExecContext(ctx, "RELEASE member")
		}
		if err != nil {
			// SQLite rolled the whole transaction back (an interrupt, a
			// full disk): nothing of the group can be committed.
			broken = fmt.Errorf("store: transaction lost: %w", err)
			if m.err == nil {
				m.err = broken
			}
			continue
		}
		if m.err == nil {
			ok = append(ok, m)
		}
	}
	if broken != nil {
		_ = sqlTx.Rollback()
		for _, m := range ok {
			m.err = broken
		}
		return
	}
	if err := sqlTx.Commit(); err != nil {
		for _, m := range ok {
			m.err = fmt.Errorf("store: commit: %w", err)
		}
	}
}

// call runs a member, turning a panic into an error: the writer goroutine
// serves every caller and must not die with one. Its statements run
// without its caller's cancellation: SQLite answers a write interrupted
// mid-statement by rolling back the whole transaction — every member's
// work — so a member, once started, runs to its end (the caller waits for
// the group's outcome either way; the transaction holds the write lock, so
// no statement in it waits for another).
func call(ctx context.Context, fn func(context.Context, *txn) error, t *txn) (err error) {
	ctx = context.WithoutCancel(ctx)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("store: transaction panicked: %v", r)
		}
	}()
	return fn(ctx, t)
}

// close stops the writer once it has run what is queued; a transaction
// begun after it gets errClosed.
func (g *groupCommit) close() {
	g.mu.Lock()
	already := g.closed
	g.closed = true
	g.mu.Unlock()
	if !already {
		close(g.quit)
	}
	<-g.done
}
