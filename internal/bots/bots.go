// Package bots is `hearth bots`: N bot players, each its own client
// session over a real socket, that log in as guests, take a seat through
// match.join and play a game's rounds as people would (a think time before
// each move), for load tests that look like players rather than RPCs. It
// prints a progress line a second and a summary: rounds/s, action latency,
// how late the server's countdowns fire as clients see them, errors by
// code, and the server's CPU and memory.
//
// Without --addr it starts its own server, a child process of this binary
// (`hearth bots server`, i.e. `hearth serve` with the per-address limits
// lifted); for more bots than one process may hold sockets for (perGate),
// a cluster on the first node's embedded NATS: that node runs the tables,
// match, auth and lobby besides a gate, and gate-only nodes take the rest
// of the bots, spread evenly over every gate (or --tables-bots on the
// tables node's gate and the rest over the others). The
// bots themselves run in this process, or for more than perProc of them
// in worker processes (`hearth bots worker`, --procs) that print a JSON
// Snapshot line a second to the parent, which adds them up.
//
// The game is Niu Niu (niuniu.go); only the hearth binary links this
// package (cmd/hearth adds it to cli.Options.Commands).
package bots

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/hearth-server/hearth/cli"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/internal/bench"
	"github.com/hearth-server/hearth/internal/hugepage"
	"github.com/hearth-server/hearth/internal/testcluster"
)

// perProc is the most bots one process runs: a process may hold at most
// 20,000 open files on the machines this was written for.
const perProc = 15_000

const usageText = `Usage: hearth bots --players N [--game niuniu] [flags]

N bot players, each its own session: guest login, match.join, then rounds
of the game, moving after a think time as the table's pushes come. Prints a
progress line each second (stderr) and a summary (stdout).

Without --addr the bots start their own server (this binary's 'bots server':
'hearth serve' with the per-IP limits lifted), a cluster with one gate per
15,000 bots when there are more; the bots run in worker processes of 15,000
at most (--procs). Flags:
`

// config is the command's flags.
type config struct {
	players    int
	game       string
	roomType   string
	addr       string
	adminURL   string
	natsURL    string // --nats: the own server's bus, instead of an embedded NATS
	transport  string
	duration   time.Duration
	think      string
	thinkMin   time.Duration
	thinkMax   time.Duration
	ramp       float64
	procs      int
	gates      int
	tablesBots int // --tables-bots: bots on the tables node's gate (0: an even share)
	drain      time.Duration
	jsonOut    bool
	insecure   bool
	srvProfile string
	srvLog     string
	dumpDir    string        // --dump-stalls
	dumpAfter  time.Duration // --dump-stalls-after
	cpuProfile string
	seed       uint64
	serverArgs []string // after "--": more serve flags for the own server
	serverEnv  []string // --server-env: [PROCESS:]KEY=VALUE for the own server's processes
}

// Main is `hearth bots`: cmd/hearth plugs it into cli.Main as the command
// "bots", so that a game's own binary does not link it.
func Main(ctx context.Context, args []string, opts cli.Options) int {
	if len(args) > 0 {
		switch args[0] {
		case "worker":
			return workerCmd(ctx, args[1:], opts)
		case "server":
			return serveCmd(ctx, args[1:], opts)
		}
	}
	cf, code, ok := parseFlags(args, opts)
	if !ok {
		return code
	}
	collectSeldom()
	if cf.cpuProfile != "" && cf.procs == 1 {
		stop, err := bench.StartCPUProfile(cf.cpuProfile, "hearth bots", opts.Stderr)
		if err != nil {
			fmt.Fprintf(opts.Stderr, "hearth bots: %v\n", err)
			return 1
		}
		defer stop()
	}
	res, err := run(ctx, cf, opts, []string{"bots"})
	if res != nil {
		emit(opts.Stdout, cf, res)
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(opts.Stderr, "hearth bots: interrupted")
			return 130
		}
		fmt.Fprintf(opts.Stderr, "hearth bots: %v\n", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, opts cli.Options) (*config, int, bool) {
	cf := &config{}
	fs := flag.NewFlagSet("hearth bots", flag.ContinueOnError)
	fs.SetOutput(opts.Stderr)
	fs.Usage = func() {
		fmt.Fprint(opts.Stderr, usageText)
		fs.PrintDefaults()
	}
	fs.IntVar(&cf.players, "players", 100, "bot players, each its own connection and guest account")
	fs.StringVar(&cf.game, "game", "niuniu", "the game the bots play: niuniu")
	fs.StringVar(&cf.roomType, "room-type", "niuniu_100", "the room type they join (match.join)")
	fs.StringVar(&cf.addr, "addr", "", "play on a running server: its client URL (tcp://, tls://, ws://…/ws, wss://…/ws), or several gates' URLs, comma-separated; default: start one")
	fs.StringVar(&cf.natsURL, "nats", "", "without --addr: the NATS server (nats://host:port) the own server's processes use as their bus, instead of the first one's embedded NATS")
	fs.StringVar(&cf.adminURL, "admin-url", "", "with --addr: the server's admin listener(s), comma-separated, whose /metrics give its CPU and memory")
	fs.StringVar(&cf.transport, "transport", "tcp", "tcp or ws (without --addr)")
	fs.DurationVar(&cf.duration, "duration", 60*time.Second, "how long the bots play once all have started")
	fs.StringVar(&cf.think, "think", "200ms-1s", "think time before each move, uniformly random in MIN-MAX (or one fixed duration)")
	fs.Float64Var(&cf.ramp, "ramp", 200, "bots started per second (each connects and logs in)")
	fs.IntVar(&cf.procs, "procs", 0, "processes the bots run in (0: one per 15,000 bots; more than one: worker processes of this binary)")
	fs.IntVar(&cf.tablesBots, "tables-bots", 0, "without --addr, with a cluster: how many bots play on the tables' node's own gate, the rest spread over the gate-only processes (0: an even share of every gate)")
	fs.IntVar(&cf.gates, "gates", 0, "without --addr: the own server's processes the bots connect to (0: one per 15,000 bots; more than one: a cluster, the first of them also running the tables)")
	fs.DurationVar(&cf.drain, "drain", 60*time.Second, "at the end, how long the bots have to finish their rounds before they are abandoned")
	fs.BoolVar(&cf.jsonOut, "json", false, "print the summary as JSON")
	fs.BoolVar(&cf.insecure, "insecure", false, "with tls:// or wss://, do not verify the server's certificate")
	fs.StringVar(&cf.srvProfile, "server-cpuprofile", "", "write the own server's CPU profile to this file (a cluster: FILE with each node's id before the extension)")
	fs.StringVar(&cf.srvLog, "server-log", "", "write all of the own server's log (its stderr) to this file as it comes (a cluster: FILE with each node's id before the extension)")
	fs.StringVar(&cf.dumpDir, "dump-stalls", "", "when the progress line's action p99 passes --dump-stalls-after, save every server process's goroutines (/debug/pprof/goroutine?debug=2 on its admin listener) in this directory: at most one set per 10s, 20 in a run")
	fs.DurationVar(&cf.dumpAfter, "dump-stalls-after", 3*time.Second, "the action p99 (over the last second) past which --dump-stalls saves goroutines")
	fs.StringVar(&cf.cpuProfile, "cpuprofile", "", "write the bots' CPU profile to this file (with --procs above 1: FILE with each bot process's number before the extension)")
	fs.Uint64Var(&cf.seed, "seed", 0, "seed of the bots' choices and think times (0: random)")
	fs.Func("server-env", "[PROCESS:]KEY=VALUE in the environment of the own server's processes only, not the bots' (repeatable): e.g. GOGC=200 or GOMAXPROCS=4 to try a runtime setting on the server; with PROCESS (tables, gate-1, …; server for one process) on that process alone", func(v string) error {
		k, _, ok := strings.Cut(v, "=")
		if node, key, prefixed := strings.Cut(k, ":"); prefixed && (node == "" || key == "") {
			ok = false
		}
		if !ok || k == "" || strings.ContainsAny(k, " \t\n") {
			return errors.New("want KEY=VALUE or PROCESS:KEY=VALUE")
		}
		cf.serverEnv = append(cf.serverEnv, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0, false
		}
		return nil, 2, false
	}
	fail := func(format string, a ...any) (*config, int, bool) {
		fmt.Fprintf(opts.Stderr, "hearth bots: "+format+"\n", a...)
		return nil, 2, false
	}
	if rest := fs.Args(); len(rest) > 0 {
		if i := len(args) - len(rest) - 1; i < 0 || args[i] != "--" {
			return fail("unexpected argument %q (flags start with --; serve flags for the own server go after --)", rest[0])
		}
		cf.serverArgs = rest
	}
	var err error
	if cf.thinkMin, cf.thinkMax, err = parseThink(cf.think); err != nil {
		return fail("--think %q: %v", cf.think, err)
	}
	switch {
	case cf.players < 1:
		return fail("--players must be at least 1")
	case cf.game != "niuniu":
		return fail("--game %q: the bots play niuniu", cf.game)
	case cf.roomType == "":
		return fail("--room-type is empty")
	case cf.transport != "tcp" && cf.transport != "ws":
		return fail("--transport %q: use tcp or ws", cf.transport)
	case cf.duration <= 0:
		return fail("--duration must be positive")
	case cf.ramp <= 0:
		return fail("--ramp must be positive (bots started per second)")
	case cf.procs < 0 || cf.gates < 0:
		return fail("--procs and --gates must not be negative (0: automatic)")
	case cf.tablesBots < 0 || cf.tablesBots > cf.players:
		return fail("--tables-bots %d: want 0 (an even share) up to --players %d", cf.tablesBots, cf.players)
	case cf.tablesBots > 0 && cf.addr == "" && cf.serverGates() < 2:
		return fail("--tables-bots is for a cluster of the own server: more than %d bots, or --gates 2 or more", perGate)
	case cf.drain <= 0:
		return fail("--drain must be positive")
	case cf.dumpAfter <= 0:
		return fail("--dump-stalls-after must be positive")
	}
	if cf.procs == 0 {
		cf.procs = (cf.players + perProc - 1) / perProc
	}
	if cf.procs > cf.players {
		return fail("--procs %d is more than --players %d", cf.procs, cf.players)
	}
	if cf.addr != "" {
		var urls []string
		for _, u := range strings.Split(cf.addr, ",") {
			u = strings.TrimSpace(u)
			scheme, _, ok := strings.Cut(u, "://")
			if !ok {
				u, scheme = "tcp://"+u, "tcp"
			}
			switch scheme {
			case "tcp", "tls":
			case "ws", "wss":
			default:
				return fail("--addr %q: the scheme must be tcp, tls, ws or wss", u)
			}
			urls = append(urls, u)
		}
		cf.addr = strings.Join(urls, ",")
		switch {
		case cf.srvProfile != "":
			return fail("--server-cpuprofile needs the bots' own server (no --addr); profile your server yourself")
		case cf.srvLog != "":
			return fail("--server-log needs the bots' own server (no --addr); the server at --addr writes its own log")
		case cf.tablesBots != 0:
			return fail("--tables-bots needs the bots' own server (no --addr); with --addr the bots spread evenly over the URLs given")
		case cf.dumpDir != "" && cf.adminURL == "":
			return fail("--dump-stalls with --addr needs --admin-url: the goroutines come from the admin listeners")
		case cf.gates != 0:
			return fail("--gates is for the bots' own server (no --addr)")
		case len(cf.serverArgs) > 0:
			return fail("serve flags after -- are for the bots' own server (no --addr)")
		case len(cf.serverEnv) > 0:
			return fail("--server-env is for the bots' own server (no --addr)")
		case cf.natsURL != "":
			return fail("--nats is for the bots' own server (no --addr); the server at --addr has its own bus")
		}
	} else if cf.adminURL != "" {
		return fail("--admin-url is for --addr; the bots read their own server's metrics")
	}
	if cf.seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		cf.seed = binary.LittleEndian.Uint64(b[:])
	}
	return cf, 0, true
}

// parseThink parses "MIN-MAX" or one duration.
func parseThink(s string) (lo, hi time.Duration, err error) {
	a, b, ranged := strings.Cut(s, "-")
	if lo, err = time.ParseDuration(strings.TrimSpace(a)); err != nil {
		return 0, 0, fmt.Errorf("want MIN-MAX, e.g. 200ms-1s: %w", err)
	}
	hi = lo
	if ranged {
		if hi, err = time.ParseDuration(strings.TrimSpace(b)); err != nil {
			return 0, 0, fmt.Errorf("want MIN-MAX, e.g. 200ms-1s: %w", err)
		}
	}
	if lo < 0 || hi < lo {
		return 0, 0, errors.New("want 0 ≤ MIN ≤ MAX")
	}
	return lo, hi, nil
}

// clientOptions are every bot's client options.
func clientOptions(insecure bool, urls []string) client.Options {
	// The bots' push handlers (onView, onRemoved, login's auth.admitted)
	// are quick, never block and keep nothing of a payload: they run on
	// each client's reader, which saves a goroutine hand-off per push.
	o := client.Options{Codec: "json", Name: "hearth-bots/" + cli.Version, HandshakeTimeout: 30 * time.Second, PushOnReader: true}
	for _, u := range urls {
		if strings.HasPrefix(u, "tls://") || strings.HasPrefix(u, "wss://") {
			o.TLS = &tls.Config{InsecureSkipVerify: insecure} //nolint:gosec // the user asked for it
		}
	}
	return o
}

// source is one process's bots as the parent sees them.
type source struct {
	stop  func()               // tell the bots to stop playing
	final chan struct{}        // closed once the final snapshot is in
	logs  *testcluster.LogTail // a worker's stderr; nil in-process
}

// Result is the summary of a run (--json prints it).
type Result struct {
	Game       string  `json:"game"`
	RoomType   string  `json:"room_type"`
	Transport  string  `json:"transport"`
	Server     string  `json:"server"`
	Players    int     `json:"players"`
	Procs      int     `json:"bot_processes"`
	Think      string  `json:"think"`
	Ramp       float64 `json:"ramp_per_s"`
	RampS      float64 `json:"ramp_s"`     // from the start until every bot had started
	DurationS  float64 `json:"duration_s"` // the measured window: every bot started until stop
	Seated     int64   `json:"seated"`     // at the end of the window
	EverSeated int64   `json:"ever_seated"`
	Failed     int64   `json:"failed"` // bots that could not play on
	Tables     float64 `json:"tables"` // seated ÷ seats per table
	Rounds     int64   `json:"rounds"` // completed, in all
	RoundsWin  int64   `json:"rounds_in_window"`
	Unsettled  int64   `json:"rounds_unsettled"` // ended with "could not be settled"
	RoundsPerS float64 `json:"rounds_per_s"`     // in the window
	Actions    int64   `json:"actions"`
	LateMoves  int64   `json:"late_moves"`          // refused: the phase's countdown ended while the move was on its way
	Action     Latency `json:"action_latency"`      // in the window
	Countdowns int64   `json:"countdowns_observed"` // in the window
	Lateness   Latency `json:"countdown_lateness"`  // in the window
	Late       int64   `json:"countdowns_late"`     // in the window, observed more than 50 ms late
	// The window's late countdowns by the phase they led to: "ready" is the
	// end of a round's closing pause, the one countdown every round runs out.
	LateTo map[string]int64 `json:"countdowns_late_by_phase,omitempty"`
	// …and by the gate that brought them to their bot (its node's id, or
	// its address for --addr), with more than one gate.
	LateVia map[string]int64 `json:"countdowns_late_by_gate,omitempty"`
	// The same over the whole run, the ramp and the end included.
	AllAction     Latency          `json:"action_latency_all"`
	AllCountdowns int64            `json:"countdowns_observed_all"`
	AllLateness   Latency          `json:"countdown_lateness_all"`
	AllLate       int64            `json:"countdowns_late_all"`
	Errors        map[string]int64 `json:"errors"`
	Checked       int64            `json:"balances_checked"`
	Mismatched    int64            `json:"balance_mismatches"`
	Broke         int64            `json:"broke"`
	Undrained     int64            `json:"undrained"`
	// Room timers the server ran in the window, and those it ran more than
	// 50 ms after their deadline (its hearth_room_timer_lateness_seconds):
	// the countdowns' lateness at the source, without the delivery.
	ServerTimers     *int64 `json:"server_timers,omitempty"`
	ServerTimersLate *int64 `json:"server_timers_late,omitempty"`
	// Pushes of the server's services (the tables' views) that its gates
	// wrote in the window, and those written more than 50 ms after the
	// room sent them (hearth_push_delay_seconds): the delivery's share at
	// the server, from the room through the bus and the gate to the socket.
	ServerPushes     *int64 `json:"server_pushes,omitempty"`
	ServerPushesLate *int64 `json:"server_pushes_late,omitempty"`
	// With a server of several processes, each one's CPU in the window
	// (cores) and its late pushes, by process name (with --addr, by admin
	// URL): which process the delivery is late in.
	ServerCPUBy        map[string]float64 `json:"server_cpu_cores_by_process,omitempty"`
	ServerPushesLateBy map[string]int64   `json:"server_pushes_late_by_process,omitempty"`
	// In the window, how often goroutines became runnable and how many of
	// those waited more than 10.49 ms for a CPU (go_sched_latencies_seconds,
	// /sched/latencies:seconds), in the server's processes and in the
	// bots': a machine short of cores shows here, whoever's work is late.
	ServerWaits     *uint64  `json:"server_sched_waits,omitempty"`
	ServerSlowWaits *uint64  `json:"server_sched_slow_waits,omitempty"`
	BotsWaits       uint64   `json:"bots_sched_waits"`
	BotsSlowWaits   uint64   `json:"bots_sched_slow_waits"`
	ServerCPU       *float64 `json:"server_cpu_cores,omitempty"` // in the window
	CPUPerTbl       *float64 `json:"server_cpu_ms_per_s_per_table,omitempty"`
	CPUPerRnd       *float64 `json:"server_cpu_ms_per_round,omitempty"`
	ServerRSS       int64    `json:"server_rss_bytes,omitempty"`
	ServerHuge      *int64   `json:"server_huge_page_bytes,omitempty"` // of ServerRSS, on 2 MiB pages; nil: a server without the metric
	BotsMem         int64    `json:"bots_mem_bytes"`
	BotsCPU         *float64 `json:"bots_cpu_cores,omitempty"` // in the window, every bot process
	// Client sessions open in each of the server's processes at the end
	// of the window, by process name (with --addr, by admin URL).
	ServerSessions map[string]int64 `json:"server_sessions_by_process,omitempty"`
	// In the window, the whole machine's busy CPU (every process, the
	// kernel's included) and the CPU the hypervisor gave other guests
	// while this VM had work (steal): what the bots and the server did not
	// get, which differs from day to day on a shared host.
	MachineCPU *float64 `json:"machine_cpu_cores,omitempty"`
	StolenCPU  *float64 `json:"stolen_cpu_cores,omitempty"`
	LoadStart  string   `json:"load_average_start,omitempty"`
	LoadEnd    string   `json:"load_average_end,omitempty"`
	// The machine's transparent huge page mode (always, madvise, never;
	// "" off Linux, and with --addr) at the end. Under any but always the
	// server's heap is on 4 KiB pages unless the server asks for huge
	// pages (--huge-pages; ServerHuge says how much is on them), which at
	// 15,000 bots on a slow day made 24–79 times as many countdowns late
	// (docs/benchmarks.md § bots, sessions 29 and 30).
	HugePages string `json:"transparent_huge_pages,omitempty"`
	// What a system call and a loopback write cost on this machine just
	// before the run (nil: the probe failed, noted in Notes).
	Probe *machineProbe `json:"machine_probe,omitempty"`
	Notes []string      `json:"notes,omitempty"`
}

// run runs the bots; self are the arguments that run this command in this
// binary (workers are self + "worker", the server self + "server"). On an
// error after the bots started it returns what it measured too.
func run(ctx context.Context, cf *config, opts cli.Options, self []string) (*Result, error) {
	limit, err := raiseFDLimit()
	if err != nil {
		return nil, fmt.Errorf("raise the open-file limit: %w", err)
	}
	perProcess := (cf.players + cf.procs - 1) / cf.procs
	if uint64(perProcess)+200 > limit {
		return nil, fmt.Errorf("%d bots in one process need about %d open files but the limit is %d: use --procs %d or more", perProcess, perProcess+200, limit, (cf.players+int(limit)-201)/max(1, int(limit)-200))
	}
	res := &Result{
		Game: cf.game, RoomType: cf.roomType, Transport: cf.transport, Players: cf.players, Procs: cf.procs,
		Think: cf.think, Ramp: cf.ramp, LoadStart: loadAverage(),
	}
	// Before anything starts, so that the probe times an idle machine.
	if p, err := probeMachine(); err != nil {
		res.Notes = append(res.Notes, "machine probe failed: "+err.Error())
	} else {
		res.Probe = p
	}
	var srv *server
	if cf.addr != "" {
		srv = &server{urls: strings.Split(cf.addr, ","), desc: "external " + cf.addr, stop: func() {}}
		if cf.adminURL != "" {
			srv.admins = strings.Split(cf.adminURL, ",")
		}
		if strings.HasPrefix(srv.urls[0], "ws") {
			res.Transport = "ws"
		}
	} else {
		if g := cf.serverGates(); g > 1 {
			fmt.Fprintf(opts.Stderr, "bots  starting a server cluster of %d processes: the tables' node and %d gate-only, the bots spread over all %d\n", g, g-1, g)
		}
		if srv, err = startServer(ctx, cf, self); err != nil {
			return nil, err
		}
	}
	defer srv.stop()
	res.Server = srv.desc
	var dumps *stallDumper // nil without --dump-stalls: its methods do nothing
	if cf.dumpDir != "" {
		if dumps, err = newStallDumper(ctx, cf.dumpDir, cf.dumpAfter, srv.admins, srv.names); err != nil {
			return nil, err
		}
	}

	tot := newTotal(cf.procs)
	var totMu sync.Mutex // guards tot: sources add to it, the loop below reads it
	add := func(i int, sn Snapshot) {
		totMu.Lock()
		tot.add(i, sn)
		totMu.Unlock()
	}
	runID := make([]byte, 4)
	_, _ = rand.Read(runID)
	rc := runConfig{
		urls: srv.urls, game: cf.game, roomType: cf.roomType, runID: hex.EncodeToString(runID),
		thinkMin: cf.thinkMin, thinkMax: cf.thinkMax, drain: cf.drain, seed: cf.seed,
		client: clientOptions(cf.insecure, srv.urls),
	}
	if cf.tablesBots > 0 && len(srv.urls) > 1 {
		rc.gate0, rc.all = cf.tablesBots, cf.players // urls[0] is the tables' node
	}
	var sources []*source
	for i := range cf.procs {
		first := i * perProcess
		n := min(perProcess, cf.players-first)
		if n <= 0 {
			break
		}
		pc := rc
		pc.first, pc.players = first, n
		pc.ramp = cf.ramp * float64(n) / float64(cf.players)
		var s *source
		if cf.procs == 1 {
			s = startLocal(ctx, pc, func(sn Snapshot) { add(i, sn) })
		} else if s, err = startWorker(ctx, pc, cf.insecure, workerProfile(cf.cpuProfile, i), self, func(sn Snapshot) { add(i, sn) }); err != nil {
			for _, s := range sources {
				s.stop()
			}
			return nil, err
		}
		sources = append(sources, s)
	}
	stopAll := func() {
		for _, s := range sources {
			s.stop()
		}
	}
	defer stopAll()

	pr := newProgress(opts.Stderr)
	t0 := time.Now()
	var (
		rampedAt, stoppedAt time.Time
		atRamp, atStop      Snapshot
		cpuRamp, cpuStop    usage
		machRamp, machStop  bench.MachineTimes
		lastRounds          int64
		lastT               = t0
		failure             error
	)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	allFinal := make(chan struct{})
	go func() {
		for _, s := range sources {
			<-s.final
		}
		close(allFinal)
	}()
	finished := false
	for !finished {
		select {
		case <-ctx.Done():
			failure = ctx.Err()
			finished = true
			continue
		case <-allFinal:
			finished = true
		case <-tick.C:
		}
		now := time.Now()
		totMu.Lock()
		sum := tot.sum()
		window := summarize(tot.tick)
		tot.tick.Reset()
		// The window opens and closes with the sum it starts and ends at,
		// under one lock: no process's snapshot falls between the two.
		opens := rampedAt.IsZero() && sum.Started >= int64(cf.players)
		closes := !rampedAt.IsZero() && stoppedAt.IsZero() && now.Sub(rampedAt) >= cf.duration
		if opens || closes {
			tot.measuring = opens
		}
		totMu.Unlock()
		state := ""
		switch {
		case opens:
			rampedAt, atRamp, cpuRamp, machRamp = now, sum, srv.usage(ctx), bench.ReadMachine()
			state = "playing"
		case rampedAt.IsZero():
			state = "starting"
			if sum.Failed >= int64(min(cf.players, 20)) && sum.EverSeated == 0 {
				failure = fmt.Errorf("no bot could sit down: %s", explain(sum, cf.addr != ""))
				stopAll()
			}
		case closes:
			stoppedAt, atStop, cpuStop, machStop = now, sum, srv.usage(ctx), bench.ReadMachine()
			stopAll()
			state = "stopping"
		case stoppedAt.IsZero():
			state = fmt.Sprintf("playing %s/%s", now.Sub(rampedAt).Truncate(time.Second), cf.duration)
		default:
			state = "finishing rounds"
		}
		if failure != nil || finished {
			break // the last tick's rate would be over a moment
		}
		rps := float64(sum.Rounds-lastRounds) / now.Sub(lastT).Seconds()
		lastRounds, lastT = sum.Rounds, now
		if msg := dumps.take(); msg != "" {
			pr.note(msg)
		}
		pr.line(fmt.Sprintf("bots  seated %s/%s  rounds/s %.1f  action p99 %s  late>50ms %d  errors %d  %s  %.0fs",
			bench.FormatInt(sum.Seated), bench.FormatInt(int64(cf.players)), rps, fmtMS(window.P99), sum.Late, sum.errorCount(), state, now.Sub(t0).Seconds()))
		dumps.check(now, window.P99)
	}
	pr.end()
	if msg := dumps.wait(); msg != "" {
		fmt.Fprintln(opts.Stderr, msg)
	}
	if failure != nil && !errors.Is(failure, context.Canceled) {
		stopAll()
		waitFinal(sources, 5*time.Second)
	}

	totMu.Lock()
	sum := tot.sum()
	res.Action = summarize(tot.winAction)
	res.Lateness = summarize(tot.winLag)
	res.AllAction = summarize(tot.action)
	res.AllLateness = summarize(tot.lag)
	res.Countdowns, res.Late = tot.countWin, tot.lateWin
	totMu.Unlock()
	if stoppedAt.IsZero() {
		stoppedAt, atStop, cpuStop, machStop = time.Now(), sum, srv.usage(ctx), bench.ReadMachine()
	}
	if !rampedAt.IsZero() {
		res.RampS = round2(rampedAt.Sub(t0).Seconds())
		res.DurationS = round2(stoppedAt.Sub(rampedAt).Seconds())
		res.RoundsWin = atStop.Rounds - atRamp.Rounds
		if res.DurationS > 0 {
			res.RoundsPerS = round2(float64(res.RoundsWin) / res.DurationS)
		}
		if atStop.CPUNanos > 0 && res.DurationS > 0 {
			v := round2(time.Duration(atStop.CPUNanos-atRamp.CPUNanos).Seconds() / res.DurationS)
			res.BotsCPU = &v
		}
		if busy, stolen, ok := machStop.Since(machRamp, stoppedAt.Sub(rampedAt)); ok {
			res.MachineCPU, res.StolenCPU = &busy, &stolen
		}
		if cpuRamp.ok && cpuStop.ok && cpuStop.timers > 0 {
			n, late := int64(cpuStop.timers-cpuRamp.timers), int64(cpuStop.timersLate-cpuRamp.timersLate)
			res.ServerTimers, res.ServerTimersLate = &n, &late
		}
		if cpuRamp.ok && cpuStop.ok && cpuStop.pushes > 0 {
			pn, plate := int64(cpuStop.pushes-cpuRamp.pushes), int64(cpuStop.pushesLate-cpuRamp.pushesLate)
			res.ServerPushes, res.ServerPushesLate = &pn, &plate
		}
		if cpuRamp.waitsOK && cpuStop.waitsOK {
			n, slow := uint64(cpuStop.waits-cpuRamp.waits), uint64(cpuStop.slowWaits-cpuRamp.slowWaits)
			res.ServerWaits, res.ServerSlowWaits = &n, &slow
		}
		res.BotsWaits, res.BotsSlowWaits = atStop.Waits-atRamp.Waits, atStop.SlowWaits-atRamp.SlowWaits
		res.LateTo = map[string]int64{}
		for k, v := range atStop.LateTo {
			if d := v - atRamp.LateTo[k]; d > 0 {
				res.LateTo[k] = d
			}
		}
		if len(srv.urls) > 1 {
			res.LateVia = map[string]int64{}
			for i := range srv.urls {
				k := strconv.Itoa(i)
				res.LateVia[srv.gateName(i)] = atStop.LateVia[k] - atRamp.LateVia[k]
			}
		}
		if len(srv.admins) > 1 && len(cpuRamp.procs) == len(cpuStop.procs) && res.DurationS > 0 {
			for i, p := range cpuStop.procs {
				if !p.ok || !cpuRamp.procs[i].ok {
					continue
				}
				if res.ServerCPUBy == nil {
					res.ServerCPUBy, res.ServerPushesLateBy = map[string]float64{}, map[string]int64{}
				}
				name := srv.procName(i)
				res.ServerCPUBy[name] = round2((p.cpu - cpuRamp.procs[i].cpu).Seconds() / res.DurationS)
				res.ServerPushesLateBy[name] = int64(p.pushesLate - cpuRamp.procs[i].pushesLate)
			}
		}
		if cpuRamp.ok && cpuStop.ok && res.DurationS > 0 {
			cores := round2((cpuStop.cpu - cpuRamp.cpu).Seconds() / res.DurationS)
			res.ServerCPU = &cores
			if atStop.Seated > 0 && sum.Seats > 0 {
				v := round2(cores * 1000 / (float64(atStop.Seated) / float64(sum.Seats)))
				res.CPUPerTbl = &v
			}
			if res.RoundsWin > 0 {
				v := round2((cpuStop.cpu - cpuRamp.cpu).Seconds() * 1000 / float64(res.RoundsWin))
				res.CPUPerRnd = &v
			}
		}
	}
	res.Seated, res.EverSeated, res.Failed = atStop.Seated, sum.EverSeated, sum.Failed
	if sum.Seats > 0 {
		res.Tables = round2(float64(atStop.Seated) / float64(sum.Seats))
	}
	res.Rounds, res.Actions, res.LateMoves, res.Unsettled = sum.Rounds, sum.Actions, sum.LateMoves, sum.Unsettled
	res.AllCountdowns, res.AllLate = sum.Countdowns, sum.Late
	res.Errors = sum.Errors
	res.Checked, res.Mismatched, res.Broke, res.Undrained = sum.Checked, sum.Mismatched, sum.Broke, sum.Undrained
	res.ServerRSS = cpuStop.rss
	if cpuStop.hugeOK {
		res.ServerHuge = &cpuStop.huge
	}
	for i, p := range cpuStop.procs {
		if p.sessions < 0 {
			continue
		}
		if res.ServerSessions == nil {
			res.ServerSessions = map[string]int64{}
		}
		res.ServerSessions[srv.procName(i)] = p.sessions
	}
	res.BotsMem = int64(sum.MemBytes)
	res.LoadEnd = loadAverage()
	if cf.addr == "" { // with --addr the server may be on another machine
		res.HugePages = hugepage.Mode()
	}
	if len(sum.Errors) > 0 {
		res.Notes = append(res.Notes, "first error of each kind:")
		for _, k := range slices.Sorted(maps.Keys(sum.Why)) {
			res.Notes = append(res.Notes, "  "+k+": "+sum.Why[k])
		}
		if hint := hints(sum, cf.addr != ""); hint != "" {
			res.Notes = append(res.Notes, hint)
		}
	}
	if res.StolenCPU != nil && *res.StolenCPU >= 0.1 {
		res.Notes = append(res.Notes, fmt.Sprintf("the hypervisor gave %.2f of this machine's cores to other guests in the window: the bots and the server had that much less; compare builds one after the other, on the same day", *res.StolenCPU))
	}
	for i, s := range sources {
		if s.logs != nil && s.logs.Count() > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("bot process %d wrote to stderr:\n%s", i+1, s.logs))
		}
	}
	for i, l := range srv.logs {
		if l.Count() > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("%s logged %d warnings or errors; the last ones:\n%s", srv.names[i], l.Count(), l))
		}
	}
	return res, failure
}

// waitFinal waits up to d for every source's final snapshot.
func waitFinal(sources []*source, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for _, s := range sources {
		select {
		case <-s.final:
		case <-t.C:
			return
		}
	}
}

// explain is the most frequent error so far and what to do about it.
func explain(sum Snapshot, external bool) string {
	top, n := "", int64(0)
	for k, v := range sum.Errors {
		if v > n || v == n && k < top {
			top, n = k, v
		}
	}
	if top == "" {
		return "no error was counted"
	}
	msg := fmt.Sprintf("%s (%d times): %s", top, n, sum.Why[top])
	if h := hints(Snapshot{Errors: map[string]int64{top: n}}, external); h != "" {
		msg += "; " + h
	}
	return msg
}

// hints says which server flags the errors call for.
func hints(sum Snapshot, external bool) string {
	var out []string
	has := func(prefix string) bool {
		for k := range sum.Errors {
			if strings.HasPrefix(k, prefix) {
				return true
			}
		}
		return false
	}
	server := "the server"
	if !external {
		server = "the bots' own server (serve flags after --)"
	}
	switch {
	case has("connect 203"), has("connect 200"):
		out = append(out, "connections from one address were refused: start "+server+" with --max-conns-per-ip -1 --conn-rate-per-ip -1 (and --max-sessions above the bot count)")
	case has("connect too many open files"):
		out = append(out, "out of file descriptors: raise ulimit -n, or spread the bots over more processes with --procs")
	case has("connect out of local ports"):
		out = append(out, "out of local ports: use several gates (--gates, or --addr with several URLs) or widen net.ipv4.ip_local_port_range")
	case has("connect refused"):
		out = append(out, "nothing listens at the address: is the server running? (--addr)")
	}
	if has("login 200") {
		out = append(out, "guest logins were refused per address: start "+server+" with --new-accounts-per-ip -1/1m --login-queue-per-ip -1")
	}
	if has("login 203") || has("join 203") {
		out = append(out, "the server refused work as overloaded (too many requests running at once, or sessions past --max-sessions): slow the arrival with --ramp, or give the server more CPU")
	}
	if has("join 302") || has("login 302") {
		out = append(out, "logins or match.join timed out (5 s): the server's auth or match could not keep up; slow the arrival with --ramp, or give the server more CPU (a faster store: -- --db postgres://…)")
	}
	if has("join 1004") {
		out = append(out, "bots' balances were below the table's minimum: give new accounts more with the server's --starting-grant")
	}
	if has("join 300") || has("join 301") {
		out = append(out, "no node serves the room type: check --room-type and the server's --roles")
	}
	if has("connection lost") {
		out = append(out, "connections were lost: see the server's log for KICKs (202 slow consumer: the bots' machine is too busy to read)")
	}
	return strings.Join(out, "; ")
}

// startLocal runs the bots in this process; report gets a snapshot a
// second and the final one.
func startLocal(ctx context.Context, rc runConfig, report func(Snapshot)) *source {
	st := newStats()
	r := startRunner(ctx, rc, st)
	s := &source{stop: r.stop, final: make(chan struct{})}
	go func() {
		defer close(s.final)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				report(st.snapshot())
				continue
			case <-r.done:
			}
			break
		}
		sn := st.snapshot()
		sn.Final = true
		report(sn)
	}()
	return s
}

// workerProfile is the CPU profile file of bot process i (from 0): name
// with the process's number, as the summary's notes count them, before the
// extension; "" for none.
func workerProfile(name string, i int) string {
	if name == "" {
		return ""
	}
	return fileFor(name, strconv.Itoa(i+1))
}

// startWorker runs the bots in a worker process, `hearth bots worker`,
// which prints a Snapshot line a second on stdout and stops the bots when
// its stdin says "stop" or closes. profile, if set, is its CPU profile file.
func startWorker(ctx context.Context, rc runConfig, insecure bool, profile string, self []string, report func(Snapshot)) (*source, error) {
	exe, err := executable()
	if err != nil {
		return nil, fmt.Errorf("cannot find this program to start the bot processes: %w", err)
	}
	args := append(append([]string{}, self...), "worker",
		"--urls", strings.Join(rc.urls, ","), "--players", strconv.Itoa(rc.players), "--first", strconv.Itoa(rc.first),
		"--run", rc.runID, "--room-type", rc.roomType, "--think", rc.thinkMin.String()+"-"+rc.thinkMax.String(),
		"--ramp", strconv.FormatFloat(rc.ramp, 'f', -1, 64), "--drain", rc.drain.String(),
		"--seed", strconv.FormatUint(rc.seed, 10), "--gate0", strconv.Itoa(rc.gate0), "--all", strconv.Itoa(rc.all), "--insecure="+strconv.FormatBool(insecure), "--cpuprofile", profile)
	cmd := exec.Command(exe, args...)
	logs := testcluster.NewLogTail(20)
	cmd.Stderr = logs
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start a bot process: %w", err)
	}
	var once sync.Once
	s := &source{logs: logs, final: make(chan struct{}), stop: func() {
		once.Do(func() {
			_, _ = io.WriteString(stdin, "stop\n")
			_ = stdin.Close()
		})
	}}
	go func() {
		defer close(s.final)
		defer func() { _ = cmd.Wait() }()
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var sn Snapshot
			if err := json.Unmarshal(sc.Bytes(), &sn); err != nil {
				fmt.Fprintf(logs, "bad stats line: %v\n", err)
				continue
			}
			if sn.Fatal != "" {
				fmt.Fprintf(logs, "%s\n", sn.Fatal)
			}
			report(sn)
			if sn.Final {
				return
			}
		}
	}()
	return s, nil
}

// botsGCPercent is the bots' processes' GOGC. Each collection of a
// process that holds 20,000 bots made their goroutines help mark (at least
// 64 KB each at its first allocation), stalling every bot's reads for a
// few hundred ms at once: a burst of countdowns that looked late, caused
// by the measuring tool (docs/benchmarks.md § bots, session 28). Four
// times the default heap growth (a few hundred MB more) makes those
// collections a quarter as frequent. The server's processes keep theirs.
const botsGCPercent = 400

// collectSeldom sets the bots' process's GOGC to botsGCPercent, unless the
// environment chose one.
func collectSeldom() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(botsGCPercent)
	}
}

// workerCmd is `hearth bots worker`: one share of the bots, started by
// `hearth bots`; not for people.
func workerCmd(ctx context.Context, args []string, opts cli.Options) int {
	collectSeldom()
	fs := flag.NewFlagSet("hearth bots worker", flag.ContinueOnError)
	fs.SetOutput(opts.Stderr)
	var rc runConfig
	var urls, think string
	var insecure bool
	var profile string
	fs.StringVar(&urls, "urls", "", "gate URLs, comma-separated")
	fs.IntVar(&rc.players, "players", 0, "bots")
	fs.IntVar(&rc.first, "first", 0, "index of the first bot")
	fs.StringVar(&rc.runID, "run", "", "run id")
	fs.StringVar(&rc.roomType, "room-type", "niuniu_100", "room type")
	fs.StringVar(&think, "think", "0s", "think time MIN-MAX")
	fs.Float64Var(&rc.ramp, "ramp", 100, "bots started per second")
	fs.DurationVar(&rc.drain, "drain", time.Minute, "drain time")
	fs.Uint64Var(&rc.seed, "seed", 1, "seed")
	fs.IntVar(&rc.gate0, "gate0", 0, "bots of all on the first gate (0: an even share)")
	fs.IntVar(&rc.all, "all", 0, "bots of every process")
	fs.BoolVar(&insecure, "insecure", false, "skip TLS verification")
	fs.StringVar(&profile, "cpuprofile", "", "CPU profile file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	if rc.thinkMin, rc.thinkMax, err = parseThink(think); err != nil || urls == "" || rc.players < 1 || rc.ramp <= 0 {
		fmt.Fprintln(opts.Stderr, "hearth bots worker: bad flags (it is started by hearth bots)")
		return 2
	}
	rc.urls = strings.Split(urls, ",")
	rc.game = "niuniu"
	rc.client = clientOptions(insecure, rc.urls)
	if _, err := raiseFDLimit(); err != nil {
		fmt.Fprintf(opts.Stderr, "hearth bots worker: %v\n", err)
	}
	if profile != "" {
		stop, err := bench.StartCPUProfile(profile, "hearth bots worker", opts.Stderr)
		if err != nil {
			fmt.Fprintf(opts.Stderr, "hearth bots worker: %v\n", err)
			return 1
		}
		defer stop()
	}
	enc := json.NewEncoder(opts.Stdout)
	var encMu sync.Mutex // guards enc: the stats goroutine and the final write
	report := func(sn Snapshot) {
		encMu.Lock()
		_ = enc.Encode(sn)
		encMu.Unlock()
	}
	s := startLocal(ctx, rc, report)
	go func() {
		// Any line, or the parent's end (EOF), stops the bots.
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		s.stop()
	}()
	<-s.final
	return 0
}

// emit prints the summary.
func emit(w io.Writer, cf *config, r *Result) {
	if cf.jsonOut {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r)
		return
	}
	fmt.Fprintf(w, "hearth bots: %d bots playing %s (%s) over %s, think %s\n", r.Players, r.Game, r.RoomType, r.Transport, r.Think)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "  %s\t%s\n", k, fmt.Sprintf(format, a...)) }
	row("server", "%s", r.Server)
	row("bot processes", "%d", r.Procs)
	row("ramp", "%s/s, every bot started after %.1fs", fmtRate(r.Ramp), r.RampS)
	row("measured", "%.1fs after the ramp (figures below are for this window unless marked whole run)", r.DurationS)
	row("players", "%s", bench.FormatInt(int64(r.Players)))
	row("seated", "%s at the end (%s tables), %s ever", bench.FormatInt(r.Seated), fmtFloat(r.Tables), bench.FormatInt(r.EverSeated))
	row("rounds completed", "%s (%s in the window)", bench.FormatInt(r.Rounds), bench.FormatInt(r.RoundsWin))
	row("rounds/s", "%s", fmtFloat(r.RoundsPerS))
	if r.Unsettled > 0 {
		row("rounds not settled", "%s (the table said so at their end: no balance changed)", bench.FormatInt(r.Unsettled))
	}
	row("actions", "%s (%s refused as too late: the phase had ended)", bench.FormatInt(r.Actions), bench.FormatInt(r.LateMoves))
	lat := func(l Latency) string {
		return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s", fmtMS(l.P50), fmtMS(l.P90), fmtMS(l.P99), fmtMS(l.Max))
	}
	row("action latency", "%s", lat(r.Action))
	row("  whole run", "%s", lat(r.AllAction))
	row("countdowns observed", "%s (phase changes after their deadline, as each client saw them)", bench.FormatInt(r.Countdowns))
	row("countdown lateness", "%s", lat(r.Lateness))
	row("countdowns late >50ms", "%s%s", bench.FormatInt(r.Late), byPhase(r.LateTo))
	if len(r.LateVia) > 0 {
		row("  by gate", "%s", byGate(r.LateVia))
	}
	row("  whole run", "%s late >50ms of %s; %s", bench.FormatInt(r.AllLate), bench.FormatInt(r.AllCountdowns), lat(r.AllLateness))
	if len(r.Errors) == 0 {
		row("errors", "0")
	}
	for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
		row("errors "+k, "%s", bench.FormatInt(r.Errors[k]))
	}
	row("balances checked", "%s, %s mismatched", bench.FormatInt(r.Checked), bench.FormatInt(r.Mismatched))
	if r.Failed > 0 || r.Broke > 0 || r.Undrained > 0 {
		row("bots failed", "%s (broke %s, still in a round at the end %s)", bench.FormatInt(r.Failed), bench.FormatInt(r.Broke), bench.FormatInt(r.Undrained))
	}
	if r.ServerTimers != nil {
		row("server timers late >50ms", "%s of %s (room timers run after their deadline, at the server)", bench.FormatInt(*r.ServerTimersLate), bench.FormatInt(*r.ServerTimers))
	}
	if r.ServerPushes != nil {
		row("server pushes late >50ms", "%s of %s (written to the socket after the room pushed them, at the server)", bench.FormatInt(*r.ServerPushesLate), bench.FormatInt(*r.ServerPushes))
	}
	if len(r.ServerPushesLateBy) > 1 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(r.ServerPushesLateBy)) {
			parts = append(parts, k+" "+bench.FormatInt(r.ServerPushesLateBy[k]))
		}
		row("pushes late by process", "%s (by the gate that wrote them)", strings.Join(parts, ", "))
	}
	if r.ServerWaits != nil {
		row("CPU waits >10ms", "server %s, bots %s (goroutines runnable but waiting for a core)",
			waits(*r.ServerSlowWaits, *r.ServerWaits), waits(r.BotsSlowWaits, r.BotsWaits))
	} else if r.BotsWaits > 0 {
		row("CPU waits >10ms", "bots %s (goroutines runnable but waiting for a core)", waits(r.BotsSlowWaits, r.BotsWaits))
	}
	if r.ServerCPU != nil {
		row("server CPU", "%.2f cores%s", *r.ServerCPU, byProcess(r.ServerCPUBy))
	} else {
		row("server CPU", "unknown (with --addr, give --admin-url)")
	}
	if r.CPUPerTbl != nil {
		row("server CPU per table", "%.2f ms/s", *r.CPUPerTbl)
	}
	if r.CPUPerRnd != nil {
		row("server CPU per round", "%.2f ms", *r.CPUPerRnd)
	}
	if r.ServerRSS > 0 {
		if r.ServerHuge != nil {
			row("server memory", "%s RSS, %s of it on huge pages", fmtBytes(r.ServerRSS), fmtBytes(*r.ServerHuge))
		} else {
			row("server memory", "%s RSS", fmtBytes(r.ServerRSS))
		}
	}
	if len(r.ServerSessions) > 1 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(r.ServerSessions)) {
			parts = append(parts, k+" "+bench.FormatInt(r.ServerSessions[k]))
		}
		row("sessions by process", "%s (at the end of the window)", strings.Join(parts, ", "))
	}
	row("bots memory", "%s", fmtBytes(r.BotsMem))
	if r.BotsCPU != nil {
		row("bots CPU", "%.2f cores", *r.BotsCPU)
	}
	if r.MachineCPU != nil {
		row("machine CPU", "%.2f cores busy, %.2f stolen by the hypervisor (other guests ran while this VM had work)", *r.MachineCPU, *r.StolenCPU)
	}
	if r.LoadStart != "" {
		row("load average", "%s at the start, %s at the end", r.LoadStart, r.LoadEnd)
	}
	if p := r.Probe; p != nil {
		row("machine probe", "a system call %.0f ns, a 300-byte loopback TCP write %.1f µs (before the run: compare runs of days whose probes agree)", p.SyscallNS, p.LoopbackWriteNS/1e3)
	}
	switch r.HugePages {
	case "":
	case "always":
		row("huge pages", "always (the kernel puts the server's heap on huge pages)")
	default:
		row("huge pages", "%s: the server's heap is on 4 KiB pages unless it asks for huge pages (-- --huge-pages); the server memory row says how much is on them (docs/operations.md § Transparent huge pages)", r.HugePages)
	}
	tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// progress prints the live line: overwritten in place on a terminal, one
// line each otherwise. Only the run loop calls it.
type progress struct {
	w    io.Writer
	tty  bool
	last int
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) line(s string) {
	if !p.tty {
		fmt.Fprintln(p.w, s)
		return
	}
	pad := ""
	if n := p.last - len(s); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	fmt.Fprintf(p.w, "\r%s%s", s, pad)
	p.last = len(s)
}

// note prints s on a line of its own, before the next progress line.
func (p *progress) note(s string) {
	if p.tty && p.last > 0 {
		pad := ""
		if n := p.last - len(s); n > 0 {
			pad = strings.Repeat(" ", n)
		}
		fmt.Fprintf(p.w, "\r%s%s\n", s, pad)
		p.last = 0
		return
	}
	fmt.Fprintln(p.w, s)
}

func (p *progress) end() {
	if p.tty && p.last > 0 {
		fmt.Fprintln(p.w)
	}
}

func round2(v float64) float64 { return float64(int64(v*100+0.5)) / 100 }

func fmtMS(ms float64) string {
	switch {
	case ms < 1:
		return fmt.Sprintf("%.3f ms", ms)
	case ms < 100:
		return fmt.Sprintf("%.2f ms", ms)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

func fmtFloat(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func fmtRate(v float64) string { return bench.FormatInt(int64(v + 0.5)) }

func fmtBytes(n int64) string {
	switch {
	case n >= 10<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
}

// byPhase lists late countdowns by the phase they led to, " (ready 1,180,
// end 12)", most first; "" for none.
func byPhase(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int { return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b)) })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " " + bench.FormatInt(m[k])
	}
	return " (into " + strings.Join(parts, ", ") + ")"
}

// byGate lists late countdowns by the gate that brought them, "tables
// 120, gate-1 80", in the gates' order of name.
func byGate(m map[string]int64) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " " + bench.FormatInt(m[k])
	}
	return strings.Join(parts, ", ")
}

// waits says "0.12% of 1,234,567": the share of goroutine wakeups that
// waited long for a CPU.
func waits(slow, all uint64) string {
	if all == 0 {
		return "none measured"
	}
	return fmt.Sprintf("%.3f%% of %s", 100*float64(slow)/float64(all), bench.FormatInt(int64(all)))
}

// byProcess is " (name cores, …)" for a server of several processes, ""
// for one.
func byProcess(cores map[string]float64) string {
	if len(cores) < 2 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(cores)) {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, cores[k]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
