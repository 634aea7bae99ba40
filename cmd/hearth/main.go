// Command hearth runs a hearth node and talks to running ones.
//
//	hearth serve              a whole cluster in one process
//	hearth call ROUTE JSON    send one request to a server
//	hearth bench rpc|fanout|idle|login|resume|server
//	hearth bots --players N   bot players playing Niu Niu, for load tests
//
// To build your own game server, copy this file without the bench and bots
// commands and list your services in cli.Options.Services.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/hearth-server/hearth/cli"
	"github.com/hearth-server/hearth/internal/bench"
	"github.com/hearth-server/hearth/internal/bots"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.Options{Commands: map[string]cli.Command{"bench": bench.Main, "bots": bots.Main}})
	stop()
	os.Exit(code)
}
