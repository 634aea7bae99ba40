// Package auth is hearth's built-in auth service: accounts with passwords
// (argon2id), guest accounts by device id, third-party identity tokens
// (Provider), signed session tokens that log a returning client in without a
// password, lockout after repeated failures, and a login queue that admits
// logins at a fixed rate for the whole cluster.
//
// Routes (JSON field names as shown; messages in proto/hearth/auth/v1):
//
//	auth.register {"account","password"}      → LoginResp   (105 if taken)
//	auth.login    {"account","password"}      → LoginResp   (101, 103)
//	auth.guest    {"device_id"}               → LoginResp
//	auth.provider {"provider","token"}        → LoginResp   (102)
//	auth.token    {"token"}                   → LoginResp   (102; skips the queue)
//	auth.logout   {}                          → {}
//
// A login that must wait is answered 204 with its place; the session then
// gets auth.queued pushes and finally auth.admitted, and sends the same
// request again.
package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/pb/authpb"
	"github.com/hearth-server/hearth/store"
)

// DuplicatePolicy says what a second login of a user already online does.
type DuplicatePolicy int

const (
	// KickOld closes the earlier session with 104 (the default).
	KickOld DuplicatePolicy = iota
	// RefuseNew answers the new login with 104 and keeps the earlier session.
	RefuseNew
)

// Config tunes the auth service. Every zero value means the documented default.
type Config struct {
	// Secret signs session tokens; every auth instance of a cluster must
	// share it. Zero: a random secret created once and kept in the
	// cluster's KV, so instances share it with no configuration.
	Secret []byte
	// TokenTTL is how long a session token is valid. Zero: 7 days.
	TokenTTL time.Duration
	// LoginRate admits logins per second for the whole cluster, with a burst
	// of LoginBurst; the rest wait in the queue. Zero: 100/s, burst = rate.
	// Negative: no queue.
	LoginRate  float64
	LoginBurst int
	// MaxHashes caps concurrent argon2id hashes on this node (each takes
	// 19 MiB for ~20 ms). Zero: the number of CPUs.
	MaxHashes int
	// AccountFailures failed logins per AccountWindow lock the account;
	// IPFailures per IPWindow lock the client address. Zero: 5 per minute
	// and 10 per 10 minutes. Negative: no limit.
	AccountFailures int
	AccountWindow   time.Duration
	IPFailures      int
	IPWindow        time.Duration
	// NewAccountsPerIP new accounts (registered, guest or external) may be
	// created from one client IP per NewAccountsWindow, cluster-wide; past
	// it a login that would create one gets 200. Logins to existing
	// accounts are not counted. Zero: 5 per minute. Negative: no limit.
	NewAccountsPerIP  int
	NewAccountsWindow time.Duration
	// MaxQueuedPerIP caps the logins from one client IP waiting in the
	// login queue at once; past it a login gets 200 instead of a place, so
	// one address cannot lengthen everyone else's wait. Zero: 10.
	// Negative: no cap.
	MaxQueuedPerIP int
	// MaxWriteBacklog refuses account creation (203) while the store's
	// oldest write has waited longer than this for SQLite's one writer
	// (store.WriteBacklog), which every table's settlement shares: a
	// stampede of sign-ups then waits and retries instead of stalling the
	// games in progress behind it. Logins to existing accounts are not
	// affected; PostgreSQL has no such backlog. Zero: 1s. Negative:
	// never refused.
	MaxWriteBacklog time.Duration
	// StartingGrant is currency credited once to every account through the
	// ledger (key "grant/<user id>"), so a new player, a guest included, can
	// play at once: at creation, or at the first password, guest or
	// provider login after the grant was configured for an account made
	// before. The key makes it once per account whatever the number of
	// logins or auth nodes; a grant already paid under the key (by a game's
	// own grant, or another amount configured earlier) is left as it is.
	// Zero: none.
	StartingGrant int64
	// Duplicate is the policy for a second login of an online user.
	Duplicate DuplicatePolicy
	// Providers verify auth.provider tokens, by name.
	Providers []Provider
	// Logger: zero means the node's logger.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.TokenTTL <= 0 {
		c.TokenTTL = 7 * 24 * time.Hour
	}
	if c.LoginRate == 0 {
		c.LoginRate = 100
	}
	if c.LoginBurst <= 0 {
		c.LoginBurst = int(max(1, c.LoginRate))
	}
	if c.MaxHashes <= 0 {
		c.MaxHashes = runtime.NumCPU()
	}
	if c.AccountFailures == 0 {
		c.AccountFailures = 5
	}
	if c.AccountWindow <= 0 {
		c.AccountWindow = time.Minute
	}
	if c.IPFailures == 0 {
		c.IPFailures = 10
	}
	if c.IPWindow <= 0 {
		c.IPWindow = 10 * time.Minute
	}
	if c.NewAccountsPerIP == 0 {
		c.NewAccountsPerIP = 5
	}
	if c.NewAccountsWindow <= 0 {
		c.NewAccountsWindow = time.Minute
	}
	if c.MaxQueuedPerIP == 0 {
		c.MaxQueuedPerIP = 10
	}
	if c.MaxWriteBacklog == 0 {
		c.MaxWriteBacklog = time.Second
	}
}

// Service is the auth service's state; New returns its hearth.Service.
type Service struct {
	cfg       Config
	store     *store.Store
	node      *hearth.Node
	log       *slog.Logger
	hash      *hasher
	tokens    *tokens
	lock      *lockout
	created   window // new accounts per client IP
	revoked   revocations
	queue     *queue
	providers map[string]Provider

	// Account creations refused since the last log line, and when that
	// line was written (unix ns): storeBehind's, any handler goroutine.
	behind, behindLogged atomic.Int64

	observeQueue func(queueEvent) // set by tests before start
}

// New returns the auth service over st. Register the returned
// hearth.Service on a node; the *Service gives tests and metrics access.
func New(st *store.Store, cfg Config) (*Service, *hearth.Service) {
	cfg.setDefaults()
	a := &Service{cfg: cfg, store: st, hash: newHasher(cfg.MaxHashes), providers: map[string]Provider{}}
	for _, p := range cfg.Providers {
		a.providers[p.Name()] = p
	}
	svc := hearth.NewService("auth")
	svc.OnStart(a.start)
	svc.OnStop(a.stop)
	svc.OnSessionEvent(a.onSessionEvent)
	hearth.Handle(svc, "register", a.register)
	hearth.Handle(svc, "login", a.login)
	hearth.Handle(svc, "guest", a.guest)
	hearth.Handle(svc, "provider", a.provider)
	hearth.Handle(svc, "token", a.token)
	hearth.Handle(svc, "logout", a.logout)
	return a, svc
}

func (a *Service) start(ctx context.Context, n *hearth.Node) error {
	a.node = n
	a.log = a.cfg.Logger
	if a.log == nil {
		a.log = slog.Default().With("service", "auth", "node", n.ID())
	}
	secret := a.cfg.Secret
	if len(secret) == 0 {
		var err error
		if secret, err = sharedSecret(ctx, n); err != nil {
			return err
		}
	}
	a.tokens = &tokens{secret: secret, ttl: a.cfg.TokenTTL}
	var err error
	if a.lock, err = newLockout(ctx, n, a.cfg.AccountFailures, a.cfg.AccountWindow, a.cfg.IPFailures, a.cfg.IPWindow); err != nil {
		return err
	}
	kv, err := n.KV(ctx, "newaccounts", a.cfg.NewAccountsWindow)
	if err != nil {
		return err
	}
	a.created = window{kv, a.cfg.NewAccountsPerIP, a.cfg.NewAccountsWindow}
	if kv, err = n.KV(ctx, "tokens", a.cfg.TokenTTL); err != nil {
		return err
	}
	a.revoked = revocations{kv}
	if a.cfg.LoginRate > 0 {
		if a.queue, err = newQueue(ctx, n, a.cfg.LoginRate, a.cfg.LoginBurst, a.cfg.MaxQueuedPerIP, a.log, a.observeQueue); err != nil {
			return err
		}
	}
	return nil
}

func (a *Service) stop(context.Context) {
	if a.queue != nil {
		a.queue.stop()
	}
}

func (a *Service) onSessionEvent(_ context.Context, ev hearth.SessionEvent) {
	if ev.Kind == "closed" && a.queue != nil {
		a.queue.sessionClosed(ev.Session)
	}
}

// sharedSecret returns the cluster's token secret, creating it once.
func sharedSecret(ctx context.Context, n *hearth.Node) ([]byte, error) {
	kv, err := n.KV(ctx, "config", 0)
	if err != nil {
		return nil, err
	}
	const key = "auth.token_secret"
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if _, err := kv.Create(ctx, key, b); err != nil && !errors.Is(err, hearth.ErrKeyExists) {
		return nil, fmt.Errorf("auth: store token secret: %w", err)
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("auth: read token secret: %w", err)
	}
	return e.Value, nil
}

// PeakHashes is the most password hashes this node has run at once.
func (a *Service) PeakHashes() int { return int(a.hash.peak.Load()) }

// QueueLength is the number of logins waiting, on the queue's leader.
func (a *Service) QueueLength() int {
	if a.queue == nil {
		return 0
	}
	return a.queue.length()
}

// Errors with their protocol codes.
var (
	errBadCredentials = hearth.NewError(hearth.CodeBadCredentials, "wrong account or password")
	errTokenRejected  = hearth.NewError(hearth.CodeTokenInvalid, "token invalid or expired: log in again")
	errAccountTaken   = hearth.NewError(hearth.CodeAccountExists, "account name is taken")
	errBusy           = hearth.NewError(hearth.CodeOverloaded, "login service busy; retry shortly")
	errStoreBehind    = hearth.NewError(hearth.CodeOverloaded, "too many new accounts at once; retry in a few seconds")
)

// Account and password rules.
const (
	minAccount, maxAccount   = 3, 32
	minPassword, maxPassword = 8, 128
	maxDeviceID              = 128
)

func validAccount(s string) error {
	if len(s) < minAccount || len(s) > maxAccount {
		return hearth.Errorf(hearth.CodeInvalidPayload, "account must be %d–%d characters", minAccount, maxAccount)
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return hearth.NewError(hearth.CodeInvalidPayload, "account may contain only letters, digits, '_', '-' and '.'")
		}
	}
	return nil
}

func validPassword(s string) error {
	n := utf8.RuneCountInString(s)
	if n < minPassword || len(s) > maxPassword || !utf8.ValidString(s) {
		return hearth.Errorf(hearth.CodeInvalidPayload, "password must be %d–%d characters of valid UTF-8", minPassword, maxPassword)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return hearth.NewError(hearth.CodeInvalidPayload, "password must not contain control characters")
		}
	}
	return nil
}

func clientIP(s *hearth.Session) string {
	host, _, err := net.SplitHostPort(s.RemoteAddr())
	if err != nil {
		return s.RemoteAddr()
	}
	return host
}

// admit passes the login through the queue, or answers 204 with its place.
func (a *Service) admit(ctx context.Context, s *hearth.Session) error {
	if a.queue == nil {
		return nil
	}
	ip := clientIP(s)
	resp, err := a.queue.admit(ctx, s.ID(), s.Gate(), ip)
	if err != nil {
		hearth.Logger(ctx).Warn("login queue unavailable", "err", err)
		return errBusy
	}
	if resp.Admitted {
		return nil
	}
	if resp.Refused {
		hearth.Logger(ctx).Warn("login refused: too many logins queued from this address", "ip", ip, "max_queued_per_ip", a.cfg.MaxQueuedPerIP)
		return hearth.Errorf(hearth.CodeRateLimited, "too many logins from your address are waiting in the queue (at most %d); retry once one is admitted", a.cfg.MaxQueuedPerIP)
	}
	return hearth.Errorf(hearth.CodeQueued, "login queued at position %d, about %s; wait for auth.admitted, then send this request again",
		resp.Position, (time.Duration(resp.WaitMS) * time.Millisecond).Round(100*time.Millisecond))
}

func (a *Service) register(ctx context.Context, s *hearth.Session, req *authpb.PasswordReq) (*authpb.LoginResp, error) {
	if err := validAccount(req.Account); err != nil {
		return nil, err
	}
	if err := validPassword(req.Password); err != nil {
		return nil, err
	}
	if _, err := a.store.AccountByName(ctx, req.Account); err == nil {
		return nil, errAccountTaken
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if err := a.mayCreate(ctx, s); err != nil {
		return nil, err
	}
	if err := a.admit(ctx, s); err != nil {
		return nil, err
	}
	if err := a.takeCreate(ctx, s); err != nil {
		return nil, err
	}
	hash, err := a.hash.hash(ctx, req.Password)
	if err != nil {
		return nil, a.hashErr(ctx, err)
	}
	acct, err := a.store.CreateAccount(ctx, store.Account{Name: req.Account, Kind: store.KindPassword, PasswordHash: hash})
	if errors.Is(err, store.ErrAccountExists) {
		return nil, errAccountTaken
	}
	if err != nil {
		return nil, err
	}
	hearth.Logger(ctx).Info("account registered", "user_id", acct.ID, "account", acct.Name)
	return a.complete(ctx, s, acct, true, "")
}

func (a *Service) login(ctx context.Context, s *hearth.Session, req *authpb.PasswordReq) (*authpb.LoginResp, error) {
	if req.Account == "" || req.Password == "" || len(req.Account) > maxAccount || len(req.Password) > maxPassword {
		return nil, errBadCredentials
	}
	now := time.Now()
	ip := clientIP(s)
	if locked, wait := a.lock.check(ctx, req.Account, ip, now); locked {
		hearth.Logger(ctx).Warn("login refused: locked out", "account", req.Account, "ip", ip, "retry_in", wait.Round(time.Second))
		return nil, hearth.Errorf(hearth.CodeLockedOut, "too many failed logins; try again in %s", wait.Round(time.Second)+time.Second)
	}
	if err := a.admit(ctx, s); err != nil {
		return nil, err
	}
	acct, err := a.store.AccountByName(ctx, req.Account)
	hash := acct.PasswordHash
	if errors.Is(err, store.ErrNotFound) || hash == "" {
		hash = dummyHash // same work as a real check: no account enumeration by timing
	} else if err != nil {
		return nil, err
	}
	ok, err := a.hash.verify(ctx, req.Password, hash)
	if err != nil && !errors.Is(err, errBadHash) {
		return nil, a.hashErr(ctx, err)
	}
	if !ok || acct.ID == "" || acct.PasswordHash == "" {
		a.lock.fail(ctx, req.Account, ip, time.Now()) // now, not the request's start: hashing takes a while
		hearth.Logger(ctx).Warn("login failed: bad credentials", "account", req.Account, "ip", ip)
		return nil, errBadCredentials
	}
	a.lock.reset(ctx, req.Account)
	return a.complete(ctx, s, acct, false, "")
}

func (a *Service) hashErr(ctx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		hearth.Logger(ctx).Warn("password hashing saturated", "max_hashes", a.cfg.MaxHashes)
		return errBusy
	}
	return err
}

func (a *Service) guest(ctx context.Context, s *hearth.Session, req *authpb.GuestReq) (*authpb.LoginResp, error) {
	if req.DeviceId == "" || len(req.DeviceId) > maxDeviceID || !utf8.ValidString(req.DeviceId) {
		return nil, hearth.Errorf(hearth.CodeInvalidPayload, "device_id must be 1–%d bytes of UTF-8", maxDeviceID)
	}
	acct, err := a.store.FindGuestAccount(ctx, req.DeviceId)
	if err == nil {
		if err := a.admit(ctx, s); err != nil {
			return nil, err
		}
		return a.complete(ctx, s, acct, false, "")
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if err := a.mayCreate(ctx, s); err != nil {
		return nil, err
	}
	if err := a.admit(ctx, s); err != nil {
		return nil, err
	}
	if err := a.takeCreate(ctx, s); err != nil {
		return nil, err
	}
	acct, created, err := a.store.GuestAccount(ctx, req.DeviceId)
	if err != nil {
		return nil, err
	}
	return a.complete(ctx, s, acct, created, "")
}

func (a *Service) provider(ctx context.Context, s *hearth.Session, req *authpb.ProviderReq) (*authpb.LoginResp, error) {
	p, ok := a.providers[req.Provider]
	if !ok {
		return nil, hearth.Errorf(hearth.CodeInvalidPayload, "unknown provider %q", truncate(req.Provider, 64))
	}
	if err := a.admit(ctx, s); err != nil {
		return nil, err
	}
	subject, err := p.Verify(ctx, req.Token)
	if err != nil {
		hearth.Logger(ctx).Warn("provider token rejected", "provider", req.Provider, "err", err)
		return nil, errTokenRejected
	}
	acct, err := a.store.FindExternalAccount(ctx, req.Provider, subject)
	if err == nil {
		return a.complete(ctx, s, acct, false, "")
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if err := a.takeCreate(ctx, s); err != nil {
		return nil, err
	}
	acct, created, err := a.store.ExternalAccount(ctx, req.Provider, subject)
	if err != nil {
		return nil, err
	}
	return a.complete(ctx, s, acct, created, "")
}

// token logs a returning client in with the token from an earlier login;
// it skips the queue, since the client was admitted before.
func (a *Service) token(ctx context.Context, s *hearth.Session, req *authpb.TokenReq) (*authpb.LoginResp, error) {
	user, chain, err := a.tokens.verify(req.Token)
	if err != nil {
		hearth.Logger(ctx).Warn("session token rejected", "err", err)
		return nil, errTokenRejected
	}
	revoked, err := a.revoked.revoked(ctx, chain)
	if err != nil {
		hearth.Logger(ctx).Warn("revocation list unavailable", "err", err)
		return nil, errBusy
	}
	if revoked {
		hearth.Logger(ctx).Warn("session token rejected: logged out", "token_user", user, "ip", clientIP(s))
		return nil, errTokenRejected
	}
	acct, err := a.store.AccountByID(ctx, user)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errTokenRejected
	}
	if err != nil {
		return nil, err
	}
	if chain != s.ID() {
		if err := a.revoked.continued(ctx, s.ID(), chain); err != nil {
			return nil, err
		}
	}
	return a.complete(ctx, s, acct, false, chain)
}

// logout unbinds the session and revokes its tokens cluster-wide: every
// token of the login chain it belongs to is refused by auth.token from now.
func (a *Service) logout(ctx context.Context, s *hearth.Session, _ *authpb.LogoutReq) (*authpb.LogoutResp, error) {
	if s.UserID() == "" {
		return &authpb.LogoutResp{}, nil
	}
	chains, err := a.revoked.logout(ctx, s.ID(), time.Now())
	if err != nil {
		return nil, fmt.Errorf("auth: revoke tokens: %w", err)
	}
	if err := s.SetUser(ctx, ""); err != nil {
		return nil, err
	}
	hearth.Logger(ctx).Info("logged out; session tokens revoked", "chains", len(chains))
	return &authpb.LogoutResp{}, nil
}

// mayCreate refuses early, before the queue, a login that would create an
// account from an address at its limit.
func (a *Service) mayCreate(ctx context.Context, s *hearth.Session) error {
	ip := clientIP(s)
	if full, wait := a.created.full(ctx, ipKey(ip), time.Now()); full {
		return a.createRefused(ctx, ip, wait)
	}
	return nil
}

// takeCreate counts one new account against the client's address, or
// refuses it when the address is at its limit or the store is behind its
// writes.
func (a *Service) takeCreate(ctx context.Context, s *hearth.Session) error {
	if err := a.storeBehind(ctx); err != nil {
		return err
	}
	ip := clientIP(s)
	ok, wait, err := a.created.take(ctx, ipKey(ip), time.Now())
	if err != nil {
		hearth.Logger(ctx).Warn("new-account count unavailable", "ip", ip, "err", err)
		return errBusy
	}
	if !ok {
		return a.createRefused(ctx, ip, wait)
	}
	return nil
}

// storeBehind refuses a new account while the store's writer is behind
// (Config.MaxWriteBacklog). It logs at most once a second, with the count
// refused since, so that a stampede does not flood the log as well.
func (a *Service) storeBehind(ctx context.Context) error {
	if a.cfg.MaxWriteBacklog < 0 {
		return nil
	}
	backlog := a.store.WriteBacklog()
	if backlog <= a.cfg.MaxWriteBacklog {
		return nil
	}
	a.behind.Add(1)
	now := time.Now().UnixNano()
	if last := a.behindLogged.Load(); now-last >= int64(time.Second) && a.behindLogged.CompareAndSwap(last, now) {
		hearth.Logger(ctx).Warn("account creation refused: the store is behind its writes",
			"code", int(hearth.CodeOverloaded), "backlog", backlog, "max", a.cfg.MaxWriteBacklog, "refused", a.behind.Swap(0))
	}
	return errStoreBehind
}

func (a *Service) createRefused(ctx context.Context, ip string, wait time.Duration) error {
	wait = wait.Round(time.Second) + time.Second
	hearth.Logger(ctx).Warn("account creation refused: too many new accounts from this address",
		"ip", ip, "limit", a.cfg.NewAccountsPerIP, "window", a.cfg.NewAccountsWindow, "retry_in", wait)
	return hearth.Errorf(hearth.CodeRateLimited, "too many new accounts from your address (at most %d per %s); try again in %s",
		a.cfg.NewAccountsPerIP, a.cfg.NewAccountsWindow, wait)
}

// complete binds the session to the account (presence, duplicate policy),
// makes sure it has a profile, and issues a session token.
// chain is the login chain the session continues (auth.token), or "" for
// a fresh login, which starts its own.
func (a *Service) complete(ctx context.Context, s *hearth.Session, acct store.Account, created bool, chain string) (*authpb.LoginResp, error) {
	bind := s.SetUser
	if a.cfg.Duplicate == RefuseNew {
		bind = s.ClaimUser // the check and the claim in one atomic step
	}
	if err := bind(ctx, acct.ID); err != nil {
		if errors.Is(err, hearth.ErrUserOnline) {
			return nil, hearth.NewError(hearth.CodeLoggedInElsewhere, "already logged in elsewhere; log out there first")
		}
		return nil, err
	}
	nick := acct.Name
	if nick == "" {
		nick = "player" + acct.ID
	}
	if _, err := a.store.EnsureProfile(ctx, acct.ID, nick); err != nil {
		return nil, err
	}
	if chain == "" {
		a.grant(ctx, acct.ID, created)
		chain = s.ID()
	}
	tok, exp, err := a.tokens.issue(acct.ID, s.ID(), chain, time.Now())
	if err != nil {
		return nil, err
	}
	hearth.Logger(ctx).Info("logged in", "user_id", acct.ID, "kind", string(acct.Kind), "created", created)
	return &authpb.LoginResp{
		UserId: acct.ID, Account: acct.Name, Kind: string(acct.Kind),
		Token: tok, TokenExpiresMs: exp.UnixMilli(), Created: created,
	}, nil
}

// GrantKey is the ledger key of an account's starting grant. A game that
// grants its own starting currency should use it too, so an account is
// granted once whichever pays first.
func GrantKey(userID string) string { return "grant/" + userID }

// grant pays the starting grant on a fresh login (token logins continue
// one). It runs on every such login rather than only at creation, so a
// grant lost to a failure between creating the account and writing the
// ledger is paid at the next login; the ledger key makes repeats no-ops.
// A failure is logged and does not refuse the login.
func (a *Service) grant(ctx context.Context, user string, created bool) {
	if a.cfg.StartingGrant <= 0 {
		return
	}
	// A read first: a returning player's grant is paid, and the read does
	// not queue for SQLite's one writer as the write would.
	if paid, err := a.store.LedgerApplied(ctx, GrantKey(user)); err == nil && paid {
		return
	}
	bal, applied, err := a.store.ApplyLedger(ctx, store.LedgerEntry{
		AccountID: user, Delta: a.cfg.StartingGrant, Reason: "starting grant", Key: GrantKey(user),
	})
	switch {
	case errors.Is(err, store.ErrKeyConflict):
		// Granted before, with another amount: once per account stands.
	case err != nil:
		hearth.Logger(ctx).Warn("starting grant not paid; retried at the next login", "user_id", user, "err", err)
	case applied:
		hearth.Logger(ctx).Info("starting grant paid", "user_id", user, "amount", a.cfg.StartingGrant, "balance", bal, "new_account", created)
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return strings.ToValidUTF8(s, "")
}
