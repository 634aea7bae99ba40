package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hearth-server/hearth/internal/cluster"
)

// nodes prints the cluster's registry as a table (or JSON).
func nodes(ctx context.Context, args []string, opts Options) int {
	fs := flag.NewFlagSet("hearth nodes", flag.ContinueOnError)
	fs.SetOutput(opts.Stderr)
	url := fs.String("nats", "nats://127.0.0.1:4222", "NATS URL of the cluster (env HEARTH_NATS)")
	prefix := fs.String("prefix", "hearth", "bus subject prefix of the cluster")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := resolve(fs, ""); err != nil {
		fmt.Fprintf(opts.Stderr, "hearth nodes: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	bus, err := cluster.Connect(ctx, cluster.Config{URL: *url, Prefix: *prefix, Name: "hearth-nodes"})
	if err != nil {
		fmt.Fprintf(opts.Stderr, "hearth nodes: %v\n", err)
		return 1
	}
	defer bus.Close()
	list, err := cluster.ListNodes(ctx, bus)
	if err != nil {
		fmt.Fprintf(opts.Stderr, "hearth nodes: %v\n", err)
		return 1
	}
	if *asJSON {
		if list == nil {
			list = []cluster.NodeInfo{}
		}
		enc := json.NewEncoder(opts.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(list)
		return 0
	}
	if len(list) == 0 {
		fmt.Fprintf(opts.Stderr, "no nodes registered under prefix %q at %s\n", *prefix, *url)
		return 0
	}
	tw := tabwriter.NewWriter(opts.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATE\tROLES\tSESSIONS\tIN-FLIGHT\tTCP\tWS\tVERSION\tUP")
	for _, n := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", n.ID, n.State, strings.Join(n.Roles, ","),
			n.Sessions, n.InFlight, dash(n.TCP), dash(n.WS), n.Version, time.Since(n.Started).Round(time.Second))
	}
	_ = tw.Flush()
	return 0
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
