package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/services/match"
	"github.com/hearth-server/hearth/wire"
)

// RoomsResult is the result of `hearth bench rooms` (--json prints it).
type RoomsResult struct {
	Bench         string           `json:"bench"`
	Rooms         int              `json:"rooms"`
	CreateSeconds float64          `json:"create_s"`
	RoomsPerSec   float64          `json:"rooms_per_s"`
	Timer         string           `json:"timer"`
	TimerSeconds  float64          `json:"timer_s"`
	TimerEvents   int64            `json:"timer_events"`
	EventsPerSec  float64          `json:"timer_events_per_s"`
	Lateness      Latency          `json:"timer_lateness"`
	JoinClients   int              `json:"join_clients"`
	Joins         int64            `json:"joins"`
	JoinsPerSec   float64          `json:"joins_per_s"`
	JoinLatency   Latency          `json:"join_latency"`
	JoinErrors    map[string]int64 `json:"join_errors,omitempty"`
}

type roomsConfig struct {
	rooms       int
	timer       time.Duration
	duration    time.Duration
	joinClients int
	joinFor     time.Duration
}

// benchRooms is `hearth bench rooms`: the room SDK on one node, in this
// process (rooms are a server-side figure: no client traffic but the
// match.join phase's).
func benchRooms(ctx context.Context, args []string, opts options) int {
	var bf benchFlags
	var rc roomsConfig
	fs := newBenchFlagSet("rooms", "[--rooms 10000] [--timer 100ms] [--duration 10s] [--join-clients 64] [--join-duration 5s] [--json]", opts, &bf, "json")
	fs.IntVar(&rc.rooms, "rooms", 10_000, "rooms to open, each with its own repeating timer")
	fs.DurationVar(&rc.timer, "timer", 100*time.Millisecond, "each room's timer interval")
	fs.DurationVar(&rc.duration, "duration", 10*time.Second, "how long to measure the timers")
	fs.IntVar(&rc.joinClients, "join-clients", 64, "clients calling match.join and leaving again, back to back")
	fs.DurationVar(&rc.joinFor, "join-duration", 5*time.Second, "how long to measure match.join")
	if code, ok := bf.parse(fs, args, opts); !ok {
		return code
	}
	switch {
	case bf.addr != "":
		return usageErr(opts, "rooms", "rooms runs its node in this process: no --addr")
	case rc.rooms < 1 || rc.timer <= 0 || rc.duration <= 0 || rc.joinClients < 1 || rc.joinFor <= 0:
		return usageErr(opts, "rooms", "--rooms, --timer, --duration, --join-clients and --join-duration must be positive")
	}
	stopProfile, err := bf.startCPUProfile()
	if err != nil {
		return benchError(opts, "rooms", err)
	}
	defer stopProfile()
	res, err := runRooms(ctx, rc, opts.Stderr)
	if err != nil {
		return benchError(opts, "rooms", err)
	}
	r := &report{title: fmt.Sprintf("hearth bench rooms: %d rooms on one node, a %s timer each", rc.rooms, rc.timer)}
	r.add("rooms opened", "%s in %.2fs: %s rooms/s", FormatInt(int64(res.Rooms)), res.CreateSeconds, fmtRate(res.RoomsPerSec))
	r.add("timer events", "%s in %.1fs: %s/s", FormatInt(res.TimerEvents), res.TimerSeconds, fmtRate(res.EventsPerSec))
	r.latencyRows("timer lateness ", res.Lateness)
	r.add("match.join", "%s by %d clients in %.1fs: %s joins/s", FormatInt(res.Joins), res.JoinClients, rc.joinFor.Seconds(), fmtRate(res.JoinsPerSec))
	r.latencyRows("match.join ", res.JoinLatency)
	r.errorRows(res.JoinErrors)
	r.note("one process: embedded NATS, the room node, the match service and the clients share the machine's cores")
	emit(opts.Stdout, &bf, res, r)
	return 0
}

// tickRoom is the timer phase's room: a repeating timer whose lateness
// (how long after its deadline the handler ran) goes into a histogram.
type tickRoom struct {
	hearth.BaseRoom
	every time.Duration
	lat   *shardedHist
	fired *atomic.Int64
}

func (t *tickRoom) Create(r *hearth.Room, _ map[string]string) error {
	r.Every(t.every, "tick")
	return nil
}

func (t *tickRoom) Timer(r *hearth.Room, tm *hearth.Timer) {
	late := time.Since(tm.Deadline())
	t.lat.record(r.ID(), late)
	t.fired.Add(1)
}

// shardedHist is a latency histogram rooms write from their own
// goroutines: each shard has its lock.
type shardedHist struct {
	on     atomic.Bool // recording; off while rooms open
	shards [64]struct {
		mu sync.Mutex
		h  *hdrhistogram.Histogram
	}
}

func newShardedHist() *shardedHist {
	s := &shardedHist{}
	for i := range s.shards {
		s.shards[i].h = hdrhistogram.New(histMin, histMax, histDigits)
	}
	return s
}

func (s *shardedHist) record(key string, d time.Duration) {
	if !s.on.Load() {
		return
	}
	var x uint32
	for i := 0; i < len(key); i++ {
		x = x*31 + uint32(key[i])
	}
	sh := &s.shards[x%uint32(len(s.shards))]
	sh.mu.Lock()
	_ = sh.h.RecordValue(max(d.Microseconds(), histMin))
	sh.mu.Unlock()
}

func (s *shardedHist) merged() *hdrhistogram.Histogram {
	out := hdrhistogram.New(histMin, histMax, histDigits)
	for i := range s.shards {
		s.shards[i].mu.Lock()
		out.Merge(s.shards[i].h)
		s.shards[i].mu.Unlock()
	}
	return out
}

func runRooms(ctx context.Context, rc roomsConfig, progress io.Writer) (RoomsResult, error) {
	res := RoomsResult{Bench: "rooms", Rooms: rc.rooms, Timer: rc.timer.String(), JoinClients: rc.joinClients}
	dir, err := os.MkdirTemp("", "hearth-bench-rooms")
	if err != nil {
		return res, err
	}
	defer func() { _ = os.RemoveAll(dir) }() // scratch space: best effort
	lat := newShardedHist()
	var fired atomic.Int64
	ticks := hearth.NewRoomType("ticks", hearth.RoomConfig{MaxRooms: rc.rooms}, func() hearth.RoomHandler {
		return &tickRoom{every: rc.timer, lat: lat, fired: &fired}
	})
	tables := hearth.NewRoomType("tables", hearth.RoomConfig{Seats: 4}, func() hearth.RoomHandler { return hearth.BaseRoom{} })
	node, err := hearth.New(hearth.Config{
		TCPAddr: "127.0.0.1:0", WSAddr: hearth.Off, AdminAddr: hearth.Off, DataDir: dir,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Limits: hearth.Limits{ConnRatePerIP: -1, MaxConnsPerIP: -1, RequestRate: -1},
	})
	if err != nil {
		return res, err
	}
	if err := node.Register(match.New(match.Config{}), ticks.Service(), tables.Service()); err != nil {
		return res, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- node.Run(runCtx) }()
	select {
	case <-node.Ready():
	case err := <-errc:
		return res, err
	}
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer scancel()
		_ = node.Shutdown(sctx)
	}()

	// match.join: clients join a 4-seat table, leave, and join again.
	fmt.Fprintf(progress, "match.join: %d clients for %s…\n", rc.joinClients, rc.joinFor)
	if err := benchJoins(ctx, node, rc, &res); err != nil {
		return res, err
	}

	// Rooms: open them all, from a few goroutines.
	fmt.Fprintf(progress, "opening %d rooms…\n", rc.rooms)
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var createErr atomic.Value
	for range 32 {
		wg.Go(func() {
			for next.Add(1) <= int64(rc.rooms) {
				if _, err := ticks.Create(ctx, false, nil); err != nil {
					createErr.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := createErr.Load().(error); err != nil {
		return res, fmt.Errorf("open a room: %w", err)
	}
	res.CreateSeconds = round2(time.Since(start).Seconds())
	res.RoomsPerSec = round2(float64(rc.rooms) / time.Since(start).Seconds())

	// Timers: let the rooms' timers settle for one interval, then measure.
	if err := sleepCtx(ctx, 2*rc.timer); err != nil {
		return res, err
	}
	fmt.Fprintf(progress, "measuring the timers for %s…\n", rc.duration)
	base := fired.Load()
	lat.on.Store(true)
	start = time.Now()
	if err := sleepCtx(ctx, rc.duration); err != nil {
		return res, err
	}
	lat.on.Store(false)
	elapsed := time.Since(start)
	res.TimerEvents = fired.Load() - base
	res.TimerSeconds = round2(elapsed.Seconds())
	res.EventsPerSec = round2(float64(res.TimerEvents) / elapsed.Seconds())
	res.Lateness = summarize(lat.merged())
	return res, nil
}

func benchJoins(ctx context.Context, node *hearth.Node, rc roomsConfig, res *RoomsResult) error {
	url := "tcp://" + node.Addr("tcp").String()
	clients := make([]*client.Client, rc.joinClients)
	defer closeAll(clients)
	for i := range clients {
		c, err := client.Dial(ctx, url, client.Options{})
		if err != nil {
			return fmt.Errorf("dial: %w", err)
		}
		clients[i] = c
	}
	shards := newLatencyShards(len(clients))
	var joins atomic.Int64
	stop := time.Now().Add(rc.joinFor)
	start := time.Now()
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			sh := shards.shard(i)
			for time.Now().Before(stop) && ctx.Err() == nil {
				t0 := time.Now()
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := c.RequestRaw(rctx, "match.join", []byte(`{"room_type":"tables"}`))
				if err == nil {
					sh.mu.Lock()
					_ = sh.h.RecordValue(max(time.Since(t0).Microseconds(), histMin))
					sh.mu.Unlock()
					joins.Add(1)
					_, err = c.RequestRaw(rctx, "match.leave", []byte(`{}`))
				}
				cancel()
				if err != nil {
					sh.mu.Lock()
					code := wire.CodeInternal // not an answer: counted as 500
					var we *wire.Error
					if errors.As(err, &we) {
						code = we.Code
					}
					sh.errs[code]++
					sh.mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	elapsed := time.Since(start)
	h, errs := shards.merged()
	res.Joins = joins.Load()
	for c, n := range errs {
		if res.JoinErrors == nil {
			res.JoinErrors = map[string]int64{}
		}
		res.JoinErrors[codeKey(c)] += n
	}
	res.JoinsPerSec = round2(float64(res.Joins) / elapsed.Seconds())
	res.JoinLatency = summarize(h)
	return nil
}
