package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearth-server/hearth/internal/cluster"
)

// defaultClusterNATS is the NATS server `--cluster` runs on by default.
const defaultClusterNATS = "nats://127.0.0.1:4222"

// clusterFlags adds --cluster and --nats to rpc and fanout.
func (bf *benchFlags) clusterFlags(fs *flag.FlagSet) {
	fs.BoolVar(&bf.cluster, "cluster", false, "run against a 3-process cluster the bench starts: a service node (--roles sys,bench, no client listener) and two gates (--roles gate); clients are split across the gates")
	fs.StringVar(&bf.natsURL, "nats", defaultClusterNATS, "with --cluster: the NATS server every node uses (under a random --prefix; its buckets are deleted at the end); empty: the service node's embedded NATS, listening for the gates")
}

// clusterNode is one process of a cluster the bench starts.
type clusterNode struct {
	name      string   // its --node-id, and its name in the report
	args      []string // serve flags: --roles …
	noClients bool     // no client listener
}

// benchClusterNodes is the cluster of `--cluster`: issue 3's layout. When
// the bench stops the gates (SIGTERM), each still sees the other serving and
// drains; the bench's clients have closed their connections, which leaves
// their sessions resumable, so without a short --drain-timeout the gates
// would wait out the resume grace for nobody.
var benchClusterNodes = []clusterNode{
	{name: "svc", args: []string{"--roles", "sys,bench", "--tcp", "off", "--ws", "off"}, noClients: true},
	{name: "gate-1", args: []string{"--roles", "gate", "--drain-timeout", "1s"}},
	{name: "gate-2", args: []string{"--roles", "gate", "--drain-timeout", "1s"}},
}

// startCluster starts the nodes in order, as separate processes, on the
// NATS at natsURL, or when it is empty on the first node's embedded NATS
// (listening on 127.0.0.1 for the others); all under a random subject
// prefix. It returns once every node lists every other as serving. The
// target's members are the processes in order; clients dial the nodes with
// a client listener, round-robin.
func startCluster(ctx context.Context, bf *benchFlags, natsURL string, nodes []clusterNode, need serverNeeds, opts options) (*target, error) {
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	prefix := "bench" + hex.EncodeToString(rb[:])
	natsPID := 0
	if natsURL != "" {
		if err := checkNATS(ctx, natsURL); err != nil {
			return nil, err
		}
		natsPID = localNATSPID(natsURL)
	}
	ct := &target{natsPID: natsPID}
	stopAll := func() {
		// The gates together, then the first node: it may hold the
		// embedded NATS the others need to leave the registry cleanly.
		var wg sync.WaitGroup
		for _, m := range ct.members[min(1, len(ct.members)):] {
			wg.Go(m.stop)
		}
		wg.Wait()
		if len(ct.members) > 0 {
			ct.members[0].stop()
		}
		if natsURL != "" {
			deleteBuckets(natsURL, prefix)
		}
	}
	mbf := *bf
	mbf.cluster = false // each member is a plain server child
	bus := natsURL
	var descs []string
	for i, n := range nodes {
		nn := need
		nn.noClients = n.noClients
		nn.args = append(append([]string{"--node-id", n.name, "--prefix", prefix}, n.args...), need.args...)
		if natsURL == "" && i == 0 {
			nn.args = append(nn.args, "--nats-listen", "127.0.0.1:0")
		} else {
			nn.args = append(nn.args, "--nats", bus)
		}
		m, err := startTarget(ctx, &mbf, nn, opts)
		if err != nil {
			stopAll()
			return nil, fmt.Errorf("cluster node %s: %w", n.name, err)
		}
		ct.members = append(ct.members, m)
		ct.names = append(ct.names, n.name)
		if bus == "" {
			if m.nats == "" {
				stopAll()
				return nil, fmt.Errorf("cluster node %s printed no embedded NATS URL", n.name)
			}
			bus = m.nats
		}
		if m.url != "" {
			ct.urls = append(ct.urls, m.url)
		}
		roles := "all"
		if j := slices.Index(n.args, "--roles"); j >= 0 && j+1 < len(n.args) {
			roles = n.args[j+1]
		}
		descs = append(descs, fmt.Sprintf("%s %s pid %d", n.name, roles, m.pid))
	}
	ct.stop = stopAll
	if len(ct.urls) == 0 {
		stopAll()
		return nil, errors.New("the cluster has no gate")
	}
	ct.url = ct.urls[0]
	ct.adminURL = ct.members[0].adminURL
	ct.nats = bus
	where := "embedded NATS of " + nodes[0].name
	if natsURL != "" {
		where = natsURL
	}
	ct.desc = fmt.Sprintf("cluster of %d processes on %s, prefix %s (%s)", len(nodes), where, prefix, strings.Join(descs, "; "))
	if err := waitCluster(ctx, ct, 30*time.Second); err != nil {
		stopAll()
		return nil, err
	}
	return ct, nil
}

// waitCluster waits until every member's /v1/nodes lists every member,
// all serving.
func waitCluster(ctx context.Context, t *target, within time.Duration) error {
	want := slices.Sorted(slices.Values(t.names))
	deadline := time.Now().Add(within)
	last := ""
	for {
		ok := true
		for i, m := range t.members {
			list, err := adminNodes(ctx, m.adminURL)
			if err != nil {
				ok, last = false, fmt.Sprintf("%s: %v", t.names[i], err)
				break
			}
			var got []string
			for _, n := range list {
				if n.State == cluster.StateServing {
					got = append(got, n.ID)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				ok, last = false, fmt.Sprintf("%s sees [%s] serving", t.names[i], strings.Join(got, " "))
				break
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the cluster did not form within %s (want [%s] serving; %s)", within, strings.Join(want, " "), last)
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// adminNodes reads a node's GET /v1/nodes.
func adminNodes(ctx context.Context, adminURL string) ([]cluster.NodeInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, adminURL+"/v1/nodes", nil)
	if err != nil {
		return nil, err
	}
	if tok := os.Getenv("HEARTH_ADMIN_TOKEN"); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/nodes: %s", resp.Status)
	}
	var body struct {
		Nodes []cluster.NodeInfo `json:"nodes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("GET /v1/nodes: %w", err)
	}
	return body.Nodes, nil
}

// checkNATS makes sure a NATS server with JetStream answers at url.
func checkNATS(ctx context.Context, url string) error {
	nc, err := nats.Connect(url, nats.Timeout(3*time.Second), nats.Name("hearth-bench"))
	if err != nil {
		return &explainedError{fmt.Sprintf("cannot reach NATS at %s (%v): start one (nats-server -js -a 127.0.0.1 -p 4222) or give --nats \"\" to use the first node's embedded NATS", url, err)}
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err = js.AccountInfo(ctx)
	}
	if err != nil {
		return &explainedError{fmt.Sprintf("the NATS server at %s has no JetStream (%v): hearth needs it (nats-server -js)", url, err)}
	}
	return nil
}

// deleteBuckets removes the KV buckets a cluster left under prefix on a
// shared NATS server.
func deleteBuckets(url, prefix string) {
	nc, err := nats.Connect(url, nats.Timeout(3*time.Second), nats.Name("hearth-bench"))
	if err != nil {
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	names := js.KeyValueStoreNames(ctx)
	var mine []string
	for name := range names.Name() {
		if strings.HasPrefix(name, prefix+"_") {
			mine = append(mine, name)
		}
	}
	for _, name := range mine {
		_ = js.DeleteKeyValue(ctx, name)
	}
}

// localNATSPID is the pid of the process listening on url's port when the
// host is this machine; 0 when it is not or cannot be found.
func localNATSPID(natsURL string) int {
	first, _, _ := strings.Cut(natsURL, ",")
	u, err := url.Parse(strings.TrimSpace(first))
	if err != nil {
		return 0
	}
	host, portS := u.Hostname(), u.Port()
	if portS == "" {
		portS = "4222"
	}
	port, err := strconv.Atoi(portS)
	if err != nil {
		return 0
	}
	if host != "localhost" {
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return 0
		}
	}
	return listenerPID(port)
}
