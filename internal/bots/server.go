package bots

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-server/hearth/cli"
	"github.com/hearth-server/hearth/internal/bench"
	"github.com/hearth-server/hearth/internal/testcluster"
)

// perGate is how many bots one gate process of the bots' own server takes:
// a process may hold at most 20,000 open files on the machines this was
// written for, and a gate needs one per session plus its own.
const perGate = 15_000

// server is the hearth server the bots play on: one the command started
// (a process, or a small cluster of them) or one at --addr.
type server struct {
	urls   []string // client URLs of the gates
	admins []string // admin URLs whose /metrics add up to the server ("" entries skipped)
	names  []string // the processes, for the report
	desc   string
	logs   []*testcluster.LogTail
	stop   func()
}

// gateName names the gate of urls[i]: its process's id for the own
// server, whose names follow the urls, else its address.
func (s *server) gateName(i int) string {
	if i < len(s.names) {
		return s.names[i]
	}
	return s.urls[i]
}

// procName names the process of admins[i] for the report: its id for the
// own server, else its admin URL.
func (s *server) procName(i int) string {
	switch {
	case i < len(s.names):
		return s.names[i]
	case i < len(s.admins):
		return s.admins[i]
	}
	return strconv.Itoa(i + 1)
}

// serverFlags are the serve flags of the bots' own server: what N bots on
// one machine need.
func serverFlags(ramp float64) []string {
	return []string{
		"--log-level", "warn",
		// Every bot comes from this machine's one address.
		"--max-conns-per-ip", "-1",
		"--conn-rate-per-ip", "-1",
		"--new-accounts-per-ip", "-1/1m",
		"--login-queue-per-ip", "-1",
		// Logins queue only past twice the ramp (or 1000/s).
		"--login-rate", strconv.FormatFloat(max(1000, 2*ramp), 'f', 0, 64),
		// Bots bet for hours: they should not go broke in a benchmark.
		"--starting-grant", "1000000000",
		// On stop, the bots have closed their sessions: nobody resumes.
		"--drain-timeout", "1s",
	}
}

// serverGates is how many processes the bots' own server has: --gates,
// or one per perGate bots.
func (cf *config) serverGates() int {
	if cf.gates > 0 {
		return cf.gates
	}
	return (cf.players + perGate - 1) / perGate
}

// executable is the binary started as the server and the workers; tests
// point it at a built cmd/hearth.
var executable = os.Executable

// startServer starts the bots' own server: for up to perGate bots one
// process with everything; for more, a cluster on the first node's
// embedded NATS (or cf.natsURL's) of one client-facing process per perGate bots (or
// --gates): the first runs the game, match, auth and lobby besides its
// gate, the others are gate-only, and the bots spread over them as
// runConfig.gateOf says. A separate node for the tables alone cost the whole machine more:
// one more process whose scheduler looks for work on the same two cores,
// and a TCP hop to NATS for every message its gate's bots send or get.
// cf.srvProfile, if set, is the CPU profile file of each node (its id
// before the extension), and cf.srvLog likewise its log file.
func startServer(ctx context.Context, cf *config, self []string) (*server, error) {
	exe, err := executable()
	if err != nil {
		return nil, fmt.Errorf("cannot find this program to start the server: %w (start one with hearth serve and use --addr)", err)
	}
	wrapper := append(append([]string{}, self...), "server")
	if cf.srvProfile != "" {
		wrapper = append(wrapper, "--cpuprofile", cf.srvProfile)
	}
	wrapper = append(wrapper, "--")
	gates := cf.serverGates()
	if gates <= 1 {
		if err := envProcesses(cf.serverEnv, []string{"server"}); err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp("", "hearth-bots-")
		if err != nil {
			return nil, fmt.Errorf("temporary data directory: %w", err)
		}
		args := append(wrapper, "--tcp", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--data", dir)
		if cf.natsURL != "" {
			args = append(args, "--nats", cf.natsURL)
		}
		args = append(append(args, serverFlags(cf.ramp)...), cf.serverArgs...)
		logs, closeLogs, err := serverLogs(cf.srvLog, []string{"server"})
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
		p, err := testcluster.StartProc(ctx, testcluster.ProcConfig{Binary: exe, Args: args, ID: "server", LogLines: 40, LogFile: logs[0], Env: serverEnv(cf.serverEnv, "server")})
		if err != nil {
			closeLogs()
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("the server did not start: %w", err)
		}
		url := p.TCP
		if cf.transport == "ws" {
			url = p.WS
		}
		return &server{
			urls: []string{url}, admins: []string{p.Admin}, names: []string{"server"},
			desc: fmt.Sprintf("one process (hearth %s, pid %d)", strings.Join(wrapper[:len(wrapper)-1], " "), p.PID()),
			logs: []*testcluster.LogTail{p.Log},
			stop: func() { _ = p.Stop(15 * time.Second); closeLogs(); _ = os.RemoveAll(dir) },
		}, nil
	}
	roles := "gate,sys,auth,lobby,match," + cf.roomType
	nodes := []testcluster.Node{{ID: "tables", Args: []string{"--roles", roles}}}
	for g := range gates - 1 {
		nodes = append(nodes, testcluster.Node{ID: fmt.Sprintf("gate-%d", g+1), Args: []string{"--roles", "gate"}})
	}
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = n.ID
	}
	if err := envProcesses(cf.serverEnv, ids); err != nil {
		return nil, err
	}
	for i := range nodes {
		nodes[i].Env = serverEnv(cf.serverEnv, nodes[i].ID)
	}
	logs, closeLogs, err := serverLogs(cf.srvLog, ids)
	if err != nil {
		return nil, err
	}
	for i := range nodes {
		nodes[i].LogFile = logs[i]
	}
	c, err := testcluster.Start(ctx, testcluster.Config{
		Binary:   exe,
		Serve:    wrapper,
		NATS:     cf.natsURL,
		Prefix:   testcluster.RandomPrefix("bots"),
		Args:     append(serverFlags(cf.ramp), cf.serverArgs...),
		Nodes:    nodes,
		LogLines: 40,
		Within:   60 * time.Second,
	})
	if err != nil {
		closeLogs()
		return nil, fmt.Errorf("the server cluster did not start: %w", err)
	}
	s := &server{stop: func() { _ = c.Stop(); closeLogs() }}
	var descs []string
	for i, p := range c.Nodes() {
		s.admins = append(s.admins, p.Admin)
		s.names = append(s.names, p.ID)
		s.logs = append(s.logs, p.Log)
		descs = append(descs, fmt.Sprintf("%s (%s) pid %d", p.ID, nodes[i].Args[1], p.PID()))
		if cf.transport == "ws" {
			s.urls = append(s.urls, p.WS)
		} else {
			s.urls = append(s.urls, p.TCP)
		}
	}
	bus := "the first one's embedded NATS"
	if cf.natsURL != "" {
		bus = "NATS at " + cf.natsURL
	}
	s.desc = fmt.Sprintf("a cluster of %d processes on %s: %s", len(nodes), bus, strings.Join(descs, ", "))
	return s, nil
}

// serverEnv is what the own server's process id gets in its environment
// besides the bots': the Go runtime's stack shrinking turned off
// (GODEBUG=gcshrinkstackoff=1), as docs/operations.md suggests for a node
// that hosts many rooms. Each collection halves the stacks of idle
// goroutines that grew, and they grow them again: before the store ran its
// reads on goroutines of its own, 40% of a mark's CPU on the tables node at
// 20,000 bots (docs/benchmarks.md § bots, Sessions 25 and 26). A setting
// already in the bots' GODEBUG wins. extra (--server-env) comes last, so it
// wins over both: the last of a repeated key is the one a process sees.
// Of extra, id gets the settings for every process and, without their
// prefix, those for "id:" alone.
func serverEnv(extra []string, id string) []string {
	var env []string
	godebug := os.Getenv("GODEBUG")
	if !strings.Contains(godebug, "gcshrinkstackoff=") {
		if godebug != "" {
			godebug += ","
		}
		env = []string{"GODEBUG=" + godebug + "gcshrinkstackoff=1"}
	}
	for _, kv := range extra {
		switch node, setting := envProcess(kv); node {
		case "", id:
			env = append(env, setting)
		}
	}
	return env
}

// envProcess splits a --server-env setting into the process it is for
// ("": every one) and its KEY=VALUE.
func envProcess(kv string) (node, setting string) {
	k, _, _ := strings.Cut(kv, "=")
	if node, _, ok := strings.Cut(k, ":"); ok {
		return node, kv[len(node)+1:]
	}
	return "", kv
}

// envProcesses refuses a --server-env setting for a process the own server
// does not have (ids), which would otherwise be ignored without a word.
func envProcesses(extra, ids []string) error {
	for _, kv := range extra {
		if node, _ := envProcess(kv); node != "" && !slices.Contains(ids, node) {
			return fmt.Errorf("--server-env %s: the own server has no process %q (it has %s)", kv, node, strings.Join(ids, ", "))
		}
	}
	return nil
}

// serverLogs creates the --server-log file of each of the own server's
// processes, by id: name itself for one process, name with the id before
// its extension for a cluster (as --server-cpuprofile's files). closeAll
// closes them; call it once the processes have exited, as no write comes
// after that. Without the flag the writers are nil.
func serverLogs(name string, ids []string) (logs []io.Writer, closeAll func(), err error) {
	logs = make([]io.Writer, len(ids))
	var files []*os.File
	closeAll = func() {
		for _, f := range files {
			_ = f.Close()
		}
	}
	if name == "" {
		return logs, closeAll, nil
	}
	for i, id := range ids {
		file := name
		if len(ids) > 1 {
			file = fileFor(name, id)
		}
		f, err := os.Create(file)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("--server-log: %w", err)
		}
		files = append(files, f)
		logs[i] = f
	}
	return logs, closeAll, nil
}

// usage is the server's CPU time so far and its resident memory now,
// added up over its processes; ok is false when a process's /metrics did
// not say.
type usage struct {
	cpu  time.Duration
	rss  int64
	huge int64 // of rss, on huge pages
	ok   bool
	// hugeOK: every process's /metrics had hearth_huge_page_bytes (a
	// server of an earlier version at --addr has none).
	hugeOK bool
	// Room timers run (hearth_room_timer_lateness_seconds) and those that
	// ran more than 50 ms after their deadline, over every node.
	timers, timersLate float64
	// Service pushes the gates wrote (hearth_push_delay_seconds) and those
	// written more than 50 ms after the service sent them.
	pushes, pushesLate float64
	// Times the server's goroutines became runnable
	// (go_sched_latencies_seconds), and those that waited more than
	// slowWait for a CPU, over every process; waitsOK is false when a
	// process did not say.
	waits, slowWaits float64
	waitsOK          bool
	// Each process's share, in the order of server.admins.
	procs []procUsage
}

// procUsage is one server process's part of a usage.
type procUsage struct {
	sessions   int64         // open client sessions (hearth_sessions); -1: it did not say
	cpu        time.Duration // CPU time so far
	pushesLate float64       // pushes written more than 50 ms late so far
	ok         bool          // cpu and pushesLate are known
}

// schedFromMetrics reads go_sched_latencies_seconds from scraped metrics:
// its count and the count above the bucket boundary at slowWait.
func schedFromMetrics(m map[string]float64) (all, slow float64, ok bool) {
	all, ok = m["go_sched_latencies_seconds_count"]
	if !ok {
		return 0, 0, false
	}
	for k, v := range m {
		le, found := strings.CutPrefix(k, `go_sched_latencies_seconds_bucket{le="`)
		if !found {
			continue
		}
		b, err := strconv.ParseFloat(strings.TrimSuffix(le, `"}`), 64)
		if err == nil && math.Abs(b-slowWait) < 1e-9 {
			return all, all - v, true
		}
	}
	return 0, 0, false
}

func (s *server) usage(ctx context.Context) usage {
	u := usage{ok: len(s.admins) > 0, waitsOK: len(s.admins) > 0, hugeOK: len(s.admins) > 0}
	for _, a := range s.admins {
		if a == "" {
			u.ok, u.waitsOK, u.hugeOK = false, false, false
			u.procs = append(u.procs, procUsage{sessions: -1})
			continue
		}
		m, err := bench.ScrapeMetrics(ctx, a)
		cpu, ok1 := m["process_cpu_seconds_total"]
		rss, ok2 := m["process_resident_memory_bytes"]
		if err != nil || !ok1 || !ok2 {
			u.ok, u.waitsOK, u.hugeOK = false, false, false
			u.procs = append(u.procs, procUsage{sessions: sessionsFromMetrics(m)})
			continue
		}
		u.cpu += time.Duration(cpu * float64(time.Second))
		u.rss += int64(rss)
		huge, ok := m["hearth_huge_page_bytes"]
		u.huge += int64(huge)
		u.hugeOK = u.hugeOK && ok
		n := m["hearth_room_timer_lateness_seconds_count"]
		u.timers += n
		u.timersLate += n - m[`hearth_room_timer_lateness_seconds_bucket{le="0.05"}`]
		n = m["hearth_push_delay_seconds_count"]
		u.pushes += n
		late := n - m[`hearth_push_delay_seconds_bucket{le="0.05"}`]
		u.pushesLate += late
		u.procs = append(u.procs, procUsage{
			sessions: sessionsFromMetrics(m), cpu: time.Duration(cpu * float64(time.Second)), pushesLate: late, ok: true,
		})
		all, slow, ok := schedFromMetrics(m)
		u.waits += all
		u.slowWaits += slow
		u.waitsOK = u.waitsOK && ok
	}
	return u
}

// sessionsFromMetrics is a process's open client sessions: its
// hearth_sessions series (one per transport) added up, -1 if it has none
// (not a gate, or no metrics).
func sessionsFromMetrics(m map[string]float64) int64 {
	n, found := 0.0, false
	for k, v := range m {
		if strings.HasPrefix(k, "hearth_sessions{") {
			n += v
			found = true
		}
	}
	if !found {
		return -1
	}
	return int64(n)
}

// profileFile is the CPU profile file of a node: name as given, or in a
// cluster (serve flags with --node-id ID) name with ".ID" before its
// extension, so that the nodes do not write the same file.
func profileFile(name string, serveArgs []string) string {
	for i, a := range serveArgs {
		id, ok := strings.CutPrefix(a, "--node-id=")
		if !ok && a == "--node-id" && i+1 < len(serveArgs) {
			id, ok = serveArgs[i+1], true
		}
		if ok {
			return fileFor(name, id)
		}
	}
	return name
}

// fileFor is name with ".id" before its extension.
func fileFor(name, id string) string {
	ext := filepath.Ext(name)
	return strings.TrimSuffix(name, ext) + "." + id + ext
}

// serveCmd is `hearth bots server [--cpuprofile FILE] -- serve flags`:
// `hearth serve`, under a CPU profile when asked. The bots start their own
// server with it.
func serveCmd(ctx context.Context, args []string, opts cli.Options) int {
	fs := flag.NewFlagSet("hearth bots server", flag.ContinueOnError)
	fs.SetOutput(opts.Stderr)
	profile := fs.String("cpuprofile", "", "write a CPU profile of the server to this file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *profile != "" {
		stop, err := bench.StartCPUProfile(profileFile(*profile, fs.Args()), "hearth bots server", opts.Stderr)
		if err != nil {
			fmt.Fprintf(opts.Stderr, "hearth bots server: %v\n", err)
			return 1
		}
		defer stop()
	}
	return cli.Main(ctx, append([]string{"serve"}, fs.Args()...), opts)
}
