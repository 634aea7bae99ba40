package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/cli"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/internal/testcluster"
	"github.com/hearth-server/hearth/wire"
)

// hearthBin is cmd/hearth, built by TestMain: the benches' server child.
var hearthBin string

func TestMain(m *testing.M) { os.Exit(testcluster.RunWithBinary(m, "../../cmd/hearth", &hearthBin)) }

// useBenchBinary makes the benches start a built cmd/hearth as their
// server child (os.Executable is the test binary here).
func useBenchBinary(t *testing.T) {
	old := benchExecutable
	benchExecutable = func() (string, error) { return hearthBin, nil }
	t.Cleanup(func() { benchExecutable = old })
}

func runBench(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	code = Main(ctx, args, cli.Options{Stdout: &out, Stderr: &errb})
	return out.String(), errb.String(), code
}

var firstNumber = regexp.MustCompile(`[0-9][0-9,]*(\.[0-9]+)?`)

// row returns the first number on the table row named name.
func row(t *testing.T, table, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(table, "\n") {
		rest, ok := strings.CutPrefix(line, "  "+name+" ")
		if !ok {
			continue
		}
		m := firstNumber.FindString(rest)
		require.NotEmpty(t, m, "row %q has no number: %q", name, line)
		v, err := strconv.ParseFloat(strings.ReplaceAll(m, ",", ""), 64)
		require.NoError(t, err)
		return v
	}
	t.Fatalf("no row %q in:\n%s", name, table)
	return 0
}

func TestBenchCommands(t *testing.T) {
	useBenchBinary(t)
	cases := []struct {
		name    string
		args    []string
		nonZero []string           // rows whose number must be > 0
		zero    []string           // rows whose number must be 0
		equal   map[string]float64 // rows whose number must be this
		below   map[string]float64 // rows whose number must be under this
		text    []string           // must appear in the output
		server  string             // the title's server; default "server: separate process"
		nats    bool               // needs the NATS server at 127.0.0.1:4222
	}{
		{
			name:    "rpc",
			args:    []string{"rpc", "--clients", "4", "--duration", "1s", "--warmup", "200ms"},
			nonZero: []string{"requests", "throughput", "latency p50", "latency p90", "latency p99", "latency p99.9", "latency max", "server cpu", "bench cpu"},
			zero:    []string{"errors"},
			text:    []string{"stolen cpu", "other guests by the hypervisor"},
		},
		{
			name:    "rpc-ws-protobuf-pipelined",
			args:    []string{"rpc", "--clients", "3", "--pipeline", "4", "--transport", "ws", "--codec", "protobuf", "--route-ids", "--duration", "500ms", "--warmup", "100ms"},
			nonZero: []string{"requests", "throughput", "latency p50"},
			zero:    []string{"errors"},
		},
		{
			name:    "fanout",
			args:    []string{"fanout", "--sessions", "20", "--duration", "1s", "--warmup", "200ms"},
			nonZero: []string{"publishes", "publish rate", "deliveries", "delivery rate", "delivery latency p50", "delivery latency p99", "server cpu"},
			zero:    []string{"errors"},
		},
		{
			name:    "fanout-ws-json",
			args:    []string{"fanout", "--sessions", "5", "--transport", "ws", "--codec", "json", "--duration", "500ms", "--warmup", "100ms"},
			nonZero: []string{"deliveries", "delivery rate", "delivery latency p50"},
			zero:    []string{"errors"},
		},
		{
			name: "idle",
			args: []string{"idle", "--sessions", "50", "--settle", "500ms"},
			// Not "go stacks per session": with 50 sessions the stacks in
			// use may not grow at all (a reader goroutine's stack comes
			// from spans already cached), and the row is left out.
			nonZero: []string{"sessions", "server rss before", "server rss after"},
			text:    []string{"rss per session", "rss per session, marginal", "after GC", "--gc-signal", "idle workers", "the node's pool"},
			// Idle TCP sessions park on the gate's poller: no goroutine each.
			below: map[string]float64{"goroutines per session": 0.5},
		},
		{
			name: "idle-ws",
			args: []string{"idle", "--sessions", "50", "--settle", "500ms", "--transport", "ws"},
			// A WebSocket session keeps its reader goroutine.
			nonZero: []string{"sessions", "goroutines per session"},
			text:    []string{"rss per session", "after GC"},
		},
		{
			name:    "login-guest",
			args:    []string{"login", "--clients", "10", "--duration", "1s", "--warmup", "200ms"},
			nonZero: []string{"logins", "throughput", "latency p50", "latency p99", "server cpu", "bench cpu"},
			zero:    []string{"errors"},
			text:    []string{"guest logins (auth.guest)", "no login queue (--login-rate -1)"},
		},
		{
			name:    "login-password",
			args:    []string{"login", "--mode", "password", "--clients", "4", "--duration", "1s", "--warmup", "200ms"},
			nonZero: []string{"logins", "throughput", "latency p50", "server cpu"},
			zero:    []string{"errors"},
			equal:   map[string]float64{"accounts registered": 4},
			text:    []string{"password logins (auth.login, argon2id)"},
		},
		{
			name:    "login-queue",
			args:    []string{"login", "--login-rate", "20", "--clients", "40"},
			nonZero: []string{"admitted at once", "queued", "admission rate", "all logged in after", "time to log in p50", "wait estimates", "estimates within 25%"},
			zero:    []string{"errors", "position not lower"},
			equal:   map[string]float64{"clients": 40, "logged in": 40},
			text:    []string{"login queue at 20/s (--login-rate 20)", "estimate error p90"},
		},
		{
			name:    "resume",
			args:    []string{"resume", "--sessions", "20"},
			nonZero: []string{"pushes received", "time to resume p50", "all resumed after", "gate B exited after"},
			zero:    []string{"lost", "missed pushes", "duplicate pushes", "sys.tick missing", "sys.tick out of order", "silent after resume", "errors"},
			equal:   map[string]float64{"sessions": 20, "disconnected": 20, "resumed": 20, "sys.push streams": 20},
			// Not "bench.msg missing": a channel message published while a
			// session moves between gates can reach neither (see
			// docs/benchmarks.md, resume).
			text:   []string{"gate B drained with SIGTERM", "bench.msg missing"},
			server: "server: cluster of 2 processes on embedded NATS of gate-a",
		},
		{
			name:    "resume-kill",
			args:    []string{"resume", "--sessions", "20", "--kill"},
			nonZero: []string{"time to lost p50", "all lost after"},
			zero:    []string{"resumed", "missed pushes", "errors"},
			equal:   map[string]float64{"disconnected": 20, "lost": 20, "lost 304 session lost": 20},
			text:    []string{"gate B killed with SIGKILL"},
			server:  "server: cluster of 2 processes on embedded NATS of gate-a",
		},
		{
			name:    "rpc-cluster",
			args:    []string{"rpc", "--cluster", "--clients", "4", "--duration", "1s", "--warmup", "200ms"},
			nonZero: []string{"requests", "throughput", "latency p50", "server cpu", "bench cpu"},
			zero:    []string{"errors"},
			text:    []string{"server cpu by process   svc ", "gate-1", "gate-2"},
			server:  "server: cluster of 3 processes on nats://127.0.0.1:4222, prefix bench",
			nats:    true,
		},
		{
			name:    "fanout-cluster-embedded",
			args:    []string{"fanout", "--cluster", "--nats", "", "--sessions", "20", "--duration", "1s", "--warmup", "200ms"},
			nonZero: []string{"deliveries", "delivery rate", "delivery latency p50", "server cpu"},
			zero:    []string{"errors"},
			server:  "server: cluster of 3 processes on embedded NATS of svc",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.nats {
				requireNATS(t)
			}
			out, errOut, code := runBench(t, tc.args...)
			require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
			require.Contains(t, out, "hearth bench "+tc.args[0]+":")
			server := tc.server
			if server == "" {
				server = "server: separate process"
			}
			require.Contains(t, out, server)
			for _, r := range tc.nonZero {
				require.Greater(t, row(t, out, r), 0.0, "row %q in:\n%s", r, out)
			}
			for _, r := range tc.zero {
				require.Equal(t, 0.0, row(t, out, r), "row %q in:\n%s", r, out)
			}
			for r, v := range tc.below {
				require.Less(t, row(t, out, r), v, "row %q in:\n%s", r, out)
			}
			for r, v := range tc.equal {
				require.Equal(t, v, row(t, out, r), "row %q in:\n%s", r, out)
			}
			for _, x := range tc.text {
				require.Contains(t, out, x)
			}
			require.Contains(t, errOut, "\r", "no progress line on stderr")
			require.NotContains(t, out, "connections lost")
		})
	}
}

// requireNATS fails a test that needs the NATS server on 127.0.0.1:4222
// (CI starts it: nats-server -js -a 127.0.0.1 -p 4222) when there is none.
func requireNATS(t *testing.T) {
	t.Helper()
	require.NoError(t, testcluster.CheckNATS(context.Background(), testcluster.SharedNATS))
}

func TestBenchJSONAndInProcess(t *testing.T) {
	out, errOut, code := runBench(t, "rpc", "--inprocess", "--json", "--clients", "2", "--duration", "300ms", "--warmup", "0s")
	require.Equal(t, 0, code, errOut)
	var res RPCResult
	require.NoError(t, json.Unmarshal([]byte(out), &res), out)
	require.Equal(t, "rpc", res.Bench)
	require.Equal(t, "in-process", res.Server)
	require.Greater(t, res.Requests, int64(0))
	require.Greater(t, res.ReqPerSec, 0.0)
	require.Greater(t, res.Latency.P99, 0.0)
	require.Empty(t, res.Errors)

	out, errOut, code = runBench(t, "fanout", "--inprocess", "--json", "--sessions", "3", "--duration", "300ms", "--warmup", "0s")
	require.Equal(t, 0, code, errOut)
	var fres FanoutResult
	require.NoError(t, json.Unmarshal([]byte(out), &fres), out)
	require.Greater(t, fres.Deliveries, int64(0))
	require.Greater(t, fres.Publishes, int64(0))

	// A queue run's JSON: every client logged in, through the queue.
	useBenchBinary(t)
	out, errOut, code = runBench(t, "login", "--json", "--login-rate", "10", "--clients", "15", "--codec", "protobuf")
	require.Equal(t, 0, code, errOut)
	var lres LoginResult
	require.NoError(t, json.Unmarshal([]byte(out), &lres), out)
	require.Equal(t, "login", lres.Bench)
	require.NotNil(t, lres.Queue, out)
	require.Equal(t, 15, lres.Queue.LoggedIn)
	// The burst (10) at once, give or take a token accrued while the
	// logins arrive; the rest queued.
	require.GreaterOrEqual(t, lres.Queue.AdmittedAtOnce, 10)
	require.Equal(t, 15-lres.Queue.AdmittedAtOnce, lres.Queue.Queued)
	require.Positive(t, lres.Queue.Queued)
	require.Equal(t, int64(15), lres.Logins)
	require.Empty(t, lres.Errors)
}

func TestBenchErrors(t *testing.T) {
	// A server without the bench service.
	node := hearthtest.Start(t, hearth.Config{})
	_, errOut, code := runBench(t, "fanout", "--addr", node.URL("tcp"), "--sessions", "2", "--duration", "200ms")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "hearth bench server")

	// Nothing listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	_, errOut, code = runBench(t, "rpc", "--addr", "tcp://"+addr, "--clients", "1", "--duration", "200ms")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "is `hearth serve` running")

	// The default per-IP limits of an external server.
	limited := hearthtest.Start(t, hearth.Config{Limits: hearth.Limits{MaxConnsPerIP: 3}})
	_, errOut, code = runBench(t, "idle", "--addr", limited.URL("tcp"), "--admin-url", limited.AdminURL(), "--sessions", "10", "--settle", "0s")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "KICK 203")
	require.Contains(t, errOut, "--max-conns-per-ip -1")

	// An external server's memory, from its admin /metrics.
	out, errOut, code := runBench(t, "idle", "--addr", node.URL("ws"), "--admin-url", node.AdminURL(), "--sessions", "5", "--settle", "0s")
	require.Equal(t, 0, code, errOut)
	require.Greater(t, row(t, out, "server rss after"), 0.0)

	for _, args := range [][]string{
		{"nope"},
		{"rpc", "--clients", "0"},
		{"rpc", "--transport", "udp"},
		{"rpc", "--codec", "xml"},
		{"idle", "--inprocess"},
		{"idle", "--addr", "tcp://127.0.0.1:1"},
		{"fanout", "--payload", "8"},
		{"rpc", "--addr", "http://x"},
		{"rpc", "extra"},
		{"server", "--no-such-flag"},
		{"rpc", "--inprocess", "--server-cpuprofile", "x"},
		{"rpc", "--cluster", "--addr", "tcp://127.0.0.1:1"},
		{"fanout", "--cluster", "--inprocess"},
		{"login", "--mode", "token"},
		{"login", "--inprocess"},
		{"login", "--login-rate", "0"},
		{"login", "--clients", "0"},
		{"resume", "--addr", "tcp://127.0.0.1:1"},
		{"resume", "--sessions", "0"},
		{"resume", "--push-interval", "2s"},
	} {
		_, errOut, code := runBench(t, args...)
		require.Equal(t, 2, code, "%v: %s", args, errOut)
		require.NotEmpty(t, errOut)
	}
}

// A server that goes away mid-run: the bench reports the lost connections
// and does not hang.
func TestBenchServerGone(t *testing.T) {
	cfg := hearth.Config{
		TCPAddr: "127.0.0.1:0", WSAddr: hearth.Off, AdminAddr: hearth.Off, DataDir: t.TempDir(),
		Logger: hearthtest.Logger(t, slog.LevelError),
		Limits: hearth.Limits{RequestRate: -1},
	}
	node, err := hearth.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- node.Run(ctx) }()
	<-node.Ready()

	bctx, bcancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer bcancel()
	stderr := newWatchWriter("measuring")
	done := make(chan int, 1)
	start := time.Now()
	go func() {
		args := []string{"rpc", "--addr", "tcp://" + node.Addr("tcp").String(), "--clients", "3", "--pipeline", "2", "--warmup", "200ms", "--duration", "30s"}
		done <- Main(bctx, args, cli.Options{Stdout: io.Discard, Stderr: stderr})
	}()
	// The server goes once the bench measures.
	select {
	case <-stderr.seen:
	case code := <-done:
		t.Fatalf("the bench ended (%d) before measuring:\n%s", code, stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("the bench did not start measuring within 30s:\n%s", stderr)
	}
	cancel()
	code := <-done
	if err := <-errc; err != nil {
		t.Logf("node stopped: %v", err) // its own shutdown is not under test
	}
	require.Equal(t, 1, code)
	require.Less(t, time.Since(start), 20*time.Second, "the bench waited out --duration")
	// Each connection ends with the server's KICK 8 — or, for a client
	// caught writing as the server closed, with that write's error.
	out := stderr.String()
	require.Contains(t, out, "every connection was lost; the first ended with: ")
	require.True(t, strings.Contains(out, "hearth: 8 server shutting down") || strings.Contains(out, "broken pipe") || strings.Contains(out, "connection reset"),
		"the bench says why the connections were lost: %s", out)
}

// watchWriter collects what is written to it and closes seen once word
// has been written. mu guards buf.
type watchWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	word string
	seen chan struct{}
	once sync.Once
}

func newWatchWriter(word string) *watchWriter {
	return &watchWriter{word: word, seen: make(chan struct{})}
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.word) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *watchWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestBenchPayloads(t *testing.T) {
	for _, n := range []int{0, 2, 9, 40, 130, 200, 20_000} {
		p := pingPayload(wire.CodecJSON, n)
		require.True(t, json.Valid(p), "%d: %s", n, p)
		if n >= 9 {
			require.Len(t, p, n)
		}
		if pb := pingPayload(wire.CodecProtobuf, n); n >= 3 {
			require.InDelta(t, n, len(pb), 1, "protobuf payload of %d", n) // a varint boundary may cost a byte
		}
	}
	for _, size := range []int{16, 32, 200, 1000} {
		p := publishPayload(nil, size, 12345, 678)
		stamp, round, ok := parseDelivery(p, false)
		require.True(t, ok)
		require.Equal(t, int64(12345), stamp)
		require.Equal(t, uint64(678), round)
		js := []byte(`"` + base64.StdEncoding.EncodeToString(p[len(p)-size:]) + `"`)
		stamp, round, ok = parseDelivery(js, true)
		require.True(t, ok, "%s", js)
		require.Equal(t, int64(12345), stamp)
		require.Equal(t, uint64(678), round)
	}
	require.Equal(t, "1,234,567", FormatInt(1234567))
	require.Equal(t, "-1,000", FormatInt(-1000))
}

// BenchmarkRPC measures sys.ping round trips end to end in one process:
// 64 clients, each with one request outstanding, through the gate, the
// embedded NATS bus and the sys service.
func BenchmarkRPC(b *testing.B) {
	for _, tr := range hearthtest.Transports {
		b.Run(tr, func(b *testing.B) {
			node := hearthtest.Start(b, hearth.Config{Limits: hearth.Limits{RequestRate: -1, MaxConnsPerIP: -1, ConnRatePerIP: -1}})
			const nclients = 64
			clients := make([]*client.Client, nclients)
			for i := range clients {
				clients[i] = node.Dial(b, tr)
			}
			payload := pingPayload(wire.CodecJSON, 40)
			var next atomic.Int64
			b.SetParallelism((nclients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c := clients[int(next.Add(1)-1)%nclients]
				ctx := context.Background()
				for pb.Next() {
					if _, err := c.RequestRaw(ctx, "sys.ping", payload); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// BenchmarkFanout measures channel publishes to 100 sessions in one
// process; each op is one publish delivered to every session.
func BenchmarkFanout(b *testing.B) {
	const nsessions = 100
	cfg := hearth.Config{
		TCPAddr: "127.0.0.1:0", WSAddr: hearth.Off, AdminAddr: hearth.Off, DataDir: b.TempDir(),
		Logger: hearthtest.Logger(b, slog.LevelError),
		Limits: hearth.Limits{RequestRate: -1, MaxConnsPerIP: -1, ConnRatePerIP: -1},
	}
	node, err := hearth.New(cfg)
	require.NoError(b, err)
	require.NoError(b, node.Register(benchService()))
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- node.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			b.Logf("node stopped: %v", err)
		}
	})
	<-node.Ready()
	url := "tcp://" + node.Addr("tcp").String()

	var got atomic.Int64
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	for range nsessions {
		c, err := client.Dial(ctx, url, client.Options{Codec: wire.CodecProtobuf})
		require.NoError(b, err)
		b.Cleanup(func() { c.Close() })
		c.OnPush(benchRoute, func(client.Push) {
			got.Add(1)
			mu.Lock()
			cond.Broadcast()
			mu.Unlock()
		})
		_, err = c.RequestRaw(ctx, "bench.join", nil)
		require.NoError(b, err)
	}
	pub, err := client.Dial(ctx, url, client.Options{Codec: wire.CodecProtobuf})
	require.NoError(b, err)
	b.Cleanup(func() { pub.Close() })
	buf := publishPayload(nil, 32, 0, 0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := pub.RequestRaw(ctx, "bench.publish", buf); err != nil {
			b.Fatal(err)
		}
		// Keep at most 4 publishes in flight.
		want := int64(i-3) * nsessions
		mu.Lock()
		for got.Load() < want {
			cond.Wait()
		}
		mu.Unlock()
	}
	mu.Lock()
	for got.Load() < int64(b.N)*nsessions {
		cond.Wait()
	}
	mu.Unlock()
	b.ReportMetric(float64(b.N)*nsessions/b.Elapsed().Seconds(), "deliveries/s")
}

// A game's binary built on cli.Main does not link the benches: only
// cmd/hearth plugs them in.
func TestCLIDoesNotLinkBench(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/hearth-server/hearth/cli").CombinedOutput()
	require.NoError(t, err, "%s", out)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/hearth-server/hearth", "go list printed no dependencies")
	for _, p := range []string{"github.com/hearth-server/hearth/internal/bench", "github.com/hearth-server/hearth/internal/testcluster"} {
		require.NotContains(t, deps, p)
	}
}
