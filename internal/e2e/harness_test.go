// Package e2e runs hearth clusters of real processes — the testnode game
// server built once per run — and drives them with the Go client SDK.
//
// Every cluster test runs twice: against the shared NATS on 127.0.0.1:4222
// (each test under its own subject prefix, its KV buckets deleted at the
// end), and against the embedded NATS of the cluster's first node, which
// listens for the others (--nats-listen).
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/wire"
)

// sharedNATS is the machine's NATS server (CI starts it). Tests only add
// and remove their own prefixed subjects and buckets on it.
const sharedNATS = "nats://127.0.0.1:4222"

// registryInterval is every node's --registry-interval: a killed node is
// gone from the registry after 3 of them.
const registryInterval = 200 * time.Millisecond

// requestTimeout is the gates' --request-timeout: a request whose service
// died holding it is answered 302 after this.
const requestTimeout = 2 * time.Second

var binary string // the testnode binary, built by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hearth-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "testnode")
	// Without -race: the nodes stay light on a small machine; the test
	// process itself runs under whatever flags go test was given.
	build := exec.Command("go", "build", "-o", binary, "./testnode")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./testnode: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// bus is how a test's cluster reaches NATS.
type bus struct {
	name     string
	embedded bool // the first node runs NATS and listens; else sharedNATS
}

var buses = []bus{{name: "external"}, {name: "embedded", embedded: true}}

// eachBus runs fn as a subtest per bus.
func eachBus(t *testing.T, fn func(t *testing.T, b bus)) {
	for _, b := range buses {
		t.Run(b.name, func(t *testing.T) { fn(t, b) })
	}
}

// requireSharedNATS fails the test when the shared NATS is not reachable.
func requireSharedNATS(t *testing.T) {
	t.Helper()
	nc, err := nats.Connect(sharedNATS, nats.Timeout(3*time.Second))
	if err != nil {
		t.Fatalf("the shared NATS server at %s is not reachable (%v): these tests need NATS ≥ 2.9 with JetStream there (CI starts it: nats-server -js -a 127.0.0.1 -p 4222)", sharedNATS, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err = js.AccountInfo(ctx)
	}
	if err != nil {
		t.Fatalf("the shared NATS server at %s has no JetStream (%v): start it with -js", sharedNATS, err)
	}
}

// proc is one testnode process.
type proc struct {
	t      *testing.T
	id     string
	roles  string
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{} // closed when the process has exited
	tcp    string        // tcp://…, gates only
	ws     string        // ws://…/ws, gates only
	admin  string        // http://…
	nats   string        // nats://… of its embedded server, when it listens
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var embeddedNATSLine = regexp.MustCompile(`listening on (nats://[^\s,]+)`)

// startProc runs `testnode serve` with test defaults and args, and waits
// for the listener lines it prints once it serves. The process is stopped
// (SIGTERM, then SIGKILL) when the test ends, unless killed before.
func startProc(t *testing.T, id, roles string, args ...string) *proc {
	t.Helper()
	base := []string{"serve",
		"--node-id", id, "--roles", roles,
		"--tcp", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--data", t.TempDir(),
		"--registry-interval", registryInterval.String(),
		"--request-timeout", requestTimeout.String(),
		"--log-level", "warn",
		// These tests call their own services without logging in.
		"--require-login=false",
		// Most clients here do not resume: a drain must not wait long for them.
		"--drain-timeout", "3s",
		// Every client of these tests comes from 127.0.0.1.
		"--conn-rate-per-ip", "-1", "--max-conns-per-ip", "-1",
	}
	cmd := exec.Command(binary, append(base, args...)...)
	cmd.Env = os.Environ()
	p := &proc{t: t, id: id, roles: roles, cmd: cmd, stderr: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM, 15*time.Second)
		if t.Failed() {
			t.Logf("--- %s (%s) stderr:\n%s", id, roles, p.stderr.String())
		}
	})

	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				<-p.exited
				t.Fatalf("node %s exited before serving (%v):\n%s", id, cmd.ProcessState, p.stderr.String())
			}
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			switch f[0] {
			case "tcp":
				p.tcp = f[1]
			case "ws":
				p.ws = f[1]
			case "admin":
				p.admin = f[1]
			case "nats":
				// The last listener line.
				if m := embeddedNATSLine.FindStringSubmatch(line); m != nil {
					p.nats = m[1]
				}
				go func() {
					for range lines { // keep the pipe drained
					}
				}()
				if p.admin == "" {
					t.Fatalf("node %s printed no admin listener", id)
				}
				return p
			}
		case <-deadline:
			t.Fatalf("node %s not serving after 20s:\n%s", id, p.stderr.String())
		}
	}
}

// stop signals the process and waits up to grace for it to exit, then
// kills it.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(grace):
		p.t.Errorf("node %s did not exit within %s of %v; killing it", p.id, grace, sig)
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// kill ends the process with SIGKILL, as a crash would, and waits for it.
func (p *proc) kill() {
	p.t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		p.t.Fatalf("kill %s: %v", p.id, err)
	}
	<-p.exited
}

// testCluster is a running set of nodes sharing one bus and prefix.
type testCluster struct {
	t      *testing.T
	prefix string
	nats   string // the URL every node (and `hearth nodes`) uses
	nodes  map[string]*proc
	order  []string
}

func randomPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "e2e" + hex.EncodeToString(b[:])
}

// nodeSpec is one node to start: id and --roles.
type nodeSpec struct{ id, roles string }

// standard is the cluster most tests use: 2 gates and 2 service nodes.
var standard = []nodeSpec{
	{"gate-a", "gate"},
	{"gate-b", "gate"},
	{"svc-1", "count,acct,sys"},
	{"svc-2", "count,acct,sys"},
}

// startCluster starts the nodes in order on bus b and waits until every
// node's /v1/nodes lists all of them. On the embedded bus, the first node
// runs NATS and listens, and the others join it.
func startCluster(t *testing.T, b bus, specs ...nodeSpec) *testCluster {
	t.Helper()
	c := &testCluster{t: t, prefix: randomPrefix(), nodes: map[string]*proc{}}
	if !b.embedded {
		requireSharedNATS(t)
		c.nats = sharedNATS
		// Runs after every node has stopped (cleanups run last-in first-out).
		t.Cleanup(func() { deleteBuckets(t, sharedNATS, c.prefix) })
	}
	var stopOthers []*proc
	for i, s := range specs {
		var p *proc
		if b.embedded && i == 0 {
			p = startProc(t, s.id, s.roles, "--prefix", c.prefix, "--nats-listen", "127.0.0.1:0")
			if p.nats == "" {
				t.Fatalf("node %s printed no embedded NATS URL", s.id)
			}
			c.nats = p.nats
		} else {
			p = startProc(t, s.id, s.roles, "--prefix", c.prefix, "--nats", c.nats)
			stopOthers = append(stopOthers, p)
		}
		c.nodes[s.id] = p
		c.order = append(c.order, s.id)
	}
	// Stop the nodes together, before the node holding the embedded NATS
	// (which the others need to leave the registry cleanly).
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, p := range stopOthers {
			wg.Go(func() { p.stop(syscall.SIGTERM, 15*time.Second) })
		}
		wg.Wait()
	})
	c.waitNodes(10*time.Second, c.order...)
	return c
}

// node returns a started node by id.
func (c *testCluster) node(id string) *proc {
	p, ok := c.nodes[id]
	if !ok {
		c.t.Fatalf("no node %s", id)
	}
	return p
}

// live returns the nodes not killed, in start order.
func (c *testCluster) live() []*proc {
	var out []*proc
	for _, id := range c.order {
		p := c.nodes[id]
		select {
		case <-p.exited:
		default:
			out = append(out, p)
		}
	}
	return out
}

// waitNodes waits until the /v1/nodes of every live node lists exactly ids,
// all serving.
func (c *testCluster) waitNodes(within time.Duration, ids ...string) {
	c.t.Helper()
	want := strings.Join(sortedCopy(ids), ",")
	var last string
	eventually(c.t, within, func() bool {
		for _, p := range c.live() {
			nodes, err := adminNodes(p.admin, "/v1/nodes")
			if err != nil {
				last = p.id + ": " + err.Error()
				return false
			}
			var got []string
			for _, n := range nodes {
				if n.State != cluster.StateServing {
					last = fmt.Sprintf("%s sees %s %s", p.id, n.ID, n.State)
					return false
				}
				got = append(got, n.ID)
			}
			if g := strings.Join(sortedCopy(got), ","); g != want {
				last = fmt.Sprintf("%s sees [%s]", p.id, g)
				return false
			}
		}
		return true
	}, func() string { return fmt.Sprintf("cluster did not settle on [%s]: %s", want, last) })
}

func sortedCopy(s []string) []string { return slices.Sorted(slices.Values(s)) }

// adminNodes GETs /v1/nodes or /v1/gates from an admin base URL.
func adminNodes(admin, path string) ([]cluster.NodeInfo, error) {
	hc := http.Client{Timeout: 3 * time.Second}
	res, err := hc.Get(admin + path)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, res.Status)
	}
	var body map[string][]cluster.NodeInfo
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	key := strings.TrimPrefix(path, "/v1/")
	list, ok := body[key]
	if !ok {
		return nil, fmt.Errorf("GET %s: no %q in the answer", path, key)
	}
	return list, nil
}

// hearthNodes runs `testnode nodes --nats URL --prefix P` and returns each
// listed node's roles by id.
func hearthNodes(t *testing.T, natsURL, prefix string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, binary, "nodes", "--nats", natsURL, "--prefix", prefix)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("hearth nodes: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := map[string]string{}
	sc := bufio.NewScanner(&stdout)
	header := true
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if header {
			if len(f) < 3 || f[0] != "NODE" || f[2] != "ROLES" {
				t.Fatalf("hearth nodes: unexpected header %q\n%s", sc.Text(), stdout.String())
			}
			header = false
			continue
		}
		if len(f) < 3 {
			t.Fatalf("hearth nodes: short row %q", sc.Text())
		}
		out[f[0]] = f[2]
	}
	return out
}

// deleteBuckets removes a test's registry and presence buckets from a NATS
// server, so the shared server does not collect them run after run.
func deleteBuckets(t *testing.T, url, prefix string) {
	nc, err := nats.Connect(url, nats.Timeout(3*time.Second))
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	names := js.KeyValueStoreNames(ctx)
	var mine []string
	for name := range names.Name() {
		if strings.HasPrefix(name, prefix+"_") {
			mine = append(mine, name)
		}
	}
	if err := names.Error(); err != nil {
		t.Logf("cleanup: list buckets: %v", err)
	}
	for _, name := range mine {
		if err := js.DeleteKeyValue(ctx, name); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			t.Logf("cleanup: delete bucket %s: %v", name, err)
		}
	}
}

// pushLog records the pushes a client receives.
type pushLog struct {
	mu     sync.Mutex
	pushes []client.Push
}

func (l *pushLog) add(p client.Push) {
	l.mu.Lock()
	l.pushes = append(l.pushes, p)
	l.mu.Unlock()
}

// ns returns the "n" of every push received on route, in order.
func (l *pushLog) ns(route string) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int
	for _, p := range l.pushes {
		if p.Route != route {
			continue
		}
		var tick struct{ N int }
		if err := json.Unmarshal(p.Payload, &tick); err != nil {
			out = append(out, -1)
			continue
		}
		out = append(out, tick.N)
	}
	return out
}

// player is a client session on a gate, with the pushes it received.
type player struct {
	*client.Client
	name   string
	pushes *pushLog
}

// dial connects a JSON client to a gate over transport "tcp" or "ws"; it
// is closed when the test ends.
func dial(t *testing.T, gate *proc, transport, name string) *player {
	t.Helper()
	addr := gate.tcp
	if transport == "ws" {
		addr = gate.ws
	}
	if addr == "" {
		t.Fatalf("node %s has no %s listener", gate.id, transport)
	}
	log := &pushLog{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr, client.Options{Codec: wire.CodecJSON, Name: "e2e/" + name, OnPush: log.add})
	if err != nil {
		t.Fatalf("dial %s %s: %v", gate.id, addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &player{Client: c, name: name, pushes: log}
}

// call sends one request with a JSON payload and decodes the result into
// out (when not nil). It returns the request's error: *wire.Error for a
// non-zero status.
func (p *player) call(route string, payload, out any) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := p.RequestRaw(ctx, route, b)
	if err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal(res, out); err != nil {
			return fmt.Errorf("%s answered %q: %w", route, res, err)
		}
	}
	return nil
}

// must is call that fails the test on an error.
func (p *player) must(t *testing.T, route string, payload, out any) {
	t.Helper()
	if err := p.call(route, payload, out); err != nil {
		t.Fatalf("%s: %s %v: %v", p.name, route, payload, err)
	}
}

// login binds the player's session to user name.
func (p *player) login(t *testing.T) {
	t.Helper()
	p.must(t, "acct.login", p.name, nil)
}

// nodeN is the answer of most testnode routes.
type nodeN struct {
	Node string `json:"node"`
	N    int    `json:"n"`
}

// codeOf returns the status code of a request error, or 0 for another error.
func codeOf(err error) wire.Code {
	var we *wire.Error
	if errors.As(err, &we) {
		return we.Code
	}
	return 0
}

// eventually polls cond every 20ms until it holds, failing the test with
// msg() after within.
func eventually(t *testing.T, within time.Duration, cond func() bool, msg func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, msg())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a TCP port free on 127.0.0.1 at the time of the call.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
