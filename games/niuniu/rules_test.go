package niuniu

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRulesDefaults(t *testing.T) {
	d := Rules{}.WithDefaults()
	require.Equal(t, 5, d.Seats)
	require.Equal(t, 2, d.MinPlayers)
	require.Equal(t, 4, d.MaxGrab)
	require.Equal(t, 0, d.DefaultGrab)
	require.Equal(t, 1, d.AllPassGrab)
	require.Equal(t, 5, d.MaxBet)
	require.Equal(t, 1, d.DefaultBet)
	require.Equal(t, 5*time.Second, d.ReadyCountdown)
	require.Equal(t, 8*time.Second, d.GrabCountdown)
	require.Equal(t, 8*time.Second, d.BetCountdown)
	require.Equal(t, 8*time.Second, d.OpenCountdown)
	require.Equal(t, 3*time.Second, d.EndPause)
	require.Equal(t, standardMultipliers, d.Multipliers)
	require.False(t, d.NoFiveSmall || d.NoBomb || d.NoFiveFace)
	require.NoError(t, Rules{}.Validate())

	custom := Rules{Seats: 3, MaxBet: 10, Multipliers: Multipliers{Bomb: 10, Niu: [9]int{8: 5}}}.WithDefaults()
	require.Equal(t, 3, custom.Seats)
	require.Equal(t, 10, custom.MaxBet)
	require.Equal(t, 10, custom.Multipliers.Bomb)
	require.Equal(t, 8, custom.Multipliers.FiveSmall, "unset multipliers keep their standard value")
	require.Equal(t, [9]int{1, 1, 1, 1, 1, 1, 2, 2, 5}, custom.Multipliers.Niu)
}

func TestRulesValidate(t *testing.T) {
	for _, r := range []Rules{
		{Seats: 1}, {Seats: 11}, {Seats: -1}, {MinPlayers: 1}, {Seats: 3, MinPlayers: 4},
		{MaxGrab: -1}, {DefaultGrab: 5}, {DefaultGrab: -1}, {AllPassGrab: -2}, {MaxBet: -5},
		{DefaultBet: 6}, {MaxBet: 2, DefaultBet: 3}, {GrabCountdown: -time.Second}, {EndPause: -1},
		{Multipliers: Multipliers{Bomb: -1}}, {Multipliers: Multipliers{Niu: [9]int{3: -1}}},
	} {
		require.ErrorIs(t, r.Validate(), ErrBadRules, "%+v", r)
		_, err := r.Deal(NewRNG(1), 2)
		require.ErrorIs(t, err, ErrBadRules, "Deal checks the rules")
	}
	require.NoError(t, Rules{Seats: 10, MinPlayers: 10, MaxGrab: 1, DefaultGrab: 1, MaxBet: 1}.Validate())
}

func TestMultiplier(t *testing.T) {
	std := []struct {
		e    Eval
		want int
	}{
		{Eval{Type: FiveSmall}, 8}, {Eval{Type: Bomb}, 6}, {Eval{Type: FiveFace}, 5}, {Eval{Type: NiuNiu}, 4},
		{Eval{Type: Niu, Value: 9}, 3}, {Eval{Type: Niu, Value: 8}, 2}, {Eval{Type: Niu, Value: 7}, 2},
		{Eval{Type: Niu, Value: 6}, 1}, {Eval{Type: Niu, Value: 1}, 1}, {Eval{Type: None}, 1},
	}
	for _, tt := range std {
		require.Equal(t, tt.want, Rules{}.Multiplier(tt.e), "%+v", tt.e)
	}
	r := Rules{Multipliers: Multipliers{FiveSmall: 20, NiuNiu: 7, Niu: [9]int{6: 9}, None: 2}}
	require.Equal(t, 20, r.Multiplier(Eval{Type: FiveSmall}))
	require.Equal(t, 7, r.Multiplier(Eval{Type: NiuNiu}))
	require.Equal(t, 9, r.Multiplier(Eval{Type: Niu, Value: 7}))
	require.Equal(t, 2, r.Multiplier(Eval{Type: None}))
	require.Equal(t, 6, r.Multiplier(Eval{Type: Bomb}))
}

func TestBanker(t *testing.T) {
	var rules Rules
	tests := []struct {
		name  string
		rules Rules
		grabs []int
		tied  []int // seats the RNG chooses among; one means no draw
		grab  int
	}{
		{name: "highest grab", grabs: []int{1, 4, 2, 0}, tied: []int{1}, grab: 4},
		{name: "tie among the highest", grabs: []int{3, 1, 3, 3, 2}, tied: []int{0, 2, 3}, grab: 3},
		{name: "two-player tie", grabs: []int{2, 2}, tied: []int{0, 1}, grab: 2},
		{name: "everyone passed", grabs: []int{0, 0, 0}, tied: []int{0, 1, 2}, grab: 1},
		{name: "everyone passed, configured", rules: Rules{AllPassGrab: 2}, grabs: []int{0, 0}, tied: []int{0, 1}, grab: 2},
		{name: "larger grab range", rules: Rules{MaxGrab: 6}, grabs: []int{6, 5}, tied: []int{0}, grab: 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for seed := range uint64(20) {
				rng, ref := NewRNG(seed), NewRNG(seed)
				seat, grab, err := tt.rules.Banker(rng, tt.grabs)
				require.NoError(t, err)
				require.Equal(t, tt.grab, grab)
				want := tt.tied[0]
				if len(tt.tied) > 1 {
					want = tt.tied[ref.IntN(len(tt.tied))]
				}
				require.Equal(t, want, seat)
				require.Equal(t, ref.Uint64(), rng.Uint64(), "the RNG draws only to break a tie")
			}
		})
	}

	// Over many seeds every tied seat gets picked.
	picked := map[int]bool{}
	for seed := range uint64(200) {
		seat, _, err := rules.Banker(NewRNG(seed), []int{2, 4, 0, 4, 4})
		require.NoError(t, err)
		picked[seat] = true
	}
	require.Equal(t, map[int]bool{1: true, 3: true, 4: true}, picked)

	for _, grabs := range [][]int{{5, 0}, {-1, 2}, {1}, {1, 1, 1, 1, 1, 1}} {
		_, _, err := rules.Banker(NewRNG(1), grabs)
		require.ErrorIs(t, err, ErrBadChoice, "%v", grabs)
	}
}
