// Package cli is the hearth command line: serve, call, bench. A game
// developer's own binary calls Main with its services, so it gets the same
// flags, environment variables and config file as hearth itself.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/hearth-server/hearth"
)

// Version is the hearth version printed by the commands.
const Version = "0.1.0"

// Options customise the command line for a game's own binary.
type Options struct {
	// Services returns the services to register on a node, besides the
	// built-in ones. Nil: none.
	Services func() []*hearth.Service
	// Stdout and Stderr default to os.Stdout and os.Stderr.
	Stdout, Stderr io.Writer
}

const usage = `hearth — a distributed server for online games and real-time apps

Usage:
  hearth serve [flags]                  run a node (everything in one process by default)
  hearth call --addr URL ROUTE [JSON]   send one request and print the JSON result
  hearth bench rpc|fanout|idle|login|resume [flags]
                                        measure a server and print a table
  hearth nodes --nats URL               list the cluster's nodes
  hearth version

Run 'hearth COMMAND -h' for a command's flags.
`

// Main runs the command in args (without the program name) and returns the
// process exit code.
func Main(ctx context.Context, args []string, opts Options) int {
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if len(args) == 0 {
		fmt.Fprint(opts.Stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], opts)
	case "call":
		return call(ctx, args[1:], opts)
	case "bench":
		return bench(ctx, args[1:], opts)
	case "nodes":
		return nodes(ctx, args[1:], opts)
	case "version", "--version":
		fmt.Fprintln(opts.Stdout, "hearth", Version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(opts.Stdout, usage)
		return 0
	}
	fmt.Fprintf(opts.Stderr, "hearth: unknown command %q\n\n%s", args[0], usage)
	return 2
}
