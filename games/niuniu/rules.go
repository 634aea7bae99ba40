package niuniu

import (
	"errors"
	"fmt"
	"time"
)

// Rules are the configurable rules of a Niu Niu table. The zero value is the
// standard game; a room type sets only what it changes. Negative values are
// invalid (see Validate).
type Rules struct {
	// Seats is the most players at a table. Zero means 5; at most 10, since
	// each player takes 5 of the 52 cards.
	Seats int
	// MinPlayers is how many ready players start a round once the ready
	// countdown ends. Zero means 2.
	MinPlayers int

	// MaxGrab is the highest grab multiplier; players choose 0 (no) to
	// MaxGrab. Zero means 4.
	MaxGrab int
	// DefaultGrab is the grab of a player who does not choose in time.
	// Zero means 0 (no grab).
	DefaultGrab int
	// AllPassGrab is the banker's multiplier when everyone grabbed 0 and the
	// banker was drawn from all players. Zero means 1.
	AllPassGrab int
	// MaxBet is the highest bet multiplier; non-bankers choose 1 to MaxBet.
	// Zero means 5.
	MaxBet int
	// DefaultBet is the bet of a non-banker who does not choose in time.
	// Zero means 1.
	DefaultBet int

	// Multipliers are the payout multipliers per hand type; a zero entry
	// takes its standard value.
	Multipliers Multipliers
	// NoFiveSmall, NoBomb and NoFiveFace switch a special hand off: a hand
	// that would be one counts as the best type left. False (the zero
	// value) means the hand counts.
	NoFiveSmall, NoBomb, NoFiveFace bool

	// ReadyCountdown runs once two players are ready; the round starts when
	// it ends (or when every seat is ready). Zero means 5 s.
	ReadyCountdown time.Duration
	// GrabCountdown, BetCountdown and OpenCountdown are the time players
	// have to grab, bet and open their cards. Zero means 8 s each.
	GrabCountdown, BetCountdown, OpenCountdown time.Duration
	// EndPause is how long the results stay before the table returns to
	// ready. Zero means 3 s.
	EndPause time.Duration
}

// Multipliers are the payout multipliers per hand type. The zero value of
// every field means its standard value, given in brackets.
type Multipliers struct {
	FiveSmall int // [8]
	Bomb      int // [6]
	FiveFace  int // [5]
	NiuNiu    int // [4]
	// Niu[v-1] is the multiplier of niu value v: [1 1 1 1 1 1 2 2 3].
	Niu  [9]int
	None int // [1]
}

var standardMultipliers = Multipliers{
	FiveSmall: 8, Bomb: 6, FiveFace: 5, NiuNiu: 4,
	Niu:  [9]int{1, 1, 1, 1, 1, 1, 2, 2, 3},
	None: 1,
}

// ErrBadRules is returned by Validate for an invalid Rules.
var ErrBadRules = errors.New("invalid niuniu rules")

// WithDefaults returns r with every zero field replaced by its standard
// value, so a room type can read the effective countdowns and limits.
func (r Rules) WithDefaults() Rules {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&r.Seats, 5)
	def(&r.MinPlayers, 2)
	def(&r.MaxGrab, 4)
	def(&r.AllPassGrab, 1)
	def(&r.MaxBet, 5)
	def(&r.DefaultBet, 1)
	m, s := &r.Multipliers, standardMultipliers
	def(&m.FiveSmall, s.FiveSmall)
	def(&m.Bomb, s.Bomb)
	def(&m.FiveFace, s.FiveFace)
	def(&m.NiuNiu, s.NiuNiu)
	for i := range m.Niu {
		def(&m.Niu[i], s.Niu[i])
	}
	def(&m.None, s.None)
	defDur(&r.ReadyCountdown, 5*time.Second)
	defDur(&r.GrabCountdown, 8*time.Second)
	defDur(&r.BetCountdown, 8*time.Second)
	defDur(&r.OpenCountdown, 8*time.Second)
	defDur(&r.EndPause, 3*time.Second)
	return r
}

// Validate reports the first invalid field of r, wrapping ErrBadRules.
func (r Rules) Validate() error {
	d := r.WithDefaults()
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadRules}, a...)...)
	}
	switch {
	case d.Seats < 2 || d.Seats > 10:
		return bad("Seats %d: want 2 to 10", r.Seats)
	case d.MinPlayers < 2 || d.MinPlayers > d.Seats:
		return bad("MinPlayers %d: want 2 to Seats (%d)", r.MinPlayers, d.Seats)
	case d.MaxGrab < 1:
		return bad("MaxGrab %d: want at least 1", r.MaxGrab)
	case d.DefaultGrab < 0 || d.DefaultGrab > d.MaxGrab:
		return bad("DefaultGrab %d: want 0 to MaxGrab (%d)", r.DefaultGrab, d.MaxGrab)
	case d.AllPassGrab < 1:
		return bad("AllPassGrab %d: want at least 1", r.AllPassGrab)
	case d.MaxBet < 1:
		return bad("MaxBet %d: want at least 1", r.MaxBet)
	case d.DefaultBet < 1 || d.DefaultBet > d.MaxBet:
		return bad("DefaultBet %d: want 1 to MaxBet (%d)", r.DefaultBet, d.MaxBet)
	case d.ReadyCountdown < 0 || d.GrabCountdown < 0 || d.BetCountdown < 0 || d.OpenCountdown < 0 || d.EndPause < 0:
		return bad("negative countdown")
	}
	m := d.Multipliers
	for _, v := range append([]int{m.FiveSmall, m.Bomb, m.FiveFace, m.NiuNiu, m.None}, m.Niu[:]...) {
		if v < 1 {
			return bad("multiplier %d: want at least 1", v)
		}
	}
	return nil
}

// Multiplier is the payout multiplier of an evaluated hand.
func (r Rules) Multiplier(e Eval) int {
	m := r.WithDefaults().Multipliers
	switch e.Type {
	case FiveSmall:
		return m.FiveSmall
	case Bomb:
		return m.Bomb
	case FiveFace:
		return m.FiveFace
	case NiuNiu:
		return m.NiuNiu
	case Niu:
		if e.Value >= 1 && e.Value <= 9 {
			return m.Niu[e.Value-1]
		}
	}
	return m.None
}

// ErrBadChoice is returned for a grab, bet, seat or player count outside the
// rules.
var ErrBadChoice = errors.New("invalid niuniu choice")

// Deal shuffles a new deck with rng and deals five cards to each of players
// seats: seat i gets cards 5i to 5i+4 of the shuffled deck.
func (r Rules) Deal(rng *RNG, players int) ([]Hand, error) {
	if err := r.checkPlayers(players); err != nil {
		return nil, err
	}
	deck := NewDeck()
	Shuffle(deck, rng)
	hands := make([]Hand, players)
	for i := range hands {
		copy(hands[i][:], deck[5*i:5*i+5])
	}
	return hands, nil
}

func (r Rules) checkPlayers(n int) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if seats := r.WithDefaults().Seats; n < 2 || n > seats {
		return fmt.Errorf("%w: %d players, want 2 to %d", ErrBadChoice, n, seats)
	}
	return nil
}

// Banker picks the banker from each seat's grab multiplier (0 to MaxGrab):
// the highest grab wins; ties among the highest are broken with rng (one
// IntN draw over the tied seats in seat order); if everyone chose 0, every
// seat is a candidate and the banker's multiplier is AllPassGrab. It returns
// the banker's seat and multiplier.
func (r Rules) Banker(rng *RNG, grabs []int) (seat, grab int, err error) {
	if err := r.checkPlayers(len(grabs)); err != nil {
		return 0, 0, err
	}
	d := r.WithDefaults()
	top := 0
	for i, g := range grabs {
		if g < 0 || g > d.MaxGrab {
			return 0, 0, fmt.Errorf("%w: seat %d grabs %d, want 0 to %d", ErrBadChoice, i, g, d.MaxGrab)
		}
		top = max(top, g)
	}
	var tied []int
	for i, g := range grabs {
		if g == top {
			tied = append(tied, i)
		}
	}
	seat = tied[0]
	if len(tied) > 1 {
		seat = tied[rng.IntN(len(tied))]
	}
	if top == 0 {
		return seat, d.AllPassGrab, nil
	}
	return seat, top, nil
}
