package store

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"sync"
)

// pool is a connection pool that, on SQLite, prepares each statement once
// and keeps it, by its SQL text. database/sql with modernc's SQLite keeps
// no statements for a query given as text, so SQLite would parse the SQL
// on every call (a quarter of a settlement's CPU); a kept *sql.Stmt holds
// SQLite's compiled statement per connection. On PostgreSQL pgx already
// keeps each connection's statements by text, and a *sql.Stmt on top only
// adds allocations (measured: no gain), so the pool there keeps none.
//
// The texts are the package's own, plus one per list length for the
// statements with a list of values, so the cache stays small; past
// maxStmts statements run as text.
type pool struct {
	*sql.DB
	keep bool // set by newPool

	mu    sync.Mutex // guards stmts
	stmts map[string]*sql.Stmt
}

const maxStmts = 200

// newPool wraps db; keep says whether it keeps prepared statements.
func newPool(db *sql.DB, keep bool) *pool {
	return &pool{DB: db, keep: keep, stmts: map[string]*sql.Stmt{}}
}

// cached returns query's statement if it was prepared before, else nil.
func (p *pool) cached(query string) *sql.Stmt {
	if !p.keep {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stmts[query]
}

// stmt returns query's statement, preparing it on first use. It is nil if
// the pool keeps no statements or has kept maxStmts, or if the statement
// cannot be prepared (the caller runs the text, which reports the error).
func (p *pool) stmt(ctx context.Context, query string) *sql.Stmt {
	if st := p.cached(query); st != nil {
		return st
	}
	if !p.keep {
		return nil
	}
	p.mu.Lock()
	full := len(p.stmts) >= maxStmts
	p.mu.Unlock()
	if full {
		return nil
	}
	st, err := p.DB.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.stmts[query]; old != nil {
		// Prepared concurrently by another call: keep one. Closing a
		// statement nothing has used cannot fail in a way to act on.
		_ = st.Close()
		return old
	}
	p.stmts[query] = st
	return st
}

// QueryRowContext is sql.DB's, through the statement cache.
func (p *pool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := p.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return p.DB.QueryRowContext(ctx, query, args...)
}

// QueryContext is sql.DB's, through the statement cache.
func (p *pool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := p.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return p.DB.QueryContext(ctx, query, args...)
}

// ExecContext is sql.DB's, through the statement cache.
func (p *pool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := p.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return p.DB.ExecContext(ctx, query, args...)
}

// Close closes the statements and then the pool.
func (p *pool) Close() error {
	p.mu.Lock()
	var errs []error
	for q, st := range p.stmts {
		errs = append(errs, st.Close())
		delete(p.stmts, q)
	}
	p.mu.Unlock()
	return errors.Join(append(errs, p.DB.Close())...)
}

// txn is a write transaction that uses its pool's statements. A statement
// it meets for the first time runs as text and is prepared after the
// transaction (prepareMissed): preparing it on the pool from inside the
// transaction would wait on SQLite for the one writer connection, which
// the transaction holds.
type txn struct {
	*sql.Tx
	p      *pool
	missed []string // owned by the transaction's goroutine
}

func (t *txn) stmt(ctx context.Context, query string) *sql.Stmt {
	if !t.p.keep {
		return nil
	}
	st := t.p.cached(query)
	if st == nil {
		t.missed = append(t.missed, query)
		return nil
	}
	// The statement on the transaction's connection: on SQLite the one it
	// was prepared on; on PostgreSQL prepared there once, then kept.
	return t.Tx.StmtContext(ctx, st)
}

// QueryRowContext is sql.Tx's, through the statement cache.
func (t *txn) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.Tx.QueryRowContext(ctx, query, args...)
}

// QueryContext is sql.Tx's, through the statement cache.
func (t *txn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := t.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.Tx.QueryContext(ctx, query, args...)
}

// ExecContext is sql.Tx's, through the statement cache.
func (t *txn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.Tx.ExecContext(ctx, query, args...)
}

// prepareMissed prepares, once the transaction is over, the statements it
// ran as text.
func (t *txn) prepareMissed(ctx context.Context) {
	for _, q := range t.missed {
		t.p.stmt(ctx, q)
	}
}

// maxListed is the longest list of values whose statement text is built
// once (listed): a table's players, a round's ledger entries.
const maxListed = 16

// listed returns build memoised for lists of up to maxListed values, so
// that a call finds its statement without building the text again.
func listed(build func(n int) string) func(n int) string {
	texts := make([]string, maxListed+1)
	for n := 1; n <= maxListed; n++ {
		texts[n] = build(n)
	}
	return func(n int) string {
		if n <= maxListed {
			return texts[n]
		}
		return build(n)
	}
}

// placeholders is "$first, …" for n parameters.
func placeholders(first, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(first+i))
	}
	return b.String()
}
