package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-server/hearth/wire"
)

// RPCResult is the result of `hearth bench rpc` (--json prints it).
type RPCResult struct {
	Bench           string           `json:"bench"`
	Transport       string           `json:"transport"`
	Codec           string           `json:"codec"`
	Clients         int              `json:"clients"`
	Pipeline        int              `json:"pipeline"`
	PayloadBytes    int              `json:"payload_bytes"`
	Server          string           `json:"server"`
	WarmupS         float64          `json:"warmup_s"`
	DurationS       float64          `json:"duration_s"`
	Requests        int64            `json:"requests"`
	ReqPerSec       float64          `json:"req_per_s"`
	Latency         Latency          `json:"latency"`
	Errors          map[string]int64 `json:"errors"`
	ConnectionsLost int              `json:"connections_lost"`
	cpuSplit
}

type rpcConfig struct {
	clients  int
	pipeline int
	payload  int
	duration time.Duration
	warmup   time.Duration
}

func benchRPC(ctx context.Context, args []string, opts options) int {
	var bf benchFlags
	var rc rpcConfig
	fs := newBenchFlagSet("rpc", "[--clients N] [--duration 10s] [--transport tcp|ws] [--codec json|protobuf] [--payload 40] [--pipeline 1] [--addr URL | --cluster [--nats URL]] [--json]", opts, &bf, "json")
	bf.clusterFlags(fs)
	fs.IntVar(&rc.clients, "clients", 64, "concurrent clients (connections)")
	fs.IntVar(&rc.pipeline, "pipeline", 1, "requests each client keeps outstanding")
	fs.IntVar(&rc.payload, "payload", 40, "request payload size in bytes (echoed back by sys.ping)")
	fs.DurationVar(&rc.duration, "duration", 10*time.Second, "measured time")
	fs.DurationVar(&rc.warmup, "warmup", 2*time.Second, "time run before measuring")
	if code, ok := bf.parse(fs, args, opts); !ok {
		return code
	}
	switch {
	case rc.clients < 1:
		return usageErr(opts, "rpc", "--clients must be at least 1")
	case rc.pipeline < 1 || rc.pipeline > 10_000:
		return usageErr(opts, "rpc", "--pipeline must be 1..10000")
	case rc.payload < 0 || rc.payload > wire.DefaultMaxFrame-512:
		return usageErr(opts, "rpc", "--payload must be 0..%d", wire.DefaultMaxFrame-512)
	case rc.duration <= 0 || rc.warmup < 0:
		return usageErr(opts, "rpc", "--duration must be positive and --warmup not negative")
	}
	res, rep, err := runRPC(ctx, &bf, rc, opts)
	if err != nil {
		return benchError(opts, "rpc", err)
	}
	emit(opts.Stdout, &bf, res, rep)
	return 0
}

func usageErr(opts options, name, format string, a ...any) int {
	fmt.Fprintf(opts.Stderr, "hearth bench %s: %s\n", name, fmt.Sprintf(format, a...))
	return 2
}

// pingPayload is a payload of n bytes in the codec: a JSON object or a
// protobuf message with one bytes field (n-1 bytes where the field's length
// varint grows). sys.ping echoes it.
func pingPayload(codec string, n int) []byte {
	if codec == wire.CodecJSON {
		if n < 9 {
			return []byte("{}")
		}
		return []byte(`{"p":"` + strings.Repeat("x", n-8) + `"}`)
	}
	if n < 3 {
		return nil
	}
	data := n - 2
	if data >= 128 {
		data = n - 3
		if data >= 1<<14 {
			data = n - 4
		}
	}
	b := []byte{0x0a}
	for v := uint64(data); ; v >>= 7 {
		if v < 0x80 {
			b = append(b, byte(v))
			break
		}
		b = append(b, byte(v)|0x80)
	}
	return append(b, strings.Repeat("x", data)...)
}

// Benchmark phases.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseDone
)

func runRPC(ctx context.Context, bf *benchFlags, rc rpcConfig, opts options) (*RPCResult, *report, error) {
	if err := ensureFDs(fdsNeeded(rc.clients, bf.inprocess)); err != nil {
		return nil, nil, err
	}
	stopProfile, err := bf.startCPUProfile()
	if err != nil {
		return nil, nil, err
	}
	defer stopProfile()
	t, err := startTarget(ctx, bf, serverNeeds{maxInFlight: rc.pipeline}, opts)
	if err != nil {
		return nil, nil, err
	}
	defer t.stop()

	var dialed atomic.Int64
	dialing := startProgress(opts.Stderr, func(el time.Duration) string {
		return fmt.Sprintf("rpc  connecting %s/%s clients to %s  %.1fs", FormatInt(dialed.Load()), FormatInt(int64(rc.clients)), t.dialDesc(), el.Seconds())
	})
	clients, err := dialAll(ctx, rc.clients, t.clientURLs(), sameOptions(bf.clientOptions()), t.external, &dialed, nil)
	dialing.Stop()
	if err != nil {
		return nil, nil, err
	}
	defer closeAll(clients)

	payload := pingPayload(bf.codec, rc.payload)
	workers := rc.clients * rc.pipeline
	shards := newLatencyShards(workers)
	var (
		phase   atomic.Int32
		lostErr atomic.Pointer[error] // why the first lost connection ended
		wg      sync.WaitGroup
	)
	firstLost := func() error {
		if p := lostErr.Load(); p != nil {
			return *p
		}
		return nil
	}
	lostClients := func() int {
		n := 0
		for _, c := range clients {
			select {
			case <-c.Done():
				n++
			default:
			}
		}
		return n
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for w := 0; w < workers; w++ {
		c := clients[w%rc.clients]
		sh := shards.shard(w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				t0 := time.Now()
				_, err := c.RequestRaw(wctx, "sys.ping", payload)
				d := time.Since(t0)
				ph := phase.Load()
				if ph == phaseDone || wctx.Err() != nil {
					return
				}
				var code wire.Code
				if err != nil {
					var we *wire.Error
					select {
					case <-c.Done():
					default:
						if errors.As(err, &we) {
							code = we.Code
							break
						}
						c.Close() // an error that is neither a response nor the end: give up on this client
					}
					if code == 0 {
						lostErr.CompareAndSwap(nil, &err)
						return
					}
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
			}
		}()
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
		s := fmt.Sprintf("rpc  %-9s %5.1fs  %s requests  %s req/s", state, el.Seconds(), FormatInt(n), fmtRate(r.per(n, el)))
		if l := lostClients(); l > 0 {
			s += fmt.Sprintf("  %d connections lost", l)
		}
		return s
	})
	// wait runs the clients for d, stopping early when every connection
	// has ended.
	wait := func(d time.Duration) error {
		return runFor(ctx, d, func() error {
			if lostClients() == len(clients) {
				return fmt.Errorf("every connection was lost; the first ended with: %v", firstLost())
			}
			return nil
		})
	}
	err = wait(rc.warmup)
	var (
		t0, t1         time.Time
		cpu0, cpu1     cpuSnap
		measureStarted bool
	)
	if err == nil {
		cpu0 = t.snap(ctx)
		t0 = time.Now()
		phase.Store(phaseMeasure)
		measureStarted = true
		err = wait(rc.duration)
		phase.Store(phaseDone)
		t1 = time.Now()
		cpu1 = t.snap(ctx)
	}
	phase.Store(phaseDone)
	cancel()
	wg.Wait()
	run.Stop()
	if err != nil {
		return nil, nil, err
	}
	if !measureStarted {
		return nil, nil, errors.New("stopped before measuring")
	}

	h, errs := shards.merged()
	wall := t1.Sub(t0)
	res := &RPCResult{
		Bench:           "rpc",
		Transport:       bf.transport,
		Codec:           bf.codec,
		Clients:         rc.clients,
		Pipeline:        rc.pipeline,
		PayloadBytes:    len(payload),
		Server:          t.desc,
		WarmupS:         rc.warmup.Seconds(),
		DurationS:       round2(wall.Seconds()),
		Requests:        h.TotalCount(),
		ReqPerSec:       round2(float64(h.TotalCount()) / wall.Seconds()),
		Latency:         summarize(h),
		Errors:          map[string]int64{},
		ConnectionsLost: lostClients(),
	}
	var nerr int64
	for c, n := range errs {
		res.Errors[codeKey(c)] = n
		nerr += n
	}
	res.cpuSplit = splitCPU(cpu0, cpu1, res.Requests, t)

	rep := &report{title: fmt.Sprintf("hearth bench rpc: %d clients, pipeline %d, %s, %s, %d-byte sys.ping, %s measured after %s warmup; server: %s",
		rc.clients, rc.pipeline, bf.transport, bf.codec, len(payload), wall.Round(time.Millisecond), rc.warmup, t.desc)}
	rep.add("requests", "%s", FormatInt(res.Requests))
	rep.add("throughput", "%s req/s", fmtRate(res.ReqPerSec))
	rep.latencyRows("latency", res.Latency)
	rep.errorRows(res.Errors)
	if res.ConnectionsLost > 0 {
		rep.add("connections lost", "%d", res.ConnectionsLost)
		rep.note("a connection ended during the run: %v", firstLost())
	}
	cpuRows(rep, res.cpuSplit, "request", t)
	if res.Requests == 0 && nerr == 0 {
		return nil, nil, fmt.Errorf("no request completed in %s (connections lost: %d, first error: %v)", wall, res.ConnectionsLost, firstLost())
	}
	rpcHints(rep, errs, t, rc)
	serverNotes(rep, t)
	return res, rep, nil
}

// cpuRows reports the CPU the server, this process and the rest of the
// machine used while measuring.
func cpuRows(rep *report, c cpuSplit, op string, t *target) {
	if c.Server != nil {
		rep.add("server cpu", "%.2f cores, %.1f µs per %s", c.Server.Cores, c.Server.PerOpUS, op)
	}
	if len(c.Members) > 0 {
		var parts []string
		for _, name := range t.names {
			if u := c.Members[name]; u != nil {
				parts = append(parts, fmt.Sprintf("%s %.2f", name, u.Cores))
			}
		}
		rep.add("server cpu by process", "%s cores", strings.Join(parts, ", "))
	}
	if c.NATS != nil {
		rep.add("nats-server cpu", "%.2f cores, %.1f µs per %s", c.NATS.Cores, c.NATS.PerOpUS, op)
	}
	if c.Bench != nil {
		name := "bench cpu"
		if t.desc == "in-process" {
			name = "cpu (server + bench)"
		}
		rep.add(name, "%.2f cores, %.1f µs per %s", c.Bench.Cores, c.Bench.PerOpUS, op)
	}
	if c.IRQ != nil {
		rep.add("softirq cpu", "%.2f cores (kernel network processing, mostly within the above)", c.IRQ.Cores)
	}
	if c.Stolen != nil {
		rep.add("stolen cpu", "%.2f cores (this VM's CPUs given to other guests by the hypervisor)", c.Stolen.Cores)
		if c.Stolen.Cores >= 0.05 {
			rep.note("the hypervisor took %.2f cores of this machine while measuring: the numbers are lower than the same build gives when the host is quiet; compare builds one after the other", c.Stolen.Cores)
		}
	}
	if c.Other != nil {
		rep.add("other processes cpu", "%.2f cores", c.Other.Cores)
		if t.external {
			rep.note("other processes include the server when it runs on this machine")
		} else if c.Other.Cores >= 0.1 {
			rep.note("other processes used %.2f cores of this machine while measuring: the numbers are lower than on an idle machine", c.Other.Cores)
		}
	}
}

// rpcHints explains flow-control errors.
func rpcHints(rep *report, errs map[wire.Code]int64, t *target, rc rpcConfig) {
	if errs[wire.CodeRateLimited] > 0 && t.external {
		rep.note("200 rate limited: the server limits requests per session (--session-rate, 1000/s by default); start it with --session-rate -1 to benchmark it")
	}
	if errs[wire.CodeTooManyInFlight] > 0 {
		rep.note("201 too many in flight: --pipeline %d is above the server's --max-inflight (64 by default)", rc.pipeline)
	}
	if errs[wire.CodeTimeout] > 0 || errs[wire.CodeOverloaded] > 0 {
		rep.note("302/203: the server could not keep up; try fewer clients or a smaller --pipeline")
	}
}
