package auth_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/pb/authpb"
	"github.com/hearth-server/hearth/pb/lobbypb"
	"github.com/hearth-server/hearth/services/auth"
	"github.com/hearth-server/hearth/services/lobby"
	"github.com/hearth-server/hearth/store"
)

// Every account gets the starting grant once through the ledger: at
// creation (guest and registered), not again at later logins, token logins
// or racing first logins of one device; an account made before the grant
// was configured gets it at its next login; a grant paid before under the
// key with another amount stands.
func TestStartingGrant(t *testing.T) {
	const grant = 750
	for _, backend := range hearthtest.StoreBackends {
		t.Run(backend, func(t *testing.T) {
			st := hearthtest.Store(t, backend)
			startWith := func(g int64) *hearthtest.Node {
				_, svc := auth.New(st, auth.Config{LoginRate: -1, NewAccountsPerIP: -1, MaxWriteBacklog: -1, StartingGrant: g})
				return hearthtest.Start(t, hearth.Config{RequireUser: true}, svc, lobby.New(st))
			}
			// An account made while no grant was configured.
			before := startWith(0)
			var old authpb.LoginResp
			require.NoError(t, req(t, before.Dial(t, "tcp"), "auth.guest", &authpb.GuestReq{DeviceId: "old-device"}, &old))
			requireGrants(t, st, old.UserId, 0, 0)

			node := startWith(grant)
			balance := func(t *testing.T, token string) int64 {
				c := node.Dial(t, "tcp")
				require.NoError(t, req(t, c, "auth.token", &authpb.TokenReq{Token: token}, &authpb.LoginResp{}))
				var p lobbypb.Profile
				require.NoError(t, req(t, c, "lobby.profile", &lobbypb.ProfileReq{}, &p))
				return p.Balance
			}

			var g authpb.LoginResp
			require.NoError(t, req(t, node.Dial(t, "tcp"), "auth.guest", &authpb.GuestReq{DeviceId: "new-device"}, &g))
			require.True(t, g.Created)
			require.Equal(t, int64(grant), balance(t, g.Token), "a new guest's balance")
			var again authpb.LoginResp
			require.NoError(t, req(t, node.Dial(t, "ws"), "auth.guest", &authpb.GuestReq{DeviceId: "new-device"}, &again))
			require.Equal(t, g.UserId, again.UserId)
			require.Equal(t, int64(grant), balance(t, again.Token), "a second login pays nothing more")
			requireGrants(t, st, g.UserId, 1, grant)

			var reg authpb.LoginResp
			require.NoError(t, req(t, node.Dial(t, "tcp"), "auth.register", &authpb.PasswordReq{Account: "granted_" + backend, Password: "correct horse"}, &reg))
			requireGrants(t, st, reg.UserId, 1, grant)

			// The old account is granted at its next login.
			require.NoError(t, req(t, node.Dial(t, "tcp"), "auth.guest", &authpb.GuestReq{DeviceId: "old-device"}, &authpb.LoginResp{}))
			requireGrants(t, st, old.UserId, 1, grant)

			// First logins of one device racing on several connections:
			// one account, one grant.
			var wg sync.WaitGroup
			users := make([]string, 6)
			errs := make([]error, len(users))
			for i := range users {
				c := node.Dial(t, hearthtest.Transports[i%len(hearthtest.Transports)])
				wg.Add(1)
				go func() {
					defer wg.Done()
					var r authpb.LoginResp
					errs[i] = req(t, c, "auth.guest", &authpb.GuestReq{DeviceId: "racing-device"}, &r)
					users[i] = r.UserId
				}()
			}
			wg.Wait()
			// Under the duplicate-login policy some may lose to another
			// (104); those that log in share one account.
			user := ""
			for i := range users {
				if errs[i] != nil {
					require.Equal(t, hearth.CodeLoggedInElsewhere, code(t, errs[i]), "login %d", i)
					continue
				}
				if user == "" {
					user = users[i]
				}
				require.Equal(t, user, users[i], "login %d made another account", i)
			}
			require.NotEmpty(t, user, "no racing login succeeded")
			requireGrants(t, st, user, 1, grant)

			// A grant paid before under the key, with another amount,
			// stands and does not refuse the login.
			var pre authpb.LoginResp
			require.NoError(t, req(t, before.Dial(t, "tcp"), "auth.guest", &authpb.GuestReq{DeviceId: "pre-granted"}, &pre))
			_, _, err := st.ApplyLedger(t.Context(), store.LedgerEntry{AccountID: pre.UserId, Delta: 40, Reason: "game grant", Key: auth.GrantKey(pre.UserId)})
			require.NoError(t, err)
			require.NoError(t, req(t, node.Dial(t, "tcp"), "auth.guest", &authpb.GuestReq{DeviceId: "pre-granted"}, &authpb.LoginResp{}))
			requireGrants(t, st, pre.UserId, 1, 40)
		})
	}
}

// requireGrants checks user's ledger: n entries under the grant key, a
// balance of want that is the sum of all its entries.
func requireGrants(t *testing.T, st *store.Store, user string, n int, want int64) {
	t.Helper()
	entries, err := st.Ledger(t.Context(), user, 100)
	require.NoError(t, err)
	var sum int64
	grants := 0
	for _, e := range entries {
		sum += e.Delta
		if e.Key == auth.GrantKey(user) {
			grants++
		}
	}
	require.Equal(t, n, grants, fmt.Sprintf("grant entries of %s: %+v", user, entries))
	require.Equal(t, want, sum, "sum of %s's ledger", user)
	p, err := st.Profile(t.Context(), user)
	require.NoError(t, err)
	require.Equal(t, want, p.Balance, "%s's balance is the sum of its ledger", user)
}
