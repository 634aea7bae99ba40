package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hearth-server/hearth/client"
)

// IdleResult is the result of `hearth bench idle` (--json prints it).
// Byte counts are the server's; "gc" ones were read right after the bench
// made its own server collect garbage (not with --addr).
type IdleResult struct {
	Bench                string  `json:"bench"`
	Transport            string  `json:"transport"`
	Codec                string  `json:"codec"`
	Sessions             int     `json:"sessions"`
	Server               string  `json:"server"`
	SettleS              float64 `json:"settle_s"`
	ConnectSeconds       float64 `json:"connect_s"`
	RSS                  memStep `json:"rss_bytes"`
	RSSGC                memStep `json:"rss_after_gc_bytes,omitzero"`
	Heap                 memStep `json:"heap_inuse_bytes,omitzero"`
	HeapGC               memStep `json:"heap_inuse_after_gc_bytes,omitzero"`
	StackPerSession      float64 `json:"stack_inuse_per_session_bytes,omitempty"`
	GoroutinesPerSession float64 `json:"goroutines_per_session,omitempty"`
	// WorkersIdle is the node's idle pooled workers at the end, left out
	// of GoroutinesPerSession: the handshakes' burst leaves them for a few
	// seconds, for all sessions (-1 unknown).
	WorkersIdle     int64 `json:"workers_idle"`
	ConnectionsLost int   `json:"connections_lost"`
}

// memStep is one memory figure before the sessions, with half of them and
// with all, and what a session costs: (all − before) / sessions, and the
// marginal cost (all − half) / (sessions in the second half).
type memStep struct {
	Before     int64   `json:"before"`
	Half       int64   `json:"half"`
	After      int64   `json:"after"`
	PerSession float64 `json:"per_session"`
	Marginal   float64 `json:"marginal_per_session"`
}

func newMemStep(before, half, after int64, n, second int) memStep {
	m := memStep{Before: before, Half: half, After: after, PerSession: round2(float64(after-before) / float64(n))}
	if second > 0 && second < n {
		m.Marginal = round2(float64(after-half) / float64(second))
	}
	return m
}

type idleConfig struct {
	sessions int
	settle   time.Duration
}

func benchIdle(ctx context.Context, args []string, opts options) int {
	var bf benchFlags
	var ic idleConfig
	fs := newBenchFlagSet("idle", "[--sessions N] [--transport tcp|ws] [--settle 5s] [--addr URL --admin-url http://HOST:7180] [--json]", opts, &bf, "json")
	fs.IntVar(&ic.sessions, "sessions", 1000, "idle sessions to open")
	fs.DurationVar(&ic.settle, "settle", 5*time.Second, "wait this long after connecting (each half) before reading the server's memory")
	if code, ok := bf.parse(fs, args, opts); !ok {
		return code
	}
	switch {
	case ic.sessions < 1:
		return usageErr(opts, "idle", "--sessions must be at least 1")
	case ic.settle < 0:
		return usageErr(opts, "idle", "--settle must not be negative")
	case bf.inprocess:
		return usageErr(opts, "idle", "--inprocess would count the clients' memory too: idle measures a separate server process")
	case bf.addr != "" && bf.adminURL == "":
		return usageErr(opts, "idle", "with --addr, give the server's admin listener too (--admin-url http://HOST:7180): its /metrics has the process's memory")
	}
	res, rep, err := runIdle(ctx, &bf, ic, opts)
	if err != nil {
		return benchError(opts, "idle", err)
	}
	emit(opts.Stdout, &bf, res, rep)
	return 0
}

func runIdle(ctx context.Context, bf *benchFlags, ic idleConfig, opts options) (*IdleResult, *report, error) {
	if err := ensureFDs(fdsNeeded(ic.sessions, false)); err != nil {
		return nil, nil, err
	}
	t, err := startTarget(ctx, bf, serverNeeds{gcSignal: true}, opts)
	if err != nil {
		return nil, nil, err
	}
	defer t.stop()

	// memory reads the server's memory as it is and, from the bench's own
	// child, again after it collected garbage.
	memory := func() (asIs, gcd serverStats, err error) {
		asIs = t.stats(ctx)
		if !asIs.ok {
			if t.external {
				return asIs, gcd, fmt.Errorf("cannot read the server's memory from %s/metrics (process_resident_memory_bytes): is --admin-url the server's admin listener?", t.adminURL)
			}
			return asIs, gcd, errors.New("cannot read the server's memory from /proc")
		}
		if t.pid == 0 || signalGC(t.pid) != nil {
			return asIs, gcd, nil
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return asIs, gcd, err
		}
		return asIs, t.stats(ctx), nil
	}
	// Let a fresh server finish starting before the baseline.
	if t.pid != 0 {
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return nil, nil, err
		}
	}
	before, beforeGC, err := memory()
	if err != nil {
		return nil, nil, err
	}

	// Connect in two halves, reading the memory after each settles: the
	// second half's growth is the marginal cost of a session on a warm
	// server, free of start-up garbage and first-use costs.
	var dialed atomic.Int64
	var settling atomic.Bool
	var lastRSS atomic.Int64
	lastRSS.Store(before.RSS)
	prog := startProgress(opts.Stderr, func(el time.Duration) string {
		if !settling.Load() {
			return fmt.Sprintf("idle  connecting %s/%s sessions to %s  %.1fs", FormatInt(dialed.Load()), FormatInt(int64(ic.sessions)), t.dialDesc(), el.Seconds())
		}
		return fmt.Sprintf("idle  %s sessions open, settling  %.1fs  server RSS %s", FormatInt(dialed.Load()), el.Seconds(), fmtBytes(lastRSS.Load()))
	})
	settle := func() error {
		settling.Store(true)
		defer settling.Store(false)
		deadline := time.Now().Add(ic.settle)
		for {
			lastRSS.Store(t.stats(ctx).RSS)
			left := time.Until(deadline)
			if left <= 0 {
				return nil
			}
			if err := sleepCtx(ctx, min(left, time.Second)); err != nil {
				return err
			}
		}
	}
	var (
		sessions          []*client.Client
		connect           time.Duration
		half, halfGC      serverStats
		after, afterGC    serverStats
		first, secondHalf = ic.sessions / 2, ic.sessions - ic.sessions/2
	)
	defer func() { closeAll(sessions) }()
	for _, n := range []int{first, secondHalf} {
		if n == 0 {
			continue
		}
		c0 := time.Now()
		more, err := dialAll(ctx, n, t.clientURLs(), sameOptions(bf.clientOptions()), t.external, &dialed, nil)
		connect += time.Since(c0)
		if err == nil {
			sessions = append(sessions, more...)
			err = settle()
		}
		var st, stGC serverStats
		if err == nil {
			st, stGC, err = memory()
		}
		if err != nil {
			prog.Stop()
			return nil, nil, err
		}
		if len(sessions) < ic.sessions {
			half, halfGC = st, stGC
		} else {
			after, afterGC = st, stGC
		}
	}
	prog.Stop()
	lost := 0
	var lostErr error
	for _, c := range sessions {
		select {
		case <-c.Done():
			lost++
			if lostErr == nil {
				lostErr = c.Err()
			}
		default:
		}
	}
	n := ic.sessions
	if first == 0 {
		half, halfGC = before, beforeGC
	}
	res := &IdleResult{
		Bench:           "idle",
		Transport:       bf.transport,
		Codec:           bf.codec,
		Sessions:        n,
		Server:          t.desc,
		SettleS:         ic.settle.Seconds(),
		ConnectSeconds:  round2(connect.Seconds()),
		RSS:             newMemStep(before.RSS, half.RSS, after.RSS, n, secondHalf),
		ConnectionsLost: lost,
	}
	gcd := beforeGC.ok && halfGC.ok && afterGC.ok
	if gcd {
		res.RSSGC = newMemStep(beforeGC.RSS, halfGC.RSS, afterGC.RSS, n, secondHalf)
	}
	if before.HeapInuse >= 0 && half.HeapInuse >= 0 && after.HeapInuse >= 0 {
		res.Heap = newMemStep(before.HeapInuse, half.HeapInuse, after.HeapInuse, n, secondHalf)
		if gcd {
			res.HeapGC = newMemStep(beforeGC.HeapInuse, halfGC.HeapInuse, afterGC.HeapInuse, n, secondHalf)
		}
	}
	if before.StackInuse >= 0 && after.StackInuse >= 0 {
		res.StackPerSession = round2(float64(after.StackInuse-before.StackInuse) / float64(n))
	}
	countedG := before.Goroutines >= 0 && after.Goroutines >= 0
	res.WorkersIdle = -1
	if countedG {
		g := after.Goroutines - before.Goroutines
		if before.WorkersIdle >= 0 && after.WorkersIdle >= 0 {
			res.WorkersIdle = after.WorkersIdle
			g -= after.WorkersIdle - before.WorkersIdle
		}
		res.GoroutinesPerSession = round2(float64(g) / float64(n))
	}

	kb := func(b float64) string { return fmt.Sprintf("%.2f KB", b/1000) }
	rep := &report{title: fmt.Sprintf("hearth bench idle: %d idle sessions, %s, %s, memory read %s after connecting each half; server: %s",
		n, bf.transport, bf.codec, ic.settle, t.desc)}
	rep.add("sessions", "%s (connected in %.1fs, in two halves)", FormatInt(int64(n)), connect.Seconds())
	withGC := func(asIs, gc string) string {
		if gcd {
			return asIs + "   after GC " + gc
		}
		return asIs
	}
	rep.add("server rss before", "%s", withGC(fmtBytes(res.RSS.Before), fmtBytes(res.RSSGC.Before)))
	rep.add("server rss after", "%s", withGC(fmtBytes(res.RSS.After), fmtBytes(res.RSSGC.After)))
	rep.add("rss per session", "%s", withGC(kb(res.RSS.PerSession), kb(res.RSSGC.PerSession)))
	if first > 0 {
		rep.add("rss per session, marginal", "%s", withGC(kb(res.RSS.Marginal), kb(res.RSSGC.Marginal)))
	}
	if res.Heap.After > 0 {
		rep.add("go heap per session", "%s", withGC(kb(res.Heap.PerSession), kb(res.HeapGC.PerSession)))
		if first > 0 {
			rep.add("go heap per session, marginal", "%s", withGC(kb(res.Heap.Marginal), kb(res.HeapGC.Marginal)))
		}
	}
	if res.StackPerSession != 0 {
		rep.add("go stacks per session", "%s", kb(res.StackPerSession))
	}
	if countedG { // 0 is a result: idle TCP sessions park without one
		rep.add("goroutines per session", "%.2f", res.GoroutinesPerSession)
		if res.WorkersIdle >= 0 {
			rep.add("idle workers", "%d (the node's pool, shared, not counted above)", res.WorkersIdle)
		}
	}
	if lost > 0 {
		rep.add("connections lost", "%d", lost)
		rep.note("a session ended while idle: %v", lostErr)
	}
	rep.note("per session: (after − before) / sessions; marginal: growth from %s to %s sessions, per session. RSS is the server process's; the kernel's socket buffers are not in it", FormatInt(int64(first)), FormatInt(int64(n)))
	serverNotes(rep, t)
	return res, rep, nil
}
