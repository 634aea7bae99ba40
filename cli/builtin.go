package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/games/niuniu"
	"github.com/hearth-server/hearth/services/auth"
	"github.com/hearth-server/hearth/services/lobby"
	"github.com/hearth-server/hearth/services/match"
	"github.com/hearth-server/hearth/store"
)

// builtinFlags configure the built-in services of `hearth serve`.
type builtinFlags struct {
	db           string
	loginRate    float64
	loginBurst   int
	authSecret   string
	tokenTTL     time.Duration
	duplicate    string
	maxHashes    int
	lockAccount  string
	lockIP       string
	newAccounts  string
	queuePerIP   int
	maxBacklog   time.Duration
	provider     string
	providerJWKS string
	providerKey  string
	providerHMAC string
	providerIss  string
	providerAud  string
	requireLogin bool
	matchPolicy  string
	grant        int64
	niuniuSeats  int
	niuniuClocks string
}

func (b *builtinFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&b.db, "db", "", "database: postgres://… or a SQLite file (default <data>/hearth.db)")
	fs.BoolVar(&b.requireLogin, "require-login", true, "answer 100 to routes other than sys.* and auth.* before login")
	fs.Float64Var(&b.loginRate, "login-rate", 100, "logins admitted per second for the whole cluster (the rest queue); -1 no queue")
	fs.IntVar(&b.loginBurst, "login-burst", 0, "logins admitted at once before queueing (default: the rate)")
	fs.StringVar(&b.authSecret, "auth-secret", "", "secret signing session tokens (default: one shared through the cluster's KV)")
	fs.DurationVar(&b.tokenTTL, "token-ttl", 7*24*time.Hour, "session token lifetime")
	fs.StringVar(&b.duplicate, "duplicate-login", "kick", "a second login of an online user: kick (the old session) or refuse (the new one)")
	fs.IntVar(&b.maxHashes, "max-hashes", 0, "concurrent password hashes per node (default: CPUs)")
	fs.StringVar(&b.lockAccount, "lockout-account", "5/1m", "failed logins per window that lock an account, N/DURATION")
	fs.StringVar(&b.lockIP, "lockout-ip", "10/10m", "failed logins per window that lock a client address, N/DURATION")
	fs.StringVar(&b.newAccounts, "new-accounts-per-ip", "5/1m", "new accounts (guest, register, provider) one client address may create per window, N/DURATION (then 200); -1/1m no limit")
	fs.DurationVar(&b.maxBacklog, "max-write-backlog", time.Second, "refuse new accounts (203) while a write has waited longer than this for SQLite's one writer, which settlements share; -1s never")
	fs.IntVar(&b.queuePerIP, "login-queue-per-ip", 10, "logins from one client address waiting in the login queue at once (then 200); -1 no cap")
	fs.StringVar(&b.provider, "provider", "", "name of a third-party JWT identity provider for auth.provider")
	fs.StringVar(&b.providerJWKS, "provider-jwks", "", "JWKS file with the provider's keys")
	fs.StringVar(&b.providerKey, "provider-key", "", "PEM public key file of the provider (RSA or ECDSA)")
	fs.StringVar(&b.providerHMAC, "provider-secret", "", "HMAC secret of the provider (HS256)")
	fs.StringVar(&b.providerIss, "provider-issuer", "", "required iss of provider tokens")
	fs.StringVar(&b.providerAud, "provider-audience", "", "required aud of provider tokens")
	fs.Int64Var(&b.grant, "starting-grant", 10_000, "currency every account gets once through the ledger, at creation (guests included) or its first sit at a Niu Niu table; 0 none")
	fs.IntVar(&b.niuniuSeats, "niuniu-seats", 5, "seats at a niuniu_100 table, 2 to 5: a round starts at once when every seat is ready")
	fs.StringVar(&b.niuniuClocks, "niuniu-countdowns", "", "niuniu_100 countdowns to change, e.g. ready=5s,grab=8s,bet=8s,open=8s,end=3s (those are the defaults)")
	fs.StringVar(&b.matchPolicy, "match-policy", "pack", "where match.join seats players: pack (fullest room first) or least-loaded (emptiest node first)")
}

func parseLimit(s, flagName string) (int, time.Duration, error) {
	n, d, ok := strings.Cut(s, "/")
	count, err := strconv.Atoi(n)
	if !ok || err != nil {
		return 0, 0, fmt.Errorf("--%s %q: want N/DURATION, e.g. 5/1m", flagName, s)
	}
	window, err := time.ParseDuration(d)
	if err != nil || window <= 0 {
		return 0, 0, fmt.Errorf("--%s %q: bad duration", flagName, s)
	}
	return count, window, nil
}

// parseCountdowns reads --niuniu-countdowns: comma-separated PHASE=DURATION
// pairs, PHASE one of ready, grab, bet, open, end. A phase not given keeps
// the rules' default.
func parseCountdowns(s string) (niuniu.Rules, error) {
	var r niuniu.Rules
	if s == "" {
		return r, nil
	}
	fields := map[string]*time.Duration{
		"ready": &r.ReadyCountdown, "grab": &r.GrabCountdown, "bet": &r.BetCountdown,
		"open": &r.OpenCountdown, "end": &r.EndPause,
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		field := fields[k]
		if !ok || field == nil {
			return r, fmt.Errorf("--niuniu-countdowns %q: want PHASE=DURATION pairs, PHASE one of ready, grab, bet, open, end", s)
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return r, fmt.Errorf("--niuniu-countdowns %q: bad duration for %s", s, k)
		}
		*field = d
	}
	return r, nil
}

// builtins opens the store when this node runs a service that needs it and
// returns the built-in services to register. close releases the store.
func (b *builtinFlags) builtins(ctx context.Context, cfg *hearth.Config) (svcs []*hearth.Service, closeFn func(), err error) {
	closeFn = func() {}
	runs := func(role string) bool { return len(cfg.Roles) == 0 || slices.Contains(cfg.Roles, role) }
	if runs("match") {
		var policy match.Policy
		switch b.matchPolicy {
		case "pack":
			policy = match.Pack{}
		case "least-loaded":
			policy = match.LeastLoaded{}
		default:
			return nil, closeFn, fmt.Errorf("--match-policy %q: use pack or least-loaded", b.matchPolicy)
		}
		svcs = append(svcs, match.New(match.Config{Policy: policy}))
	}
	if !runs("auth") && !runs("lobby") && !runs(niuniuTable) {
		return svcs, closeFn, nil
	}
	dsn := b.db
	if dsn == "" {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return nil, closeFn, fmt.Errorf("data directory %s: %w", cfg.DataDir, err)
		}
		dsn = filepath.Join(cfg.DataDir, store.DefaultSQLiteFile)
	}
	st, err := store.Open(ctx, dsn, store.WithLogger(cfg.Logger))
	if err != nil {
		return nil, closeFn, fmt.Errorf("open database: %w (check --db)", err)
	}
	closeFn = func() { _ = st.Close() }

	accN, accW, err := parseLimit(b.lockAccount, "lockout-account")
	if err != nil {
		return nil, closeFn, err
	}
	ipN, ipW, err := parseLimit(b.lockIP, "lockout-ip")
	if err != nil {
		return nil, closeFn, err
	}
	newN, newW, err := parseLimit(b.newAccounts, "new-accounts-per-ip")
	if err != nil {
		return nil, closeFn, err
	}
	acfg := auth.Config{
		Secret: []byte(b.authSecret), TokenTTL: b.tokenTTL,
		LoginRate: b.loginRate, LoginBurst: b.loginBurst, MaxHashes: b.maxHashes,
		AccountFailures: accN, AccountWindow: accW, IPFailures: ipN, IPWindow: ipW,
		NewAccountsPerIP: newN, NewAccountsWindow: newW, MaxQueuedPerIP: b.queuePerIP,
		MaxWriteBacklog: b.maxBacklog, StartingGrant: b.grant, Logger: cfg.Logger,
	}
	switch b.duplicate {
	case "kick":
		acfg.Duplicate = auth.KickOld
	case "refuse":
		acfg.Duplicate = auth.RefuseNew
	default:
		return nil, closeFn, fmt.Errorf("--duplicate-login %q: use kick or refuse", b.duplicate)
	}
	if b.provider != "" {
		pc := auth.JWTProviderConfig{Name: b.provider, Issuer: b.providerIss, Audience: b.providerAud, JWKSFile: b.providerJWKS, HMACSecret: []byte(b.providerHMAC)}
		if b.providerKey != "" {
			if pc.PublicKeyPEM, err = os.ReadFile(b.providerKey); err != nil {
				return nil, closeFn, fmt.Errorf("--provider-key: %w", err)
			}
		}
		p, err := auth.NewJWTProvider(pc)
		if err != nil {
			return nil, closeFn, err
		}
		acfg.Providers = append(acfg.Providers, p)
	}
	if runs("auth") {
		_, svc := auth.New(st, acfg)
		svcs = append(svcs, svc)
	}
	if runs("lobby") {
		svcs = append(svcs, lobby.New(st))
	}
	if runs(niuniuTable) {
		rules, err := parseCountdowns(b.niuniuClocks)
		if err != nil {
			return nil, closeFn, err
		}
		rules.Seats = b.niuniuSeats
		rt, err := niuniu.NewRoomType(niuniuTable, niuniu.TableConfig{Rules: rules, Base: 100, Grant: b.grant}, st)
		if err != nil {
			return nil, closeFn, fmt.Errorf("--starting-grant, --niuniu-seats or --niuniu-countdowns: %w", err)
		}
		svcs = append(svcs, rt.Service())
	}
	return svcs, closeFn, nil
}

// niuniuTable is the Niu Niu room type `hearth serve` runs: a table of
// --niuniu-seats seats (5 by default) with a stake of 100.
const niuniuTable = "niuniu_100"
