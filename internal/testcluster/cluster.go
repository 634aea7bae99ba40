package testcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearth-server/hearth/internal/cluster"
)

// SharedNATS is the machine's NATS server with JetStream (CI starts it:
// nats-server -js -a 127.0.0.1 -p 4222). Clusters on it keep to their own
// subject prefix and delete their buckets when they stop.
const SharedNATS = "nats://127.0.0.1:4222"

// Node is one node of a cluster.
type Node struct {
	// ID is its --node-id.
	ID string
	// Args are its own serve flags (--roles …), after the cluster's.
	Args []string
	// LogFile is its ProcConfig.LogFile; a node started again writes to
	// the same one. Nil: none.
	LogFile io.Writer
	// Env is added to its environment after Config.Env, so a key in both
	// takes this value. Nil: none.
	Env []string
}

// Config describes a cluster. Every node runs Binary with Serve, then
// listeners on 127.0.0.1 (--tcp, --ws, --admin on port 0), its own --data
// directory, --node-id, --prefix, --nats or --nats-listen, then Args, then
// the node's Args: later flags override earlier ones.
type Config struct {
	// Binary is the program every node runs.
	Binary string
	// Serve are the arguments before the flags. Zero: "serve".
	Serve []string
	// NATS is the server every node uses. Zero: the first node's embedded
	// NATS, listening on 127.0.0.1 for the others.
	NATS string
	// Prefix is the bus subject prefix. Zero: "tc" and random hex.
	Prefix string
	// Args are serve flags every node gets. Nil: none.
	Args []string
	// Nodes start in order; the first holds the embedded NATS.
	Nodes []Node
	// Within is how long the nodes have to list each other as serving.
	// Zero: 30s.
	Within time.Duration
	// StopGrace is how long a node has to exit after SIGTERM in Stop.
	// Zero: 15s.
	StopGrace time.Duration
	// LogLines is how many stderr lines are kept per node. Zero: 1000.
	LogLines int
	// Env is added to every node's environment. Nil: none.
	Env []string
}

// Cluster is a running set of nodes on one bus and prefix. It is not safe
// for concurrent use: one goroutine starts and stops its nodes (a Proc's
// own methods may be called from anywhere).
type Cluster struct {
	Prefix string
	NATS   string // the URL every node (and `hearth nodes`) uses

	cfg   Config
	dir   string           // the nodes' data directories
	byID  map[string]*Proc // the latest process of each node
	order []string         // node ids in start order
	all   []*Proc          // every process started, restarts included
}

// RandomPrefix is base followed by 12 random hex digits.
func RandomPrefix(base string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return base + hex.EncodeToString(b[:])
}

// Start starts the nodes in order and returns once every node lists every
// other as serving. On an error it has stopped what it started.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if len(cfg.Serve) == 0 {
		cfg.Serve = []string{"serve"}
	}
	if cfg.Prefix == "" {
		cfg.Prefix = RandomPrefix("tc")
	}
	if cfg.Within == 0 {
		cfg.Within = 30 * time.Second
	}
	if cfg.StopGrace == 0 {
		cfg.StopGrace = 15 * time.Second
	}
	if cfg.NATS != "" {
		if err := CheckNATS(ctx, cfg.NATS); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp("", "hearth-cluster-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Prefix: cfg.Prefix, NATS: cfg.NATS, cfg: cfg, dir: dir, byID: map[string]*Proc{}}
	for _, n := range cfg.Nodes {
		if _, err := c.StartNode(ctx, n); err != nil {
			_ = c.Stop()
			return nil, err
		}
	}
	if err := c.WaitServing(ctx, cfg.Within, c.order...); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

// StartNode starts node n, or starts it again when a node of that id was
// started before (stop or kill the old one first), and returns once it
// serves. It does not wait for the others to see it (WaitServing). The
// first node of a cluster on its embedded NATS cannot start again: the
// bus went with it.
func (c *Cluster) StartNode(ctx context.Context, n Node) (*Proc, error) {
	if c.cfg.NATS == "" && len(c.all) > 0 && n.ID == c.all[0].ID {
		return nil, fmt.Errorf("node %s held the cluster's embedded NATS: it cannot start again", n.ID)
	}
	data := filepath.Join(c.dir, fmt.Sprintf("%s-%d", n.ID, len(c.all)))
	args := append(slices.Clone(c.cfg.Serve),
		"--tcp", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--data", data, "--node-id", n.ID, "--prefix", c.Prefix)
	embedded := c.cfg.NATS == "" && len(c.all) == 0
	if embedded {
		args = append(args, "--nats-listen", "127.0.0.1:0")
	} else {
		args = append(args, "--nats", c.NATS)
	}
	args = append(append(args, c.cfg.Args...), n.Args...)
	p, err := StartProc(ctx, ProcConfig{Binary: c.cfg.Binary, Args: args, ID: n.ID, LogLines: c.cfg.LogLines, LogFile: n.LogFile, Env: append(slices.Clone(c.cfg.Env), n.Env...)})
	if err != nil {
		return nil, err
	}
	c.all = append(c.all, p)
	if _, ok := c.byID[n.ID]; !ok {
		c.order = append(c.order, n.ID)
	}
	c.byID[n.ID] = p
	if embedded {
		if p.NATS == "" {
			return nil, fmt.Errorf("node %s printed no embedded NATS URL", n.ID)
		}
		c.NATS = p.NATS
	}
	return p, nil
}

// Node is the latest process of node id, nil when there is none.
func (c *Cluster) Node(id string) *Proc { return c.byID[id] }

// Nodes are the latest process of every node, in start order.
func (c *Cluster) Nodes() []*Proc {
	out := make([]*Proc, len(c.order))
	for i, id := range c.order {
		out[i] = c.byID[id]
	}
	return out
}

// Live are the nodes whose latest process is running, in start order.
func (c *Cluster) Live() []*Proc {
	var out []*Proc
	for _, p := range c.Nodes() {
		if p.Running() {
			out = append(out, p)
		}
	}
	return out
}

// WaitServing polls until the /v1/nodes of every live node lists exactly
// ids, all serving, and otherwise says what it saw last.
func (c *Cluster) WaitServing(ctx context.Context, within time.Duration, ids ...string) error {
	want := strings.Join(slices.Sorted(slices.Values(ids)), ",")
	var last string
	check := func() bool {
		for _, p := range c.Live() {
			nodes, err := AdminNodes(ctx, p.Admin, "/v1/nodes")
			if err != nil {
				last = p.ID + ": " + err.Error()
				return false
			}
			var got []string
			for _, n := range nodes {
				if n.State != cluster.StateServing {
					last = fmt.Sprintf("%s sees %s %s", p.ID, n.ID, n.State)
					return false
				}
				got = append(got, n.ID)
			}
			if g := strings.Join(slices.Sorted(slices.Values(got)), ","); g != want {
				last = fmt.Sprintf("%s sees [%s]", p.ID, g)
				return false
			}
		}
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !check() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the cluster did not settle on [%s] serving within %s: %s", want, within, last)
		case <-tick.C:
		}
	}
	return nil
}

// Stop stops every running node — all but the first together, then the
// first, which may hold the embedded NATS the others need to leave the
// registry cleanly — and on an external NATS deletes the cluster's
// buckets. It returns what went wrong: nodes that had to be killed
// (ErrKilled), buckets it could not delete.
func (c *Cluster) Stop() error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	var first *Proc
	if len(c.all) > 0 {
		first = c.all[0]
	}
	for _, p := range c.all {
		if p == first {
			continue
		}
		wg.Go(func() {
			if err := p.Stop(c.cfg.StopGrace); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first != nil {
		errs = append(errs, first.Stop(c.cfg.StopGrace))
	}
	if c.cfg.NATS != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, DeleteBuckets(ctx, c.cfg.NATS, c.Prefix))
		cancel()
	}
	errs = append(errs, os.RemoveAll(c.dir))
	return errors.Join(errs...)
}

// Logs are the stderr tails of every process started, restarts included.
func (c *Cluster) Logs() string {
	var b strings.Builder
	for _, p := range c.all {
		fmt.Fprintf(&b, "--- %s (pid %d) stderr:\n%s\n", p.ID, p.PID(), p.Log)
	}
	return b.String()
}

// AdminNodes reads a node's GET /v1/nodes or /v1/gates (path) from its
// admin base URL, with the HEARTH_ADMIN_TOKEN of this environment if set.
func AdminNodes(ctx context.Context, admin, path string) ([]cluster.NodeInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+path, nil)
	if err != nil {
		return nil, err
	}
	if tok := os.Getenv("HEARTH_ADMIN_TOKEN"); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := http.DefaultClient.Do(req)
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

// CheckNATS makes sure a NATS server with JetStream answers at url; its
// error says how to start one.
func CheckNATS(ctx context.Context, url string) error {
	nc, js, err := connectJS(url)
	if err != nil {
		return fmt.Errorf("cannot reach NATS at %s (%w): start one (nats-server -js -a 127.0.0.1 -p 4222), or use the first node's embedded NATS", url, err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("the NATS server at %s has no JetStream (%w): hearth needs it (nats-server -js)", url, err)
	}
	return nil
}

// DeleteBuckets removes the KV buckets of prefix from a NATS server, so a
// shared server does not collect them run after run.
func DeleteBuckets(ctx context.Context, url, prefix string) error {
	nc, js, err := connectJS(url)
	if err != nil {
		return fmt.Errorf("delete buckets: %w", err)
	}
	defer nc.Close()
	names, err := prefixBuckets(ctx, js, prefix)
	errs := []error{err}
	for _, name := range names {
		if err := js.DeleteKeyValue(ctx, name); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			errs = append(errs, fmt.Errorf("delete bucket %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func connectJS(url string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(url, nats.Timeout(3*time.Second), nats.Name("hearth-testcluster"))
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// prefixBuckets lists the KV buckets of a cluster under prefix.
func prefixBuckets(ctx context.Context, js jetstream.JetStream, prefix string) ([]string, error) {
	names := js.KeyValueStoreNames(ctx)
	var mine []string
	for name := range names.Name() {
		if strings.HasPrefix(name, prefix+"_") {
			mine = append(mine, name)
		}
	}
	return mine, names.Error()
}
