package hearthtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-server/hearth/store"
)

// StoreBackends lists the store backends, for tables that run over both.
var StoreBackends = []string{"sqlite", "postgres"}

// DefaultPostgres is the test database; HEARTH_TEST_POSTGRES overrides it.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Store opens a fresh store on backend ("sqlite": a file in t.TempDir();
// "postgres": a schema of its own in the test database, dropped when the
// test ends). An unreachable PostgreSQL fails the test: it is never skipped.
func Store(t testing.TB, backend string) *store.Store {
	t.Helper()
	var dsn string
	switch backend {
	case "sqlite":
		dsn = "sqlite://" + filepath.Join(t.TempDir(), "hearth.db")
	case "postgres":
		dsn = PostgresDSN(t)
	default:
		t.Fatalf("hearthtest: unknown store backend %q", backend)
	}
	st, err := store.Open(context.Background(), dsn, store.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatalf("hearthtest: open %s store: %v", backend, err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// PostgresDSN creates a schema of its own in the test database and
// returns a DSN whose search_path is that schema, for a store opened
// elsewhere (a node process of a multi-process test). The schema is
// dropped when the test ends: call it before starting what uses it, so
// that those stop first (cleanups run last-in first-out).
// An unreachable PostgreSQL fails the test.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv("HEARTH_TEST_POSTGRES")
	if base == "" {
		base = DefaultPostgres
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("hearthtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		t.Fatalf("hearthtest: PostgreSQL is not reachable at %s: %v (start it, or set HEARTH_TEST_POSTGRES)", base, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "hearth_test_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		t.Fatalf("hearthtest: create schema: %v", err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		// Closed after the store (cleanups run last-in first-out).
		if _, err := admin.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("hearthtest: drop schema %s: %v", schema, err)
		}
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema
}
