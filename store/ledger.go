package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// LedgerEntry is one change of one account's balance.
type LedgerEntry struct {
	AccountID string
	Delta     int64  // credit if positive, debit if negative
	Reason    string // for people reading the ledger: "daily bonus", "niuniu round 81"
	// Key makes the change idempotent: unique across all entries ever, so
	// derive it from what the change settles (a request id, or a round id
	// plus the account for a round that pays several players).
	Key string

	// Set by the store when reading the ledger.
	Balance   int64 // the account's balance right after this entry
	CreatedAt time.Time
}

// ApplyLedger applies one change to an account's balance and returns the
// balance after it. If e.Key was applied before, nothing changes: applied is
// false and balance is what the first application returned. A debit beyond
// the balance is ErrInsufficientFunds, an account without a profile
// ErrNotFound, and a key already used for another account or amount
// ErrKeyConflict; in all three cases nothing is written.
func (s *Store) ApplyLedger(ctx context.Context, e LedgerEntry) (balance int64, applied bool, err error) {
	b, applied, err := s.ApplyLedgerBatch(ctx, []LedgerEntry{e})
	if err != nil {
		return 0, false, err
	}
	return b[0], applied, nil
}

// ApplyLedgerBatch applies several changes, to one or several accounts, in
// one transaction: all of them or none (settling a game round). balances[i]
// is the balance of entries[i]'s account right after entries[i]; entries of
// one account apply in the order given. The batch is idempotent as a whole:
// if its keys were applied before, nothing changes, applied is false and
// balances are what the first application returned. Keys must be distinct;
// a batch that mixes applied and new keys is ErrKeyConflict.
func (s *Store) ApplyLedgerBatch(ctx context.Context, entries []LedgerEntry) (balances []int64, applied bool, err error) {
	if len(entries) == 0 {
		return nil, false, errors.New("store: empty ledger batch")
	}
	accounts := make([]int64, len(entries))
	seen := make(map[string]bool, len(entries))
	for i, e := range entries {
		if e.Key == "" {
			return nil, false, errors.New("store: ledger entry needs an idempotency key")
		}
		if seen[e.Key] {
			return nil, false, fmt.Errorf("store: ledger key %q twice in one batch", e.Key)
		}
		seen[e.Key] = true
		id, ok := parseID(e.AccountID)
		if !ok {
			return nil, false, fmt.Errorf("store: account %q: %w", e.AccountID, ErrNotFound)
		}
		accounts[i] = id
	}
	// Balances are updated in account order (entries of one account in
	// the order given), so on PostgreSQL concurrent batches take the row
	// locks in one order and cannot deadlock.
	order := make([]int, len(entries))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int { return cmp.Compare(accounts[i], accounts[j]) })

	balances = make([]int64, len(entries))
	err = s.tx(ctx, func(ctx context.Context, tx *txn) error {
		// A retry is the usual repeat: answer it without writing.
		if done, err := appliedBefore(ctx, tx, entries, accounts, balances); err != nil || done {
			return cmp.Or(err, errAlreadyDone)
		}
		now := nowMillis()
		for _, i := range order {
			// The condition is evaluated on the row as locked by the
			// UPDATE (PostgreSQL re-checks it on the newest version after
			// waiting for another writer), so no change is lost and none
			// overdraws.
			err := tx.QueryRowContext(ctx, `
				UPDATE profiles SET balance = balance + $2, updated_at = $3
				WHERE account_id = $1 AND balance + $2 >= 0
				RETURNING balance`,
				accounts[i], entries[i].Delta, now).Scan(&balances[i])
			if errors.Is(err, sql.ErrNoRows) {
				// A concurrent call with the same keys may have committed
				// while this one waited for the row: then this is a
				// repeat, not a lack of funds.
				if done, err := appliedBefore(ctx, tx, entries, accounts, balances); err != nil || done {
					return cmp.Or(err, errAlreadyDone)
				}
				var one int
				err := tx.QueryRowContext(ctx, `SELECT 1 FROM profiles WHERE account_id = $1`, accounts[i]).Scan(&one)
				switch {
				case errors.Is(err, sql.ErrNoRows):
					return fmt.Errorf("store: account %s has no profile: %w", entries[i].AccountID, ErrNotFound)
				case err != nil:
					return fmt.Errorf("store: ledger: %w", err)
				}
				return fmt.Errorf("store: account %s: %w", entries[i].AccountID, ErrInsufficientFunds)
			}
			if err != nil {
				return fmt.Errorf("store: ledger: %w", err)
			}
		}
		// Entries are written while their rows are locked, in account
		// order, so an account's entries are numbered in the order they
		// changed its balance. One statement for all of them: a key taken
		// leaves its row out and the others in.
		args := make([]any, 0, 6*len(order))
		for _, i := range order {
			e := entries[i]
			args = append(args, accounts[i], e.Delta, e.Reason, e.Key, balances[i], now)
		}
		res, err := tx.ExecContext(ctx, insertLedger(len(order)), args...)
		if err != nil {
			return fmt.Errorf("store: ledger: %w", err)
		}
		rows, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("store: ledger: %w", err)
		}
		switch {
		case rows == int64(len(order)):
			return nil
		case rows > 0:
			// Some keys were free and some taken: not a repeat of this
			// batch, whose keys would all be taken. (appliedBefore would
			// see this transaction's own rows among the others'.)
			return fmt.Errorf("store: a ledger batch of which some keys were taken: %w", ErrKeyConflict)
		}
		// Every key was taken since the check above: by the same batch,
		// committed by a concurrent call while this one waited for a row
		// (its answer is returned), or by different changes (an error).
		// Either way the updates above are rolled back.
		if done, err := appliedBefore(ctx, tx, entries, accounts, balances); err != nil || done {
			return cmp.Or(err, errAlreadyDone)
		}
		return fmt.Errorf("store: ledger keys taken: %w", ErrKeyConflict)
	})
	switch {
	case errors.Is(err, errAlreadyDone):
		return balances, false, nil
	case err != nil:
		return nil, false, err
	}
	return balances, true, nil
}

// insertLedger is the statement that writes n ledger entries, each from
// six arguments: account, delta, reason, key, balance after, time. An entry
// whose key was used before is left out.
var insertLedger = listed(func(n int) string {
	var q strings.Builder
	q.WriteString(`INSERT INTO ledger (account_id, delta, reason, idem_key, balance_after, created_at) VALUES `)
	for i := range n {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(" + placeholders(6*i+1, 6) + ")")
	}
	q.WriteString(` ON CONFLICT (idem_key) DO NOTHING`)
	return q.String()
})

// ledgerByKeys is the statement that reads the entries of n keys.
var ledgerByKeys = listed(func(n int) string {
	return `SELECT idem_key, account_id, delta, balance_after FROM ledger
		WHERE idem_key IN (` + placeholders(1, n) + `)`
})

// appliedBefore reports whether a batch was applied before, filling
// balances with what that application returned. A batch of which only some
// keys exist, or whose keys were used for other changes, is ErrKeyConflict.
func appliedBefore(ctx context.Context, tx *txn, entries []LedgerEntry, accounts, balances []int64) (bool, error) {
	// One statement, so one snapshot: on PostgreSQL a batch committing
	// between two lookups would otherwise look half applied.
	args := make([]any, len(entries))
	at := make(map[string]int, len(entries))
	for i, e := range entries {
		args[i] = e.Key
		at[e.Key] = i
	}
	rows, err := tx.QueryContext(ctx, ledgerByKeys(len(entries)), args...)
	if err != nil {
		return false, fmt.Errorf("store: ledger: %w", err)
	}
	defer rows.Close()
	found := 0
	for rows.Next() {
		var key string
		var account, delta, balance int64
		if err := rows.Scan(&key, &account, &delta, &balance); err != nil {
			return false, fmt.Errorf("store: ledger: %w", err)
		}
		i := at[key]
		if account != accounts[i] || delta != entries[i].Delta {
			return false, fmt.Errorf("store: ledger key %q was account %d, delta %d: %w", key, account, delta, ErrKeyConflict)
		}
		balances[i] = balance
		found++
	}
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("store: ledger: %w", err)
	}
	switch found {
	case 0:
		return false, nil
	case len(entries):
		return true, nil
	}
	return false, fmt.Errorf("store: a ledger batch of which some keys were applied before and some not: %w", ErrKeyConflict)
}

// LedgerApplied reports whether an entry with this idempotency key was
// applied. It only reads (on SQLite it does not wait for the one writer):
// check it before a write that is usually applied already, such as a
// one-time grant.
func (s *Store) LedgerApplied(ctx context.Context, key string) (bool, error) {
	var found bool
	err := s.read(ctx, func() error {
		var one int
		err := s.r.QueryRowContext(ctx, `SELECT 1 FROM ledger WHERE idem_key = $1`, key).Scan(&one)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil
		case err != nil:
			return fmt.Errorf("store: ledger: %w", err)
		}
		found = true
		return nil
	})
	return found, err
}

// errAlreadyDone rolls back a transaction that found its work done before
// (by an earlier call, or a concurrent one that won).
var errAlreadyDone = errors.New("store: already done")

// Ledger returns an account's most recent entries, newest first, at most
// limit of them (100 if limit <= 0, never more than 1000).
func (s *Store) Ledger(ctx context.Context, accountID string, limit int) ([]LedgerEntry, error) {
	id, ok := parseID(accountID)
	if !ok {
		return nil, nil
	}
	switch {
	case limit <= 0:
		limit = 100
	case limit > 1000:
		limit = 1000
	}
	var out []LedgerEntry
	err := s.read(ctx, func() error {
		rows, err := s.r.QueryContext(ctx, `
			SELECT delta, reason, idem_key, balance_after, created_at FROM ledger
			WHERE account_id = $1 ORDER BY id DESC LIMIT $2`, id, limit)
		if err != nil {
			return fmt.Errorf("store: ledger: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			e := LedgerEntry{AccountID: accountID}
			var created int64
			if err := rows.Scan(&e.Delta, &e.Reason, &e.Key, &e.Balance, &created); err != nil {
				return fmt.Errorf("store: ledger: %w", err)
			}
			e.CreatedAt = fromMillis(created)
			out = append(out, e)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("store: ledger: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
