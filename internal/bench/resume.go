package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/pb/syspb"
	"github.com/hearth-server/hearth/wire"
)

// ResumeResult is the result of `hearth bench resume` (--json prints it).
// Times are from the signal to gate B.
type ResumeResult struct {
	Bench           string           `json:"bench"`
	Transport       string           `json:"transport"`
	Codec           string           `json:"codec"`
	Sessions        int              `json:"sessions"`
	Signal          string           `json:"signal"` // SIGTERM (drain) or SIGKILL
	Server          string           `json:"server"`
	PushStreams     int              `json:"push_streams"`           // sessions with a sys.push stream
	StreamsRefused  int              `json:"push_streams_refused"`   // sys.push answered 203 (the server's cap)
	PushIntervalMS  int64            `json:"push_interval_ms"`       // sys.push interval_ms
	ChannelMembers  int              `json:"channel_members"`        // sessions in the channel "bench"
	PublishEveryMS  int64            `json:"publish_interval_ms"`    // a publish to the channel this often
	Disconnected    int              `json:"disconnected"`           // sessions that saw Disconnected
	Resumed         int              `json:"resumed"`                // sessions that saw Resumed
	Lost            int              `json:"lost"`                   // sessions that saw Lost
	Pending         int              `json:"pending"`                // neither resumed nor lost at --timeout
	LostBy          map[string]int64 `json:"lost_by"`                // Lost events by error
	TimeToDisc      Latency          `json:"time_to_disconnected"`   // signal → Disconnected
	TimeToResume    Latency          `json:"time_to_resume"`         // signal → Resumed
	Reconnect       Latency          `json:"disconnected_to_resume"` // Disconnected → Resumed
	AllResumedS     float64          `json:"all_resumed_s,omitempty"`
	TimeToLost      Latency          `json:"time_to_lost"` // signal → Lost
	AllLostS        float64          `json:"all_lost_s,omitempty"`
	GateExitS       float64          `json:"gate_b_exit_s"` // signal → gate B's process exited (-1: not within the run)
	Pushes          int64            `json:"pushes"`        // pushes the sessions received
	MissedPushes    int64            `json:"missed_pushes"` // gaps in push_seq
	DupPushes       int64            `json:"duplicate_pushes"`
	TicksMissing    int64            `json:"sys_tick_missing"` // sys.tick n never received (a later one was)
	TicksLate       int64            `json:"sys_tick_out_of_order"`
	RoundsMissing   int64            `json:"bench_msg_missing"` // channel messages never received (a later one was)
	RoundsLate      int64            `json:"bench_msg_out_of_order"`
	MissingByRound  map[uint64]int64 `json:"bench_msg_missing_by_round,omitempty"` // round → sessions that missed it
	SilentAfter     int              `json:"silent_after_resume"`                  // resumed sessions with no push after it
	Errors          map[string]int64 `json:"errors"`
	PublishedRounds int64            `json:"published"`
	// Cores each process used from the signal until every session was
	// resumed or lost: gate_a, gate_b, bench, other.
	CPU map[string]float64 `json:"cpu_cores_until_done,omitempty"`
}

type resumeConfig struct {
	sessions     int
	kill         bool
	pushEvery    time.Duration
	pushStreams  int
	publishEvery time.Duration
	settle       time.Duration
	timeout      time.Duration
	drainTimeout time.Duration
}

func benchResume(ctx context.Context, args []string, opts options) int {
	var bf benchFlags
	var rc resumeConfig
	fs := newBenchFlagSet("resume", "[--sessions N] [--kill] [--transport tcp|ws] [--nats URL] [--push-interval 500ms] [--publish-interval 1s] [--json]", opts, &bf, "protobuf")
	fs.IntVar(&rc.sessions, "sessions", 1000, "sessions, all on gate B")
	fs.BoolVar(&rc.kill, "kill", false, "SIGKILL gate B instead of SIGTERM: the sessions are lost (304), and the bench times how fast every client learns it")
	fs.StringVar(&bf.natsURL, "nats", "", "NATS URL both gates use (under a random --prefix; its buckets are deleted at the end); empty: gate A's embedded NATS, listening on 127.0.0.1 for gate B")
	fs.DurationVar(&rc.pushEvery, "push-interval", 500*time.Millisecond, "sys.push interval (0..1s): each stream pushes a sys.tick this often")
	fs.IntVar(&rc.pushStreams, "push-streams", 1000, "sessions that run a sys.push stream (the server runs at most 1,000 per node)")
	fs.DurationVar(&rc.publishEvery, "publish-interval", time.Second, "every session joins the channel \"bench\" and a publisher on gate A publishes to it this often; 0: no channel")
	fs.DurationVar(&rc.settle, "settle", 2*time.Second, "after the last resume, keep the pushes flowing this long before checking them")
	fs.DurationVar(&rc.timeout, "timeout", 2*time.Minute, "give up on sessions neither resumed nor lost after this")
	fs.DurationVar(&rc.drainTimeout, "drain-timeout", 5*time.Minute, "gate B's --drain-timeout")
	if code, ok := bf.parse(fs, args, opts); !ok {
		return code
	}
	switch {
	case rc.sessions < 1:
		return usageErr(opts, "resume", "--sessions must be at least 1")
	case bf.addr != "" || bf.inprocess || bf.srvProfile != "":
		return usageErr(opts, "resume", "resume starts and stops its own two gates: not with --addr, --inprocess or --server-cpuprofile")
	case rc.pushEvery < 0 || rc.pushEvery > time.Second:
		return usageErr(opts, "resume", "--push-interval must be 0..1s (sys.push's interval_ms)")
	case rc.pushStreams < 0 || rc.publishEvery < 0:
		return usageErr(opts, "resume", "--push-streams and --publish-interval must not be negative")
	case rc.settle < 0 || rc.timeout <= 0 || rc.drainTimeout <= 0:
		return usageErr(opts, "resume", "--timeout and --drain-timeout must be positive and --settle not negative")
	}
	res, rep, err := runResume(ctx, &bf, rc, opts)
	if err != nil {
		return benchError(opts, "resume", err)
	}
	emit(opts.Stdout, &bf, res, rep)
	return 0
}

// resumer is one session's record: its events, and a check of every push.
type resumer struct {
	isJSON bool

	mu             sync.Mutex
	lastSeq        uint64
	pushes         int64
	missed, dups   int64
	ticks          received // sys.tick n
	rounds         received // the channel's rounds
	disconnectedAt time.Time
	resumedAt      time.Time
	lostAt         time.Time
	lostErr        error
	afterResume    int64 // pushes after the first Resumed
}

func (r *resumer) onPush(p client.Push) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pushes++
	switch {
	case p.Seq == r.lastSeq+1:
	case p.Seq <= r.lastSeq:
		r.dups++
		return
	default:
		r.missed += int64(p.Seq - r.lastSeq - 1)
	}
	r.lastSeq = p.Seq
	if !r.resumedAt.IsZero() {
		r.afterResume++
	}
	switch p.Route {
	case "sys.tick":
		var t syspb.Tick
		if r.decode(p.Payload, &t) == nil {
			r.ticks.add(uint64(t.N))
		}
	case benchRoute:
		if _, round, ok := parseDelivery(p.Payload, r.isJSON); ok {
			r.rounds.add(round)
		}
	}
}

// received records the numbers a session got from one source (sys.tick n,
// channel rounds), to find the ones that never came.
type received struct {
	got  []bool
	max  uint64
	late int64 // arrived after a higher one
}

func (rc *received) add(v uint64) {
	if v > 1<<20 {
		return // not ours
	}
	for uint64(len(rc.got)) <= v {
		rc.got = append(rc.got, false)
	}
	if rc.got[v] {
		return // a duplicate: push_seq catches those
	}
	rc.got[v] = true
	if v < rc.max {
		rc.late++
	}
	rc.max = max(rc.max, v)
}

// missing lists the numbers from 1 to the highest received that never came.
func (rc *received) missing() []uint64 {
	var out []uint64
	for v := uint64(1); v <= rc.max; v++ {
		if !rc.got[v] {
			out = append(out, v)
		}
	}
	return out
}

func (r *resumer) decode(b []byte, m proto.Message) error {
	if r.isJSON {
		return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, m)
	}
	return proto.Unmarshal(b, m)
}

func (r *resumer) onEvent(ev client.Event) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	switch ev.Kind {
	case client.Disconnected:
		if r.disconnectedAt.IsZero() {
			r.disconnectedAt = now
		}
	case client.Resumed:
		if r.resumedAt.IsZero() {
			r.resumedAt = now
		}
	case client.Lost:
		if r.lostAt.IsZero() {
			r.lostAt, r.lostErr = now, ev.Err
		}
	}
}

// lostKey names why a session was lost, for the report.
func lostKey(err error) string {
	var we *wire.Error
	switch {
	case errors.As(err, &we):
		return codeKey(we.Code)
	case errors.Is(err, client.ErrReconnectTimeout):
		return "reconnect timeout"
	case err == nil:
		return "unknown"
	}
	s := err.Error()
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return s
}

func runResume(ctx context.Context, bf *benchFlags, rc resumeConfig, opts options) (*ResumeResult, *report, error) {
	n := rc.sessions
	// The clients here; each server child inherits the limit and holds as
	// many (gate A all of them after the resume).
	if err := ensureFDs(uint64(n) + 1024); err != nil {
		return nil, nil, err
	}
	stopProfile, err := bf.startCPUProfile()
	if err != nil {
		return nil, nil, err
	}
	defer stopProfile()
	nodes := []clusterNode{
		// Every role: the gate, sys (the push streams), bench (the
		// channel), auth. It drains only when the bench stops it, when its
		// sessions (closed by the bench: resumable) need not be waited for.
		{name: "gate-a", args: []string{"--drain-timeout", "1s"}},
		{name: "gate-b", args: []string{"--roles", "gate", "--drain-timeout", rc.drainTimeout.String()}},
	}
	t, err := startCluster(ctx, bf, bf.natsURL, nodes, serverNeeds{}, opts)
	if err != nil {
		return nil, nil, err
	}
	defer t.stop()
	gateA, gateB := t.members[0], t.members[1]

	isJSON := bf.codec == wire.CodecJSON
	rs := make([]*resumer, n)
	base := bf.clientOptions()
	optsFor := func(i int) client.Options {
		r := &resumer{isJSON: isJSON}
		rs[i] = r
		o := base
		o.Reconnect = true
		o.Addrs = []string{gateA.url, gateB.url}
		o.ReconnectTimeout = rc.timeout
		o.OnPush = r.onPush
		o.OnEvent = r.onEvent
		return o
	}
	streams := min(n, rc.pushStreams)
	var refused atomic.Int64
	joinPayload := []byte(nil)
	if isJSON {
		joinPayload = []byte("{}")
	}
	var dialed atomic.Int64
	dialing := startProgress(opts.Stderr, func(el time.Duration) string {
		return fmt.Sprintf("resume  connecting %s/%s sessions to gate B %s (sys.push, bench.join)  %.1fs", FormatInt(dialed.Load()), FormatInt(int64(n)), gateB.url, el.Seconds())
	})
	sessions, err := dialAll(ctx, n, []string{gateB.url}, optsFor, false, &dialed, func(i int, c *client.Client) error {
		if i < streams {
			var resp syspb.PushResp
			err := c.Request(ctx, "sys.push", &syspb.PushReq{Count: 1000, IntervalMs: uint32(rc.pushEvery.Milliseconds())}, &resp)
			var we *wire.Error
			if errors.As(err, &we) && we.Code == wire.CodeOverloaded {
				refused.Add(1)
			} else if err != nil {
				return fmt.Errorf("sys.push: %w", err)
			}
		}
		if rc.publishEvery > 0 {
			if _, err := c.RequestRaw(ctx, "bench.join", joinPayload); err != nil {
				if noBenchService(err) {
					return errNoBenchService(t, err)
				}
				return fmt.Errorf("bench.join: %w", err)
			}
		}
		return nil
	})
	dialing.Stop()
	if err != nil {
		return nil, nil, err
	}
	defer closeAll(sessions)

	// The publisher, on gate A: the channel's messages carry a round
	// number, so that each session can tell a skipped one.
	var (
		published atomic.Int64
		pubErrs   = map[string]int64{}
		pubMu     sync.Mutex
		pubWG     sync.WaitGroup
	)
	pctx, stopPub := context.WithCancel(ctx)
	defer stopPub()
	if rc.publishEvery > 0 {
		po := base
		po.Codec = wire.CodecProtobuf
		pubs, err := dialAll(ctx, 1, []string{gateA.url}, sameOptions(po), false, nil, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("publisher: %w", err)
		}
		pub := pubs[0]
		defer pub.Close()
		pubWG.Go(func() {
			tick := time.NewTicker(rc.publishEvery)
			defer tick.Stop()
			buf := make([]byte, 0, 64)
			for round := uint64(1); ; {
				buf = publishPayload(buf, 32, monoNow(), round)
				_, err := pub.RequestRaw(pctx, "bench.publish", buf)
				if pctx.Err() != nil {
					return
				}
				if err != nil {
					pubMu.Lock()
					pubErrs["publish "+lostKey(err)]++
					pubMu.Unlock()
				} else {
					published.Store(int64(round))
					round++
				}
				select {
				case <-pctx.Done():
					return
				case <-tick.C:
				}
			}
		})
	}
	defer pubWG.Wait()
	defer stopPub()

	// Let the streams run before the signal.
	if err := sleepCtx(ctx, max(rc.pushEvery, rc.publishEvery)+300*time.Millisecond); err != nil {
		return nil, nil, err
	}

	sig, sigName, verb := syscall.SIGTERM, "SIGTERM", "drain"
	if rc.kill {
		sig, sigName, verb = syscall.SIGKILL, "SIGKILL", "kill"
	}
	count := func() (disc, resumed, lost int) {
		for _, r := range rs {
			r.mu.Lock()
			if !r.disconnectedAt.IsZero() {
				disc++
			}
			if !r.resumedAt.IsZero() {
				resumed++
			}
			if !r.lostAt.IsZero() {
				lost++
			}
			r.mu.Unlock()
		}
		return
	}
	var gateExit atomic.Int64 // ns after the signal; 0 while running
	t0 := time.Now()
	prog := startProgress(opts.Stderr, func(el time.Duration) string {
		d, r, l := count()
		b := "running"
		if e := gateExit.Load(); e > 0 {
			b = fmt.Sprintf("exited at %.2fs", time.Duration(e).Seconds())
		}
		return fmt.Sprintf("resume  %s gate B  %5.1fs  disconnected %s  resumed %s  lost %s  gate B %s", verb, el.Seconds(), FormatInt(int64(d)), FormatInt(int64(r)), FormatInt(int64(l)), b)
	})
	a0, _ := procCPU(gateA.pid)
	b0, _ := procCPU(gateB.pid)
	self0 := selfCPU()
	m0 := ReadMachine()
	bLast := b0
	if err := gateB.proc.Signal(sig); err != nil {
		prog.Stop()
		return nil, nil, fmt.Errorf("signal gate B: %w", err)
	}
	go func() {
		select {
		case <-gateB.proc.Exited():
			gateExit.Store(int64(max(1, time.Since(t0))))
		case <-pctx.Done():
		}
	}()
	// Every session ends resumed or lost (the kill: lost), or the timeout.
	deadline := t0.Add(rc.timeout)
	for {
		if cpu, err := procCPU(gateB.pid); err == nil {
			bLast = cpu // until it exits
		}
		if _, r, l := count(); r+l >= n || time.Now().After(deadline) {
			break
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			prog.Stop()
			return nil, nil, err
		}
	}
	// The CPU each process used from the signal until every session was
	// resumed or lost.
	window := time.Since(t0)
	a1, errA := procCPU(gateA.pid)
	self1 := selfCPU()
	m1 := ReadMachine()
	var (
		cpuRow string
		cpu    map[string]float64
	)
	if errA == nil && self1 > 0 {
		cores := func(d time.Duration) float64 { return round2(d.Seconds() / window.Seconds()) }
		cpu = map[string]float64{"gate_a": cores(a1 - a0), "gate_b": cores(bLast - b0), "bench": cores(self1 - self0)}
		cpuRow = fmt.Sprintf("gate A %.2f, gate B %.2f, bench %.2f", cpu["gate_a"], cpu["gate_b"], cpu["bench"])
		if m0.OK && m1.OK {
			cpu["other"] = cores(max(0, (m1.Busy-m0.Busy)-(a1-a0)-(bLast-b0)-(self1-self0)))
			cpu["stolen"] = cores(m1.Steal - m0.Steal)
			cpuRow += fmt.Sprintf(", other processes %.2f, stolen by the hypervisor %.2f", cpu["other"], cpu["stolen"])
		}
		cpuRow += fmt.Sprintf(" cores over %.2f s", window.Seconds())
	}
	if !rc.kill && rc.settle > 0 {
		if err := sleepCtx(ctx, rc.settle); err != nil {
			prog.Stop()
			return nil, nil, err
		}
	}
	prog.Stop()
	stopPub()
	pubWG.Wait()

	res := &ResumeResult{
		Bench: "resume", Transport: bf.transport, Codec: bf.codec, Sessions: n, Signal: sigName, Server: t.desc,
		PushStreams: streams - int(refused.Load()), StreamsRefused: int(refused.Load()), PushIntervalMS: rc.pushEvery.Milliseconds(),
		PublishEveryMS: rc.publishEvery.Milliseconds(), LostBy: map[string]int64{}, Errors: map[string]int64{},
		PublishedRounds: published.Load(), GateExitS: -1, CPU: cpu, MissingByRound: map[uint64]int64{},
	}
	if rc.publishEvery > 0 {
		res.ChannelMembers = n
	}
	if e := gateExit.Load(); e > 0 {
		res.GateExitS = round2(time.Duration(e).Seconds())
	}
	hist := func() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }
	hDisc, hRes, hRec, hLost := hist(), hist(), hist(), hist()
	var lastRes, lastLost time.Duration
	us := func(d time.Duration) int64 { return max(1, d.Microseconds()) }
	for i, r := range rs {
		r.mu.Lock()
		res.Pushes += r.pushes
		res.MissedPushes += r.missed
		res.DupPushes += r.dups
		res.TicksMissing += int64(len(r.ticks.missing()))
		res.TicksLate += r.ticks.late
		for _, round := range r.rounds.missing() {
			res.RoundsMissing++
			res.MissingByRound[round]++
		}
		res.RoundsLate += r.rounds.late
		if !r.disconnectedAt.IsZero() {
			res.Disconnected++
			_ = hDisc.RecordValue(us(r.disconnectedAt.Sub(t0)))
		}
		if !r.resumedAt.IsZero() {
			res.Resumed++
			d := r.resumedAt.Sub(t0)
			_ = hRes.RecordValue(us(d))
			lastRes = max(lastRes, d)
			if !r.disconnectedAt.IsZero() {
				_ = hRec.RecordValue(us(r.resumedAt.Sub(r.disconnectedAt)))
			}
			// Pushes keep coming after a resume to a session in the
			// channel or with a stream.
			if r.afterResume == 0 && r.lostAt.IsZero() && (rc.publishEvery > 0 || i < streams) {
				res.SilentAfter++
			}
		}
		if !r.lostAt.IsZero() {
			res.Lost++
			res.LostBy[lostKey(r.lostErr)]++
			d := r.lostAt.Sub(t0)
			_ = hLost.RecordValue(us(d))
			lastLost = max(lastLost, d)
		}
		if r.resumedAt.IsZero() && r.lostAt.IsZero() {
			res.Pending++
		}
		r.mu.Unlock()
	}
	res.TimeToDisc, res.TimeToResume, res.Reconnect, res.TimeToLost = summarize(hDisc), summarize(hRes), summarize(hRec), summarize(hLost)
	if res.Resumed == n {
		res.AllResumedS = round2(lastRes.Seconds())
	}
	if res.Lost == n {
		res.AllLostS = round2(lastLost.Seconds())
	}
	for k, v := range pubErrs {
		res.Errors[k] = v
	}
	if res.StreamsRefused > 0 {
		res.Errors["sys.push 203 overloaded"] = int64(res.StreamsRefused)
	}

	what := "drained with SIGTERM (KICK 303, resume on gate A)"
	if rc.kill {
		what = "killed with SIGKILL (sessions lost: 304)"
	}
	rep := &report{title: fmt.Sprintf("hearth bench resume: %d sessions on gate B of 2, %s, %s; gate B %s; server: %s",
		n, bf.transport, bf.codec, what, t.desc)}
	rep.add("sessions", "%s", FormatInt(int64(n)))
	rep.add("sys.push streams", "%s sessions, a sys.tick every %s (the server runs at most 1,000 per node)", FormatInt(int64(res.PushStreams)), rc.pushEvery)
	if rc.publishEvery > 0 {
		rep.add("channel", "%s sessions in \"bench\", a publish every %s from gate A (%s published)", FormatInt(int64(n)), rc.publishEvery, FormatInt(res.PublishedRounds))
	}
	rep.add("disconnected", "%s", FormatInt(int64(res.Disconnected)))
	rep.add("resumed", "%s", FormatInt(int64(res.Resumed)))
	rep.add("lost", "%s", FormatInt(int64(res.Lost)))
	if res.Pending > 0 {
		rep.add("neither", "%s (still reconnecting after --timeout %s)", FormatInt(int64(res.Pending)), rc.timeout)
	}
	keys := make([]string, 0, len(res.LostBy))
	for k := range res.LostBy {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rep.add("lost "+k, "%s", FormatInt(res.LostBy[k]))
	}
	rep.latencyRows("time to disconnected", res.TimeToDisc)
	if rc.kill {
		rep.latencyRows("time to lost", res.TimeToLost)
		if res.AllLostS > 0 {
			rep.add("all lost after", "%.2f s", res.AllLostS)
		}
	} else {
		rep.latencyRows("time to resume", res.TimeToResume)
		if res.AllResumedS > 0 {
			rep.add("all resumed after", "%.2f s", res.AllResumedS)
		}
		rep.add("reconnect p50", "%s (Disconnected → Resumed: the client's backoff, 50–100 ms, and the resume handshake)", fmtMS(res.Reconnect.P50))
		rep.add("reconnect p99", "%s", fmtMS(res.Reconnect.P99))
	}
	if res.GateExitS >= 0 {
		rep.add("gate B exited after", "%.2f s", res.GateExitS)
	} else {
		rep.add("gate B exited after", "- (still running at the end)")
	}
	rep.add("pushes received", "%s", FormatInt(res.Pushes))
	rep.add("missed pushes", "%s (gaps in push_seq)", FormatInt(res.MissedPushes))
	rep.add("duplicate pushes", "%s", FormatInt(res.DupPushes))
	rep.add("sys.tick missing", "%s (ticks never received, though a later one was)", FormatInt(res.TicksMissing))
	rep.add("sys.tick out of order", "%s", FormatInt(res.TicksLate))
	missing := ""
	if len(res.MissingByRound) > 0 {
		rounds := make([]uint64, 0, len(res.MissingByRound))
		for k := range res.MissingByRound {
			rounds = append(rounds, k)
		}
		slices.Sort(rounds)
		var parts []string
		for _, k := range rounds {
			parts = append(parts, fmt.Sprintf("round %d: %s", k, plural(res.MissingByRound[k], "session")))
		}
		missing = "; " + strings.Join(parts, ", ")
	}
	rep.add("bench.msg missing", "%s (channel messages never received, though a later one was%s)", FormatInt(res.RoundsMissing), missing)
	rep.add("bench.msg out of order", "%s", FormatInt(res.RoundsLate))
	if !rc.kill {
		rep.add("silent after resume", "%s (resumed sessions with no push in the %s after)", FormatInt(int64(res.SilentAfter)), rc.settle)
	}
	rep.errorRows(res.Errors)
	if cpuRow != "" {
		rep.add("cpu until all "+map[bool]string{false: "resumed", true: "lost"}[rc.kill], "%s", cpuRow)
	}
	rep.note("times are from the signal to gate B to each session's event (client.Options.OnEvent)")
	if res.RoundsMissing > 0 {
		rep.note("%s never reached a session that moved between gates, with no gap in its push_seq: published while it was handed over, they reached neither gate as its member (the old gate drops the membership at export, the new one joins after the export's answer)", plural(res.RoundsMissing, "channel message"))
	}
	if res.StreamsRefused > 0 {
		rep.note("sys.push refused %d streams with 203: a node runs at most 1,000; every session still gets the channel's pushes", res.StreamsRefused)
	}
	if !rc.kill && res.Lost > 0 {
		var first string
		for _, r := range rs {
			if r.lostErr != nil {
				first = r.lostErr.Error()
				break
			}
		}
		rep.note("sessions were lost in a drain; the first: %s", strings.TrimSpace(first))
	}
	serverNotes(rep, t)
	return res, rep, nil
}

// plural is "1 session", "2 sessions".
func plural(n int64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return FormatInt(n) + " " + what + "s"
}
