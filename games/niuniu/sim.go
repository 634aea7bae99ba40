package niuniu

import "fmt"

// RoundLog is one settled round as `hearth niuniu sim` prints it, one JSON
// object per line, fields in this order. Per-seat slices are in seat order;
// Banker is a seat number counted from 1.
type RoundLog struct {
	Round      int     `json:"round"`
	Seed       uint64  `json:"seed"`
	Base       int64   `json:"base"`
	Banker     int     `json:"banker"`
	BankerGrab int     `json:"banker_grab"`
	Grab       []int   `json:"grab"`
	Bets       []int   `json:"bets"` // the banker's is 0
	Hands      []Hand  `json:"hands"`
	Types      []Eval  `json:"types"`
	Deltas     []int64 `json:"deltas"`
}

// SimRound plays one round with simulated players, one per entry of
// balances (each seat's balance at the start of the round; math.MaxInt64
// for no cap). Everything random comes from NewRNG(seed), in the order the
// package doc gives: shuffle, every seat's grab, the banker's tie-break,
// every non-banker's bet. The returned log has Round 0; the caller numbers
// rounds.
func (r Rules) SimRound(seed uint64, base int64, balances []int64) (RoundLog, error) {
	n := len(balances)
	d := r.WithDefaults()
	rng := NewRNG(seed)
	hands, err := r.Deal(rng, n)
	if err != nil {
		return RoundLog{}, err
	}
	grabs := make([]int, n)
	for i := range grabs {
		grabs[i] = rng.IntN(d.MaxGrab + 1)
	}
	banker, g, err := r.Banker(rng, grabs)
	if err != nil {
		return RoundLog{}, err
	}
	bets := make([]int, n)
	for i := range bets {
		if i != banker {
			bets[i] = 1 + rng.IntN(d.MaxBet)
		}
	}
	t := Table{Base: base, Banker: banker, Grab: g, Players: make([]Player, n)}
	evals := make([]Eval, n)
	for i, h := range hands {
		if evals[i], err = r.Evaluate(h); err != nil {
			return RoundLog{}, fmt.Errorf("seat %d: %w", i, err)
		}
		t.Players[i] = Player{Hand: evals[i], Bet: bets[i], Balance: balances[i]}
	}
	deltas, err := r.Settle(t)
	if err != nil {
		return RoundLog{}, err
	}
	return RoundLog{
		Seed: seed, Base: base, Banker: banker + 1, BankerGrab: g,
		Grab: grabs, Bets: bets, Hands: hands, Types: evals, Deltas: deltas,
	}, nil
}
