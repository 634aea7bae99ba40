package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/hearth-server/hearth/games/niuniu"
)

const niuniuUsage = `Usage: hearth niuniu sim [--seed S] [--rounds N] [--players P] [--base B] [--balance X]

Plays N rounds of Niu Niu with simulated players (random grabs and bets) and
prints one JSON line per round. Round r uses the seed S+r-1 (mod 2^64),
printed in its line: --seed <that seed> --rounds 1 replays it (with the same
--players and --base, and no --balance).

Flags:
`

// niuniuCmd runs `hearth niuniu SUBCOMMAND`; sim is the only one.
func niuniuCmd(ctx context.Context, args []string, opts Options) int {
	if len(args) == 0 || args[0] != "sim" {
		fmt.Fprint(opts.Stderr, "Usage: hearth niuniu sim [flags]   (run 'hearth niuniu sim -h' for the flags)\n")
		return 2
	}
	return niuniuSim(ctx, args[1:], opts)
}

func niuniuSim(ctx context.Context, args []string, opts Options) int {
	var rules niuniu.Rules
	seats := rules.WithDefaults().Seats
	fs := flag.NewFlagSet("hearth niuniu sim", flag.ContinueOnError)
	fs.SetOutput(opts.Stderr)
	fs.Usage = func() {
		fmt.Fprint(opts.Stderr, niuniuUsage)
		fs.PrintDefaults()
	}
	seed := fs.Uint64("seed", 0, "seed of the first round, 0 to 2^64-1 (default: a random seed)")
	rounds := fs.Int("rounds", 1, "number of rounds to play")
	players := fs.Int("players", 4, fmt.Sprintf("players at the table, 2 to %d", seats))
	base := fs.Int64("base", 1, "the table's stake, at least 1")
	balance := fs.Int64("balance", 0, "every player's balance before round 1, carried from round to round; losses are capped at it (default: no cap)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	bad := func(format string, a ...any) int {
		fmt.Fprintf(opts.Stderr, "hearth niuniu sim: "+format+"\n", a...)
		return 2
	}
	switch {
	case fs.NArg() > 0:
		return bad("unexpected argument %q: every setting is a flag (run 'hearth niuniu sim -h')", fs.Arg(0))
	case *rounds < 1:
		return bad("--rounds %d: pass at least 1", *rounds)
	case *players < 2 || *players > seats:
		return bad("--players %d: a table seats 2 to %d players; pass one of those", *players, seats)
	case *base < 1:
		return bad("--base %d: the stake must be at least 1", *base)
	case set["balance"] && (*balance < 0 || *balance > math.MaxInt64/int64(*players)):
		return bad("--balance %d: pass 0 to %d, or leave it out for no cap", *balance, math.MaxInt64/int64(*players))
	}
	if !set["seed"] {
		*seed = rand.Uint64()
	}
	// Without --balance nobody is capped; with it, balances carry over.
	balances := make([]int64, *players)
	for i := range balances {
		balances[i] = math.MaxInt64
		if set["balance"] {
			balances[i] = *balance
		}
	}

	out := bufio.NewWriter(opts.Stdout)
	for r := 1; r <= *rounds; r++ {
		if ctx.Err() != nil {
			break
		}
		log, err := rules.SimRound(*seed+uint64(r-1), *base, balances)
		if errors.Is(err, niuniu.ErrOverflow) {
			return bad("--base %d is too large: a round's payouts would overflow; pass a smaller --base", *base)
		} else if err != nil {
			fmt.Fprintf(opts.Stderr, "hearth niuniu sim: round %d: %v\n", r, err)
			return 1
		}
		log.Round = r
		if set["balance"] {
			for i, d := range log.Deltas {
				balances[i] += d
			}
		}
		line, err := json.Marshal(log)
		if err != nil {
			fmt.Fprintf(opts.Stderr, "hearth niuniu sim: round %d: %v\n", r, err)
			return 1
		}
		out.Write(line)
		out.WriteByte('\n')
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintf(opts.Stderr, "hearth niuniu sim: %v\n", err)
		return 1
	}
	if ctx.Err() != nil {
		fmt.Fprintf(opts.Stderr, "hearth niuniu sim: stopped: %v\n", context.Cause(ctx))
		return 1
	}
	return 0
}
