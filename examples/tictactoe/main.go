// Command tictactoe is a small game server built on hearth's room SDK as
// any game would be: one room type, its own binary with hearth's command
// line, and a terminal client.
//
//	tictactoe serve [--turn 30s]   run the server (auth, lobby, match and the game)
//	tictactoe play [--guest ID]    play in the terminal
//
// See README.md.
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var turn time.Duration
	code := cli.Main(ctx, os.Args[1:], cli.Options{
		Flags: func(fs *flag.FlagSet) {
			fs.DurationVar(&turn, "turn", 30*time.Second, "time a player has for a move before losing the game")
		},
		Services: func(*hearth.Config) []*hearth.Service {
			return []*hearth.Service{newGame(turn).Service()}
		},
		Commands: map[string]cli.Command{"play": play},
	})
	stop()
	os.Exit(code)
}
