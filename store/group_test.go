package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"modernc.org/sqlite"
)

// busyWriter runs a transaction on s's group writer that holds it until
// the returned release is called, once n more transactions queue behind it.
func busyWriter(t *testing.T, s *Store) (waitQueued func(n int), release func()) {
	t.Helper()
	g := s.group
	require.NotNil(t, g, "SQLite runs its transactions through the group writer")
	hold, started := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.tx(context.Background(), func(context.Context, *txn) error {
			close(started)
			<-hold
			return nil
		})
	}()
	<-started
	waitQueued = func(n int) {
		t.Helper()
		eventually(t, func() error {
			g.mu.Lock()
			defer g.mu.Unlock()
			if q := len(g.queue); q < n {
				return fmt.Errorf("%d transactions queued behind the busy writer, want %d", q, n)
			}
			return nil
		})
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(hold)
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(release)
	return waitQueued, release
}

// Transactions that queue while the writer commits share one transaction
// (one sync); one that fails, or panics, is rolled back to its savepoint
// alone, and the others' work is committed; none sees a failed one's
// writes.
func TestGroupCommitMembersStandAlone(t *testing.T) {
	s := open(t, sqliteDSN(t))
	ctx := context.Background()
	const n = 12
	ids := make([]string, n)
	for i := range ids {
		ids[i] = player(t, s, fmt.Sprint("g", i), 100)
	}
	waitQueued, release := busyWriter(t, s)

	var mu sync.Mutex
	txns := map[*txn]int{}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = s.tx(ctx, func(ctx context.Context, t *txn) error {
				mu.Lock()
				txns[t]++
				mu.Unlock()
				// Every member writes, then some fail after writing.
				if _, err := t.ExecContext(ctx, `UPDATE profiles SET balance = balance + 1 WHERE account_id = $1`, mustID(ids[i])); err != nil {
					return err
				}
				switch i % 4 {
				case 1:
					return ErrInsufficientFunds
				case 2:
					if i == 2 {
						panic("member 2 breaks")
					}
				}
				return nil
			})
		})
	}
	waitQueued(n)
	release()
	wg.Wait()

	require.Len(t, txns, 1, "the %d queued transactions ran in %d groups, want one", n, len(txns))
	for i := range n {
		want := int64(101)
		switch {
		case i%4 == 1:
			require.ErrorIs(t, errs[i], ErrInsufficientFunds, "member %d", i)
			want = 100
		case i == 2:
			require.ErrorContains(t, errs[i], "panicked", "member %d", i)
			want = 100
		default:
			require.NoError(t, errs[i], "member %d", i)
		}
		require.Equal(t, want, balance(t, s, ids[i]), "member %d's write", i)
	}
}

// A transaction whose caller gives up while it queues is never run, and
// its caller hears why. Close runs what is already queued, then refuses
// more with errClosed.
func TestGroupCommitAbandonedAndClosed(t *testing.T) {
	s := open(t, sqliteDSN(t))
	waitQueued, release := busyWriter(t, s)

	ran := make(chan int, 2)
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		gaveUp <- s.tx(ctx, func(context.Context, *txn) error { ran <- 1; return nil })
	}()
	waitQueued(1)
	cancel()
	err := <-gaveUp
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, "store: begin")

	queued := make(chan error, 1)
	go func() {
		queued <- s.tx(context.Background(), func(context.Context, *txn) error { ran <- 2; return nil })
	}()
	waitQueued(2) // the abandoned one is still in the queue, skipped when reached
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	eventually(t, func() error {
		s.group.mu.Lock()
		defer s.group.mu.Unlock()
		if !s.group.closed {
			return errors.New("Close never marked the writer closed")
		}
		return nil
	})
	require.ErrorIs(t, s.tx(context.Background(), func(context.Context, *txn) error { ran <- 3; return nil }), errClosed)
	release()
	require.NoError(t, <-closed)
	require.NoError(t, <-queued, "a transaction queued before Close is run")
	require.Equal(t, 2, <-ran)
	require.Empty(t, ran, "the abandoned transaction, or one begun after Close, ran")
}

// eventually polls cond for up to 10 s, failing with its last error. (The
// store cannot use hearthtest.Eventually: hearthtest imports the store.)
func eventually(t *testing.T, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
}

// Settlements racing from many goroutines through the group writer: every
// balance ends equal to its ledger's sum, each key applied once, and the
// ones that had to fail (a balance that would go negative) changed nothing.
func TestGroupCommitConcurrentLedger(t *testing.T) {
	s := open(t, sqliteDSN(t))
	ctx := context.Background()
	const players, rounds = 5, 60
	ids := make([]string, players)
	for i := range ids {
		ids[i] = player(t, s, fmt.Sprint("c", i), 50)
	}
	errs := concurrently(rounds, func(r int) error {
		// Each round moves 10 from one player to the next; a player with
		// less than 10 cannot pay and the round fails whole. Every round
		// is sent twice: the repeat must change nothing.
		from, to := ids[r%players], ids[(r+1)%players]
		entries := []LedgerEntry{
			{AccountID: from, Delta: -10, Reason: "round", Key: fmt.Sprintf("r%d/0", r)},
			{AccountID: to, Delta: 10, Reason: "round", Key: fmt.Sprintf("r%d/1", r)},
		}
		_, _, err := s.ApplyLedgerBatch(ctx, entries)
		_, _, again := s.ApplyLedgerBatch(ctx, entries)
		if (err == nil) != (again == nil) {
			return fmt.Errorf("round %d: first %v, repeat %v", r, err, again)
		}
		if err != nil && !errors.Is(err, ErrInsufficientFunds) {
			return err
		}
		return nil
	})
	for r, err := range errs {
		require.NoError(t, err, "round %d", r)
	}
	var total int64
	for _, id := range ids {
		entries, err := s.Ledger(ctx, id, 1000)
		require.NoError(t, err)
		var sum int64
		for _, e := range entries {
			sum += e.Delta
		}
		b := balance(t, s, id)
		require.Equal(t, sum, b, "player %s: balance against the ledger", id)
		require.GreaterOrEqual(t, b, int64(0))
		total += b
	}
	require.Equal(t, int64(players*50), total, "money was made or lost")
}

func mustID(id string) int64 {
	n, ok := parseID(id)
	if !ok {
		panic("bad id " + id)
	}
	return n
}

// While another process holds SQLite's write lock, the group's BEGIN waits
// (busy_timeout); a caller whose deadline passes meanwhile gets its own
// deadline's error and its transaction never runs, rather than waiting
// out the lock. Once the lock goes, transactions go through again.
func TestGroupCommitGivesUpOnALockedDatabase(t *testing.T) {
	dsn := sqliteDSN(t)
	s := open(t, dsn)
	id := player(t, s, "locked", 0)
	unlock := lockFromOutside(t, s, dsn, id)

	var ran atomic.Bool
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := s.tx(ctx, func(context.Context, *txn) error { ran.Store(true); return nil })
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "store: begin")

	unlock()
	_, _, err = s.ApplyLedger(context.Background(), LedgerEntry{AccountID: id, Delta: 5, Reason: "after", Key: "after"})
	require.NoError(t, err)
	require.False(t, ran.Load(), "the transaction whose caller gave up ran")
	require.Equal(t, int64(5), balance(t, s, id))
}

// midStatement is what the SQL function hearth_test_mid(i) calls, from
// inside the statement that calls it.
var (
	midStatement   atomic.Pointer[func(i int64)]
	registerMidFun sync.Once
)

// A member whose caller gives up in the middle of its statement is not
// interrupted: SQLite answers an interrupted write by rolling back the
// whole transaction, which would take the other members' work with it. The
// member runs to its end, and every caller hears what was committed.
func TestGroupCommitCallerGivesUpMidStatement(t *testing.T) {
	registerMidFun.Do(func() {
		require.NoError(t, sqlite.RegisterScalarFunction("hearth_test_mid", 1, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
			if f := midStatement.Load(); f != nil {
				(*f)(args[0].(int64))
			}
			return int64(1), nil
		}))
	})
	s := open(t, sqliteDSN(t))
	slow, other := player(t, s, "slow", 100), player(t, s, "other", 100)
	waitQueued, release := busyWriter(t, s)

	callerCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The caller gives up at the 10th row of a count in the statement,
	// which then yields 1,000 times: the driver's interrupt, were it sent,
	// would land inside this write.
	gaveUp := func(i int64) {
		if i == 10 {
			cancel()
		}
		runtime.Gosched()
	}
	midStatement.Store(&gaveUp)
	t.Cleanup(func() { midStatement.Store(nil) })
	slowErr, otherErr := make(chan error, 1), make(chan error, 1)
	go func() {
		slowErr <- s.tx(callerCtx, func(ctx context.Context, t *txn) error {
			_, err := t.ExecContext(ctx, `UPDATE profiles SET balance = balance + 1 WHERE account_id = $1
				AND (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL
					SELECT i+1 FROM n WHERE i < 1010 AND CASE WHEN i >= 10 THEN hearth_test_mid(i) ELSE 1 END)
				SELECT count(*) FROM n) > 0`, mustID(slow))
			return err
		})
	}()
	waitQueued(1)
	go func() {
		otherErr <- s.tx(context.Background(), func(ctx context.Context, t *txn) error {
			_, err := t.ExecContext(ctx, `UPDATE profiles SET balance = balance + 1 WHERE account_id = $1`, mustID(other))
			return err
		})
	}()
	waitQueued(2)
	release()

	require.NoError(t, <-slowErr, "the slow member, once started, runs to its end")
	require.NoError(t, <-otherErr, "the other member of the group (an interrupt loses the whole group's transaction)")
	require.ErrorIs(t, callerCtx.Err(), context.Canceled, "the caller never gave up: the test tested nothing")
	require.Equal(t, int64(101), balance(t, s, slow))
	require.Equal(t, int64(101), balance(t, s, other))
}

// WriteBacklog reports how long the oldest transaction has waited for the
// writer: 0 while none waits, growing while one queues behind a busy
// writer, 0 again once the queue is run.
func TestWriteBacklog(t *testing.T) {
	s := open(t, sqliteDSN(t))
	require.Zero(t, s.WriteBacklog(), "an idle writer")

	waitQueued, release := busyWriter(t, s)
	require.Zero(t, s.WriteBacklog(), "the running transaction is not waiting")
	queued := make(chan error, 1)
	go func() { queued <- s.tx(context.Background(), func(context.Context, *txn) error { return nil }) }()
	waitQueued(1)
	eventually(t, func() error {
		if b := s.WriteBacklog(); b < 20*time.Millisecond {
			return fmt.Errorf("backlog %v with a transaction queued behind a busy writer, want it to grow past 20ms", b)
		}
		return nil
	})
	release()
	require.NoError(t, <-queued)
	require.Zero(t, s.WriteBacklog(), "after the queue ran")
}

// On PostgreSQL transactions do not queue in the process: no backlog,
// even while one holds a row lock others wait for.
func TestWriteBacklogPostgres(t *testing.T) {
	s := open(t, postgresDSN(t))
	require.Zero(t, s.WriteBacklog())
}
