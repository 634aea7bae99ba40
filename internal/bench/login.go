package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/protobuf/proto"

	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/pb/authpb"
	"github.com/hearth-server/hearth/wire"
)

// LoginResult is the result of `hearth bench login` (--json prints it).
// Without a login queue it is a throughput run (Logins, LoginsPerSec,
// Latency); with --login-rate it is a queue run (Queue).
type LoginResult struct {
	Bench           string           `json:"bench"`
	Mode            string           `json:"mode"` // guest or password
	Transport       string           `json:"transport"`
	Codec           string           `json:"codec"`
	Clients         int              `json:"clients"`
	LoginRate       float64          `json:"login_rate"` // the server's --login-rate; -1: no queue
	Server          string           `json:"server"`
	Registered      int              `json:"registered,omitempty"` // password: accounts registered before measuring
	RegisterS       float64          `json:"register_s,omitempty"`
	WarmupS         float64          `json:"warmup_s,omitempty"`
	DurationS       float64          `json:"duration_s"`
	Logins          int64            `json:"logins"`
	LoginsPerSec    float64          `json:"logins_per_s"`
	Latency         Latency          `json:"latency"`
	Errors          map[string]int64 `json:"errors"`
	ConnectionsLost int              `json:"connections_lost"`
	Queue           *QueueResult     `json:"queue,omitempty"`
	cpuSplit
}

// QueueResult is what a queue run measured: every client sent one login at
// the same moment; those over the rate were answered 204, got auth.queued
// pushes and auth.admitted, and sent the login again.
type QueueResult struct {
	AdmittedAtOnce int     `json:"admitted_at_once"` // logged in without queueing
	Queued         int     `json:"queued"`           // answered 204
	LoggedIn       int     `json:"logged_in"`        // every client whose login succeeded in the end
	AdmittedPerSec float64 `json:"admitted_per_s"`   // auth.admitted pushes per second, first to last
	AllLoggedInS   float64 `json:"all_logged_in_s"`  // from the start until the last login succeeded
	TimeToLogin    Latency `json:"time_to_login"`    // per client, from the start to its successful login
	// Wait estimates: the first auth.queued wait_ms against the time from
	// that push to auth.admitted, for each queued client that got both.
	Estimates        int     `json:"estimates"`
	EstimateErr      Latency `json:"estimate_abs_error"` // |estimate − actual|
	EstimateErrP50   float64 `json:"estimate_error_p50_pct"`
	EstimateErrP90   float64 `json:"estimate_error_p90_pct"`
	EstimateErrMax   float64 `json:"estimate_error_max_pct"`
	EstimateBias     float64 `json:"estimate_bias_pct"` // mean of (estimate − actual) / actual
	EstimatesWithin  int     `json:"estimates_within_25_pct"`
	NoQueuedPush     int     `json:"queued_without_position"` // 204 but no auth.queued before auth.admitted
	PositionNotLower int64   `json:"position_not_lower"`      // auth.queued pushes whose position was not below the previous
	AdmittedOutOfOrd int     `json:"admitted_out_of_order"`   // admitted before a client with a lower first position
}

type loginConfig struct {
	clients   int
	mode      string
	duration  time.Duration
	warmup    time.Duration
	loginRate float64
	timeout   time.Duration // queue run: give up after this
}

func benchLogin(ctx context.Context, args []string, opts options) int {
	var bf benchFlags
	var lc loginConfig
	fs := newBenchFlagSet("login", "[--clients N] [--mode guest|password] [--duration 10s] [--login-rate R] [--transport tcp|ws] [--addr URL] [--json]", opts, &bf, "json")
	fs.IntVar(&lc.clients, "clients", 64, "concurrent clients (connections), each logging in as its own user")
	fs.StringVar(&lc.mode, "mode", "guest", "guest (auth.guest with a device id) or password (auth.login; the accounts are registered first, outside the measured time)")
	fs.DurationVar(&lc.duration, "duration", 10*time.Second, "measured time (not for a queue run)")
	fs.DurationVar(&lc.warmup, "warmup", 2*time.Second, "time run before measuring (not for a queue run)")
	fs.Float64Var(&lc.loginRate, "login-rate", -1, "the server's --login-rate: -1 no queue (a throughput run); R > 0: a queue run, every client logs in once, all at the same moment (with --addr: the server's own setting)")
	fs.DurationVar(&lc.timeout, "queue-timeout", 0, "queue run: give up on logins not done after this (default: 3 × clients ÷ rate + 30s)")
	if code, ok := bf.parse(fs, args, opts); !ok {
		return code
	}
	switch {
	case lc.clients < 1:
		return usageErr(opts, "login", "--clients must be at least 1")
	case lc.mode != "guest" && lc.mode != "password":
		return usageErr(opts, "login", "--mode %q: use guest or password", lc.mode)
	case lc.duration <= 0 || lc.warmup < 0:
		return usageErr(opts, "login", "--duration must be positive and --warmup not negative")
	case lc.loginRate == 0 || (lc.loginRate < 0 && lc.loginRate != -1):
		return usageErr(opts, "login", "--login-rate must be -1 (no queue) or positive")
	case bf.inprocess:
		return usageErr(opts, "login", "--inprocess has no auth service: login measures hearth serve's, in a separate process")
	}
	if lc.timeout <= 0 && lc.loginRate > 0 {
		lc.timeout = time.Duration(3*float64(lc.clients)/lc.loginRate*float64(time.Second)) + 30*time.Second
	}
	res, rep, err := runLogin(ctx, &bf, lc, opts)
	if err != nil {
		return benchError(opts, "login", err)
	}
	emit(opts.Stdout, &bf, res, rep)
	return 0
}

// loginer is one bench client and what the login queue told it.
type loginer struct {
	c        *client.Client
	route    string        // auth.guest or auth.login
	req      proto.Message // the same login, every time
	admitted chan struct{} // an auth.admitted push

	mu         sync.Mutex
	got204     bool
	queuedAt   time.Time // first auth.queued
	firstPos   uint32
	firstWait  time.Duration
	lastPos    uint32
	notLower   int64
	admittedAt time.Time // first auth.admitted
	loggedInAt time.Time // first successful login
	loggedIn   bool
}

func newLoginer(c *client.Client) *loginer {
	l := &loginer{c: c, admitted: make(chan struct{}, 1)}
	c.OnPush("auth.queued", func(p client.Push) {
		var q authpb.Queued
		if c.Decode(p.Payload, &q) != nil {
			return
		}
		now := time.Now()
		l.mu.Lock()
		if l.queuedAt.IsZero() {
			l.queuedAt, l.firstPos, l.firstWait = now, q.Position, time.Duration(q.WaitMs)*time.Millisecond
		} else if q.Position >= l.lastPos {
			l.notLower++
		}
		l.lastPos = q.Position
		l.mu.Unlock()
	})
	c.OnPush("auth.admitted", func(client.Push) {
		l.mu.Lock()
		if l.admittedAt.IsZero() {
			l.admittedAt = time.Now()
		}
		l.mu.Unlock()
		select {
		case l.admitted <- struct{}{}:
		default:
		}
	})
	return l
}

// login sends route with req until it is not queued: a 204 waits for
// auth.admitted, then the same request goes again (docs/protocol.md §8a).
func (l *loginer) login(ctx context.Context, route string, req proto.Message) error {
	for {
		var resp authpb.LoginResp
		err := l.c.Request(ctx, route, req, &resp)
		var we *wire.Error
		if !errors.As(err, &we) || we.Code != wire.CodeQueued {
			if err == nil {
				l.mu.Lock()
				if !l.loggedIn {
					l.loggedIn, l.loggedInAt = true, time.Now()
				}
				l.mu.Unlock()
			}
			return err
		}
		l.mu.Lock()
		l.got204 = true
		l.mu.Unlock()
		select {
		case <-l.admitted:
		case <-ctx.Done():
			return ctx.Err()
		case <-l.c.Done():
			return l.c.Err()
		}
	}
}

// reset forgets what the queue said (after the registrations).
func (l *loginer) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got204, l.queuedAt, l.firstPos, l.firstWait, l.lastPos, l.notLower = false, time.Time{}, 0, 0, 0, 0
	l.admittedAt, l.loggedInAt, l.loggedIn = time.Time{}, time.Time{}, false
	select {
	case <-l.admitted:
	default:
	}
}

// loginRunID makes the bench's account names and device ids unique, so that
// runs against the same server (--addr) do not collide.
func loginRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func runLogin(ctx context.Context, bf *benchFlags, lc loginConfig, opts options) (*LoginResult, *report, error) {
	if err := ensureFDs(fdsNeeded(lc.clients, false)); err != nil {
		return nil, nil, err
	}
	stopProfile, err := bf.startCPUProfile()
	if err != nil {
		return nil, nil, err
	}
	defer stopProfile()
	need := serverNeeds{args: []string{"--login-rate", strconv.FormatFloat(lc.loginRate, 'f', -1, 64)}}
	t, err := startTarget(ctx, bf, need, opts)
	if err != nil {
		return nil, nil, err
	}
	defer t.stop()

	var dialed atomic.Int64
	dialing := startProgress(opts.Stderr, func(el time.Duration) string {
		return fmt.Sprintf("login  connecting %s/%s clients to %s  %.1fs", FormatInt(dialed.Load()), FormatInt(int64(lc.clients)), t.dialDesc(), el.Seconds())
	})
	loginers := make([]*loginer, lc.clients)
	clients, err := dialAll(ctx, lc.clients, t.clientURLs(), sameOptions(bf.clientOptions()), t.external, &dialed, func(i int, c *client.Client) error {
		loginers[i] = newLoginer(c)
		return nil
	})
	dialing.Stop()
	if err != nil {
		return nil, nil, err
	}
	defer closeAll(clients)

	res := &LoginResult{
		Bench: "login", Mode: lc.mode, Transport: bf.transport, Codec: bf.codec, Clients: lc.clients,
		LoginRate: lc.loginRate, Server: t.desc, Errors: map[string]int64{},
	}
	run := loginRunID()
	for i, l := range loginers {
		if lc.mode == "guest" {
			l.route, l.req = "auth.guest", &authpb.GuestReq{DeviceId: fmt.Sprintf("bench-%s-%d", run, i)}
		} else {
			l.route, l.req = "auth.login", &authpb.PasswordReq{Account: fmt.Sprintf("bench%s-%d", run, i), Password: "bench-password-" + run}
		}
	}
	if lc.mode == "password" {
		took, err := registerAll(ctx, loginers, opts)
		if err != nil {
			return nil, nil, err
		}
		res.Registered = len(loginers)
		res.RegisterS = round2(took.Seconds())
		for _, l := range loginers {
			l.reset()
		}
		if lc.loginRate > 0 {
			// Let the queue's bucket (burst = rate, at least 1) fill up
			// again, so that the run starts as a guest run does.
			refill := time.Duration(max(1, 1/lc.loginRate) * float64(time.Second))
			if err := sleepCtx(ctx, refill+500*time.Millisecond); err != nil {
				return nil, nil, err
			}
		}
	}

	var rep *report
	if lc.loginRate > 0 {
		rep, err = runLoginQueue(ctx, bf, lc, t, loginers, res, opts)
	} else {
		rep, err = runLoginThroughput(ctx, bf, lc, t, loginers, res, opts)
	}
	if err != nil {
		return nil, nil, err
	}
	for _, c := range clients {
		select {
		case <-c.Done():
			res.ConnectionsLost++
		default:
		}
	}
	if res.ConnectionsLost > 0 {
		rep.add("connections lost", "%d", res.ConnectionsLost)
	}
	serverNotes(rep, t)
	return res, rep, nil
}

// registerAll registers every loginer's account (password mode), dialParallel
// at a time, with a progress line; it returns the time it took.
func registerAll(ctx context.Context, loginers []*loginer, opts options) (time.Duration, error) {
	t0 := time.Now()
	var done atomic.Int64
	p := startProgress(opts.Stderr, func(el time.Duration) string {
		return fmt.Sprintf("login  registering %s/%s accounts (argon2id, outside the measured time)  %.1fs", FormatInt(done.Load()), FormatInt(int64(len(loginers))), el.Seconds())
	})
	defer p.Stop()
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for range min(len(loginers), dialParallel) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(loginers) || ctx.Err() != nil {
					return
				}
				l := loginers[i]
				req := l.req.(*authpb.PasswordReq)
				var err error
				for {
					err = l.login(ctx, "auth.register", req)
					var we *wire.Error
					if !errors.As(err, &we) || we.Code != wire.CodeOverloaded {
						break
					}
					// The hashes are saturated: wait and try again.
					if sleepCtx(ctx, 50*time.Millisecond) != nil {
						return
					}
				}
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("register account %s: %w", req.Account, err) })
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return time.Since(t0), ctx.Err()
}

// runLoginThroughput: every client logs in again and again as its own user
// (the same session, so no duplicate-login kick); logins that complete in
// the measured window count.
func runLoginThroughput(ctx context.Context, bf *benchFlags, lc loginConfig, t *target, loginers []*loginer, res *LoginResult, opts options) (*report, error) {
	shards := newLatencyShards(len(loginers))
	var (
		phase   atomic.Int32
		lostErr atomic.Pointer[error]
		wg      sync.WaitGroup
	)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i, l := range loginers {
		sh := shards.shard(i)
		wg.Go(func() {
			for {
				t0 := time.Now()
				err := l.login(wctx, l.route, l.req)
				d := time.Since(t0)
				ph := phase.Load()
				if ph == phaseDone || wctx.Err() != nil {
					return
				}
				var code wire.Code
				if err != nil {
					var we *wire.Error
					if !errors.As(err, &we) {
						lostErr.CompareAndSwap(nil, &err)
						l.c.Close()
						return
					}
					code = we.Code
				}
				sh.mu.Lock()
				sh.n++
				if ph == phaseMeasure {
					if err != nil {
						sh.errs[code]++
					} else {
						_ = sh.h.RecordValue(max(1, d.Microseconds()))
					}
				}
				sh.mu.Unlock()
				if code == wire.CodeOverloaded || code == wire.CodeLockedOut {
					time.Sleep(10 * time.Millisecond) // do not spin on a refusal
				}
			}
		})
	}
	what := "guest logins"
	if lc.mode == "password" {
		what = "password logins"
	}
	var r rate
	run := startProgress(opts.Stderr, func(el time.Duration) string {
		n := shards.count()
		state := "warmup"
		switch phase.Load() {
		case phaseMeasure:
			state = "measuring"
		case phaseDone:
			state = "done"
		}
		return fmt.Sprintf("login  %-9s %5.1fs  %s %s  %s logins/s", state, el.Seconds(), FormatInt(n), what, fmtRate(r.per(n, el)))
	})
	alive := func() bool {
		for _, l := range loginers {
			select {
			case <-l.c.Done():
			default:
				return true
			}
		}
		return false
	}
	wait := func(d time.Duration) error {
		return runFor(ctx, d, func() error {
			if alive() {
				return nil
			}
			var first error
			if p := lostErr.Load(); p != nil {
				first = *p
			}
			return fmt.Errorf("every connection was lost; the first ended with: %v", first)
		})
	}
	err := wait(lc.warmup)
	var (
		t0, t1     time.Time
		cpu0, cpu1 cpuSnap
	)
	if err == nil {
		cpu0 = t.snap(ctx)
		t0 = time.Now()
		phase.Store(phaseMeasure)
		err = wait(lc.duration)
		phase.Store(phaseDone)
		t1 = time.Now()
		cpu1 = t.snap(ctx)
	}
	phase.Store(phaseDone)
	cancel()
	wg.Wait()
	run.Stop()
	if err != nil {
		return nil, err
	}
	h, errs := shards.merged()
	wall := t1.Sub(t0)
	res.WarmupS = lc.warmup.Seconds()
	res.DurationS = round2(wall.Seconds())
	res.Logins = h.TotalCount()
	res.LoginsPerSec = round2(float64(res.Logins) / wall.Seconds())
	res.Latency = summarize(h)
	var nerr int64
	for c, n := range errs {
		res.Errors[codeKey(c)] = n
		nerr += n
	}
	res.cpuSplit = splitCPU(cpu0, cpu1, res.Logins, t)
	if res.Logins == 0 && nerr == 0 {
		return nil, fmt.Errorf("no login completed in %s", wall)
	}

	route := "auth.guest"
	if lc.mode == "password" {
		route = "auth.login, argon2id"
	}
	rep := &report{title: fmt.Sprintf("hearth bench login: %d clients, %s (%s), %s, %s, %s, %s measured after %s warmup; server: %s",
		lc.clients, what, route, bf.transport, bf.codec, queueDesc(lc.loginRate, t), wall.Round(time.Millisecond), lc.warmup, t.desc)}
	if res.Registered > 0 {
		rep.add("accounts registered", "%s in %.1fs (before measuring)", FormatInt(int64(res.Registered)), res.RegisterS)
	}
	rep.add("logins", "%s", FormatInt(res.Logins))
	rep.add("throughput", "%s logins/s", fmtRate(res.LoginsPerSec))
	rep.latencyRows("latency", res.Latency)
	rep.errorRows(res.Errors)
	cpuRows(rep, res.cpuSplit, "login", t)
	if errs[wire.CodeQueued] > 0 || errs[wire.CodeOverloaded] > 0 {
		rep.note("204/203: the server queued or refused logins; its --login-rate and --max-hashes limit them")
	}
	return rep, nil
}

func queueDesc(rate float64, t *target) string {
	switch {
	case rate > 0 && t.external:
		return "through the server's login queue"
	case rate > 0:
		return fmt.Sprintf("login queue at %s/s (--login-rate %s)", strconv.FormatFloat(rate, 'f', -1, 64), strconv.FormatFloat(rate, 'f', -1, 64))
	case t.external:
		return "the server's own --login-rate"
	}
	return "no login queue (--login-rate -1)"
}

// runLoginQueue: every client sends its login at the same moment, and
// follows the queue (204, auth.queued, auth.admitted, the login again)
// until it is logged in.
func runLoginQueue(ctx context.Context, bf *benchFlags, lc loginConfig, t *target, loginers []*loginer, res *LoginResult, opts options) (*report, error) {
	qctx, cancel := context.WithTimeout(ctx, lc.timeout)
	defer cancel()
	var (
		start   = make(chan struct{})
		wg      sync.WaitGroup
		done    atomic.Int64
		errsMu  sync.Mutex
		errs    = map[string]int64{}
		firstEr error
	)
	for _, l := range loginers {
		wg.Go(func() {
			<-start
			err := l.login(qctx, l.route, l.req)
			if err != nil {
				var we *wire.Error
				key := "timeout (--queue-timeout)"
				switch {
				case errors.As(err, &we):
					key = codeKey(we.Code)
				case ctx.Err() != nil:
					return
				case qctx.Err() == nil:
					key = "connection lost"
				}
				errsMu.Lock()
				errs[key]++
				if firstEr == nil {
					firstEr = err
				}
				errsMu.Unlock()
				return
			}
			done.Add(1)
		})
	}
	counts := func() (queued, admitted int) {
		for _, l := range loginers {
			l.mu.Lock()
			if l.got204 {
				queued++
				if !l.admittedAt.IsZero() {
					admitted++
				}
			}
			l.mu.Unlock()
		}
		return
	}
	n := len(loginers)
	prog := startProgress(opts.Stderr, func(el time.Duration) string {
		q, a := counts()
		return fmt.Sprintf("login  queue  %5.1fs  %s/%s logged in  %s queued, %s of them admitted", el.Seconds(), FormatInt(done.Load()), FormatInt(int64(n)), FormatInt(int64(q)), FormatInt(int64(a)))
	})
	cpu0 := t.snap(ctx)
	t0 := time.Now()
	close(start)
	wg.Wait()
	t1 := time.Now()
	cpu1 := t.snap(ctx)
	prog.Stop()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	q := &QueueResult{}
	h := hdrhistogram.New(histMin, histMax, histDigits)
	errH := hdrhistogram.New(histMin, histMax, histDigits)
	var (
		last       time.Time
		admits     []time.Time
		rel        []float64
		bias       float64
		byPosition []*loginer
	)
	for _, l := range loginers {
		l.mu.Lock()
		if l.loggedIn {
			q.LoggedIn++
			_ = h.RecordValue(max(1, l.loggedInAt.Sub(t0).Microseconds()))
			if l.loggedInAt.After(last) {
				last = l.loggedInAt
			}
			if !l.got204 {
				q.AdmittedAtOnce++
			}
		}
		if l.got204 {
			q.Queued++
			if !l.admittedAt.IsZero() {
				admits = append(admits, l.admittedAt)
			}
			switch {
			case l.queuedAt.IsZero() || (!l.admittedAt.IsZero() && l.admittedAt.Before(l.queuedAt)):
				q.NoQueuedPush++
			case !l.admittedAt.IsZero():
				actual := l.admittedAt.Sub(l.queuedAt)
				diff := l.firstWait - actual
				_ = errH.RecordValue(max(1, diff.Abs().Microseconds()))
				r := float64(diff) / float64(max(actual, time.Millisecond))
				rel = append(rel, math.Abs(r))
				bias += r
				if math.Abs(r) <= 0.25 {
					q.EstimatesWithin++
				}
				byPosition = append(byPosition, l)
			}
		}
		q.PositionNotLower += l.notLower
		l.mu.Unlock()
	}
	if len(admits) > 1 {
		slices.SortFunc(admits, func(a, b time.Time) int { return a.Compare(b) })
		if span := admits[len(admits)-1].Sub(admits[0]); span > 0 {
			q.AdmittedPerSec = round2(float64(len(admits)-1) / span.Seconds())
		}
	}
	// Admission order: by first position, each admitted no earlier than
	// the one before it (10 ms of slack: admissions of one queue tick are
	// pushed in order, but arrive on different connections).
	slices.SortFunc(byPosition, func(a, b *loginer) int { return int(a.firstPos) - int(b.firstPos) })
	var latest time.Time
	for _, l := range byPosition {
		if l.admittedAt.Before(latest.Add(-10 * time.Millisecond)) {
			q.AdmittedOutOfOrd++
		}
		if l.admittedAt.After(latest) {
			latest = l.admittedAt
		}
	}
	if !last.IsZero() {
		q.AllLoggedInS = round2(last.Sub(t0).Seconds())
	}
	q.TimeToLogin = summarize(h)
	q.Estimates = len(rel)
	if len(rel) > 0 {
		slices.Sort(rel)
		pct := func(p float64) float64 {
			return math.Round(rel[min(len(rel)-1, int(math.Ceil(p*float64(len(rel))))-1)]*1000) / 10
		}
		q.EstimateErrP50, q.EstimateErrP90 = pct(0.5), pct(0.9)
		q.EstimateErrMax = math.Round(rel[len(rel)-1]*1000) / 10
		q.EstimateBias = math.Round(bias/float64(len(rel))*1000) / 10
		q.EstimateErr = summarize(errH)
	}
	res.Queue = q
	res.DurationS = round2(t1.Sub(t0).Seconds())
	res.Logins = int64(q.LoggedIn)
	res.LoginsPerSec = round2(float64(q.LoggedIn) / t1.Sub(t0).Seconds())
	res.Latency = q.TimeToLogin
	res.Errors = errs
	res.cpuSplit = splitCPU(cpu0, cpu1, res.Logins, t)
	if q.LoggedIn == 0 {
		return nil, fmt.Errorf("no login succeeded (first error: %v)", firstEr)
	}

	what := "guest logins (auth.guest)"
	if lc.mode == "password" {
		what = "password logins (auth.login, argon2id)"
	}
	rep := &report{title: fmt.Sprintf("hearth bench login: %d clients logging in at once, %s, %s, %s, %s; server: %s",
		n, what, bf.transport, bf.codec, queueDesc(lc.loginRate, t), t.desc)}
	if res.Registered > 0 {
		rep.add("accounts registered", "%s in %.1fs (before the run)", FormatInt(int64(res.Registered)), res.RegisterS)
	}
	rep.add("clients", "%s", FormatInt(int64(n)))
	rep.add("logged in", "%s", FormatInt(int64(q.LoggedIn)))
	rep.add("admitted at once", "%s (no queueing: the burst)", FormatInt(int64(q.AdmittedAtOnce)))
	rep.add("queued", "%s (answered 204)", FormatInt(int64(q.Queued)))
	rep.add("admission rate", "%.1f logins/s (auth.admitted pushes, first to last)", q.AdmittedPerSec)
	rep.add("all logged in after", "%.2f s", q.AllLoggedInS)
	rep.latencyRows("time to log in", q.TimeToLogin)
	rep.add("wait estimates", "%s (first auth.queued wait_ms against the time from it to auth.admitted)", FormatInt(int64(q.Estimates)))
	if q.Estimates > 0 {
		rep.add("estimate error p50", "%.1f%%  (%s)", q.EstimateErrP50, fmtMS(q.EstimateErr.P50))
		rep.add("estimate error p90", "%.1f%%  (%s)", q.EstimateErrP90, fmtMS(q.EstimateErr.P90))
		rep.add("estimate error max", "%.1f%%  (%s)", q.EstimateErrMax, fmtMS(q.EstimateErr.Max))
		rep.add("estimate bias", "%+.1f%% (mean of (estimate − actual) ÷ actual)", q.EstimateBias)
		rep.add("estimates within 25%", "%s of %s", FormatInt(int64(q.EstimatesWithin)), FormatInt(int64(q.Estimates)))
	}
	rep.add("queued without position", "%d (204 but no auth.queued before auth.admitted)", q.NoQueuedPush)
	rep.add("position not lower", "%d (auth.queued pushes whose position did not go down)", q.PositionNotLower)
	rep.add("admitted out of order", "%d (admitted before a client with a lower first position)", q.AdmittedOutOfOrd)
	rep.errorRows(errs)
	cpuRows(rep, res.cpuSplit, "login", t)
	if firstEr != nil {
		rep.note("the first failed login: %v", firstEr)
	}
	return rep, nil
}
