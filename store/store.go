// Package store is hearth's durable data: accounts and their device and
// third-party identities, player profiles, and the currency ledger. It runs
// on SQLite (the default: one file, nothing to operate) or PostgreSQL (many
// nodes sharing one database), with one set of goose migrations applied by
// Open.
//
// Both backends go through database/sql (pgx's stdlib driver for
// PostgreSQL) so that every query is one text with $n placeholders, which
// modernc's SQLite accepts too: there is one code path to test, not two.
// database/sql's own pool is enough for the short statements here; pgxpool
// would buy little beyond what it costs in a second implementation.
//
// Account ids are decimal strings of 64-bit row ids, because that is what
// travels through sessions and presence as a user id; a string that is not
// such an id simply finds nothing.
//
// Concurrency: SQLite allows one writer at a time, and a second connection
// that tries to write gets SQLITE_BUSY (or waits out busy_timeout while
// holding its own snapshot, which can still fail). So on SQLite every write
// goes through a pool of exactly one connection, which serialises writers in
// Go (transactions through one writer goroutine that commits those queued
// together: group.go), while reads use a separate pool of read-only
// connections that WAL lets run beside the writer. On PostgreSQL both are the same pool, at READ
// COMMITTED, and correctness comes from the statements themselves: unique
// keys taken with INSERT … ON CONFLICT DO NOTHING (a second insert of a key
// waits for the first transaction and then does nothing), and balances
// changed by a conditional UPDATE that PostgreSQL re-checks under the row
// lock, so no update is lost and no balance goes negative. Rows are locked
// in account order, so concurrent settlements cannot deadlock.
//
// Money moves only through the ledger: each change carries a caller-chosen
// idempotency key (a request or round id), and a change whose key was already
// applied changes nothing and returns what the first application returned.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	// database/sql drivers: "pgx" and "sqlite".
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"
)

// Errors callers check with errors.Is.
var (
	// ErrNotFound: no such account, profile or identity.
	ErrNotFound = errors.New("store: not found")
	// ErrAccountExists: the account name is taken (names are compared
	// case-insensitively).
	ErrAccountExists = errors.New("store: account exists")
	// ErrInsufficientFunds: a ledger change would make a balance negative.
	// Nothing was written.
	ErrInsufficientFunds = errors.New("store: insufficient funds")
	// ErrKeyConflict: a ledger idempotency key was already used for a
	// different change (another account or amount), or a batch mixes applied
	// and new keys. It means a caller bug, so it is an error rather than a
	// silent no-op that would leave money unmoved.
	ErrKeyConflict = errors.New("store: idempotency key used for a different change")
)

// DefaultSQLiteFile is the database Open uses for an empty DSN.
const DefaultSQLiteFile = "hearth.db"

// Store is the durable data of one node. It is safe for concurrent use.
type Store struct {
	w       *pool        // writes and transactions; on SQLite one connection
	r       *pool        // reads; the same pool as w on PostgreSQL
	dialect string       // "sqlite3" or "postgres", goose's names
	group   *groupCommit // SQLite: runs the transactions of tx; nil on PostgreSQL
	readers *readers     // SQLite: runs the reads (read); nil on PostgreSQL
}

// Option adjusts Open.
type Option func(*options)

type options struct {
	maxConns int
	log      *slog.Logger
}

// WithMaxConns sets the size of the connection pool: PostgreSQL
// connections, or SQLite read connections (SQLite always has one writer).
func WithMaxConns(n int) Option { return func(o *options) { o.maxConns = n } }

// WithLogger receives a line per migration applied. Nil means slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// Open connects to the database named by dsn and applies the migrations it
// lacks. dsn is one of:
//
//   - "" — SQLite in DefaultSQLiteFile in the working directory
//   - "sqlite://path/to/file.db" or a plain file path — SQLite; a query
//     string is passed to the driver (e.g. "?_pragma=synchronous(NORMAL)")
//   - "postgres://…" or "postgresql://…" — PostgreSQL (pgx connection
//     string; search_path=… selects a schema)
//
// The directory of a SQLite file is created if missing.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	var s *Store
	var err error
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		s, err = openPostgres(ctx, dsn, o)
	case dsn == "":
		s, err = openSQLite(ctx, DefaultSQLiteFile, o)
	case strings.HasPrefix(dsn, "sqlite://"):
		s, err = openSQLite(ctx, strings.TrimPrefix(dsn, "sqlite://"), o)
	case strings.Contains(dsn, "://"):
		// Not echoing the DSN: it may hold a password.
		return nil, errors.New("store: unsupported database URL scheme (want sqlite:// or postgres://)")
	default:
		s, err = openSQLite(ctx, dsn, o)
	}
	if err != nil {
		return nil, err
	}
	if err := s.migrate(ctx, o.log); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

func openPostgres(ctx context.Context, dsn string, o options) (*Store, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	n := o.maxConns
	if n <= 0 {
		// Several nodes share one server whose default max_connections is
		// 100; the statements here are short, so a few connections go far.
		n = 10
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxIdleTime(5 * time.Minute)
	// Recycled now and then so that connections spread again after a
	// failover or a pooler restart.
	db.SetConnMaxLifetime(time.Hour)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	p := newPool(db, false)
	return &Store{w: p, r: p, dialect: "postgres"}, nil
}

func openSQLite(ctx context.Context, path string, o options) (*Store, error) {
	path, query, _ := strings.Cut(path, "?")
	if path == "" {
		return nil, errors.New("store: sqlite: empty file path")
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("store: sqlite: %w", err)
		}
	}
	// busy_timeout covers other processes on the same file (the sqlite3
	// shell, a backup); within this process writers never contend.
	// synchronous stays at SQLite's default FULL: the ledger is money, and
	// an operator who prefers speed can append _pragma=synchronous(NORMAL).
	params := "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)"
	if query != "" {
		params += "&" + query
	}
	// BEGIN IMMEDIATE takes the write lock at the start of a transaction,
	// so a transaction never fails half-way on a lock upgrade.
	w, err := sql.Open("sqlite", path+"?"+params+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	// The first connection creates the file and switches it to WAL before a
	// reader can open it.
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: sqlite: %w", err)
	}
	r, err := sql.Open("sqlite", path+"?"+params+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store: sqlite: %w", err)
	}
	n := o.maxConns
	if n <= 0 {
		n = max(4, runtime.GOMAXPROCS(0))
	}
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	r.SetConnMaxLifetime(0)
	wp := newPool(w, true)
	return &Store{w: wp, r: newPool(r, true), dialect: "sqlite3", group: newGroupCommit(wp), readers: newReaders(n)}, nil
}

// Close closes the connection pools.
func (s *Store) Close() error {
	if s.group != nil {
		s.group.close()
	}
	if s.readers != nil {
		s.readers.close()
	}
	var rerr error
	if s.r != s.w {
		rerr = s.r.Close()
	}
	return errors.Join(rerr, s.w.Close())
}

// Ping checks that the database answers, for readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	return s.w.PingContext(ctx)
}

// tx runs fn in a write transaction and commits if fn returns nil. On
// SQLite the transaction may share its commit with others (groupCommit):
// fn sees what earlier members of its group wrote, as it would had they
// committed before it.
func (s *Store) tx(ctx context.Context, fn func(context.Context, *txn) error) error {
	if s.group != nil {
		return s.group.tx(ctx, fn)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	t := &txn{Tx: tx, p: s.w}
	defer t.prepareMissed(ctx)
	if err := fn(ctx, t); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// WriteBacklog is how long the oldest write transaction has been waiting
// for SQLite's one writer (0 when none waits): a measure of how far the
// store is behind its writers, for callers that can put work off — auth
// refuses new accounts past a bound, so that a stampede of sign-ups does
// not stall every table's settlement behind it. On PostgreSQL it is
// always 0: transactions run side by side on the pool and do not queue in
// this process.
func (s *Store) WriteBacklog() time.Duration {
	if s.group == nil {
		return 0
	}
	return s.group.backlog(time.Now())
}

// nowMillis is the time stamped on rows: unix milliseconds, the same
// integer on both databases.
func nowMillis() int64 { return time.Now().UnixMilli() }

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }
