package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/internal/hugepage"
)

func serve(ctx context.Context, args []string, opts Options) int {
	fs := flag.NewFlagSet("hearth serve", flag.ContinueOnError)
	fs.SetOutput(opts.Stderr)
	var (
		cfg       hearth.Config
		roles     string
		configF   string
		logLevel  string
		logFormat string
		builtin   builtinFlags
	)
	builtin.register(fs)
	fs.StringVar(&configF, "config", "", "YAML config file; keys are these flag names (env HEARTH_CONFIG)")
	fs.StringVar(&cfg.TCPAddr, "tcp", ":7100", "TCP client listener, or off")
	fs.StringVar(&cfg.WSAddr, "ws", ":7101", "WebSocket client listener (path /ws), or off")
	fs.StringVar(&cfg.AdminAddr, "admin", "127.0.0.1:7180", "admin HTTP listener (/healthz /readyz /metrics /v1/...), or off; a non-loopback address needs --admin-token")
	fs.StringVar(&cfg.DataDir, "data", "./data", "data directory (embedded NATS JetStream)")
	fs.StringVar(&cfg.NATSURL, "nats", "", "external NATS URL(s), comma-separated; empty runs NATS embedded")
	fs.StringVar(&cfg.NATSListen, "nats-listen", "", "let other nodes join the embedded NATS on host:port")
	fs.StringVar(&cfg.NATSCredsFile, "nats-creds", "", "NATS credentials file for --nats")
	fs.StringVar(&cfg.NATSCAFile, "nats-ca", "", "CA bundle (PEM) to trust for --nats over TLS")
	fs.StringVar(&cfg.NATSCertFile, "nats-cert", "", "client certificate (PEM) for --nats mutual TLS")
	fs.StringVar(&cfg.NATSKeyFile, "nats-key", "", "client key (PEM) for --nats mutual TLS")
	fs.IntVar(&cfg.NATSPublishers, "nats-publishers", 4, "connections the node publishes on (the first also subscribes; each gate's traffic pinned to one of the others)")
	fs.StringVar(&cfg.NodeID, "node-id", "", "unique node id (default: random)")
	fs.StringVar(&roles, "roles", "", "comma-separated roles: gate and service names (default: all)")
	fs.StringVar(&cfg.Prefix, "prefix", "hearth", "bus subject prefix")
	fs.StringVar(&cfg.TLSCertFile, "tls-cert", "", "TLS certificate file (PEM) for the client listeners")
	fs.StringVar(&cfg.TLSKeyFile, "tls-key", "", "TLS private key file (PEM)")
	fs.DurationVar(&cfg.Limits.Heartbeat, "heartbeat", 10*time.Second, "client heartbeat interval; 3× silence closes a session")
	fs.DurationVar(&cfg.Limits.HandshakeTimeout, "handshake-timeout", 5*time.Second, "time a client has to send HANDSHAKE")
	fs.DurationVar(&cfg.Limits.RequestTimeout, "request-timeout", 5*time.Second, "time a service has to answer (then 302)")
	fs.IntVar(&cfg.Limits.MaxFrame, "max-frame", 65536, "largest client frame body in bytes")
	fs.IntVar(&cfg.Limits.SendQueueBytes, "send-queue", 1<<20, "per-session unsent output limit in bytes (then KICK 202)")
	fs.IntVar(&cfg.Limits.MaxSessions, "max-sessions", 100_000, "sessions per gate (then KICK 203)")
	fs.IntVar(&cfg.Limits.MaxConnsPerIP, "max-conns-per-ip", 1000, "concurrent connections per IP (then KICK 203); -1 unlimited")
	fs.Float64Var(&cfg.Limits.ConnRatePerIP, "conn-rate-per-ip", 100, "new connections per second per IP (then KICK 200); -1 unlimited")
	fs.Float64Var(&cfg.Limits.RequestRate, "session-rate", 1000, "requests per second per session (then 200); -1 unlimited")
	fs.IntVar(&cfg.Limits.MaxInFlight, "max-inflight", 64, "unanswered requests per session (then 201)")
	fs.DurationVar(&cfg.Limits.ResumeGrace, "resume-grace", time.Minute, "how long a dropped session stays resumable (negative: no resume)")
	fs.IntVar(&cfg.Limits.ResumePushes, "resume-pushes", 256, "pushes kept per session for replay after a resume")
	fs.IntVar(&cfg.Limits.ResumeBytes, "resume-bytes", 256<<10, "bytes of pushes kept per session for replay (a push counts its payload, route and ids and ~100 bytes for its slot)")
	fs.IntVar(&cfg.Limits.ResumeGateBytes, "resume-gate-bytes", 1<<30, "bytes of pushes kept for replay by the whole gate (a connected session keeps at most half of it over the sessions, at least resume-bytes/8; past it, resume-bytes/8)")
	fs.IntVar(&cfg.Limits.ResumeAckBytes, "resume-ack-bytes", 0, "after this many bytes of pushes to a connected session, PING it: its PONG lets the gate forget the pushes and responses it has read (0: never; 4096 halves a busy server's memory)")
	fs.IntVar(&cfg.Limits.ResponseCache, "response-cache", 128, "responses kept per session for re-sends after a resume")
	fs.IntVar(&cfg.Limits.ResponseCacheBytes, "response-cache-bytes", 64<<10, "bytes of responses kept per session (a re-send past it gets 306)")
	fs.IntVar(&cfg.Limits.ResponseCacheItem, "response-cache-item", 16<<10, "largest response kept for a re-send, in bytes")
	fs.IntVar(&cfg.Limits.ResponseCacheGate, "response-cache-gate", 64<<20, "bytes of responses kept by the whole gate")
	fs.IntVar(&cfg.Limits.ChannelBuffer, "channel-buffer", 65536, "channel messages queued for fan-out per gate (past it: dropped, members see a push_seq gap)")
	fs.IntVar(&cfg.Limits.Readers, "readers", 0, "goroutines that read woken parked sessions at once (0: twice GOMAXPROCS; negative: one per session, unbounded)")
	fs.DurationVar(&cfg.Limits.ParkGap, "park-gap", 50*time.Millisecond, "a TCP session whose frames come at least this far apart waits on the gate's poller without a goroutine (Linux; negative: never)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 30*time.Second, "on stop, how long to wait for clients to resume on another gate")
	fs.BoolVar(&cfg.DisableSysPush, "disable-sys-push", false, "turn off the sys.push diagnostic route")
	fs.BoolVar(&cfg.HugePages, "huge-pages", false, "move the server's memory onto 2 MiB pages under the \"madvise\" huge page mode (docs/operations.md)")
	fs.StringVar(&cfg.Advertise, "advertise", "", "host clients use to reach this gate, published in the registry (default: listen host or hostname)")
	fs.StringVar(&cfg.AdminToken, "admin-token", "", "bearer token required on the admin API /v1/... (env HEARTH_ADMIN_TOKEN)")
	fs.DurationVar(&cfg.RegistryInterval, "registry-interval", 500*time.Millisecond, "registry refresh; a node silent for 3 intervals has left")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "text", "text or json")
	if opts.Flags != nil {
		opts.Flags(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if configF == "" {
		configF = os.Getenv("HEARTH_CONFIG")
	}
	if err := resolve(fs, configF); err != nil {
		fmt.Fprintf(opts.Stderr, "hearth serve: %s\n", flagNames.Replace(err.Error()))
		return 2
	}
	if roles != "" {
		for _, r := range strings.Split(roles, ",") {
			if r = strings.TrimSpace(r); r != "" {
				cfg.Roles = append(cfg.Roles, r)
			}
		}
	}
	log, err := newLogger(opts.Stderr, logLevel, logFormat)
	if err != nil {
		fmt.Fprintf(opts.Stderr, "hearth serve: %s\n", flagNames.Replace(err.Error()))
		return 2
	}
	cfg.Logger = log

	cfg.RequireUser = builtin.requireLogin
	var game []*hearth.Service
	if opts.Services != nil {
		game = opts.Services(&cfg)
	}
	node, err := hearth.New(cfg)
	if err != nil {
		fmt.Fprintf(opts.Stderr, "hearth serve: %s\n", flagNames.Replace(err.Error()))
		return 1
	}
	svcs, closeStore, err := builtin.builtins(ctx, &cfg)
	defer closeStore()
	if err != nil {
		fmt.Fprintf(opts.Stderr, "hearth serve: %s\n", flagNames.Replace(err.Error()))
		return 1
	}
	if err := node.Register(svcs...); err != nil {
		fmt.Fprintf(opts.Stderr, "hearth serve: %s\n", flagNames.Replace(err.Error()))
		return 1
	}
	if err := node.Register(game...); err != nil {
		fmt.Fprintf(opts.Stderr, "hearth serve: %s\n", flagNames.Replace(err.Error()))
		return 1
	}
	errc := make(chan error, 1)
	go func() { errc <- node.Run(ctx) }()
	select {
	case <-node.Ready():
		printListeners(opts.Stdout, node, cfg)
		hugePagesHint(opts.Stdout, hugepage.Mode(), cfg.HugePages)
	case err := <-errc:
		fmt.Fprintf(opts.Stderr, "hearth serve: %s\n", flagNames.Replace(err.Error()))
		return 1
	}
	if err := <-errc; err != nil {
		fmt.Fprintf(opts.Stderr, "hearth serve: shutdown: %v\n", err)
		return 1
	}
	return 0
}

// flagNames rewrites the Config fields that the library's errors name into
// the flags that set them.
var flagNames = strings.NewReplacer(
	"Config.AdminAddr", "--admin",
	"Config.AdminToken", "--admin-token (or HEARTH_ADMIN_TOKEN)",
	"Config.TLSCertFile", "--tls-cert",
	"Config.TLSKeyFile", "--tls-key",
	"Config.NATSURL", "--nats",
	"Config.NATSListen", "--nats-listen",
	"Config.NodeID", "--node-id",
)

func printListeners(w io.Writer, node *hearth.Node, cfg hearth.Config) {
	fmt.Fprintf(w, "hearth %s  node %s  roles %s\n", Version, node.ID(), strings.Join(rolesOrAll(cfg.Roles), ","))
	if a := node.Addr("tcp"); a != nil {
		scheme := "tcp"
		if cfg.TLSCertFile != "" {
			scheme = "tls"
		}
		fmt.Fprintf(w, "  tcp    %s://%s\n", scheme, display(a))
	}
	if a := node.Addr("ws"); a != nil {
		scheme := "ws"
		if cfg.TLSCertFile != "" {
			scheme = "wss"
		}
		fmt.Fprintf(w, "  ws     %s://%s/ws\n", scheme, display(a))
	}
	if a := node.Addr("admin"); a != nil {
		fmt.Fprintf(w, "  admin  http://%s  (/healthz /readyz /metrics)\n", display(a))
	}
	switch {
	case cfg.NATSURL != "":
		fmt.Fprintf(w, "  nats   %s\n", cfg.NATSURL)
	case node.NATSURL() != "":
		fmt.Fprintf(w, "  nats   embedded, listening on %s, data in %s\n", node.NATSURL(), cfg.DataDir)
	default:
		fmt.Fprintf(w, "  nats   embedded (in-process), data in %s\n", cfg.DataDir)
	}
	if a := node.Addr("tcp"); a != nil {
		fmt.Fprintf(w, "try:   %s call --addr tcp://%s sys.time\n", progName(), display(a))
	}
}

// display shows a wildcard listen address as localhost, which is where a
// user on the same machine can reach it.
func display(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

func rolesOrAll(r []string) []string {
	if len(r) == 0 {
		return []string{"all"}
	}
	return r
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	o := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}
