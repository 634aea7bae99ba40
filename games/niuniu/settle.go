package niuniu

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Table is what settlement needs of a round.
type Table struct {
	// Base is the room's stake, at least 1.
	Base int64
	// Banker is the banker's seat (an index into Players).
	Banker int
	// Grab is the banker's multiplier, as Rules.Banker returned it.
	Grab int
	// Players are the seats in order, the banker's included.
	Players []Player
}

// Player is one seat's part in settlement.
type Player struct {
	// Hand is the seat's evaluated hand.
	Hand Eval
	// Bet is the bet multiplier, 1 to MaxBet; the banker's is ignored.
	Bet int
	// Balance is the seat's balance at the start of the round, at least 0:
	// the most it can lose. math.MaxInt64 means no cap.
	Balance int64
}

// ErrOverflow is returned when a round's amounts do not fit in an int64.
var ErrOverflow = errors.New("niuniu amount overflows int64")

// Settle returns each seat's balance change. For each non-banker p,
// amount = Base × Grab × bet(p) × multiplier(winner's hand). Players who lost
// to the banker pay first, each capped at their balance; then the banker
// pays the players who beat it in seat order from its balance plus what it
// collected, the first it cannot pay in full getting what is left and later
// ones nothing. The deltas sum to zero and none is below −Balance.
func (r Rules) Settle(t Table) ([]int64, error) {
	if err := r.checkTable(t); err != nil {
		return nil, err
	}
	amounts := make([]int64, len(t.Players))
	bankerWins := make([]bool, len(t.Players))
	bank := t.Players[t.Banker]
	for i, p := range t.Players {
		if i == t.Banker {
			continue
		}
		winner := p.Hand
		if bankerWins[i] = Compare(bank.Hand, p.Hand) > 0; bankerWins[i] {
			winner = bank.Hand
		}
		// checkTable made sure this cannot overflow.
		amounts[i] = t.Base * int64(t.Grab) * int64(p.Bet) * int64(r.Multiplier(winner))
	}

	deltas := make([]int64, len(t.Players))
	funds := bank.Balance
	for i, p := range t.Players {
		if i == t.Banker || !bankerWins[i] {
			continue
		}
		pay := min(amounts[i], p.Balance)
		deltas[i] -= pay
		deltas[t.Banker] += pay
		funds = addSat(funds, pay)
	}
	for i := range t.Players {
		if i == t.Banker || bankerWins[i] {
			continue
		}
		pay := min(amounts[i], funds)
		funds -= pay
		deltas[i] += pay
		deltas[t.Banker] -= pay
	}
	return deltas, nil
}

func (r Rules) checkTable(t Table) error {
	if err := r.checkPlayers(len(t.Players)); err != nil {
		return err
	}
	d := r.WithDefaults()
	switch {
	case t.Base < 1:
		return fmt.Errorf("%w: base %d, want at least 1", ErrBadChoice, t.Base)
	case t.Banker < 0 || t.Banker >= len(t.Players):
		return fmt.Errorf("%w: banker seat %d of %d", ErrBadChoice, t.Banker, len(t.Players))
	case t.Grab < 1 || t.Grab > max(d.MaxGrab, d.AllPassGrab):
		return fmt.Errorf("%w: banker grab %d, want 1 to %d", ErrBadChoice, t.Grab, max(d.MaxGrab, d.AllPassGrab))
	}
	for i, p := range t.Players {
		switch {
		case p.Balance < 0:
			return fmt.Errorf("%w: seat %d balance %d is negative", ErrBadChoice, i, p.Balance)
		case !p.Hand.High.Valid():
			return fmt.Errorf("%w: seat %d has no evaluated hand", ErrBadChoice, i)
		case i != t.Banker && (p.Bet < 1 || p.Bet > d.MaxBet):
			return fmt.Errorf("%w: seat %d bets %d, want 1 to %d", ErrBadChoice, i, p.Bet, d.MaxBet)
		}
	}
	// The largest possible amount times the seats bounds every amount and
	// the banker's delta, so Settle's arithmetic cannot overflow.
	if _, ok := mul(t.Base, int64(max(d.MaxGrab, d.AllPassGrab)), int64(d.MaxBet), int64(r.maxMultiplier()), int64(len(t.Players))); !ok {
		return fmt.Errorf("%w: base %d is too large for these rules", ErrOverflow, t.Base)
	}
	return nil
}

func (r Rules) maxMultiplier() int {
	m := r.WithDefaults().Multipliers
	return slices.Max(append([]int{m.FiveSmall, m.Bomb, m.FiveFace, m.NiuNiu, m.None}, m.Niu[:]...))
}

// mul multiplies positive numbers, reporting whether the product fits.
func mul(xs ...int64) (int64, bool) {
	p := int64(1)
	for _, x := range xs {
		if x != 0 && p > math.MaxInt64/x {
			return 0, false
		}
		p *= x
	}
	return p, true
}

// addSat adds non-negative numbers, stopping at math.MaxInt64: a banker
// with an uncapped balance stays uncapped.
func addSat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
