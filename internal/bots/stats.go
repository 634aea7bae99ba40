package bots

import (
	"errors"
	"math"
	"math/bits"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/hearth-server/hearth/games/niuniu"
	"github.com/hearth-server/hearth/wire"
)

// Histograms record microseconds, 1 µs to 10 min: the parent's, which
// summarize, are HDR histograms with 3 significant digits (160 KiB each).
const (
	histMin    = 1
	histMax    = 600_000_000
	histDigits = 3
)

// lateLimit is the lateness past which a countdown counts as late.
const lateLimit = 50 * time.Millisecond

// hist is a histogram many goroutines record into, in few shards (records
// come thousands a second: the cores do not wait on each other), each
// under its own lock; the stats reporter takes what they hold once a
// second. Its buckets are log-linear: every value below histExact exact,
// then each power of two in histExact/2 steps (at most 1/1024 apart, what
// the parent's 3 digits keep). Its counts are fixed arrays, zeroed when
// taken: recording and taking allocate nothing but take's answer. A bot
// process's garbage is what makes it collect, and a collection delays the
// readers that time the countdowns.
type hist struct {
	next   atomic.Uint32
	shards [histShards]struct {
		mu sync.Mutex // guards n
		n  [histBuckets]int64
	}
	acc [histBuckets]int64 // take's scratch (the reporter's)
}

const (
	histShards  = 4
	histExact   = 2048                                  // values below are their own bucket
	histBits    = 11                                    // log2(histExact)
	histBuckets = histExact + (31-histBits)*histExact/2 // up to 2^31-1 µs (36 min)
)

// histIndex is v's bucket.
func histIndex(v int64) int {
	v = min(max(v, histMin), histMax)
	if v < histExact {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - histBits
	return histExact + (shift-1)*histExact/2 + int(v>>shift) - histExact/2
}

// histValue is the highest value of bucket i.
func histValue(i int) int64 {
	if i < histExact {
		return int64(i)
	}
	shift := (i-histExact)/(histExact/2) + 1
	m := int64((i-histExact)%(histExact/2) + histExact/2)
	return m<<shift + 1<<shift - 1
}

func newHist() *hist { return &hist{} }

func (h *hist) record(d time.Duration) {
	i := histIndex(d.Microseconds())
	s := &h.shards[h.next.Add(1)%histShards]
	s.mu.Lock()
	s.n[i]++
	s.mu.Unlock()
}

// take returns what was recorded since the last take, as buckets. Only
// the stats reporter calls it.
func (h *hist) take() []bucket {
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.Lock()
		for j, c := range s.n {
			if c != 0 {
				h.acc[j] += c
				s.n[j] = 0
			}
		}
		s.mu.Unlock()
	}
	var out []bucket
	for j, c := range h.acc {
		if c != 0 {
			out = append(out, bucket{histValue(j), c})
			h.acc[j] = 0
		}
	}
	return out
}

// bucket is one non-empty bar of a histogram: [value µs, count]. Workers
// send their histograms to the parent as buckets, a few hundred numbers
// instead of dense counts.
type bucket [2]int64

func addBuckets(h *hdrhistogram.Histogram, bs []bucket) {
	for _, b := range bs {
		_ = h.RecordValues(min(histMax, max(histMin, b[0])), b[1])
	}
}

// counters are what the bots of one process count. Every field is atomic:
// bot goroutines and their clients' push goroutines add to them, the
// reporter reads them.
type counters struct {
	started    atomic.Int64 // bots that began connecting
	loggedIn   atomic.Int64 // bots past the guest login
	seated     atomic.Int64 // bots seated at a table now (a gauge)
	everSeated atomic.Int64 // bots that were seated at some point
	failed     atomic.Int64 // bots that gave up (login, join or connection failed)
	rounds     atomic.Int64 // rounds completed, once per table (the lowest playing seat counts)
	unsettled  atomic.Int64 // …whose end said they could not be settled (View.Error)
	played     atomic.Int64 // rounds completed, once per bot that played them
	actions    atomic.Int64 // game actions answered (ok or error)
	lateMoves  atomic.Int64 // …refused because the phase had ended meanwhile
	countdowns atomic.Int64 // countdown-driven phase changes observed
	late       atomic.Int64 // …of which later than lateLimit (added with stats.lateTo, under stats.mu)
	broke      atomic.Int64 // bots removed for a balance below the table's minimum
	checked    atomic.Int64 // bots whose final balance was checked
	mismatched atomic.Int64 // …and did not match start + deltas
	undrained  atomic.Int64 // bots still in a round when the drain gave up
	seats      atomic.Int64 // seats per table, as the views show
}

// stats is one process's counters, errors and histograms.
type stats struct {
	counters
	action *hist // request → response of ready/grab/bet/open
	lag    *hist // countdown lateness: push arrival − the deadline announced before

	mu      sync.Mutex       // guards errs, why, lateTo and lateVia
	errs    map[string]int64 // by what failed and its code
	why     map[string]string
	lateTo  map[string]int64 // late countdowns by the phase they ended in ("ready" after "end", …)
	lateVia map[string]int64 // late countdowns by the gate their bot is on, its index in the urls
}

func newStats() *stats {
	return &stats{action: newHist(), lag: newHist(), errs: map[string]int64{}, why: map[string]string{}, lateTo: map[string]int64{}, lateVia: map[string]int64{}}
}

// lateInto counts a countdown observed late, by the phase it led to and
// the gate (its index in the urls) that brought it. The counts change
// under mu, and a snapshot reads them under it, so that they agree.
func (s *stats) lateInto(phase string, gate int) {
	s.mu.Lock()
	s.lateTo[phase]++
	s.lateVia[strconv.Itoa(gate)]++
	s.late.Add(1)
	s.mu.Unlock()
}

// slowWait is where a goroutine's wait for a CPU counts as slow: 10.49 ms,
// a boundary of the runtime's /sched/latencies histogram that the server's
// go_sched_latencies_seconds keeps, so that the bots' and the server's
// figures count the same thing.
const slowWait = 0.01048576

// schedWaits reads this process's /sched/latencies:seconds: how many times
// its goroutines became runnable, and how many of those waited longer than
// slowWait for a CPU.
func schedWaits() (all, slow uint64) {
	sample := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindFloat64Histogram {
		return 0, 0
	}
	h := sample[0].Value.Float64Histogram()
	for i, n := range h.Counts {
		all += n
		if h.Buckets[i] >= slowWait*(1-1e-9) { // the bucket's lower bound
			slow += n
		}
	}
	return all, slow
}

// fail counts an error under key (see errorKey) and keeps one message per
// key for the report.
func (s *stats) fail(key string, err error) {
	s.mu.Lock()
	s.errs[key]++
	if _, ok := s.why[key]; !ok && err != nil {
		s.why[key] = err.Error()
	}
	s.mu.Unlock()
}

// errorKey names an error for the report: what failed ("login", "grab",
// "connection") and the status code with its name when the server sent
// one, else a short class.
func errorKey(what string, err error) string {
	var we *wire.Error
	switch {
	case errors.As(err, &we):
		return what + " " + strconv.Itoa(int(we.Code)) + " " + codeName(we.Code)
	case errors.Is(err, errTimeout):
		return what + " timeout"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return what + " too many open files"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return what + " out of local ports"
	case errors.Is(err, syscall.ECONNREFUSED):
		return what + " refused"
	}
	return what + " failed"
}

// codeName names Niu Niu's application codes too.
func codeName(c wire.Code) string {
	switch c {
	case wire.Code(niuniu.CodeWrongPhase):
		return "wrong phase"
	case wire.Code(niuniu.CodeBadValue):
		return "bad multiplier"
	case wire.Code(niuniu.CodeNotInRound):
		return "not in round"
	case wire.Code(niuniu.CodeBanker):
		return "banker bets"
	case wire.Code(niuniu.CodeLowBalance):
		return "balance below minimum"
	case wire.Code(niuniu.CodeNoAccount):
		return "no account"
	case wire.Code(niuniu.CodeInRound):
		return "in round"
	}
	return c.String()
}

// Snapshot is one report of a process's bots: counters so far, errors so
// far, and the histograms recorded since the previous snapshot. Worker
// processes print one JSON line of it a second; the parent adds them up.
type Snapshot struct {
	Started    int64             `json:"started"`
	LoggedIn   int64             `json:"logged_in"`
	Seated     int64             `json:"seated"`
	EverSeated int64             `json:"ever_seated"`
	Failed     int64             `json:"failed"`
	Rounds     int64             `json:"rounds"`
	Unsettled  int64             `json:"unsettled"`
	Played     int64             `json:"played"`
	Actions    int64             `json:"actions"`
	LateMoves  int64             `json:"late_moves"`
	Countdowns int64             `json:"countdowns"`
	Late       int64             `json:"late"`
	Broke      int64             `json:"broke"`
	Checked    int64             `json:"checked"`
	Mismatched int64             `json:"mismatched"`
	Undrained  int64             `json:"undrained"`
	Seats      int64             `json:"seats"`
	Errors     map[string]int64  `json:"errors,omitempty"`
	Why        map[string]string `json:"why,omitempty"`
	ActionHist []bucket          `json:"action_hist,omitempty"` // since the last snapshot
	LagHist    []bucket          `json:"lag_hist,omitempty"`    // since the last snapshot
	LateTo     map[string]int64  `json:"late_to,omitempty"`     // late countdowns by the phase they led to
	LateVia    map[string]int64  `json:"late_via,omitempty"`    // …and by the gate, its index in the urls
	Waits      uint64            `json:"sched_waits"`           // times the process's goroutines became runnable
	SlowWaits  uint64            `json:"sched_slow_waits"`      // …and waited more than slowWait for a CPU
	MemBytes   uint64            `json:"mem_bytes"`             // the process's memory from the Go runtime
	CPUNanos   int64             `json:"cpu_ns"`                // the process's CPU time so far
	Final      bool              `json:"final,omitempty"`       // the last one: the bots are done
	Fatal      string            `json:"fatal,omitempty"`       // the worker failed as a whole
}

// snapshot reads the counters and takes the histograms.
func (s *stats) snapshot() Snapshot {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	sn := Snapshot{
		Started: s.started.Load(), LoggedIn: s.loggedIn.Load(), Seated: s.seated.Load(),
		EverSeated: s.everSeated.Load(), Failed: s.failed.Load(),
		Rounds: s.rounds.Load(), Unsettled: s.unsettled.Load(), Played: s.played.Load(), Actions: s.actions.Load(),
		LateMoves: s.lateMoves.Load(),
		Broke:     s.broke.Load(),
		Checked:   s.checked.Load(), Mismatched: s.mismatched.Load(), Undrained: s.undrained.Load(),
		Seats:      s.seats.Load(),
		ActionHist: s.action.take(), LagHist: s.lag.take(),
		MemBytes: ms.Sys - ms.HeapReleased,
		CPUNanos: int64(selfCPU()),
		Errors:   map[string]int64{}, Why: map[string]string{}, LateTo: map[string]int64{}, LateVia: map[string]int64{},
	}
	sn.Waits, sn.SlowWaits = schedWaits()
	s.mu.Lock()
	for k, v := range s.errs {
		sn.Errors[k] = v
	}
	for k, v := range s.lateTo {
		sn.LateTo[k] = v
	}
	for k, v := range s.lateVia {
		sn.LateVia[k] = v
	}
	// Late before Countdowns: a countdown is counted before it is counted
	// late, so a snapshot never has more late than observed.
	sn.Late = s.late.Load()
	sn.Countdowns = s.countdowns.Load()
	for k, v := range s.why {
		sn.Why[k] = v
	}
	s.mu.Unlock()
	return sn
}

// total is the bots of every process added up: the latest counters of
// each, and every histogram bucket so far. Its owner (run) guards it with
// a mutex: the sources add to it, the progress loop reads it.
type total struct {
	latest    []Snapshot // by process
	measuring bool       // the measured window is on: record into the win* histograms too
	action    *hdrhistogram.Histogram
	lag       *hdrhistogram.Histogram
	winAction *hdrhistogram.Histogram // in the measured window
	winLag    *hdrhistogram.Histogram
	tick      *hdrhistogram.Histogram // action latency since the last progress line
	lateWin   int64                   // countdowns late in the window
	countWin  int64                   // countdowns observed in the window
}

func newTotal(procs int) *total {
	h := func() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }
	return &total{latest: make([]Snapshot, procs), action: h(), lag: h(), winAction: h(), winLag: h(), tick: h()}
}

// add takes process i's snapshot.
func (t *total) add(i int, sn Snapshot) {
	addBuckets(t.action, sn.ActionHist)
	addBuckets(t.tick, sn.ActionHist)
	addBuckets(t.lag, sn.LagHist)
	if t.measuring {
		addBuckets(t.winAction, sn.ActionHist)
		addBuckets(t.winLag, sn.LagHist)
		t.lateWin += sn.Late - t.latest[i].Late
		t.countWin += sn.Countdowns - t.latest[i].Countdowns
	}
	sn.ActionHist, sn.LagHist = nil, nil
	t.latest[i] = sn
}

// sum is the processes' counters added up.
func (t *total) sum() Snapshot {
	s := Snapshot{Errors: map[string]int64{}, Why: map[string]string{}, LateTo: map[string]int64{}, LateVia: map[string]int64{}}
	for _, p := range t.latest {
		s.Started += p.Started
		s.LoggedIn += p.LoggedIn
		s.Seated += p.Seated
		s.EverSeated += p.EverSeated
		s.Failed += p.Failed
		s.Rounds += p.Rounds
		s.Unsettled += p.Unsettled
		s.Played += p.Played
		s.Actions += p.Actions
		s.LateMoves += p.LateMoves
		s.Countdowns += p.Countdowns
		s.Late += p.Late
		s.Broke += p.Broke
		s.Checked += p.Checked
		s.Mismatched += p.Mismatched
		s.Undrained += p.Undrained
		s.MemBytes += p.MemBytes
		s.CPUNanos += p.CPUNanos
		s.Waits += p.Waits
		s.SlowWaits += p.SlowWaits
		s.Seats = max(s.Seats, p.Seats)
		for k, v := range p.LateTo {
			s.LateTo[k] += v
		}
		for k, v := range p.LateVia {
			s.LateVia[k] += v
		}
		for k, v := range p.Errors {
			s.Errors[k] += v
		}
		for k, v := range p.Why {
			s.Why[k] = v
		}
	}
	return s
}

// errorCount is every error counted.
func (s Snapshot) errorCount() int64 {
	var n int64
	for _, v := range s.Errors {
		n += v
	}
	return n
}

// Latency is a latency summary in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func summarize(h *hdrhistogram.Histogram) Latency {
	ms := func(us int64) float64 { return math.Round(float64(us)) / 1000 }
	return Latency{
		Count: h.TotalCount(),
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		Max:   ms(h.Max()),
	}
}
