package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Every test runs against both backends, each on a fresh database.
var backends = []struct {
	name string
	dsn  func(testing.TB) string
}{
	{"sqlite", sqliteDSN},
	{"postgres", postgresDSN},
}

var storeTests = []struct {
	name string
	run  func(t *testing.T, s *Store, dsn string)
}{
	{"migrations", testMigrations},
	{"accounts", testAccounts},
	{"accounts concurrent create", testAccountsConcurrentCreate},
	{"guest", testGuest},
	{"guest concurrent", testGuestConcurrent},
	{"external", testExternal},
	{"external concurrent", testExternalConcurrent},
	{"profiles", testProfiles},
	{"ledger", testLedger},
	{"ledger same key concurrent", testLedgerSameKeyConcurrent},
	{"ledger same key while locked", testLedgerSameKeyWhileLocked},
	{"ledger different keys concurrent", testLedgerDifferentKeysConcurrent},
	{"ledger insufficient funds", testLedgerInsufficientFunds},
	{"ledger batch", testLedgerBatch},
	{"balances", testBalances},
	{"ledger batch concurrent", testLedgerBatchConcurrent},
}

func TestStore(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range storeTests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					dsn := b.dsn(t)
					tc.run(t, open(t, dsn), dsn)
				})
			}
		})
	}
}

func sqliteDSN(t testing.TB) string {
	return "sqlite://" + filepath.Join(t.TempDir(), "data", "hearth.db")
}

// defaultPostgres is the CI database; HEARTH_TEST_POSTGRES overrides it.
const defaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// postgresDSN makes a schema of its own for the test, dropped afterwards,
// and returns a DSN whose search_path is that schema: the migrations must
// work outside "public", and tests must not see each other's rows.
func postgresDSN(t testing.TB) string {
	base := os.Getenv("HEARTH_TEST_POSTGRES")
	if base == "" {
		base = defaultPostgres
	}
	admin, err := sql.Open("pgx", base)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		// Never a skip: CI provides the database, and a skipped backend
		// would let a PostgreSQL-only bug through unnoticed.
		t.Fatalf("PostgreSQL is needed for the store tests and is not reachable at %s: %v\n"+
			"start it (Debian: service postgresql start) or set HEARTH_TEST_POSTGRES", base, err)
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "hearth_test_" + hex.EncodeToString(b[:])
	_, err = admin.ExecContext(ctx, "CREATE SCHEMA "+schema)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE")
		admin.Close()
		require.NoError(t, err)
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema
}

func open(t testing.TB, dsn string, opts ...Option) *Store {
	t.Helper()
	opts = append([]Option{WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	s, err := Open(context.Background(), dsn, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// concurrently runs fn n times at once, released together so that the
// calls really race, and returns their errors.
func concurrently(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

func count(t *testing.T, s *Store, table string) int {
	t.Helper()
	var n int
	require.NoError(t, s.w.QueryRow("SELECT COUNT(*) FROM "+table).Scan(&n))
	return n
}

func testMigrations(t *testing.T, s *Store, dsn string) {
	ctx := context.Background()
	var current int64
	require.NoError(t, s.w.QueryRowContext(ctx, "SELECT MAX(version_id) FROM goose_db_version").Scan(&current))
	require.Positive(t, current)
	if s.dialect == "postgres" {
		// Everything landed in the test's schema, nothing in public.
		var n int
		require.NoError(t, s.w.QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema()
			AND tablename IN ('goose_db_version', 'accounts', 'identities', 'profiles', 'ledger')`).Scan(&n))
		require.Equal(t, 5, n)
		var schema string
		require.NoError(t, s.w.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema))
		require.True(t, strings.HasPrefix(schema, "hearth_test_"), schema)
	} else {
		var mode string
		require.NoError(t, s.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode))
		require.Equal(t, "wal", mode)
		var fk int
		require.NoError(t, s.r.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk))
		require.Equal(t, 1, fk)
		// The read pool cannot write, so a write that strayed there would
		// fail here rather than contend with the writer.
		_, err := s.r.ExecContext(ctx, "DELETE FROM accounts")
		require.Error(t, err)
	}
	a, err := s.CreateAccount(ctx, Account{Name: "kept", PasswordHash: "h"})
	require.NoError(t, err)
	require.NoError(t, s.Ping(ctx))

	// Opening again applies nothing, keeps the data, and so do several
	// nodes opening at once.
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	errs := concurrently(3, func(int) error {
		s2, err := Open(ctx, dsn, WithLogger(log))
		if err != nil {
			return err
		}
		defer func() { _ = s2.Close() }()
		got, err := s2.AccountByID(ctx, a.ID)
		if err == nil && got.Name != "kept" {
			err = fmt.Errorf("account %+v after reopening", got)
		}
		return err
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.NotContains(t, logs.String(), "migration applied")
	var again int64
	require.NoError(t, s.w.QueryRowContext(ctx, "SELECT MAX(version_id) FROM goose_db_version").Scan(&again))
	require.Equal(t, current, again)
}

func TestOpenDSN(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// A plain path, with driver parameters passed through.
	s := open(t, filepath.Join(dir, "plain.db")+"?_pragma=synchronous(NORMAL)")
	var level int
	require.NoError(t, s.w.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&level))
	require.Equal(t, 1, level) // NORMAL
	require.FileExists(t, filepath.Join(dir, "plain.db"))

	_, err := Open(ctx, "mysql://root:secret@localhost/x")
	require.ErrorContains(t, err, "unsupported")
	require.NotContains(t, err.Error(), "secret")

	// The default file, in the working directory.
	t.Chdir(dir)
	open(t, "")
	require.FileExists(t, filepath.Join(dir, DefaultSQLiteFile))
}

func TestOpenPostgresUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Open(ctx, "postgres://postgres:secret@127.0.0.1:1/test?sslmode=disable&connect_timeout=2")
	require.Error(t, err)
	require.NotContains(t, err.Error(), "secret")
}

func testAccounts(t *testing.T, s *Store, _ string) {
	ctx := context.Background()
	before := time.Now().Add(-time.Second)
	a, err := s.CreateAccount(ctx, Account{Name: "Alice", PasswordHash: "hash-1"})
	require.NoError(t, err)
	require.NotEmpty(t, a.ID)
	require.Equal(t, KindPassword, a.Kind)
	require.Equal(t, "Alice", a.Name)
	require.True(t, a.CreatedAt.After(before), a.CreatedAt)

	for _, name := range []string{"Alice", "alice", "ALICE"} {
		_, err := s.CreateAccount(ctx, Account{Name: name, PasswordHash: "other"})
		require.ErrorIs(t, err, ErrAccountExists, name)
	}
	// Folding is Unicode on both databases, not ASCII only.
	_, err = s.CreateAccount(ctx, Account{Name: "Ünïcödé"})
	require.NoError(t, err)
	_, err = s.CreateAccount(ctx, Account{Name: "üNÏCÖDÉ"})
	require.ErrorIs(t, err, ErrAccountExists)
	_, err = s.CreateAccount(ctx, Account{})
	require.Error(t, err)

	got, err := s.AccountByName(ctx, "aLiCe")
	require.NoError(t, err)
	require.Equal(t, a, got)
	got, err = s.AccountByID(ctx, a.ID)
	require.NoError(t, err)
	require.Equal(t, a, got)

	_, err = s.AccountByName(ctx, "bob")
	require.ErrorIs(t, err, ErrNotFound)
	for _, id := range []string{"424242", "0", "-1", "x", "", "9999999999999999999999"} {
		_, err = s.AccountByID(ctx, id)
		require.ErrorIs(t, err, ErrNotFound, id)
	}

	require.NoError(t, s.SetPasswordHash(ctx, a.ID, "hash-2"))
	got, err = s.AccountByName(ctx, "alice")
	require.NoError(t, err)
	require.Equal(t, "hash-2", got.PasswordHash)
	require.ErrorIs(t, s.SetPasswordHash(ctx, "424242", "h"), ErrNotFound)
	require.ErrorIs(t, s.SetPasswordHash(ctx, "x", "h"), ErrNotFound)
}

func testAccountsConcurrentCreate(t *testing.T, s *Store, _ string) {
	ctx := context.Background()
	errs := concurrently(10, func(i int) error {
		_, err := s.CreateAccount(ctx, Account{Name: []string{"Racer", "racer", "RACER"}[i%3]})
		return err
	})
	created := 0
	for _, err := range errs {
		if err == nil {
			created++
			continue
		}
		require.ErrorIs(t, err, ErrAccountExists)
	}
	require.Equal(t, 1, created)
	require.Equal(t, 1, count(t, s, "accounts"))
}

func testGuest(t *testing.T, s *Store, _ string) {
	ctx := context.Background()
	a, created, err := s.GuestAccount(ctx, "device-1")
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, KindGuest, a.Kind)
	require.Empty(t, a.Name)

	again, created, err := s.GuestAccount(ctx, "device-1")
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, a, again)

	other, created, err := s.GuestAccount(ctx, "device-2")
	require.NoError(t, err)
	require.True(t, created)
	require.NotEqual(t, a.ID, other.ID)

	got, err := s.AccountByID(ctx, a.ID)
	require.NoError(t, err)
	require.Equal(t, a, got)
	// A guest has no name, so no name finds it.
	_, err = s.AccountByName(ctx, "")
	require.ErrorIs(t, err, ErrNotFound)

	_, _, err = s.GuestAccount(ctx, "")
	require.Error(t, err)
}

func testGuestConcurrent(t *testing.T, s *Store, _ string) {
	ctx := context.Background()
	accounts := make([]Account, 20)
	createdBy := make([]bool, 20)
	errs := concurrently(20, func(i int) (err error) {
		accounts[i], createdBy[i], err = s.GuestAccount(ctx, "device-race")
		return err
	})
	created := 0
	for i, err := range errs {
		require.NoError(t, err)
		require.Equal(t, accounts[0].ID, accounts[i].ID)
		if createdBy[i] {
			created++
		}
	}
	require.Equal(t, 1, created)
	// The losers' accounts were rolled back, not left behind.
	require.Equal(t, 1, count(t, s, "accounts"))
}

func testExternal(t *testing.T, s *Store, _ string) {
	ctx := context.Background()
	a, created, err := s.ExternalAccount(ctx, "steam", "7656119")
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, KindExternal, a.Kind)

	again, created, err := s.ExternalAccount(ctx, "steam", "7656119")
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, a, again)

	// The same subject at another provider, or as a device id, is someone
	// else.
	other, _, err := s.ExternalAccount(ctx, "apple", "7656119")
	require.NoError(t, err)
	require.NotEqual(t, a.ID, other.ID)
	guest, _, err := s.GuestAccount(ctx, "7656119")
	require.NoError(t, err)
	require.NotEqual(t, a.ID, guest.ID)
	require.NotEqual(t, other.ID, guest.ID)

	_, _, err = s.ExternalAccount(ctx, "", "x")
	require.Error(t, err)
	_, _, err = s.ExternalAccount(ctx, "steam", "")
	require.Error(t, err)
}

func testExternalConcurrent(t *testing.T, s *Store, _ string) {
	ctx := context.Background()
	accounts := make([]Account, 20)
	createdBy := make([]bool, 20)
	errs := concurrently(20, func(i int) (err error) {
		accounts[i], createdBy[i], err = s.ExternalAccount(ctx, "jwt", "sub-race")
		return err
	})
	created := 0
	for i, err := range errs {
		require.NoError(t, err)
		require.Equal(t, accounts[0].ID, accounts[i].ID)
		if createdBy[i] {
			created++
		}
	}
	require.Equal(t, 1, created)
	require.Equal(t, 1, count(t, s, "accounts"))
}

func testProfiles(t *testing.T, s *Store, _ string) {
	ctx := context.Background()
	a, err := s.CreateAccount(ctx, Account{Name: "carol"})
	require.NoError(t, err)
	_, err = s.Profile(ctx, a.ID)
	require.ErrorIs(t, err, ErrNotFound)
	_, err = s.UpdateProfile(ctx, a.ID, "x", "y")
	require.ErrorIs(t, err, ErrNotFound)

	// First logins may race; all of them see the one profile.
	profiles := make([]Profile, 10)
	errs := concurrently(10, func(i int) (err error) {
		profiles[i], err = s.EnsureProfile(ctx, a.ID, "Carol")
		return err
	})
	for i, err := range errs {
		require.NoError(t, err)
		require.Equal(t, profiles[0], profiles[i])
	}
	p := profiles[0]
	require.Equal(t, Profile{AccountID: a.ID, Nickname: "Carol", UpdatedAt: p.UpdatedAt}, p)
	require.WithinDuration(t, time.Now(), p.UpdatedAt, time.Minute)

	again, err := s.EnsureProfile(ctx, a.ID, "Someone else")
	require.NoError(t, err)
	require.Equal(t, p, again)

	up, err := s.UpdateProfile(ctx, a.ID, "Caz", "avatars/7.png")
	require.NoError(t, err)
	require.Equal(t, "Caz", up.Nickname)
	require.Equal(t, "avatars/7.png", up.Avatar)
	got, err := s.Profile(ctx, a.ID)
	require.NoError(t, err)
	require.Equal(t, up, got)

	for _, id := range []string{"424242", "x"} {
		_, err = s.EnsureProfile(ctx, id, "ghost")
		require.ErrorIs(t, err, ErrNotFound)
		_, err = s.Profile(ctx, id)
		require.ErrorIs(t, err, ErrNotFound)
		_, err = s.UpdateProfile(ctx, id, "a", "b")
		require.ErrorIs(t, err, ErrNotFound)
	}
}

// player makes an account with a profile holding balance.
func player(t testing.TB, s *Store, name string, balance int64) string {
	t.Helper()
	ctx := context.Background()
	a, err := s.CreateAccount(ctx, Account{Name: name})
	require.NoError(t, err)
	_, err = s.EnsureProfile(ctx, a.ID, name)
	require.NoError(t, err)
	if balance != 0 {
		_, _, err := s.ApplyLedger(ctx, LedgerEntry{AccountID: a.ID, Delta: balance, Reason: "seed", Key: "seed:" + a.ID})
		require.NoError(t, err)
	}
	return a.ID
}

func balance(t *testing.T, s *Store, id string) int64 {
	t.Helper()
	p, err := s.Profile(context.Background(), id)
	require.NoError(t, err)
	return p.Balance
}

func testLedger(t *testing.T, s *Store, _ string) {
	ctx := context.Background()
	id := player(t, s, "dave", 0)

	b, applied, err := s.ApplyLedger(ctx, LedgerEntry{AccountID: id, Delta: 100, Reason: "daily bonus", Key: "k1"})
	require.NoError(t, err)
	require.True(t, applied)
	require.EqualValues(t, 100, b)

	b, applied, err = s.ApplyLedger(ctx, LedgerEntry{AccountID: id, Delta: 100, Reason: "daily bonus", Key: "k1"})
	require.NoError(t, err)
	require.False(t, applied)
	require.EqualValues(t, 100, b)

	b, applied, err = s.ApplyLedger(ctx, LedgerEntry{AccountID: id, Delta: -30, Reason: "buy-in", Key: "k2"})
	require.NoError(t, err)
	require.True(t, applied)
	require.EqualValues(t, 70, b)

	// A late repeat gets the first answer again and changes nothing.
	b, applied, err = s.ApplyLedger(ctx, LedgerEntry{AccountID: id, Delta: 100, Reason: "daily bonus", Key: "k1"})
	require.NoError(t, err)
	require.False(t, applied)
	require.EqualValues(t, 100, b)
	require.EqualValues(t, 70, balance(t, s, id))

	// Taking everything is fine; a zero delta is a note.
	b, _, err = s.ApplyLedger(ctx, LedgerEntry{AccountID: id, Delta: -70, Key: "k3"})
	require.NoError(t, err)
	require.Zero(t, b)
	b, _, err = s.ApplyLedger(ctx, LedgerEntry{AccountID: id, Delta: 0, Reason: "note", Key: "k4"})
	require.NoError(t, err)
	require.Zero(t, b)

	entries, err := s.Ledger(ctx, id, 0)
	require.NoError(t, err)
	require.Len(t, entries, 4)
	require.Equal(t, []string{"k4", "k3", "k2", "k1"}, keys(entries))
	require.Equal(t, LedgerEntry{AccountID: id, Delta: -30, Reason: "buy-in", Key: "k2", Balance: 70, CreatedAt: entries[2].CreatedAt}, entries[2])
	require.WithinDuration(t, time.Now(), entries[2].CreatedAt, time.Minute)
	entries, err = s.Ledger(ctx, id, 1)
	require.NoError(t, err)
	require.Equal(t, []string{"k4"}, keys(entries))
	entries, err = s.Ledger(ctx, "x", 10)
	require.NoError(t, err)
	require.Empty(t, entries)

	// A key reused for another change is a bug to surface, not a repeat.
	other := player(t, s, "erin", 0)
	_, _, err = s.ApplyLedger(ctx, LedgerEntry{AccountID: id, Delta: 5, Key: "k1"})
	require.ErrorIs(t, err, ErrKeyConflict)
	_, _, err = s.ApplyLedger(ctx, LedgerEntry{AccountID: other, Delta: 100, Key: "k1"})
	require.ErrorIs(t, err, ErrKeyConflict)
	require.Zero(t, balance(t, s, other))

	// No profile, no account, no key.
	noProfile, err := s.CreateAccount(ctx, Account{Name: "frank"})
	require.NoError(t, err)
	for _, acct := range []string{noProfile.ID, "424242", "x"} {
		_, _, err = s.ApplyLedger(ctx, LedgerEntry{AccountID: acct, Delta: 1, Key: "k-" + acct})
		require.ErrorIs(t, err, ErrNotFound, acct)
	}
	_, _, err = s.ApplyLedger(ctx, LedgerEntry{AccountID: id, Delta: 1})
	require.Error(t, err)
	require.Equal(t, 4, count(t, s, "ledger"))
}

func keys(entries []LedgerEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Key)
	}
	return out
}

func testLedgerSameKeyConcurrent(t *testing.T, s *Store, _ string) {
	ctx := context.Background()
	id := player(t, s, "gina", 100)
	const n = 50
	balances := make([]int64, n)
	appliedBy := make([]bool, n)
	errs := concurrently(n, func(i int) (err error) {
		// A debit of everything: a second application would overdraw, so
		// a repeat must be recognised as one, not as a lack of funds.
		balances[i], appliedBy[i], err = s.ApplyLedger(ctx, LedgerEntry{AccountID: id, Delta: -100, Reason: "all in", Key: "round-1:" + id})
		return err
	})
	applied := 0
	for i, err := range errs {
		require.NoError(t, err)
		require.Zero(t, balances[i])
		if appliedBy[i] {
			applied++
		}
	}
	require.Equal(t, 1, applied)
	require.Zero(t, balance(t, s, id))
	require.Equal(t, 2, count(t, s, "ledger"))
}

// lockFromOutside holds, from a connection of its own, what concurrent
// ledger calls will wait for: the profile row on PostgreSQL, the database's
// write lock on SQLite (as another process would). unlock releases it.
func lockFromOutside(t *testing.T, s *Store, dsn, accountID string) (unlock func()) {
	t.Helper()
	ctx := context.Background()
	var db *sql.DB
	var err error
	if s.dialect == "postgres" {
		db, err = sql.Open("pgx", dsn)
	} else {
		db, err = sql.Open("sqlite", strings.TrimPrefix(dsn, "sqlite://"))
	}
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	if s.dialect == "postgres" {
		_, err = conn.ExecContext(ctx, "BEGIN")
		require.NoError(t, err)
		_, err = conn.ExecContext(ctx, "SELECT balance FROM profiles WHERE account_id = $1 FOR UPDATE", accountID)
	} else {
		_, err = conn.ExecContext(ctx, "BEGIN IMMEDIATE")
	}
	require.NoError(t, err)
	var once sync.Once
	release := func(stmt string) (err error) {
		once.Do(func() {
			_, err = conn.ExecContext(ctx, stmt)
			err = errors.Join(err, conn.Close())
		})
		return err
	}
	// A test that fails while holding the lock must not leave the store's
	// connections waiting on it forever.
	t.Cleanup(func() { _ = release("ROLLBACK") })
	return func() { require.NoError(t, release("COMMIT")) }
}

// Calls with one key that all got past the check for a repeat and then
// waited (for the row on PostgreSQL, for the write lock on SQLite) still
// apply once. The debit would overdraw if applied twice, so its repeats
// must be told apart from a lack of funds; the credit's repeats find their
// key taken when inserting it.
func testLedgerSameKeyWhileLocked(t *testing.T, s *Store, dsn string) {
	ctx := context.Background()
	id := player(t, s, "pia", 100)
	for _, e := range []LedgerEntry{
		{AccountID: id, Delta: -100, Key: "debit"},
		{AccountID: id, Delta: 5, Key: "credit"},
	} {
		unlock := lockFromOutside(t, s, dsn, id)
		const n = 8 // within the default pool, so that all of them wait on the lock
		balances := make([]int64, n)
		appliedBy := make([]bool, n)
		done := make(chan []error)
		go func() {
			done <- concurrently(n, func(i int) (err error) {
				balances[i], appliedBy[i], err = s.ApplyLedger(ctx, e)
				return err
			})
		}()
		time.Sleep(300 * time.Millisecond)
		unlock()
		applied := 0
		for i, err := range <-done {
			require.NoError(t, err, e.Key)
			require.Equal(t, balances[0], balances[i], e.Key)
			if appliedBy[i] {
				applied++
			}
		}
		require.Equal(t, 1, applied, e.Key)
	}
	require.EqualValues(t, 5, balance(t, s, id))
	require.Equal(t, 3, count(t, s, "ledger"))
}

func testLedgerDifferentKeysConcurrent(t *testing.T, s *Store, _ string) {
	ctx := context.Background()
	id := player(t, s, "hank", 1000)
	const n = 50
	var want int64 = 1000
	delta := func(i int) int64 {
		if i%3 == 0 {
			return -10
		}
		return int64(i)
	}
	for i := range n {
		want += delta(i)
	}
	errs := concurrently(n, func(i int) error {
		_, applied, err := s.ApplyLedger(ctx, LedgerEntry{AccountID: id, Delta: delta(i), Key: fmt.Sprintf("k%d", i)})
		if err == nil && !applied {
			err = errors.New("not applied")
		}
		return err
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, want, balance(t, s, id))

	// The entries form one chain: each balance is the one before plus its
	// delta, so the changes were serialised, not interleaved.
	entries, err := s.Ledger(ctx, id, 1000)
	require.NoError(t, err)
	require.Len(t, entries, n+1)
	for i := len(entries) - 2; i >= 0; i-- {
		require.Equal(t, entries[i+1].Balance+entries[i].Delta, entries[i].Balance, entries[i].Key)
	}
	require.Equal(t, want, entries[0].Balance)
}

func testLedgerInsufficientFunds(t *testing.T, s *Store, _ string) {
	ctx := context.Background()
	id := player(t, s, "ivy", 100)
	before, err := s.Profile(ctx, id)
	require.NoError(t, err)

	_, applied, err := s.ApplyLedger(ctx, LedgerEntry{AccountID: id, Delta: -101, Key: "too-much"})
	require.ErrorIs(t, err, ErrInsufficientFunds)
	require.False(t, applied)
	after, err := s.Profile(ctx, id)
	require.NoError(t, err)
	require.Equal(t, before, after)
	require.Equal(t, 1, count(t, s, "ledger"))

	// The refused key was not used up.
	b, applied, err := s.ApplyLedger(ctx, LedgerEntry{AccountID: id, Delta: -100, Key: "too-much"})
	require.NoError(t, err)
	require.True(t, applied)
	require.Zero(t, b)
}

func testLedgerBatch(t *testing.T, s *Store, _ string) {
	ctx := context.Background()
	a := player(t, s, "jack", 100)
	b := player(t, s, "kate", 50)
	c := player(t, s, "liam", 0)

	// The last entry would overdraw: none of the three applies.
	_, applied, err := s.ApplyLedgerBatch(ctx, []LedgerEntry{
		{AccountID: a, Delta: -30, Key: "r1:" + a},
		{AccountID: b, Delta: 30, Key: "r1:" + b},
		{AccountID: c, Delta: -1, Key: "r1:" + c},
	})
	require.ErrorIs(t, err, ErrInsufficientFunds)
	require.False(t, applied)
	require.EqualValues(t, 100, balance(t, s, a))
	require.EqualValues(t, 50, balance(t, s, b))
	require.Zero(t, balance(t, s, c))
	require.Equal(t, 2, count(t, s, "ledger"))

	// A round: a and c pay, b collects. Entries of one account apply in
	// order (b's credit comes before its debit).
	round := []LedgerEntry{
		{AccountID: a, Delta: -30, Reason: "round 2", Key: "r2:" + a},
		{AccountID: b, Delta: 80, Reason: "round 2", Key: "r2:" + b},
		{AccountID: b, Delta: -120, Reason: "round 2 fee", Key: "r2:" + b + ":fee"},
		{AccountID: c, Delta: 70, Reason: "round 2", Key: "r2:" + c},
	}
	balances, applied, err := s.ApplyLedgerBatch(ctx, round)
	require.NoError(t, err)
	require.True(t, applied)
	require.Equal(t, []int64{70, 130, 10, 70}, balances)

	again, applied, err := s.ApplyLedgerBatch(ctx, round)
	require.NoError(t, err)
	require.False(t, applied)
	require.Equal(t, balances, again)
	require.EqualValues(t, 70, balance(t, s, a))
	require.EqualValues(t, 10, balance(t, s, b))
	require.EqualValues(t, 70, balance(t, s, c))
	require.Equal(t, 6, count(t, s, "ledger"))

	// One key of the round repeats alone, with its own answer.
	bal, applied, err := s.ApplyLedger(ctx, round[1])
	require.NoError(t, err)
	require.False(t, applied)
	require.EqualValues(t, 130, bal)

	// Old keys mixed with new ones, and a key twice in a batch, are bugs.
	_, _, err = s.ApplyLedgerBatch(ctx, []LedgerEntry{round[0], {AccountID: a, Delta: 1, Key: "r3:" + a}})
	require.ErrorIs(t, err, ErrKeyConflict)
	_, _, err = s.ApplyLedgerBatch(ctx, []LedgerEntry{{AccountID: a, Delta: 1, Key: "a0"}, round[0]})
	require.ErrorIs(t, err, ErrKeyConflict)
	_, _, err = s.ApplyLedgerBatch(ctx, []LedgerEntry{{AccountID: a, Delta: 1, Key: "x"}, {AccountID: b, Delta: 1, Key: "x"}})
	require.Error(t, err)
	_, _, err = s.ApplyLedgerBatch(ctx, nil)
	require.Error(t, err)
	require.EqualValues(t, 70, balance(t, s, a))
	require.Equal(t, 6, count(t, s, "ledger"))
}

func testLedgerBatchConcurrent(t *testing.T, s *Store, _ string) {
	ctx := context.Background()
	ids := []string{player(t, s, "mia", 1000), player(t, s, "noah", 1000), player(t, s, "olga", 1000)}
	// 30 rounds among the same three players, each settled 3 times at
	// once, with the players in a different order per round: no
	// deadlock, no lost update, each round once.
	const rounds, repeats = 30, 3
	errs := concurrently(rounds*repeats, func(i int) error {
		r := i / repeats
		var batch []LedgerEntry
		for j := range ids {
			p := ids[(r+j)%len(ids)]
			delta := int64(-2)
			if j == 0 {
				delta = 4
			}
			batch = append(batch, LedgerEntry{AccountID: p, Delta: delta, Key: fmt.Sprintf("round-%d:%s", r, p)})
		}
		_, _, err := s.ApplyLedgerBatch(ctx, batch)
		return err
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	var total int64
	for _, id := range ids {
		total += balance(t, s, id)
	}
	require.EqualValues(t, 3000, total)
	require.Equal(t, 3+rounds*len(ids), count(t, s, "ledger"))
	for _, id := range ids {
		// Each player won 10 rounds (+4) and lost 20 (-2).
		require.EqualValues(t, 1000, balance(t, s, id))
	}
}

func BenchmarkApplyLedger(b *testing.B) {
	// What the operator's synchronous(NORMAL) trade buys on SQLite.
	relaxed := func(t testing.TB) string { return sqliteDSN(t) + "?_pragma=synchronous(NORMAL)" }
	for _, be := range append(backends, struct {
		name string
		dsn  func(testing.TB) string
	}{"sqlite-sync-normal", relaxed}) {
		b.Run(be.name, func(b *testing.B) {
			s := open(b, be.dsn(b))
			id := player(b, s, "bench", 0)
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, _, err := s.ApplyLedger(ctx, LedgerEntry{AccountID: id, Delta: 1, Key: fmt.Sprintf("b%d", i)}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Many players settling at once: what SQLite's single writer costs.
func BenchmarkApplyLedgerParallel(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := open(b, be.dsn(b))
			ids := make([]string, 64)
			for i := range ids {
				ids[i] = player(b, s, fmt.Sprintf("p%d", i), 0)
			}
			ctx := context.Background()
			var mu sync.Mutex
			next := 0
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				mu.Lock()
				w := next
				next++
				mu.Unlock()
				for i := 0; pb.Next(); i++ {
					id := ids[(w*7+i)%len(ids)]
					if _, _, err := s.ApplyLedger(ctx, LedgerEntry{AccountID: id, Delta: 1, Key: fmt.Sprintf("w%d-%d", w, i)}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func BenchmarkGuestAccountExisting(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := open(b, be.dsn(b))
			ctx := context.Background()
			if _, _, err := s.GuestAccount(ctx, "device"); err != nil {
				b.Fatal(err)
			}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := s.GuestAccount(ctx, "device"); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// Balances reads several balances at once; LedgerApplied finds a key.
func testBalances(t *testing.T, s *Store, _ string) {
	ctx := context.Background()
	a := player(t, s, "mona", 120)
	b := player(t, s, "nils", 0)
	acct, err := s.CreateAccount(ctx, Account{Name: "noprofile", Kind: KindPassword, PasswordHash: "x"})
	require.NoError(t, err)
	got, err := s.Balances(ctx, []string{a, b, acct.ID, "not-an-id"})
	require.NoError(t, err)
	require.Equal(t, map[string]int64{a: 120, b: 0}, got, "accounts without a profile or a valid id are left out")
	applied, err := s.LedgerApplied(ctx, "grant-test/"+a)
	require.NoError(t, err)
	require.False(t, applied)
	_, _, err = s.ApplyLedger(ctx, LedgerEntry{AccountID: a, Delta: 5, Key: "grant-test/" + a})
	require.NoError(t, err)
	applied, err = s.LedgerApplied(ctx, "grant-test/"+a)
	require.NoError(t, err)
	require.True(t, applied)
	got, err = s.Balances(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, got)
}
