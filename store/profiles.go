package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Profile is what the lobby shows of a player.
type Profile struct {
	AccountID string
	Nickname  string
	Avatar    string
	// Balance is the player's currency; it changes only through the
	// ledger (ApplyLedger).
	Balance   int64
	UpdatedAt time.Time
}

const profileColumns = `account_id, nickname, avatar, balance, updated_at`

func scanProfile(row *sql.Row) (Profile, error) {
	var p Profile
	var id, updated int64
	err := row.Scan(&id, &p.Nickname, &p.Avatar, &p.Balance, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return Profile{}, ErrNotFound
	}
	if err != nil {
		return Profile{}, fmt.Errorf("store: %w", err)
	}
	p.AccountID, p.UpdatedAt = formatID(id), fromMillis(updated)
	return p, nil
}

// Profile returns an account's profile, ErrNotFound before EnsureProfile.
func (s *Store) Profile(ctx context.Context, accountID string) (Profile, error) {
	id, ok := parseID(accountID)
	if !ok {
		return Profile{}, ErrNotFound
	}
	return readRow(ctx, s, scanProfile, `SELECT `+profileColumns+` FROM profiles WHERE account_id = $1`, id)
}

// Balances returns the balances of several accounts in one query (a
// table starting a round reads its players' at once). An account without
// a profile is missing from the map.
func (s *Store) Balances(ctx context.Context, accountIDs []string) (map[string]int64, error) {
	args := make([]any, 0, len(accountIDs))
	for _, a := range accountIDs {
		if id, ok := parseID(a); ok {
			args = append(args, id)
		}
	}
	out := make(map[string]int64, len(args))
	if len(args) == 0 {
		return out, nil
	}
	err := s.read(ctx, func() error {
		rows, err := s.r.QueryContext(ctx, balancesOf(len(args)), args...)
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var id, bal int64
			if err := rows.Scan(&id, &bal); err != nil {
				return fmt.Errorf("store: %w", err)
			}
			out[formatID(id)] = bal
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// balancesOf is the statement that reads the balances of n accounts.
var balancesOf = listed(func(n int) string {
	return `SELECT account_id, balance FROM profiles WHERE account_id IN (` + placeholders(1, n) + `)`
})

// EnsureProfile returns an account's profile, creating it with
// defaultNickname, no avatar and a zero balance if it has none (at first
// login). It is ErrNotFound for an account that does not exist.
func (s *Store) EnsureProfile(ctx context.Context, accountID, defaultNickname string) (Profile, error) {
	id, ok := parseID(accountID)
	if !ok {
		return Profile{}, ErrNotFound
	}
	// Every login calls this, and nearly every one finds the profile: a
	// read, which on SQLite does not queue for the one writer.
	const read = `SELECT ` + profileColumns + ` FROM profiles WHERE account_id = $1`
	if p, err := readRow(ctx, s, scanProfile, read, id); !errors.Is(err, ErrNotFound) {
		return p, err
	}
	// One statement that inserts only if the account exists and the
	// profile does not, so that neither a missing account (a foreign key
	// error, which each driver words differently) nor a concurrent first
	// login (a duplicate key) is an error to decode. The WHERE also keeps
	// SQLite from reading ON CONFLICT as a join's ON.
	err := s.tx(ctx, func(ctx context.Context, t *txn) error {
		_, err := t.ExecContext(ctx, `
			INSERT INTO profiles (account_id, nickname, avatar, balance, updated_at)
			SELECT id, $2, '', 0, $3 FROM accounts WHERE id = $1
			ON CONFLICT (account_id) DO NOTHING`,
			id, defaultNickname, nowMillis())
		return err
	})
	if err != nil {
		return Profile{}, fmt.Errorf("store: ensure profile: %w", err)
	}
	return readRow(ctx, s, scanProfile, read, id)
}

// UpdateProfile sets an account's nickname and avatar and returns the
// profile; ErrNotFound before EnsureProfile.
func (s *Store) UpdateProfile(ctx context.Context, accountID, nickname, avatar string) (Profile, error) {
	id, ok := parseID(accountID)
	if !ok {
		return Profile{}, ErrNotFound
	}
	return scanProfile(s.w.QueryRowContext(ctx, `
		UPDATE profiles SET nickname = $2, avatar = $3, updated_at = $4
		WHERE account_id = $1
		RETURNING `+profileColumns,
		id, nickname, avatar, nowMillis()))
}
