// Package bench is `hearth bench`: load generators that start a server (or
// a cluster) of their own, or measure a running one, and print a table.
// Only the hearth binary links it (cmd/hearth plugs Main into cli.Main);
// internal/testcluster starts its server processes.
package bench

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hearth-server/hearth/cli"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/wire"
)

const benchUsage = `Usage: hearth bench rpc|fanout|idle|login|resume|rooms|server [flags]

  rpc     N clients doing sys.ping round trips back to back: req/s and latency
  fanout  N sessions in one channel, one publisher: deliveries/s and latency
  idle    N idle sessions: the server's memory per session
  login   N clients logging in over and over (guest or password): logins/s;
          with --login-rate R, N clients at once through the login queue
  resume  N sessions on gate B of a 2-gate cluster; B drains (or --kill):
          time until every session has resumed on gate A (or learnt 304)
  rooms   the room SDK on one node, in this process: rooms opened/s, timer
          events/s and timer lateness with a repeating timer in every room,
          match.join/s
  server  'hearth serve' with the bench service that fanout and resume
          need, for a bench run with --addr against it

Without --addr the bench starts its own server in a separate process (this
binary's 'bench server' on 127.0.0.1 with the per-IP and per-session limits
lifted) and stops it at the end; rpc and fanout --cluster start a service
node and two gates on a NATS server instead. Run 'hearth bench rpc -h' for
flags.
`

// options are cli.Options plus how this binary runs its bench server.
type options struct {
	cli.Options
	// self are the arguments that run this binary's bench command: the
	// server child is started as self + "server".
	self []string
}

// Main is `hearth bench`: cmd/hearth plugs it into cli.Main as the command
// "bench", so only the hearth binary links the benchmarks, not a game's own
// binary built on cli.Main.
func Main(ctx context.Context, args []string, opts cli.Options) int {
	return run(ctx, args, options{Options: opts, self: []string{"bench"}})
}

// Standalone is Main for a binary that is only the bench (cmd/hearth-bench):
// args start with the benchmark's name.
func Standalone(ctx context.Context, args []string, opts cli.Options) int {
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	return run(ctx, args, options{Options: opts})
}

func run(ctx context.Context, args []string, opts options) int {
	if len(args) == 0 {
		fmt.Fprint(opts.Stderr, benchUsage)
		return 2
	}
	switch args[0] {
	case "rpc":
		return benchRPC(ctx, args[1:], opts)
	case "fanout":
		return benchFanout(ctx, args[1:], opts)
	case "idle":
		return benchIdle(ctx, args[1:], opts)
	case "login":
		return benchLogin(ctx, args[1:], opts)
	case "resume":
		return benchResume(ctx, args[1:], opts)
	case "rooms":
		return benchRooms(ctx, args[1:], opts)
	case "server":
		return benchServe(ctx, args[1:], opts)
	case "help", "-h", "--help":
		fmt.Fprint(opts.Stdout, benchUsage)
		return 0
	}
	fmt.Fprintf(opts.Stderr, "hearth bench: unknown benchmark %q\n\n%s", args[0], benchUsage)
	return 2
}

// benchFlags are the flags every benchmark has.
type benchFlags struct {
	name       string // "rpc", "fanout", "idle"
	addr       string
	adminURL   string
	transport  string
	codec      string
	inprocess  bool
	jsonOut    bool
	insecure   bool
	routeIDs   bool
	cpuProfile string // this process, --inprocess only makes it the server's too
	srvProfile string // the child server's CPU profile
	cluster    bool   // rpc, fanout: a 3-process cluster (bench_cluster.go)
	natsURL    string // --cluster's NATS; resume's
}

// newBenchFlagSet is the flag set of benchmark name: the common flags, and
// -h prints usage (the synopsis) before the flags.
func newBenchFlagSet(name, usage string, opts options, bf *benchFlags, defCodec string) *flag.FlagSet {
	bf.name = name
	fs := flag.NewFlagSet("hearth bench "+name, flag.ContinueOnError)
	fs.SetOutput(opts.Stderr)
	fs.Usage = func() {
		fmt.Fprintln(opts.Stderr, "Usage: hearth bench "+name+" "+usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&bf.addr, "addr", "", "benchmark a running server at this URL (tcp://, tls://, ws://…/ws, wss://…/ws) instead of starting one")
	fs.StringVar(&bf.adminURL, "admin-url", "", "with --addr: the server's admin listener (http://host:7180), to read its CPU and memory from /metrics")
	fs.StringVar(&bf.transport, "transport", "tcp", "tcp or ws (without --addr)")
	fs.StringVar(&bf.codec, "codec", defCodec, "session codec: json or protobuf")
	fs.BoolVar(&bf.inprocess, "inprocess", false, "run the server inside this process instead of a separate one")
	fs.BoolVar(&bf.jsonOut, "json", false, "print the result as JSON instead of a table")
	fs.BoolVar(&bf.insecure, "insecure", false, "with tls:// or wss://, do not verify the server's certificate")
	fs.BoolVar(&bf.routeIDs, "route-ids", false, "send numeric route ids from the handshake dictionary instead of route names")
	fs.StringVar(&bf.cpuProfile, "cpuprofile", "", "write this process's CPU profile to a file (with --inprocess it includes the server)")
	fs.StringVar(&bf.srvProfile, "server-cpuprofile", "", "write the CPU profile of the server child process to a file (not with --addr or --inprocess)")
	return fs
}

// parse parses args and checks the common flags; it returns an exit code
// and false when the command must stop.
func (bf *benchFlags) parse(fs *flag.FlagSet, args []string, opts options) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(opts.Stderr, "hearth bench %s: unexpected argument %q (flags start with --)\n", bf.name, fs.Arg(0))
		return 2, false
	}
	fail := func(format string, a ...any) (int, bool) {
		fmt.Fprintf(opts.Stderr, "hearth bench %s: "+format+"\n", append([]any{bf.name}, a...)...)
		return 2, false
	}
	if bf.transport != "tcp" && bf.transport != "ws" {
		return fail("--transport %q: use tcp or ws", bf.transport)
	}
	if !wire.ValidCodec(bf.codec) {
		return fail("--codec %q: use json or protobuf", bf.codec)
	}
	if bf.addr != "" {
		scheme, _, ok := strings.Cut(bf.addr, "://")
		if !ok {
			bf.addr = "tcp://" + bf.addr
			scheme = "tcp"
		}
		switch scheme {
		case "tcp", "tls":
			bf.transport = "tcp"
		case "ws", "wss":
			bf.transport = "ws"
		default:
			return fail("--addr %q: the scheme must be tcp, tls, ws or wss", bf.addr)
		}
		if bf.inprocess {
			return fail("--inprocess and --addr exclude each other")
		}
		if bf.srvProfile != "" {
			return fail("--server-cpuprofile needs the bench's own server (no --addr); profile your server yourself")
		}
	} else if bf.adminURL != "" {
		return fail("--admin-url is for --addr; the bench reads its own server's metrics")
	}
	if bf.inprocess && bf.srvProfile != "" {
		return fail("with --inprocess use --cpuprofile (the server runs in this process)")
	}
	if bf.cluster && (bf.addr != "" || bf.inprocess || bf.srvProfile != "") {
		return fail("--cluster starts its own processes: not with --addr, --inprocess or --server-cpuprofile")
	}
	return 0, true
}

// clientOptions are the options of every bench client.
func (bf *benchFlags) clientOptions() client.Options {
	o := client.Options{Codec: bf.codec, Name: "hearth-bench/" + cli.Version, UseRouteIDs: bf.routeIDs, HandshakeTimeout: 30 * time.Second}
	if strings.HasPrefix(bf.addr, "tls://") || strings.HasPrefix(bf.addr, "wss://") {
		o.TLS = &tls.Config{InsecureSkipVerify: bf.insecure} //nolint:gosec // the user asked for it
	}
	return o
}

// startCPUProfile starts --cpuprofile; the returned func stops it.
func (bf *benchFlags) startCPUProfile() (func(), error) {
	if bf.cpuProfile == "" {
		return func() {}, nil
	}
	return StartCPUProfile(bf.cpuProfile, "hearth bench", os.Stderr)
}

// StartCPUProfile profiles this process into the file name until the
// returned stop is called; what names the command in its messages.
func StartCPUProfile(name, what string, stderr io.Writer) (stop func(), err error) {
	f, err := os.Create(name)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintf(stderr, "%s: --cpuprofile: %v\n", what, err)
		}
	}, nil
}

// report is what a benchmark prints: a table, or with --json the result.
type report struct {
	title string
	rows  [][2]string
	notes []string
}

func (r *report) add(name, format string, a ...any) {
	r.rows = append(r.rows, [2]string{name, fmt.Sprintf(format, a...)})
}

func (r *report) note(format string, a ...any) { r.notes = append(r.notes, fmt.Sprintf(format, a...)) }

func (r *report) print(w io.Writer) {
	fmt.Fprintln(w, r.title)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for _, row := range r.rows {
		fmt.Fprintf(tw, "  %s\t%s\n", row[0], row[1])
	}
	tw.Flush()
	for _, n := range r.notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// emit prints result as JSON with --json, else the table.
func emit(w io.Writer, bf *benchFlags, result any, r *report) {
	if bf.jsonOut {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(result)
		return
	}
	r.print(w)
}

// benchError prints a failed benchmark's error and returns the exit code.
func benchError(opts options, name string, err error) int {
	if errors.Is(err, context.Canceled) {
		fmt.Fprintf(opts.Stderr, "hearth bench %s: interrupted\n", name)
		return 130
	}
	fmt.Fprintf(opts.Stderr, "hearth bench %s: %v\n", name, err)
	return 1
}
