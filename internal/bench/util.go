package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/wire"
)

// dialParallel bounds the dials in progress at once.
const dialParallel = 64

// progress prints a single updating status line on stderr (\r, no newline)
// until stopped.
type progress struct {
	w    io.Writer
	fn   func(elapsed time.Duration) string
	t0   time.Time
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	last int
}

func startProgress(w io.Writer, fn func(elapsed time.Duration) string) *progress {
	p := &progress{w: w, fn: fn, t0: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.print(p.fn(time.Since(p.t0)))
			}
		}
	}()
	return p
}

func (p *progress) print(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pad := ""
	if n := p.last - len(line); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	fmt.Fprintf(p.w, "\r%s%s", line, pad)
	p.last = len(line)
}

// Stop ends the line, leaving its last state with a newline.
func (p *progress) Stop() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	<-p.done
	p.print(p.fn(time.Since(p.t0)))
	fmt.Fprintln(p.w)
}

// rate tracks a counter's rate between progress ticks.
type rate struct {
	lastN int64
	lastT time.Duration
}

func (r *rate) per(n int64, now time.Duration) float64 {
	dt := (now - r.lastT).Seconds()
	v := 0.0
	if dt > 0 {
		v = float64(n-r.lastN) / dt
	}
	r.lastN, r.lastT = n, now
	return v
}

// sameOptions gives every client of dialAll the options o.
func sameOptions(o client.Options) func(int) client.Options {
	return func(int) client.Options { return o }
}

// dialAll connects n clients, client i to urls[i%len(urls)] with opts(i),
// dialParallel at a time, and runs setup (if set) on each. On the first
// failure it closes what it opened and returns the error, explained.
func dialAll(ctx context.Context, n int, urls []string, opts func(i int) client.Options, external bool, done *atomic.Int64, setup func(i int, c *client.Client) error) ([]*client.Client, error) {
	clients := make([]*client.Client, n)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for w := 0; w < min(n, dialParallel); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				url := urls[i%len(urls)]
				c, err := client.Dial(ctx, url, opts(i))
				if err == nil && setup != nil {
					if err = setup(i, c); err != nil {
						c.Close()
					}
				}
				if err != nil {
					errOnce.Do(func() { firstErr = explainDial(url, i, err, external); cancel() })
					return
				}
				clients[i] = c
				if done != nil {
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		closeAll(clients)
		return nil, firstErr
	}
	return clients, nil
}

// explainDial turns a dial error into one that says what to do next.
func explainDial(url string, i int, err error, external bool) error {
	var ee *explainedError
	if errors.Is(err, context.Canceled) || errors.As(err, &ee) {
		return err
	}
	var we *wire.Error
	if errors.As(err, &we) {
		switch we.Code {
		case wire.CodeOverloaded, wire.CodeRateLimited:
			hint := "the server limits connections per IP (1000 at once and 100 new per second by default), and the whole benchmark comes from one IP"
			if external {
				hint += ": start the server with `hearth serve --max-conns-per-ip -1 --conn-rate-per-ip -1` (and --max-sessions above the session count) to benchmark it"
			}
			return fmt.Errorf("connection %d to %s refused with KICK %d (%s: %s); %s", i+1, url, we.Code, we.Code, we.Message, hint)
		}
		return fmt.Errorf("connection %d to %s refused with KICK %d (%s: %s)", i+1, url, we.Code, we.Code, we.Message)
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		if external {
			return fmt.Errorf("cannot connect to %s: is `hearth serve` running there? (%v)", url, err)
		}
		return fmt.Errorf("cannot connect to %s: the server refused the connection (%v)", url, err)
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return fmt.Errorf("connection %d: out of file descriptors (%v): raise the limit (ulimit -n) or use fewer sessions", i+1, err)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("connection %d: out of local ports (%v): wait for TIME_WAIT sockets to expire, or widen net.ipv4.ip_local_port_range", i+1, err)
	}
	return fmt.Errorf("connection %d to %s: %w", i+1, url, err)
}

// explainedError is an error that says what to do next by itself.
type explainedError struct{ msg string }

func (e *explainedError) Error() string { return e.msg }

// closeAll closes the clients (nil entries skipped), dialParallel at a time.
func closeAll(clients []*client.Client) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, dialParallel)
	for _, c := range clients {
		if c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c.Close()
		}()
	}
	wg.Wait()
}

// ensureFDs raises the open-file limit for about need descriptors, or
// explains why it cannot.
func ensureFDs(need uint64) error {
	have, err := raiseFDLimit(need)
	if err != nil {
		return fmt.Errorf("raise the open-file limit to %d: %w", need, err)
	}
	if have < need {
		return fmt.Errorf("this benchmark needs about %d open files but the limit is %d (hard limit %d): raise it (ulimit -n, or LimitNOFILE for a service), or use fewer sessions", need, have, fdHardLimit())
	}
	return nil
}

// fdsNeeded is the open files for n client connections: n in this process
// and n in the server, both here when it runs in-process.
func fdsNeeded(n int, inprocess bool) uint64 {
	need := uint64(n) + 256
	if inprocess {
		need += uint64(n)
	}
	return need
}

// latencyShards are histograms that goroutines record into without
// contending: each goroutine uses one shard (its own when there are no more
// goroutines than shards); they are merged at the end.
type latencyShards struct {
	shards []latencyShard
}

type latencyShard struct {
	mu   sync.Mutex
	h    *hdrhistogram.Histogram
	n    int64               // operations counted, in every phase
	errs map[wire.Code]int64 // errors while measuring
	_    [64]byte
}

// Latencies are recorded in microseconds, from 1 µs to 60 s, 3 digits.
const (
	histMin    = 1
	histMax    = 60_000_000
	histDigits = 3
	maxShards  = 256
)

func newLatencyShards(goroutines int) *latencyShards {
	n := max(1, min(goroutines, maxShards))
	ls := &latencyShards{shards: make([]latencyShard, n)}
	for i := range ls.shards {
		ls.shards[i].h = hdrhistogram.New(histMin, histMax, histDigits)
		ls.shards[i].errs = map[wire.Code]int64{}
	}
	return ls
}

func (ls *latencyShards) shard(i int) *latencyShard { return &ls.shards[i%len(ls.shards)] }

// count is the operations counted so far, in every phase.
func (ls *latencyShards) count() int64 {
	var n int64
	for i := range ls.shards {
		s := &ls.shards[i]
		s.mu.Lock()
		n += s.n
		s.mu.Unlock()
	}
	return n
}

// merged returns every shard's histogram merged, and the error counts.
func (ls *latencyShards) merged() (*hdrhistogram.Histogram, map[wire.Code]int64) {
	h := hdrhistogram.New(histMin, histMax, histDigits)
	errs := map[wire.Code]int64{}
	for i := range ls.shards {
		s := &ls.shards[i]
		s.mu.Lock()
		h.Merge(s.h)
		for c, n := range s.errs {
			errs[c] += n
		}
		s.mu.Unlock()
	}
	return h, errs
}

// Latency is a latency summary in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func summarize(h *hdrhistogram.Histogram) Latency {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{
		Count: h.TotalCount(),
		Mean:  math.Round(h.Mean()) / 1000,
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
}

func (r *report) latencyRows(prefix string, l Latency) {
	r.add(prefix+" p50", "%s", fmtMS(l.P50))
	r.add(prefix+" p90", "%s", fmtMS(l.P90))
	r.add(prefix+" p99", "%s", fmtMS(l.P99))
	r.add(prefix+" p99.9", "%s", fmtMS(l.P999))
	r.add(prefix+" max", "%s", fmtMS(l.Max))
}

// errorRows lists errors by code; "errors 0" when there are none.
func (r *report) errorRows(errs map[string]int64) {
	if len(errs) == 0 {
		r.add("errors", "0")
		return
	}
	keys := make([]string, 0, len(errs))
	for k := range errs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		r.add("errors "+k, "%s", FormatInt(errs[k]))
	}
}

// codeKey names a status code in the result: "200 rate limited".
func codeKey(c wire.Code) string { return strconv.Itoa(int(c)) + " " + c.String() }

func fmtMS(ms float64) string {
	switch {
	case ms < 1:
		return fmt.Sprintf("%.3f ms", ms)
	case ms < 100:
		return fmt.Sprintf("%.2f ms", ms)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

// FormatInt formats n with thousands separators.
func FormatInt(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func fmtRate(v float64) string { return FormatInt(int64(math.Round(v))) }

func fmtBytes(n int64) string {
	switch {
	case n >= 10<<30 || n <= -10<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20 || n <= -1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 10<<10 || n <= -10<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// cpuUse is CPU time spent over a wall-clock interval.
type cpuUse struct {
	Cores   float64 `json:"cores"`               // average cores busy
	PerOpUS float64 `json:"per_op_us,omitempty"` // CPU µs per operation
}

func newCPUUse(cpu, wall time.Duration, ops int64) *cpuUse {
	if wall <= 0 {
		return nil
	}
	u := &cpuUse{Cores: round2(cpu.Seconds() / wall.Seconds())}
	if ops > 0 {
		u.PerOpUS = round2(float64(cpu.Microseconds()) / float64(ops))
	}
	return u
}

// cpuSnap is the CPU time spent so far by the server, this process and the
// whole machine; for a cluster, also by each of its processes and by the
// NATS server.
type cpuSnap struct {
	at      time.Time
	srv     serverStats
	self    time.Duration
	machine MachineTimes
	members []time.Duration // a cluster's processes (-1: unreadable)
	nats    time.Duration   // -1: unknown
}

func (t *target) snap(ctx context.Context) cpuSnap {
	s := cpuSnap{srv: t.stats(ctx), self: selfCPU(), nats: -1}
	for _, m := range t.members {
		cpu, err := procCPU(m.pid)
		if err != nil {
			cpu = -1
		}
		s.members = append(s.members, cpu)
	}
	if t.natsPID != 0 {
		if cpu, err := procCPU(t.natsPID); err == nil {
			s.nats = cpu
		}
	}
	s.machine = ReadMachine()
	s.at = time.Now()
	return s
}

// cpuSplit is the CPU used between two snapshots: by the server, by this
// process, and by every other process on the machine.
type cpuSplit struct {
	Server  *cpuUse            `json:"server_cpu,omitempty"`
	Members map[string]*cpuUse `json:"server_cpu_by_process,omitempty"` // a cluster's processes
	NATS    *cpuUse            `json:"nats_cpu,omitempty"`              // a cluster's NATS server on this machine
	Bench   *cpuUse            `json:"bench_cpu,omitempty"`
	IRQ     *cpuUse            `json:"softirq_cpu,omitempty"`
	Other   *cpuUse            `json:"other_cpu,omitempty"`
	Stolen  *cpuUse            `json:"stolen_cpu,omitempty"` // by the hypervisor: see MachineTimes
}

// MachineTimes is the whole machine's CPU time so far (ReadMachine).
//
// Steal is the time this virtual machine's CPUs had work but the
// hypervisor ran another guest: on a VM that shares its host, the CPU a
// benchmark did not get, which makes the same build slower on some days
// than on others. It is not in Busy.
type MachineTimes struct {
	Busy  time.Duration // every CPU's time but idle, iowait and steal
	IRQ   time.Duration // the part of Busy in interrupts and softirqs
	Steal time.Duration
	OK    bool // false where the machine's times cannot be read
}

// parseStat reads MachineTimes from /proc/stat's first line: "cpu" and
// the times in ticks of user nice system idle iowait irq softirq steal
// (guest time is also in user).
func parseStat(b []byte, ticksPerSecond int64) MachineTimes {
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return MachineTimes{}
	}
	var m MachineTimes
	for i, s := range f[1:9] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			return MachineTimes{}
		}
		d := time.Duration(v) * time.Second / time.Duration(ticksPerSecond)
		switch i {
		case 3, 4: // idle, iowait
		case 5, 6:
			m.IRQ += d
			m.Busy += d
		case 7:
			m.Steal = d
		default:
			m.Busy += d
		}
	}
	m.OK = true
	return m
}

// Since is the CPU the machine used from a to m, in cores over wall: busy
// and stolen.
func (m MachineTimes) Since(a MachineTimes, wall time.Duration) (busy, stolen float64, ok bool) {
	if !m.OK || !a.OK || wall <= 0 {
		return 0, 0, false
	}
	return round2((m.Busy - a.Busy).Seconds() / wall.Seconds()), round2((m.Steal - a.Steal).Seconds() / wall.Seconds()), true
}

func splitCPU(a, b cpuSnap, ops int64, t *target) cpuSplit {
	wall := b.at.Sub(a.at)
	var c cpuSplit
	if a.srv.ok && b.srv.ok {
		c.Server = newCPUUse(b.srv.CPU-a.srv.CPU, wall, ops)
	}
	for i := range min(len(a.members), len(b.members), len(t.names)) {
		if a.members[i] >= 0 && b.members[i] >= 0 {
			if c.Members == nil {
				c.Members = map[string]*cpuUse{}
			}
			c.Members[t.names[i]] = newCPUUse(b.members[i]-a.members[i], wall, ops)
		}
	}
	if a.nats >= 0 && b.nats >= 0 {
		c.NATS = newCPUUse(b.nats-a.nats, wall, ops)
	}
	if b.self > 0 {
		c.Bench = newCPUUse(b.self-a.self, wall, ops)
	}
	if a.machine.OK && b.machine.OK {
		c.Stolen = newCPUUse(b.machine.Steal-a.machine.Steal, wall, 0)
	}
	if a.machine.OK && b.machine.OK && b.self > 0 {
		// Without IRQ_TIME_ACCOUNTING (most kernels) softirq time is
		// charged to the process it interrupted: it is in self and server.
		irq := b.machine.IRQ - a.machine.IRQ
		other := (b.machine.Busy - a.machine.Busy) - (b.self - a.self)
		if t.local() && c.Server != nil {
			other -= b.srv.CPU - a.srv.CPU
		}
		if c.NATS != nil {
			other -= b.nats - a.nats
		}
		c.IRQ = newCPUUse(irq, wall, 0)
		c.Other = newCPUUse(max(0, other), wall, 0)
	}
	return c
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// serverNotes reports what the bench's own server logged.
func serverNotes(r *report, t *target) {
	for i, m := range t.members {
		if m.logs != nil && m.logs.Count() > 0 {
			r.note("%s logged %d warnings or errors; the last ones:\n%s", t.names[i], m.logs.Count(), m.logs.String())
		}
	}
	if t.logs == nil {
		return
	}
	if n := t.logs.Count(); n > 0 {
		r.note("the server logged %d warnings or errors; the last ones:\n%s", n, t.logs.String())
	}
}

// runFor lets the clients run for d, checking every 250 ms whether all of
// them are gone (allLost then returns why) to stop early.
func runFor(ctx context.Context, d time.Duration, allLost func() error) error {
	end := time.Now().Add(d)
	for {
		left := time.Until(end)
		if left <= 0 {
			return nil
		}
		if err := sleepCtx(ctx, min(left, 250*time.Millisecond)); err != nil {
			return err
		}
		if err := allLost(); err != nil {
			return err
		}
	}
}
