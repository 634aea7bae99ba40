// Package e2e runs hearth clusters of real processes — the testnode game
// server built once per run — and drives them with the Go client SDK.
//
// Every cluster test runs twice: against the shared NATS on 127.0.0.1:4222
// (each test under its own subject prefix, its KV buckets deleted at the
// end), and against the embedded NATS of the cluster's first node, which
// listens for the others (--nats-listen). internal/testcluster starts the
// processes, as it does for the benches. Tests of the built-in services
// that keep data (the Niu Niu table) run them over a PostgreSQL schema of
// their own (hearthtest.PostgresDSN).
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/internal/testcluster"
	"github.com/hearth-server/hearth/wire"
)

// registryInterval is every node's --registry-interval: a killed node is
// gone from the registry after 3 of them.
const registryInterval = 200 * time.Millisecond

// requestTimeout is the gates' --request-timeout: a request whose service
// died holding it is answered 302 after this.
const requestTimeout = 2 * time.Second

var binary string // the testnode binary, built by TestMain

// Without -race: the nodes stay light on a small machine; the test process
// itself runs under whatever flags go test was given.
func TestMain(m *testing.M) { os.Exit(testcluster.RunWithBinary(m, "./testnode", &binary)) }

// bus is how a test's cluster reaches NATS.
type bus struct {
	name     string
	embedded bool // the first node runs NATS and listens; else the shared NATS
}

var buses = []bus{{name: "external"}, {name: "embedded", embedded: true}}

// eachBus runs fn as a subtest per bus.
func eachBus(t *testing.T, fn func(t *testing.T, b bus)) {
	for _, b := range buses {
		t.Run(b.name, func(t *testing.T) { fn(t, b) })
	}
}

// nodeArgs are every testnode's serve flags besides the cluster's own.
var nodeArgs = []string{
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

// testCluster is a cluster of testnode processes that stops when the test
// ends, printing the nodes' logs when it failed.
type testCluster struct {
	*testcluster.Cluster
	t *testing.T
}

// nodeSpec is one node to start: id, --roles and flags of its own.
type nodeSpec struct {
	id, roles string
	args      []string
}

func (s nodeSpec) node() testcluster.Node {
	return testcluster.Node{ID: s.id, Args: append([]string{"--roles", s.roles}, s.args...)}
}

// standard is the cluster most tests use: 2 gates and 2 service nodes.
var standard = []nodeSpec{
	{id: "gate-a", roles: "gate"},
	{id: "gate-b", roles: "gate"},
	{id: "svc-1", roles: "count,acct,sys"},
	{id: "svc-2", roles: "count,acct,sys"},
}

// startCluster starts the nodes in order on bus b and waits until every
// node's /v1/nodes lists all of them. On the embedded bus, the first node
// runs NATS and listens, and the others join it.
func startCluster(t *testing.T, b bus, specs ...nodeSpec) *testCluster {
	t.Helper()
	natsURL := ""
	if !b.embedded {
		natsURL = testcluster.SharedNATS
	}
	return startClusterOn(t, natsURL, testcluster.RandomPrefix("e2e"), specs...)
}

// startClusterOn starts the nodes on the NATS server at natsURL ("" the
// first node's embedded one) under prefix.
func startClusterOn(t *testing.T, natsURL, prefix string, specs ...nodeSpec) *testCluster {
	t.Helper()
	var nodes []testcluster.Node
	for _, s := range specs {
		nodes = append(nodes, s.node())
	}
	return startNodes(t, natsURL, prefix, nodes...)
}

// startNodes starts nodes, each with nodeArgs and then its own Args, on
// the NATS server at natsURL ("" the first node's embedded one) under
// prefix.
func startNodes(t *testing.T, natsURL, prefix string, nodes ...testcluster.Node) *testCluster {
	t.Helper()
	cfg := testcluster.Config{
		Binary: binary, NATS: natsURL, Prefix: prefix, Args: nodeArgs, Within: 10 * time.Second,
		// Above every --drain-timeout a test gives: gates stopped together
		// each drain towards the other.
		StopGrace: 30 * time.Second,
		Nodes:     nodes,
	}
	c, err := testcluster.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop cluster: %v", err)
		}
		if t.Failed() {
			t.Log(c.Logs())
		}
	})
	return &testCluster{Cluster: c, t: t}
}

// node returns a started node by id.
func (c *testCluster) node(id string) *testcluster.Proc {
	p := c.Node(id)
	if p == nil {
		c.t.Fatalf("no node %s", id)
	}
	return p
}

// kill ends node id with SIGKILL, as a crash would.
func (c *testCluster) kill(id string) {
	c.t.Helper()
	if err := c.node(id).Kill(); err != nil {
		c.t.Fatal(err)
	}
}

// restart stops node id (SIGTERM: it drains), starts it again with its
// roles and extra flags, and waits until every node lists every node.
func (c *testCluster) restart(s nodeSpec, extra ...string) {
	c.t.Helper()
	if err := c.node(s.id).Stop(30 * time.Second); err != nil {
		c.t.Fatal(err)
	}
	n := s.node()
	n.Args = append(n.Args, extra...)
	if _, err := c.StartNode(context.Background(), n); err != nil {
		c.t.Fatal(err)
	}
	c.waitNodes(10*time.Second, c.ids()...)
}

// ids are the cluster's node ids in start order.
func (c *testCluster) ids() []string {
	var ids []string
	for _, p := range c.Nodes() {
		ids = append(ids, p.ID)
	}
	return ids
}

// waitNodes waits until the /v1/nodes of every live node lists exactly ids,
// all serving.
func (c *testCluster) waitNodes(within time.Duration, ids ...string) {
	c.t.Helper()
	if err := c.WaitServing(context.Background(), within, ids...); err != nil {
		c.t.Fatal(err)
	}
}

// adminNodes GETs /v1/nodes or /v1/gates from an admin base URL.
func adminNodes(admin, path string) ([]cluster.NodeInfo, error) {
	return testcluster.AdminNodes(context.Background(), admin, path)
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
func dial(t *testing.T, gate *testcluster.Proc, transport, name string) *player {
	t.Helper()
	addr := gate.TCP
	if transport == "ws" {
		addr = gate.WS
	}
	if addr == "" {
		t.Fatalf("node %s has no %s listener", gate.ID, transport)
	}
	log := &pushLog{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr, client.Options{Codec: wire.CodecJSON, Name: "e2e/" + name, OnPush: log.add})
	if err != nil {
		t.Fatalf("dial %s %s: %v", gate.ID, addr, err)
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
