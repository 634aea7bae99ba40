// Package authtest starts hearth nodes for tests with the built-in auth
// service, so that clients log in in one line:
//
//	node := authtest.Start(t, hearth.Config{}, mySvc)
//	alice := node.Login(t, "tcp") // a *hearthtest.User: a client bound to a new guest
//
// It is apart from hearthtest only because the auth service's own tests use
// hearthtest.
package authtest

import (
	"testing"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/services/auth"
)

// Start is hearthtest.Start with the auth service registered besides svcs:
// accounts in a SQLite file in t.TempDir(), no login queue, no cap on
// new accounts per address (every test client comes from 127.0.0.1), none
// refused while the store is busy (a test under -race may well be), and
// Config.RequireUser on, so that routes outside sys and auth answer 100
// before login, as in `hearth serve`.
func Start(t testing.TB, cfg hearth.Config, svcs ...*hearth.Service) *hearthtest.Node {
	t.Helper()
	_, svc := auth.New(hearthtest.Store(t, "sqlite"), auth.Config{LoginRate: -1, NewAccountsPerIP: -1, MaxWriteBacklog: -1})
	cfg.RequireUser = true
	return hearthtest.Start(t, cfg, append(svcs, svc)...)
}
