// Package cli is the hearth command line: serve, call, nodes. A game
// developer's own binary calls Main with its services, so it gets the same
// flags, environment variables and config file as hearth itself.
package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/hearth-server/hearth"
)

// Version is the hearth version printed by the commands.
const Version = "0.1.0"

// Options customise the command line for a game's own binary.
type Options struct {
	// Flags declares the game's own settings on the flag set of serve,
	// beside the built-in ones. Each is also read from the environment
	// (HEARTH_<NAME>, upper case, dashes as underscores) and from the
	// config file (key NAME), as the built-in settings are: a flag wins
	// over the environment, which wins over the file. Nil: none.
	Flags func(fs *flag.FlagSet)
	// Services returns the services to register on a node, besides the
	// built-in ones. It runs once the flags, environment and config file
	// are parsed, so the values Flags bound are set; cfg is the node's
	// Config as parsed, and changes to it (PublicServices, say) apply to
	// the node. Nil: none.
	Services func(cfg *hearth.Config) []*hearth.Service
	// Stdout and Stderr default to os.Stdout and os.Stderr.
	Stdout, Stderr io.Writer
	// Commands are commands besides the built-in ones, by name: the hearth
	// binary adds "bench" here, so a game's own binary does not link it.
	// Nil: none. A built-in command's name is taken by the built-in.
	Commands map[string]Command
}

// Command runs a command added through Options.Commands: args are those
// after its name, opts are Main's with Stdout and Stderr set. It returns
// the process exit code.
type Command func(ctx context.Context, args []string, opts Options) int

// commands are the built-in commands for the usage text: synopsis (after
// the program name) and what it does.
var commands = [][2]string{
	{"serve [flags]", "run a node (everything in one process by default)"},
	{"call [flags] ROUTE [JSON]...", "one session: log in, send requests, print results and pushes"},
	{"nodes --nats URL", "list the cluster's nodes"},
	{"niuniu sim [flags]", "play Niu Niu rounds offline, one JSON line each"},
	{"version", ""},
}

// usageText lists the commands, the added ones too, under the running
// binary's name: a game's own binary is not called hearth.
func usageText(opts Options) string {
	name := progName()
	var b strings.Builder
	b.WriteString("hearth — a distributed server for online games and real-time apps\n\nUsage:\n")
	line := func(synopsis, what string) {
		fmt.Fprintf(&b, "  %s\n", strings.TrimRight(fmt.Sprintf("%-37s %s", name+" "+synopsis, what), " "))
	}
	for _, c := range commands {
		line(c[0], c[1])
	}
	for _, cmd := range slices.Sorted(maps.Keys(opts.Commands)) {
		line(cmd+" …", fmt.Sprintf("see '%s %s -h'", name, cmd))
	}
	fmt.Fprintf(&b, "\nRun '%s COMMAND -h' for a command's flags.\n", name)
	return b.String()
}

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
		fmt.Fprint(opts.Stderr, usageText(opts))
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], opts)
	case "call":
		return call(ctx, args[1:], opts)
	case "nodes":
		return nodes(ctx, args[1:], opts)
	case "niuniu":
		return niuniuCmd(ctx, args[1:], opts)
	case "version", "--version":
		fmt.Fprintln(opts.Stdout, "hearth", Version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(opts.Stdout, usageText(opts))
		return 0
	}
	if cmd, ok := opts.Commands[args[0]]; ok {
		return cmd(ctx, args[1:], opts)
	}
	fmt.Fprintf(opts.Stderr, "%s: unknown command %q\n\n%s", progName(), args[0], usageText(opts))
	return 2
}
