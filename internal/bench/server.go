package bench

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/cli"
	"github.com/hearth-server/hearth/internal/testcluster"
)

// The bench service's channel and push route.
const (
	benchChannel = "bench"
	benchRoute   = "bench.msg"
)

// benchService is the service fanout and resume need on the server they
// measure (`hearth bench server` registers it):
//
//	bench.join     joins the calling session to the channel "bench"
//	bench.publish  google.protobuf.BytesValue: Node.Publish of it to the
//	               channel "bench" on route bench.msg; answers Empty
//
// Its clients do not log in: the bench server runs with
// --require-login=false.
func benchService() *hearth.Service {
	svc := hearth.NewService("bench")
	hearth.HandleRaw(svc, "join", func(ctx context.Context, s *hearth.Session, _ []byte) ([]byte, error) {
		if err := s.Join(ctx, benchChannel); err != nil {
			return nil, err
		}
		if s.Codec() == "json" {
			return []byte("{}"), nil
		}
		return nil, nil
	})
	hearth.Handle(svc, "publish", func(ctx context.Context, s *hearth.Session, msg *wrapperspb.BytesValue) (*emptypb.Empty, error) {
		if err := s.Node().Publish(ctx, benchChannel, benchRoute, msg); err != nil {
			return nil, err
		}
		return &emptypb.Empty{}, nil
	})
	return svc
}

const serverUsage = "usage: hearth bench server [--cpuprofile FILE] [--gc-signal] [-- hearth serve flags]"

// benchServe is `hearth bench server`: `hearth serve` with the bench
// service, and on request under a CPU profile or collecting garbage on
// SIGUSR1. The benches start it as their server child; run by hand, it is
// the server for `hearth bench fanout --addr`.
func benchServe(ctx context.Context, args []string, opts options) int {
	fs := flag.NewFlagSet("hearth bench server", flag.ContinueOnError)
	fs.SetOutput(opts.Stderr)
	fs.Usage = func() {
		fmt.Fprintln(opts.Stderr, serverUsage)
		fs.PrintDefaults()
	}
	profile := fs.String("cpuprofile", "", "write a CPU profile of the server to this file")
	gcSignal := fs.Bool("gc-signal", false, "run a full GC and return freed memory to the OS on SIGUSR1")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *gcSignal {
		gcOnSignal()
	}
	if *profile != "" {
		stop, err := StartCPUProfile(*profile, "hearth bench server", opts.Stderr)
		if err != nil {
			fmt.Fprintf(opts.Stderr, "hearth bench server: %v\n", err)
			return 1
		}
		defer stop()
	}
	co := opts.Options
	services := co.Services
	co.Services = func(cfg *hearth.Config) []*hearth.Service {
		var svcs []*hearth.Service
		if services != nil {
			svcs = services(cfg)
		}
		return append(svcs, benchService())
	}
	// The bench's clients do not log in; flags after these override them.
	serveArgs := append([]string{"serve", "--require-login=false"}, fs.Args()...)
	return cli.Main(ctx, serveArgs, co)
}

// serverNeeds says what a benchmark needs of the server it starts.
type serverNeeds struct {
	maxInFlight int      // at least the client's pipeline depth
	gcSignal    bool     // idle: the child collects garbage on SIGUSR1
	args        []string // more serve flags (after the defaults, so they override them)
}

// target is the server a benchmark runs against.
type target struct {
	url      string   // client URL for the benchmark's transport
	urls     []string // a cluster's gates: client i dials urls[i%len(urls)]; nil: url
	adminURL string   // "" when unknown
	pid      int      // the child server's pid; 0 for --addr, --inprocess and a cluster
	desc     string   // for the report: how the server runs
	external bool     // --addr
	logs     *testcluster.LogTail
	stop     func() // stops a server the bench started

	proc    *testcluster.Proc // a child's process
	members []*target         // a cluster: its processes, whose CPU and memory add up
	natsPID int               // a cluster on a NATS server of this machine: its pid (0 unknown)
	names   []string          // a cluster: members' names, for the CPU row
}

// clientURLs are the URLs the bench's clients dial, round-robin.
func (t *target) clientURLs() []string {
	if len(t.urls) > 0 {
		return t.urls
	}
	return []string{t.url}
}

// dialDesc says where the clients connect, for progress lines.
func (t *target) dialDesc() string {
	if len(t.urls) > 1 {
		return strings.Join(t.urls, " and ")
	}
	return t.url
}

// local reports whether the target's server processes are children of this
// bench (their CPU is read from /proc, and is not "other processes").
func (t *target) local() bool { return t.pid != 0 || len(t.members) > 0 }

// benchExecutable is the binary started as the server child; tests point it
// at a built cmd/hearth.
var benchExecutable = os.Executable

// startTarget starts the server the flags ask for, or describes --addr.
func startTarget(ctx context.Context, bf *benchFlags, need serverNeeds, opts options) (*target, error) {
	if bf.cluster {
		return startCluster(ctx, bf, bf.natsURL, benchClusterNodes, need, opts)
	}
	if bf.addr != "" {
		return &target{url: bf.addr, adminURL: strings.TrimRight(bf.adminURL, "/"), desc: "external " + bf.addr, external: true, stop: func() {}}, nil
	}
	dir, err := os.MkdirTemp("", "hearth-bench-")
	if err != nil {
		return nil, fmt.Errorf("temporary data directory: %w", err)
	}
	var t *target
	if bf.inprocess {
		t, err = startInProcess(ctx, bf, need, dir, opts)
	} else {
		t, err = startChild(ctx, bf, need, dir, opts)
	}
	// The data directory is the bench's scratch space: removing it is best
	// effort.
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	stop := t.stop
	t.stop = func() { stop(); _ = os.RemoveAll(dir) }
	return t, nil
}

// limitArgs lift the gate's limits that one benchmarking IP would hit.
func limitArgs(need serverNeeds) []string {
	return []string{
		"--max-conns-per-ip", "-1",
		"--conn-rate-per-ip", "-1",
		"--session-rate", "-1",
		"--max-inflight", strconv.Itoa(max(64, need.maxInFlight)),
		// Every bench client comes from this machine's one address.
		"--new-accounts-per-ip", "-1/1m",
		"--login-queue-per-ip", "-1",
	}
}

// serverCommand is the child's command line up to serve's flags: this
// binary's `bench server`, with a CPU profile or a GC signal when asked.
func serverCommand(bf *benchFlags, need serverNeeds, opts options) []string {
	args := append(slices.Clone(opts.self), "server")
	if bf.srvProfile != "" {
		args = append(args, "--cpuprofile", bf.srvProfile)
	}
	if need.gcSignal {
		args = append(args, "--gc-signal")
	}
	return append(args, "--")
}

// serverFlags are the serve flags of every server child.
func serverFlags(need serverNeeds) []string {
	return append(append([]string{"--log-level", "warn"}, limitArgs(need)...), need.args...)
}

// stopGrace is how long a child has to exit after SIGTERM before it is
// killed.
const stopGrace = 15 * time.Second

// childTarget is a target for a started child process; url is the
// listener its clients dial ("" for a node without one).
func childTarget(p *testcluster.Proc, url, desc string) *target {
	return &target{
		url:      url,
		adminURL: p.Admin,
		pid:      p.PID(),
		desc:     desc,
		logs:     p.Log,
		proc:     p,
		stop:     func() { _ = p.Stop(stopGrace) },
	}
}

// transportURL is p's listener for the bench's transport.
func transportURL(p *testcluster.Proc, transport string) string {
	if transport == "ws" {
		return p.WS
	}
	return p.TCP
}

// startChild runs the server as a separate process: this binary's `bench
// server`.
func startChild(ctx context.Context, bf *benchFlags, need serverNeeds, dir string, opts options) (*target, error) {
	exe, err := benchExecutable()
	if err != nil {
		return nil, fmt.Errorf("cannot find this program to start the server: %w (start one with hearth bench server and use --addr)", err)
	}
	args := serverCommand(bf, need, opts)
	what := strings.Join(args[:len(args)-1], " ")
	args = append(args, "--tcp", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--data", dir)
	args = append(args, serverFlags(need)...)
	p, err := testcluster.StartProc(ctx, testcluster.ProcConfig{Binary: exe, Args: args, ID: "server", LogLines: 40})
	if err != nil {
		return nil, fmt.Errorf("the server did not start: %w", err)
	}
	url := transportURL(p, bf.transport)
	if url == "" {
		_ = p.Stop(stopGrace)
		return nil, fmt.Errorf("the server printed no %s listener; its log:\n%s", bf.transport, p.Log)
	}
	return childTarget(p, url, fmt.Sprintf("separate process (%s, pid %d)", what, p.PID())), nil
}

// startInProcess runs the server in this process (--inprocess).
func startInProcess(ctx context.Context, bf *benchFlags, need serverNeeds, dir string, opts options) (*target, error) {
	logs := testcluster.NewLogTail(40)
	cfg := hearth.Config{
		TCPAddr:   "127.0.0.1:0",
		WSAddr:    "127.0.0.1:0",
		AdminAddr: "127.0.0.1:0",
		DataDir:   dir,
		Logger:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Limits: hearth.Limits{
			MaxConnsPerIP: -1,
			ConnRatePerIP: -1,
			RequestRate:   -1,
			MaxInFlight:   max(64, need.maxInFlight),
		},
	}
	node, err := hearth.New(cfg)
	if err == nil {
		err = node.Register(benchService())
	}
	if err == nil && opts.Services != nil {
		err = node.Register(opts.Services(&cfg)...)
	}
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	errc := make(chan error, 1)
	go func() { errc <- node.Run(rctx) }()
	select {
	case <-node.Ready():
	case err := <-errc:
		cancel()
		return nil, fmt.Errorf("the in-process server did not start: %w", err)
	}
	url := "tcp://" + node.Addr("tcp").String()
	if bf.transport == "ws" {
		url = "ws://" + node.Addr("ws").String() + "/ws"
	}
	return &target{
		url:      url,
		adminURL: "http://" + node.Addr("admin").String(),
		desc:     "in-process",
		logs:     logs,
		stop: func() {
			cancel()
			// A child is killed when it does not stop; here the bench can
			// only stop waiting, and say so.
			select {
			case err := <-errc:
				if err != nil {
					fmt.Fprintf(opts.Stderr, "hearth bench: the in-process server: %v\n", err)
				}
			case <-time.After(15 * time.Second):
				fmt.Fprintln(opts.Stderr, "hearth bench: the in-process server did not stop within 15s; leaving it")
			}
		},
	}, nil
}

// serverStats reads the target's CPU time and memory.
type serverStats struct {
	CPU        time.Duration // user + system CPU time
	RSS        int64         // resident set size, bytes
	HeapInuse  int64         // Go heap in use, bytes (-1 unknown)
	StackInuse int64         // goroutine stacks, bytes (-1 unknown)
	Goroutines int64         // -1 unknown
	// WorkersIdle are the node's pooled workers waiting for a task
	// (hearth_workers_idle), among Goroutines; -1 unknown. A burst of
	// connections leaves some for a few seconds, shared by all sessions.
	WorkersIdle int64
	ok          bool // CPU and RSS are known
}

// stats reads the server's CPU and memory: from /proc for a child, from
// the admin /metrics for --addr with --admin-url. In-process, CPU is this
// whole process (server and clients).
func (t *target) stats(ctx context.Context) serverStats {
	s := serverStats{HeapInuse: -1, StackInuse: -1, Goroutines: -1, WorkersIdle: -1}
	var m map[string]float64
	if t.adminURL != "" && (t.pid != 0 || t.external) {
		m, _ = ScrapeMetrics(ctx, t.adminURL)
	}
	if v, ok := m["go_memstats_heap_inuse_bytes"]; ok {
		s.HeapInuse = int64(v)
	}
	if v, ok := m["go_memstats_stack_inuse_bytes"]; ok {
		s.StackInuse = int64(v)
	}
	if v, ok := m["go_goroutines"]; ok {
		s.Goroutines = int64(v)
	}
	if v, ok := m["hearth_workers_idle"]; ok {
		s.WorkersIdle = int64(v)
	}
	switch {
	case len(t.members) > 0:
		s.ok = true
		for _, m := range t.members {
			ms := m.stats(ctx)
			s.CPU += ms.CPU
			s.RSS += ms.RSS
			s.ok = s.ok && ms.ok
		}
	case t.pid != 0:
		cpu, err1 := procCPU(t.pid)
		rss, err2 := procRSS(t.pid)
		s.CPU, s.RSS, s.ok = cpu, rss, err1 == nil && err2 == nil
	case t.external:
		cpu, ok1 := m["process_cpu_seconds_total"]
		rss, ok2 := m["process_resident_memory_bytes"]
		s.CPU, s.RSS, s.ok = time.Duration(cpu*float64(time.Second)), int64(rss), ok1 && ok2
	}
	return s
}

// ScrapeMetrics reads the samples of a Prometheus text /metrics, keyed by
// name with its labels as written (`x_bucket{le="0.05"}`), by name alone
// for an unlabelled one.
func ScrapeMetrics(ctx context.Context, adminURL string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(adminURL, "/")+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics: %s", adminURL, resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ') // label values may hold spaces, the value none
		if i < 0 {
			continue
		}
		name, val := line[:i], line[i+1:]
		if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			m[name] = f
		}
	}
	return m, sc.Err()
}
