package auth_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/pb/authpb"
	"github.com/hearth-server/hearth/pb/lobbypb"
	"github.com/hearth-server/hearth/services/auth"
	"github.com/hearth-server/hearth/services/lobby"
	"github.com/hearth-server/hearth/wire"
)

var providerSecret = []byte("provider-test-secret")

// start runs a node with auth and lobby on backend, login required.
func start(t *testing.T, backend string, cfg auth.Config, hcfg hearth.Config) (*hearthtest.Node, *auth.Service) {
	t.Helper()
	st := hearthtest.Store(t, backend)
	if cfg.LoginRate == 0 {
		cfg.LoginRate = -1 // most tests are not about the queue
	}
	if cfg.NewAccountsPerIP == 0 {
		cfg.NewAccountsPerIP = -1 // nor about the per-address account limit
	}
	if cfg.MaxWriteBacklog == 0 {
		cfg.MaxWriteBacklog = -1 // nor about a store too busy for new accounts
	}
	p, err := auth.NewJWTProvider(auth.JWTProviderConfig{Name: "platform", Issuer: "platform.example", HMACSecret: providerSecret})
	require.NoError(t, err)
	cfg.Providers = append(cfg.Providers, p)
	a, svc := auth.New(st, cfg)
	hcfg.RequireUser = true
	return hearthtest.Start(t, hcfg, svc, lobby.New(st)), a
}

func req(t *testing.T, c *client.Client, route string, in, out proto.Message) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Request(ctx, route, in, out)
}

func code(t *testing.T, err error) wire.Code {
	t.Helper()
	var we *wire.Error
	require.True(t, errors.As(err, &we), "want a *wire.Error, got %v", err)
	return we.Code
}

func providerToken(t *testing.T, secret []byte, subject, issuer string, exp time.Time) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject: subject, Issuer: issuer, ExpiresAt: jwt.NewNumericDate(exp),
	}).SignedString(secret)
	require.NoError(t, err)
	return s
}

// Every flow and every error code, over both transports and both stores.
func TestAuthFlows(t *testing.T) {
	for _, backend := range hearthtest.StoreBackends {
		t.Run(backend, func(t *testing.T) {
			node, _ := start(t, backend, auth.Config{}, hearth.Config{})
			for _, tr := range hearthtest.Transports {
				t.Run(tr, func(t *testing.T) {
					account := "player_" + tr
					c := node.Dial(t, tr)

					// Before login, non-public routes are refused at the gate.
					require.Equal(t, wire.CodeUnauthenticated, code(t, req(t, c, "lobby.profile", &lobbypb.ProfileReq{}, nil)))

					// register: rules, success, duplicate.
					var login authpb.LoginResp
					require.Equal(t, wire.CodeInvalidPayload, code(t, req(t, c, "auth.register", &authpb.PasswordReq{Account: "x", Password: "longenough"}, nil)))
					require.Equal(t, wire.CodeInvalidPayload, code(t, req(t, c, "auth.register", &authpb.PasswordReq{Account: account, Password: "short"}, nil)))
					require.Equal(t, wire.CodeInvalidPayload, code(t, req(t, c, "auth.register", &authpb.PasswordReq{Account: "bad name!", Password: "longenough"}, nil)))
					require.NoError(t, req(t, c, "auth.register", &authpb.PasswordReq{Account: account, Password: "correct horse"}, &login))
					require.True(t, login.Created)
					require.Equal(t, "password", login.Kind)
					require.NotEmpty(t, login.UserId)
					userID, token := login.UserId, login.Token

					other := node.Dial(t, tr)
					require.Equal(t, wire.CodeAccountExists, code(t, req(t, other, "auth.register", &authpb.PasswordReq{Account: account, Password: "another one"}, nil)))
					require.Equal(t, wire.CodeAccountExists, code(t, req(t, other, "auth.register", &authpb.PasswordReq{Account: "PLAYER_" + tr, Password: "another one"}, nil)), "names are case-insensitive")

					// After login the lobby answers, with a profile created at first login.
					var prof lobbypb.Profile
					require.NoError(t, req(t, c, "lobby.profile", &lobbypb.ProfileReq{}, &prof))
					require.Equal(t, userID, prof.UserId)
					require.Equal(t, account, prof.Nickname)
					require.Zero(t, prof.Balance)
					nick := "Ünïcode Nick"
					require.NoError(t, req(t, c, "lobby.profile", &lobbypb.ProfileReq{Nickname: &nick}, &prof))
					require.Equal(t, nick, prof.Nickname)
					empty := "   "
					require.Equal(t, wire.CodeInvalidPayload, code(t, req(t, c, "lobby.profile", &lobbypb.ProfileReq{Nickname: &empty}, nil)))

					// login: wrong password and unknown account are the same 101.
					third := node.Dial(t, tr)
					require.Equal(t, wire.CodeBadCredentials, code(t, req(t, third, "auth.login", &authpb.PasswordReq{Account: account, Password: "wrong password"}, nil)))
					require.Equal(t, wire.CodeBadCredentials, code(t, req(t, third, "auth.login", &authpb.PasswordReq{Account: "nobody_" + tr, Password: "whatever1"}, nil)))
					require.NoError(t, req(t, third, "auth.login", &authpb.PasswordReq{Account: account, Password: "correct horse"}, &login))
					require.Equal(t, userID, login.UserId)
					require.False(t, login.Created)

					// The first session was kicked: same user logged in elsewhere.
					select {
					case <-c.Done():
					case <-time.After(5 * time.Second):
						t.Fatal("earlier session not kicked by the second login")
					}
					require.Equal(t, wire.CodeLoggedInElsewhere, code(t, c.Err()))

					// token: a returning client logs in with no password.
					fourth := node.Dial(t, tr)
					require.NoError(t, req(t, fourth, "auth.token", &authpb.TokenReq{Token: token}, &login))
					require.Equal(t, userID, login.UserId)
					require.Equal(t, wire.CodeTokenInvalid, code(t, req(t, other, "auth.token", &authpb.TokenReq{Token: token + "x"}, nil)))
					require.Equal(t, wire.CodeTokenInvalid, code(t, req(t, other, "auth.token", &authpb.TokenReq{Token: "not.a.jwt"}, nil)))

					// logout: the session is no longer bound.
					require.NoError(t, req(t, fourth, "auth.logout", &authpb.LogoutReq{}, &authpb.LogoutResp{}))
					require.Equal(t, wire.CodeUnauthenticated, code(t, req(t, fourth, "lobby.profile", &lobbypb.ProfileReq{}, nil)))

					// guest: a device id maps to one stable account.
					var g1, g2 authpb.LoginResp
					require.NoError(t, req(t, other, "auth.guest", &authpb.GuestReq{DeviceId: "device-" + tr}, &g1))
					require.True(t, g1.Created)
					require.Equal(t, "guest", g1.Kind)
					g := node.Dial(t, tr)
					require.NoError(t, req(t, g, "auth.guest", &authpb.GuestReq{DeviceId: "device-" + tr}, &g2))
					require.Equal(t, g1.UserId, g2.UserId)
					require.False(t, g2.Created)
					require.Equal(t, wire.CodeInvalidPayload, code(t, req(t, g, "auth.guest", &authpb.GuestReq{}, nil)))

					// provider: a platform's JWT; forged, expired, wrong issuer and unknown provider fail.
					p := node.Dial(t, tr)
					good := providerToken(t, providerSecret, "ext-"+tr, "platform.example", time.Now().Add(time.Hour))
					var ext authpb.LoginResp
					require.NoError(t, req(t, p, "auth.provider", &authpb.ProviderReq{Provider: "platform", Token: good}, &ext))
					require.Equal(t, "external", ext.Kind)
					require.True(t, ext.Created)
					for name, tok := range map[string]string{
						"forged":       providerToken(t, []byte("attacker"), "ext-"+tr, "platform.example", time.Now().Add(time.Hour)),
						"expired":      providerToken(t, providerSecret, "ext-"+tr, "platform.example", time.Now().Add(-time.Minute)),
						"wrong issuer": providerToken(t, providerSecret, "ext-"+tr, "evil.example", time.Now().Add(time.Hour)),
					} {
						require.Equal(t, wire.CodeTokenInvalid, code(t, req(t, p, "auth.provider", &authpb.ProviderReq{Provider: "platform", Token: tok}, nil)), name)
					}
					require.Equal(t, wire.CodeInvalidPayload, code(t, req(t, p, "auth.provider", &authpb.ProviderReq{Provider: "nope", Token: good}, nil)))
				})
			}
		})
	}
}

// Expired session tokens are refused with 102.
func TestExpiredSessionToken(t *testing.T) {
	// A JWT's times are whole seconds, so a token lives between TTL−1s and
	// TTL: with a TTL of one second it could be expired at once (a CI run
	// saw it).
	node, _ := start(t, "sqlite", auth.Config{TokenTTL: 2 * time.Second}, hearth.Config{})
	c := node.Dial(t, "tcp")
	var login authpb.LoginResp
	require.NoError(t, req(t, c, "auth.guest", &authpb.GuestReq{DeviceId: "d1"}, &login))
	d := node.Dial(t, "tcp")
	require.NoError(t, req(t, d, "auth.token", &authpb.TokenReq{Token: login.Token}, nil))
	time.Sleep(3100 * time.Millisecond) // past the TTL and the second it is rounded to: a wait on the clock itself
	e := node.Dial(t, "tcp")
	require.Equal(t, wire.CodeTokenInvalid, code(t, req(t, e, "auth.token", &authpb.TokenReq{Token: login.Token}, nil)))
}

// Repeated failures lock the account (and then the address) out. That the
// lock lifts when the window passes is TestWindow's: logins under -race
// take too long for a window short enough to wait out here.
func TestLockout(t *testing.T) {
	for _, backend := range hearthtest.StoreBackends {
		t.Run(backend, func(t *testing.T) {
			node, _ := start(t, backend, auth.Config{AccountFailures: 3, AccountWindow: time.Minute, IPFailures: 6, IPWindow: time.Minute}, hearth.Config{})
			c := node.Dial(t, "tcp")
			require.NoError(t, req(t, c, "auth.register", &authpb.PasswordReq{Account: "locky", Password: "the right one"}, nil))
			for range 3 {
				require.Equal(t, wire.CodeBadCredentials, code(t, req(t, c, "auth.login", &authpb.PasswordReq{Account: "locky", Password: "wrong wrong"}, nil)))
			}
			// Now even the right password is refused.
			require.Equal(t, wire.CodeLockedOut, code(t, req(t, c, "auth.login", &authpb.PasswordReq{Account: "locky", Password: "the right one"}, nil)))
			// Another account is not locked (the address has 3 of its 6).
			require.NoError(t, req(t, c, "auth.register", &authpb.PasswordReq{Account: "other", Password: "the right one"}, nil))

			// Failures spread over accounts lock the address: it has 3 of
			// its 6 from above.
			for i := range 3 {
				require.Equal(t, wire.CodeBadCredentials, code(t, req(t, c, "auth.login", &authpb.PasswordReq{Account: fmt.Sprintf("ghost%d", i), Password: "wrong wrong"}, nil)))
			}
			require.Equal(t, wire.CodeLockedOut, code(t, req(t, c, "auth.login", &authpb.PasswordReq{Account: "other", Password: "the right one"}, nil)))
		})
	}
}

// 200 concurrent password logins never run more hashes at once than
// configured.
func TestHashConcurrencyCap(t *testing.T) {
	const maxHashes, n = 3, 200
	node, a := start(t, "sqlite", auth.Config{MaxHashes: maxHashes},
		hearth.Config{Limits: hearth.Limits{RequestTimeout: 5 * time.Minute, ConnRatePerIP: -1}})
	clients := make([]*client.Client, n)
	for i := range clients {
		clients[i] = node.Dial(t, "tcp")
	}
	run := func(route string) {
		// As long as the gate waits: 200 hashes, 3 at a time, take a while
		// under -race on a busy machine.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		errs := make(chan error, n)
		for i, c := range clients {
			go func() {
				errs <- c.Request(ctx, route, &authpb.PasswordReq{Account: fmt.Sprintf("crowd%03d", i), Password: "crowd password"}, &authpb.LoginResp{})
			}()
		}
		for range n {
			require.NoError(t, <-errs)
		}
	}
	run("auth.register")
	run("auth.login")
	require.LessOrEqual(t, a.PeakHashes(), maxHashes)
	require.Equal(t, maxHashes, a.PeakHashes(), "200 concurrent logins should fill every hash slot")
}

// authCluster runs a gate and two auth nodes on one bus, sharing a store,
// so each request may reach either auth instance.
func authCluster(t *testing.T, cfg auth.Config) *hearthtest.Node {
	t.Helper()
	st := hearthtest.Store(t, "sqlite")
	p, err := auth.NewJWTProvider(auth.JWTProviderConfig{Name: "platform", Issuer: "platform.example", HMACSecret: providerSecret})
	require.NoError(t, err)
	cfg.Providers = []auth.Provider{p}
	cfg.LoginRate = -1
	cfg.MaxWriteBacklog = -1
	// The per-IP connection rate is off: TestDuplicateLoginRace dials 400
	// connections as fast as it can, past the default burst of 200.
	gate := hearthtest.Start(t, hearth.Config{NodeID: "gate", Roles: []string{"gate", "sys", "lobby"}, NATSListen: "127.0.0.1:0", RequireUser: true,
		Limits: hearth.Limits{ConnRatePerIP: -1}}, lobby.New(st))
	for i := range 2 {
		_, svc := auth.New(st, cfg)
		hearthtest.Start(t, hearth.Config{NodeID: fmt.Sprint("auth-", i), NATSURL: gate.NATSURL(), TCPAddr: hearth.Off, WSAddr: hearth.Off, Roles: []string{"auth"}}, svc)
	}
	hearthtest.Eventually(t, 10*time.Second, func() bool { return len(gate.Nodes()) == 3 }, "the auth nodes never joined")
	return gate
}

// The guest-account flood (issue 9e): one address creating accounts as fast
// as it can gets NewAccountsPerIP of them per window, counted across every
// auth instance, then 200 for guest, register and provider alike; logins to
// existing accounts go on.
func TestNewAccountFlood(t *testing.T) {
	const limit = 3
	node := authCluster(t, auth.Config{NewAccountsPerIP: limit, NewAccountsWindow: time.Minute})
	c := node.Dial(t, "tcp")
	created := 0
	for i := range 3 * limit {
		err := req(t, c, "auth.guest", &authpb.GuestReq{DeviceId: fmt.Sprint("flood-", i)}, nil)
		if err == nil {
			created++
			continue
		}
		require.Equal(t, wire.CodeRateLimited, code(t, err), "guest %d", i)
		require.Contains(t, err.Error(), "too many new accounts from your address")
	}
	require.Equal(t, limit, created, "accounts created from one address within the window")

	d := node.Dial(t, "ws")
	require.Equal(t, wire.CodeRateLimited, code(t, req(t, d, "auth.register", &authpb.PasswordReq{Account: "flooder", Password: "long enough"}, nil)))
	tok := providerToken(t, providerSecret, "new-subject", "platform.example", time.Now().Add(time.Hour))
	require.Equal(t, wire.CodeRateLimited, code(t, req(t, d, "auth.provider", &authpb.ProviderReq{Provider: "platform", Token: tok}, nil)))

	// Existing accounts are unaffected: the first guest logs in again.
	var again authpb.LoginResp
	require.NoError(t, req(t, d, "auth.guest", &authpb.GuestReq{DeviceId: "flood-0"}, &again))
	require.False(t, again.Created)
}

// Logout revokes the session's token cluster-wide (issue 9h): a copy used
// afterwards from another connection is refused with 102 — the token of a
// session that logged in by token, and the token that session continued,
// alike — while another login of the same user keeps working.
func TestLogoutRevokesToken(t *testing.T) {
	node := authCluster(t, auth.Config{})
	login := func(c *client.Client, r proto.Message, route string) *authpb.LoginResp {
		t.Helper()
		var resp authpb.LoginResp
		require.NoError(t, req(t, c, route, r, &resp))
		return &resp
	}
	first := login(node.Dial(t, "tcp"), &authpb.GuestReq{DeviceId: "victim"}, "auth.guest")
	other := login(node.Dial(t, "tcp"), &authpb.GuestReq{DeviceId: "victim"}, "auth.guest") // another device, another chain
	c := node.Dial(t, "tcp")
	second := login(c, &authpb.TokenReq{Token: first.Token}, "auth.token")
	require.Equal(t, first.UserId, second.UserId)
	require.NoError(t, req(t, c, "auth.logout", &authpb.LogoutReq{}, &authpb.LogoutResp{}))
	require.Equal(t, wire.CodeUnauthenticated, code(t, req(t, c, "lobby.profile", &lobbypb.ProfileReq{}, nil)), "logged out")

	for _, tok := range []string{first.Token, second.Token} {
		thief := node.Dial(t, "ws")
		require.Equal(t, wire.CodeTokenInvalid, code(t, req(t, thief, "auth.token", &authpb.TokenReq{Token: tok}, nil)))
		require.Equal(t, wire.CodeUnauthenticated, code(t, req(t, thief, "lobby.profile", &lobbypb.ProfileReq{}, nil)))
	}
	login(node.Dial(t, "ws"), &authpb.TokenReq{Token: other.Token}, "auth.token")
}
