package bots

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/pb/authpb"
	"github.com/hearth-server/hearth/wire"
)

// requestTimeout bounds each request a bot sends.
const requestTimeout = 30 * time.Second

var (
	errTimeout = errors.New("no answer in time")
	errLost    = errors.New("connection lost")
)

// runConfig is what one process's bots do.
type runConfig struct {
	urls []string // gates: bot i dials urls[gateOf(i)]
	// gate0 of every all bots dial urls[0] (gate0 0: an even share of
	// every gate); all is the bots of every process.
	gate0, all int
	players    int    // bots in this process
	first      int    // index of this process's first bot among all
	runID      string // makes device ids unique per run
	game       string // "niuniu"
	roomType   string
	thinkMin   time.Duration
	thinkMax   time.Duration
	ramp       float64 // bots started per second by this process
	drain      time.Duration
	client     client.Options
	seed       uint64
}

// runner runs one process's bots: it starts them at the ramp rate, and on
// stop lets each finish its round, leave and check its balance. Its fields
// are set by startRunner; stopping, abandon and done are closed once.
type runner struct {
	cfg      runConfig
	st       *stats
	stopping chan struct{} // closed by stop
	abandon  chan struct{} // closed when the drain gives up
	done     chan struct{} // closed when every bot has returned
	stopOnce sync.Once
	ramped   atomic.Bool       // every bot has been started (or stop came first)
	routes   map[string]string // moveRoutes(cfg.roomType), read only
}

// gateOf is the gate bot n (among all processes' bots) dials: an even
// share of each, or gate0 of the bots urls[0] and the rest the others in
// turn. urls[0]'s bots are spread evenly over the numbers (the ramp's
// order), not started in one block; integer arithmetic keeps their count
// exactly gate0.
func (c *runConfig) gateOf(n int) int {
	g := len(c.urls)
	if g == 1 || c.gate0 <= 0 || c.all <= 0 {
		return n % g
	}
	before := n * c.gate0 / c.all // bots of urls[0] among 0…n-1
	if (n+1)*c.gate0/c.all > before {
		return 0
	}
	return 1 + (n-before)%(g-1)
}

func startRunner(ctx context.Context, cfg runConfig, st *stats) *runner {
	r := &runner{cfg: cfg, st: st, stopping: make(chan struct{}), abandon: make(chan struct{}), done: make(chan struct{}), routes: moveRoutes(cfg.roomType)}
	go r.run(ctx)
	return r
}

// stop tells the bots to stop playing; after cfg.drain those still in a
// round are abandoned.
func (r *runner) stop() {
	r.stopOnce.Do(func() {
		close(r.stopping)
		time.AfterFunc(r.cfg.drain, func() { close(r.abandon) })
	})
}

// gcLead is how long before the last bot starts its process collects
// (runner.run).
const gcLead = 5 * time.Second

// gcIndex is the bot before whose start, gcLead before the last one's, the
// process collects: -1 for a ramp shorter than that (no collection).
func gcIndex(players int, ramp float64) int {
	lead := int(gcLead.Seconds() * ramp)
	if lead <= 0 || lead >= players {
		return -1
	}
	return players - lead
}

func (r *runner) run(ctx context.Context) {
	defer close(r.done)
	// One Poller reads every bot's connection: a reader goroutine per bot
	// cost a wake-up and an empty read per push, the larger part of the
	// bots' CPU, which the server shares. Where there is none (not Linux)
	// each client reads on its own goroutine.
	if p, err := client.NewPoller(client.PollerOptions{Gather: time.Millisecond}); err == nil {
		r.cfg.client.Poller = p
		defer p.Close()
	}
	var wg sync.WaitGroup
	t0 := time.Now()
	gcAt := gcIndex(r.cfg.players, r.cfg.ramp)
	for i := range r.cfg.players {
		if i == gcAt {
			// The bots measure: a collection of their own in the window
			// is counted against the server (at 20,000 bots both
			// processes' next one fell ~22 s into it, a burst of late
			// countdowns). One now, with every bot's memory nearly
			// allocated, leaves the heap room for the window: the next
			// comes at five times the heap left (collectSeldom), or
			// forced two minutes on.
			go runtime.GC()
		}
		at := t0.Add(time.Duration(float64(i) / r.cfg.ramp * float64(time.Second)))
		if wait := time.Until(at); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-r.stopping:
			case <-ctx.Done():
			}
			t.Stop()
		}
		select {
		case <-r.stopping:
		case <-ctx.Done():
		default:
			wg.Go(func() { r.bot(ctx, i) })
			continue
		}
		break
	}
	r.ramped.Store(true)
	wg.Wait()
}

// bot is bot i of this process, from connecting to its balance check.
func (r *runner) bot(ctx context.Context, i int) {
	r.st.started.Add(1)
	n := r.cfg.first + i
	gate := r.cfg.gateOf(n)
	url := r.cfg.urls[gate]
	fail := func(what string, err error) {
		r.st.failed.Add(1)
		if ctx.Err() == nil && !errors.Is(err, errStopped) {
			r.st.fail(errorKey(what, err), err)
		}
	}
	dctx, cancel := context.WithTimeout(ctx, r.cfg.client.HandshakeTimeout)
	c, err := client.Dial(dctx, url, r.cfg.client)
	cancel()
	if err != nil {
		fail("connect", err)
		return
	}
	defer c.Close()
	user, err := login(ctx, c, fmt.Sprintf("bots-%s-%d", r.cfg.runID, n), func(err error) { r.st.fail(errorKey("login", err), err) })
	if err != nil {
		fail("login", err)
		return
	}
	r.st.loggedIn.Add(1)
	rng := rand.New(rand.NewPCG(r.cfg.seed, uint64(n)))
	think := func() time.Duration {
		if r.cfg.thinkMax <= r.cfg.thinkMin {
			return r.cfg.thinkMin
		}
		return r.cfg.thinkMin + time.Duration(rng.Int64N(int64(r.cfg.thinkMax-r.cfg.thinkMin)))
	}
	b := newNNBot(c, gate, r.cfg.roomType, r.routes, r.st, think, rng)
	b.user = user
	if err := b.play(ctx, r.stopping, r.abandon); err != nil {
		r.st.failed.Add(1)
		if ctx.Err() == nil && errors.Is(err, errLost) {
			r.st.fail(errorKey("connection lost", c.Err()), err)
		}
	}
}

// login logs in as the guest of device and returns its user id; a login
// the server queues (204) waits for auth.admitted and goes again
// (docs/protocol.md §8a), and one it is too busy for (203: its store is
// behind, or hashing is saturated) goes again after a pause that grows to
// 10 s, as a person would press the button again; busy is told of each.
func login(ctx context.Context, c *client.Client, device string, busy func(error)) (string, error) {
	pause := 500 * time.Millisecond
	admitted := make(chan struct{}, 1)
	c.OnPush("auth.admitted", func(client.Push) {
		select {
		case admitted <- struct{}{}:
		default:
		}
	})
	defer c.OnPush("auth.admitted", nil)
	for {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		var resp authpb.LoginResp
		err := c.Request(rctx, "auth.guest", &authpb.GuestReq{DeviceId: device}, &resp)
		timedOut := rctx.Err() != nil && ctx.Err() == nil
		cancel()
		if timedOut {
			return "", fmt.Errorf("%w: auth.guest after %s", errTimeout, requestTimeout)
		}
		var we *wire.Error
		if errors.As(err, &we) && we.Code == wire.CodeOverloaded {
			busy(err)
			select {
			case <-time.After(pause):
			case <-c.Done():
				return "", c.Err()
			case <-ctx.Done():
				return "", ctx.Err()
			}
			pause = min(2*pause, 10*time.Second)
			continue
		}
		if !errors.As(err, &we) || we.Code != wire.CodeQueued {
			return resp.UserId, err
		}
		select {
		case <-admitted:
		case <-c.Done():
			return "", c.Err()
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}
