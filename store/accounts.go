package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Kind says how an account logs in.
type Kind string

const (
	KindPassword Kind = "password" // a name and a password
	KindGuest    Kind = "guest"    // a device id
	KindExternal Kind = "external" // a third-party identity (provider, subject)
)

// Account is someone who can log in.
type Account struct {
	// ID is the decimal form of the account's 64-bit row id: the user id
	// sessions and presence carry.
	ID   string
	Name string // "" for guest and external accounts
	Kind Kind
	// PasswordHash is opaque here (the auth service owns its format); ""
	// means no password.
	PasswordHash string
	CreatedAt    time.Time
}

const accountColumns = `a.id, a.kind, COALESCE(a.name, ''), a.password_hash, a.created_at`

func scanAccount(row *sql.Row) (Account, error) {
	var a Account
	var id, created int64
	var kind string
	err := row.Scan(&id, &kind, &a.Name, &a.PasswordHash, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return Account{}, ErrNotFound
	}
	if err != nil {
		return Account{}, fmt.Errorf("store: %w", err)
	}
	a.ID, a.Kind, a.CreatedAt = formatID(id), Kind(kind), fromMillis(created)
	return a, nil
}

func formatID(id int64) string { return strconv.FormatInt(id, 10) }

// parseID reads an account id; ok is false for anything no account can
// have, which callers report as ErrNotFound.
func parseID(s string) (id int64, ok bool) {
	id, err := strconv.ParseInt(s, 10, 64)
	return id, err == nil && id > 0
}

// nameKey is what account names are unique by. It is stored, so changing it
// needs a migration that recomputes the column.
func nameKey(name string) string { return strings.ToLower(name) }

// CreateAccount creates a password account from a.Name and a.PasswordHash
// (other fields are ignored) and returns it. A name that differs from an
// existing one only in case is taken: ErrAccountExists.
func (s *Store) CreateAccount(ctx context.Context, a Account) (Account, error) {
	if a.Name == "" {
		return Account{}, errors.New("store: account needs a name")
	}
	now := nowMillis()
	var id int64
	err := s.w.QueryRowContext(ctx, `
		INSERT INTO accounts (kind, name, name_key, password_hash, created_at)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (name_key) DO NOTHING
		RETURNING id`,
		string(KindPassword), a.Name, nameKey(a.Name), a.PasswordHash, now).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return Account{}, ErrAccountExists
	}
	if err != nil {
		return Account{}, fmt.Errorf("store: create account: %w", err)
	}
	return Account{ID: formatID(id), Name: a.Name, Kind: KindPassword, PasswordHash: a.PasswordHash, CreatedAt: fromMillis(now)}, nil
}

// AccountByName finds a password account by name, in any case.
func (s *Store) AccountByName(ctx context.Context, name string) (Account, error) {
	return readRow(ctx, s, scanAccount,
		`SELECT `+accountColumns+` FROM accounts a WHERE a.name_key = $1`, nameKey(name))
}

// AccountByID finds an account by id.
func (s *Store) AccountByID(ctx context.Context, id string) (Account, error) {
	n, ok := parseID(id)
	if !ok {
		return Account{}, ErrNotFound
	}
	return readRow(ctx, s, scanAccount,
		`SELECT `+accountColumns+` FROM accounts a WHERE a.id = $1`, n)
}

// SetPasswordHash replaces an account's password hash (a password change,
// or a rehash with new parameters at login).
func (s *Store) SetPasswordHash(ctx context.Context, id, hash string) error {
	n, ok := parseID(id)
	if !ok {
		return ErrNotFound
	}
	res, err := s.w.ExecContext(ctx, `UPDATE accounts SET password_hash = $2 WHERE id = $1`, n, hash)
	if err != nil {
		return fmt.Errorf("store: set password: %w", err)
	}
	if rows, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: set password: %w", err)
	} else if rows == 0 {
		return ErrNotFound
	}
	return nil
}

// GuestAccount returns the account of a device id, creating it (created
// true) on the device's first call. Concurrent calls for one device, on any
// number of nodes, agree on one account.
func (s *Store) GuestAccount(ctx context.Context, deviceID string) (a Account, created bool, err error) {
	if deviceID == "" {
		return Account{}, false, errors.New("store: guest account needs a device id")
	}
	// Device ids live in identities under the empty provider, which
	// ExternalAccount refuses, so the two never collide.
	return s.identity(ctx, "", deviceID, KindGuest)
}

// ExternalAccount returns the account of a third-party identity (a
// provider's name and its stable subject id), creating it (created true) on
// first use. Concurrent calls for one identity agree on one account.
func (s *Store) ExternalAccount(ctx context.Context, provider, subject string) (a Account, created bool, err error) {
	if provider == "" || subject == "" {
		return Account{}, false, errors.New("store: external account needs a provider and a subject")
	}
	return s.identity(ctx, provider, subject, KindExternal)
}

// FindGuestAccount returns the account of a device id, or ErrNotFound —
// without creating one (see GuestAccount).
func (s *Store) FindGuestAccount(ctx context.Context, deviceID string) (Account, error) {
	return readRow(ctx, s, scanAccount, accountByIdentity, "", deviceID)
}

// FindExternalAccount returns the account of a third-party identity, or
// ErrNotFound — without creating one (see ExternalAccount).
func (s *Store) FindExternalAccount(ctx context.Context, provider, subject string) (Account, error) {
	if provider == "" {
		return Account{}, ErrNotFound // the empty provider is the guests'
	}
	return readRow(ctx, s, scanAccount, accountByIdentity, provider, subject)
}

const accountByIdentity = `SELECT ` + accountColumns + `
	FROM identities i JOIN accounts a ON a.id = i.account_id
	WHERE i.provider = $1 AND i.subject = $2`

// errLostRace rolls back a transaction that found its work already done by
// a concurrent one.
var errLostRace = errors.New("store: lost race")

func (s *Store) identity(ctx context.Context, provider, subject string, kind Kind) (Account, bool, error) {
	// Most calls are returning players: a plain read, no write lock.
	a, err := readRow(ctx, s, scanAccount, accountByIdentity, provider, subject)
	if !errors.Is(err, ErrNotFound) {
		return a, false, err
	}
	err = s.tx(ctx, func(ctx context.Context, tx *txn) error {
		now := nowMillis()
		var id int64
		if err := tx.QueryRowContext(ctx,
			`INSERT INTO accounts (kind, created_at) VALUES ($1, $2) RETURNING id`,
			string(kind), now).Scan(&id); err != nil {
			return fmt.Errorf("store: create account: %w", err)
		}
		// The identity's primary key decides who wins a race: on
		// PostgreSQL a concurrent insert of the same key waits for the
		// first transaction and then does nothing.
		res, err := tx.ExecContext(ctx, `
			INSERT INTO identities (provider, subject, account_id, created_at)
			VALUES ($1, $2, $3, $4)
			ON CONFLICT (provider, subject) DO NOTHING`,
			provider, subject, id, now)
		if err != nil {
			return fmt.Errorf("store: create identity: %w", err)
		}
		rows, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("store: create identity: %w", err)
		}
		if rows == 0 {
			// The winner has committed, so this statement sees its row;
			// the account made above goes with the rollback.
			a, err = scanAccount(tx.QueryRowContext(ctx, accountByIdentity, provider, subject))
			if err != nil {
				return err
			}
			return errLostRace
		}
		a = Account{ID: formatID(id), Kind: kind, CreatedAt: fromMillis(now)}
		return nil
	})
	switch {
	case errors.Is(err, errLostRace):
		return a, false, nil
	case err != nil:
		return Account{}, false, err
	}
	return a, true, nil
}
