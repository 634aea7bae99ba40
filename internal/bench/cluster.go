package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/hearth-server/hearth/internal/testcluster"
)

// clusterFlags adds --cluster and --nats to rpc and fanout.
func (bf *benchFlags) clusterFlags(fs *flag.FlagSet) {
	fs.BoolVar(&bf.cluster, "cluster", false, "run against a 3-process cluster the bench starts: a service node (--roles sys,bench, no client listener) and two gates (--roles gate); clients are split across the gates")
	fs.StringVar(&bf.natsURL, "nats", testcluster.SharedNATS, "with --cluster: the NATS server every node uses (under a random --prefix; its buckets are deleted at the end); empty: the service node's embedded NATS, listening for the gates")
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

// startCluster starts the nodes in order, as separate processes running
// this binary's `bench server`, on the NATS at natsURL, or when it is empty
// on the first node's embedded NATS; all under a random subject prefix. It
// returns once every node lists every other as serving. The target's
// members are the processes in order; clients dial the nodes with a client
// listener, round-robin.
func startCluster(ctx context.Context, bf *benchFlags, natsURL string, nodes []clusterNode, need serverNeeds, opts options) (*target, error) {
	exe, err := benchExecutable()
	if err != nil {
		return nil, fmt.Errorf("cannot find this program to start the cluster: %w", err)
	}
	natsPID := 0
	if natsURL != "" {
		if err := testcluster.CheckNATS(ctx, natsURL); err != nil {
			return nil, &explainedError{err.Error() + "; --nats \"\" runs the cluster on the first node's embedded NATS"}
		}
		natsPID = localNATSPID(natsURL)
	}
	cfg := testcluster.Config{
		Binary:   exe,
		Serve:    serverCommand(bf, need, opts),
		NATS:     natsURL,
		Prefix:   testcluster.RandomPrefix("bench"),
		Args:     serverFlags(need),
		LogLines: 40,
	}
	for _, n := range nodes {
		cfg.Nodes = append(cfg.Nodes, testcluster.Node{ID: n.name, Args: n.args})
	}
	c, err := testcluster.Start(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	ct := &target{natsPID: natsPID, stop: func() {
		if err := c.Stop(); err != nil {
			fmt.Fprintf(opts.Stderr, "hearth bench: stopping the cluster: %v\n", err)
		}
	}}
	var descs []string
	for i, p := range c.Nodes() {
		url := transportURL(p, bf.transport)
		m := childTarget(p, url, "")
		ct.members = append(ct.members, m)
		ct.names = append(ct.names, p.ID)
		if url != "" {
			ct.urls = append(ct.urls, url)
		}
		roles := "all"
		if j := slices.Index(nodes[i].args, "--roles"); j >= 0 && j+1 < len(nodes[i].args) {
			roles = nodes[i].args[j+1]
		}
		descs = append(descs, fmt.Sprintf("%s %s pid %d", p.ID, roles, p.PID()))
	}
	if len(ct.urls) == 0 {
		ct.stop()
		return nil, errors.New("the cluster has no gate")
	}
	ct.url = ct.urls[0]
	ct.adminURL = ct.members[0].adminURL
	where := "embedded NATS of " + nodes[0].name
	if natsURL != "" {
		where = natsURL
	}
	ct.desc = fmt.Sprintf("cluster of %d processes on %s, prefix %s (%s)", len(nodes), where, c.Prefix, strings.Join(descs, "; "))
	return ct, nil
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
