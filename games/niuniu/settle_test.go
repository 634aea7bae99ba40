package niuniu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

const noCap = math.MaxInt64

func eval(t testing.TB, s string) Eval {
	t.Helper()
	e, err := Rules{}.Evaluate(hand(t, s))
	require.NoError(t, err)
	return e
}

func TestSettle(t *testing.T) {
	niu9 := eval(t, "KS QH JD 4C 5D")  // ×3
	niu8 := eval(t, "KC QS JS 4H 4C")  // ×2
	niu1 := eval(t, "KH QD JC AH 10C") // ×1
	nn := eval(t, "KD 3S 7H 5C 5D")    // ×4
	none := eval(t, "AS AH 3C 4D 9S")  // ×1
	p := func(e Eval, bet int, balance int64) Player { return Player{Hand: e, Bet: bet, Balance: balance} }

	tests := []struct {
		name    string
		rules   Rules
		banker  int
		grab    int
		players []Player
		want    []int64
	}{
		{name: "banker wins at its hand's multiplier", banker: 0, grab: 2,
			players: []Player{p(niu9, 0, noCap), p(niu1, 3, noCap)}, want: []int64{180, -180}},
		{name: "player wins at its hand's multiplier", banker: 0, grab: 2,
			players: []Player{p(niu1, 0, noCap), p(nn, 2, noCap)}, want: []int64{-160, 160}},
		{name: "the banker's bet is ignored", banker: 1, grab: 1,
			players: []Player{p(niu8, 5, noCap), p(niu1, 4, noCap)}, want: []int64{100, -100}},
		{name: "every player against the banker", banker: 1, grab: 3,
			players: []Player{p(nn, 1, noCap), p(niu8, 0, noCap), p(niu1, 2, noCap), p(niu9, 5, noCap)},
			want:    []int64{120, -120 + 120 - 450, -120, 450}},
		{name: "a loser pays at most their balance", banker: 0, grab: 2,
			players: []Player{p(niu9, 0, 0), p(niu1, 3, 50)}, want: []int64{50, -50}},
		{name: "a broke loser pays nothing", banker: 0, grab: 2,
			players: []Player{p(niu9, 0, 10), p(niu1, 3, 0)}, want: []int64{0, 0}},
		{name: "a winner's balance does not cap its win", banker: 0, grab: 2,
			players: []Player{p(niu1, 0, noCap), p(nn, 2, 1)}, want: []int64{-160, 160}},
		{name: "a broke banker pays in seat order", banker: 0, grab: 2,
			players: []Player{p(niu1, 0, 100), p(nn, 1, 0), p(nn, 1, 0), p(nn, 1, 0)},
			want:    []int64{-100, 80, 20, 0}},
		{name: "seat order starts at the first seat, not after the banker", banker: 2, grab: 2,
			players: []Player{p(nn, 1, 0), p(niu9, 1, 0), p(none, 0, 50), p(nn, 1, 0)},
			want:    []int64{50, 0, -50, 0}},
		{name: "the banker collects before it pays", banker: 2, grab: 2,
			players: []Player{p(nn, 1, 0), p(none, 4, 1000), p(niu8, 0, 10), p(niu9, 1, 0)},
			want:    []int64{80, -160, 20, 60}},
		{name: "collections and balance run out", banker: 2, grab: 2,
			players: []Player{p(nn, 1, 0), p(none, 4, 100), p(niu8, 0, 10), p(niu9, 1, 0)},
			want:    []int64{80, -100, -10, 30}},
		{name: "everyone passed: multiplier 1", banker: 1, grab: 1,
			players: []Player{p(niu1, 2, noCap), p(niu9, 0, noCap)}, want: []int64{-60, 60}},
		{name: "configured multipliers and bets", rules: Rules{MaxBet: 10, Multipliers: Multipliers{NiuNiu: 10}},
			banker: 0, grab: 4, players: []Player{p(niu1, 0, noCap), p(nn, 10, noCap)}, want: []int64{-4000, 4000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := Table{Base: 10, Banker: tt.banker, Grab: tt.grab, Players: tt.players}
			got, err := tt.rules.Settle(tab)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			require.NoError(t, checkSettlement(tt.rules, tab, got))
		})
	}
}

func TestSettleRejects(t *testing.T) {
	good := Player{Hand: eval(t, "KS QH JD 4C 5D"), Bet: 1, Balance: 10}
	two := []Player{good, good}
	tests := []struct {
		name string
		tab  Table
		err  error
	}{
		{"base 0", Table{Base: 0, Grab: 1, Players: two}, ErrBadChoice},
		{"banker out of range", Table{Base: 1, Banker: 2, Grab: 1, Players: two}, ErrBadChoice},
		{"negative banker", Table{Base: 1, Banker: -1, Grab: 1, Players: two}, ErrBadChoice},
		{"grab 0", Table{Base: 1, Grab: 0, Players: two}, ErrBadChoice},
		{"grab 5", Table{Base: 1, Grab: 5, Players: two}, ErrBadChoice},
		{"bet 0", Table{Base: 1, Grab: 1, Players: []Player{good, {Hand: good.Hand, Bet: 0}}}, ErrBadChoice},
		{"bet 6", Table{Base: 1, Grab: 1, Players: []Player{good, {Hand: good.Hand, Bet: 6}}}, ErrBadChoice},
		{"negative balance", Table{Base: 1, Grab: 1, Players: []Player{good, {Hand: good.Hand, Bet: 1, Balance: -1}}}, ErrBadChoice},
		{"no evaluated hand", Table{Base: 1, Grab: 1, Players: []Player{good, {Bet: 1}}}, ErrBadChoice},
		{"one player", Table{Base: 1, Grab: 1, Players: two[:1]}, ErrBadChoice},
		{"six players", Table{Base: 1, Grab: 1, Players: []Player{good, good, good, good, good, good}}, ErrBadChoice},
		{"base too large", Table{Base: math.MaxInt64 / 100, Grab: 1, Players: two}, ErrOverflow},
	}
	for _, tt := range tests {
		_, err := Rules{}.Settle(tt.tab)
		require.ErrorIs(t, err, tt.err, tt.name)
	}
}

// checkSettlement states the settlement rules independently of Settle:
// amounts, caps, the banker's seat order and zero sum.
func checkSettlement(r Rules, tab Table, deltas []int64) error {
	if len(deltas) != len(tab.Players) {
		return fmt.Errorf("%d deltas for %d seats", len(deltas), len(tab.Players))
	}
	var sum int64
	for i, d := range deltas {
		sum += d
		if d < -tab.Players[i].Balance {
			return fmt.Errorf("seat %d loses %d with a balance of %d", i, -d, tab.Players[i].Balance)
		}
	}
	if sum != 0 {
		return fmt.Errorf("deltas %v sum to %d", deltas, sum)
	}
	bank := tab.Players[tab.Banker]
	short := -1 // the first winner paid less than owed
	for i, p := range tab.Players {
		if i == tab.Banker {
			continue
		}
		winner := p.Hand
		bankerWins := Compare(bank.Hand, p.Hand) > 0
		if bankerWins {
			winner = bank.Hand
		}
		owed := tab.Base * int64(tab.Grab) * int64(p.Bet) * int64(r.Multiplier(winner))
		switch {
		case bankerWins && deltas[i] != -min(owed, p.Balance):
			return fmt.Errorf("seat %d lost %d, should pay %d capped at %d", i, -deltas[i], owed, p.Balance)
		case bankerWins:
		case deltas[i] < 0 || deltas[i] > owed:
			return fmt.Errorf("seat %d won %d of %d", i, deltas[i], owed)
		case short >= 0 && deltas[i] != 0:
			return fmt.Errorf("seat %d was paid %d after seat %d was paid short", i, deltas[i], short)
		case deltas[i] < owed:
			short = i
		}
	}
	if short >= 0 && bank.Balance+deltas[tab.Banker] != 0 {
		return fmt.Errorf("seat %d was paid short while the banker kept %d", short, bank.Balance+deltas[tab.Banker])
	}
	return nil
}

// tableOf rebuilds the settlement input of a simulated round.
func tableOf(l RoundLog, balances []int64) Table {
	t := Table{Base: l.Base, Banker: l.Banker - 1, Grab: l.BankerGrab}
	for i := range l.Types {
		t.Players = append(t.Players, Player{Hand: l.Types[i], Bet: l.Bets[i], Balance: balances[i]})
	}
	return t
}

var ruleVariants = []Rules{
	{},
	{MaxBet: 10, MaxGrab: 2},
	{Multipliers: Multipliers{FiveSmall: 100, Niu: [9]int{7, 6, 5, 4, 3, 2, 1, 1, 1}, None: 3}},
	{NoFiveSmall: true, NoBomb: true, NoFiveFace: true, AllPassGrab: 3, Seats: 10},
}

// TestSettleProperties plays many random rounds, with balances that cap
// often, and checks every settlement rule on each.
func TestSettleProperties(t *testing.T) {
	src := rand.New(rand.NewPCG(1, 2))
	for n := range 20000 {
		rules := ruleVariants[n%len(ruleVariants)]
		players := 2 + src.IntN(rules.WithDefaults().Seats-1)
		balances := make([]int64, players)
		for i := range balances {
			switch src.IntN(4) {
			case 0:
				balances[i] = 0
			case 1:
				balances[i] = noCap
			default:
				balances[i] = src.Int64N(500)
			}
		}
		seed := src.Uint64()
		l, err := rules.SimRound(seed, 1+src.Int64N(20), balances)
		require.NoError(t, err)
		require.NoError(t, checkSettlement(rules, tableOf(l, balances), l.Deltas), "seed %d rules %+v", seed, rules)
		again, err := rules.SimRound(seed, l.Base, balances)
		require.NoError(t, err)
		require.Equal(t, l, again, "a seed replays its round")
	}
}

func FuzzSettle(f *testing.F) {
	f.Add(uint64(1), uint8(4), uint16(1), []byte{})
	f.Add(uint64(7), uint8(5), uint16(3), []byte{0, 10, 255, 3, 0})
	f.Add(uint64(99), uint8(2), uint16(1000), []byte{1, 1})
	f.Fuzz(func(t *testing.T, seed uint64, players uint8, base uint16, bal []byte) {
		rules := ruleVariants[seed%uint64(len(ruleVariants))]
		n := 2 + int(players)%(rules.WithDefaults().Seats-1)
		balances := make([]int64, n)
		for i := range balances {
			balances[i] = noCap
			if i < len(bal) && bal[i] != 255 {
				balances[i] = int64(bal[i]) * 7
			}
		}
		l, err := rules.SimRound(seed, int64(base)+1, balances)
		require.NoError(t, err)
		require.NoError(t, checkSettlement(rules, tableOf(l, balances), l.Deltas))
	})
}

func FuzzEvaluate(f *testing.F) {
	f.Add([]byte{0, 13, 26, 39, 1})
	f.Add([]byte{10, 11, 12, 23, 24})
	f.Add([]byte{0, 0, 1, 2, 3})
	deck := NewDeck()
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 6 {
			return
		}
		var h Hand
		for i := range h {
			h[i] = deck[int(b[i])%52]
		}
		rules := ruleVariants[int(b[5])%len(ruleVariants)]
		e, err := rules.Evaluate(h)
		distinct := map[Card]bool{}
		for _, c := range h {
			distinct[c] = true
		}
		if len(distinct) < 5 {
			require.ErrorIs(t, err, ErrDuplicateCard)
			return
		}
		require.NoError(t, err)
		require.Equal(t, e.Type == Niu, e.Value >= 1 && e.Value <= 9, "%+v", e)
		require.Equal(t, e.Type == Bomb, e.Quad != 0, "%+v", e)
		for _, c := range h {
			require.GreaterOrEqual(t, compareCards(e.High, c), 0, "%s is higher than the high card %s", c, e.High)
		}
		permute(h[:], 0, func(p Hand) {
			got, err := rules.Evaluate(p)
			require.NoError(t, err)
			require.Equal(t, e, got, "%s reordered as %s", h, p)
		})
	})
}
