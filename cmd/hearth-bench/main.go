// Command hearth-bench is `hearth bench` as a binary of its own:
//
//	hearth-bench rpc|fanout|idle|login|resume|server [flags]
//
// It measures a running server (--addr) or starts its own server processes
// (this binary's `server`), and prints a table.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/hearth-server/hearth/cli"
	"github.com/hearth-server/hearth/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := bench.Standalone(ctx, os.Args[1:], cli.Options{})
	stop()
	os.Exit(code)
}
