package niuniu

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEvaluate(t *testing.T) {
	tests := []struct {
		name  string
		rules Rules
		hand  string
		typ   HandType
		value int
		quad  Rank
	}{
		{name: "five small", hand: "AS AH 2C 3D 2S", typ: FiveSmall},
		{name: "five small at sum 10", hand: "AS 2H 3C 2D 2S", typ: FiveSmall},
		{name: "sum 11 is not small", hand: "AS 2H 3C 2D 3S", typ: None},
		{name: "a five is not small", hand: "AS AH AC 2D 5S", typ: None},
		{name: "five small beats bomb", hand: "AS AH AC AD 2S", typ: FiveSmall},
		{name: "bomb", hand: "3S 3H 3C 3D KS", typ: Bomb, quad: Three},
		{name: "bomb of jacks with a king", hand: "JS JH JC JD KS", typ: Bomb, quad: Jack},
		{name: "bomb of aces with a five", hand: "AS AH AC AD 5S", typ: Bomb, quad: Ace},
		{name: "five face beats niuniu", hand: "JS QH KC JD QS", typ: FiveFace},
		{name: "a ten is not a face", hand: "JS QH KC JD 10S", typ: NiuNiu},
		{name: "niuniu", hand: "AS 9H KC 3D 7S", typ: NiuNiu},
		{name: "niu 1 (the page's example)", hand: "AS KH QD 7C 3S", typ: Niu, value: 1},
		{name: "niu 1", hand: "KS QH JD AC 10D", typ: Niu, value: 1},
		{name: "niu 2", hand: "KS QH JD AC AD", typ: Niu, value: 2},
		{name: "niu 3", hand: "KS QH JD AC 2D", typ: Niu, value: 3},
		{name: "niu 4", hand: "KS QH JD 2C 2D", typ: Niu, value: 4},
		{name: "niu 5", hand: "KS QH JD 2C 3D", typ: Niu, value: 5},
		{name: "niu 6", hand: "KS QH JD 3C 3D", typ: Niu, value: 6},
		{name: "niu 7", hand: "KS QH JD 3C 4D", typ: Niu, value: 7},
		{name: "niu 8", hand: "KS QH JD 4C 4D", typ: Niu, value: 8},
		{name: "niu 9", hand: "KS QH JD 4C 5D", typ: Niu, value: 9},
		{name: "niu found in the last three cards", hand: "9S 8H 2C 3D 5S", typ: Niu, value: 7},
		{name: "none", hand: "AS AH 3C 4D 9S", typ: None},
		{name: "none with faces", hand: "KS QH 2C 3D 4S", typ: None},
		{name: "five small off", rules: Rules{NoFiveSmall: true}, hand: "AS AH AC AD 2S", typ: Bomb, quad: Ace},
		{name: "five small and bomb off", rules: Rules{NoFiveSmall: true, NoBomb: true}, hand: "AS AH AC AD 2S", typ: None},
		{name: "bomb off", rules: Rules{NoBomb: true}, hand: "JS JH JC JD KS", typ: FiveFace},
		{name: "bomb and five face off", rules: Rules{NoBomb: true, NoFiveFace: true}, hand: "JS JH JC JD KS", typ: NiuNiu},
		{name: "five face off", rules: Rules{NoFiveFace: true}, hand: "JS QH KC JD QS", typ: NiuNiu},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := tt.rules.Evaluate(hand(t, tt.hand))
			require.NoError(t, err)
			require.Equal(t, tt.typ, e.Type)
			require.Equal(t, tt.value, e.Value)
			require.Equal(t, tt.quad, e.Quad)
		})
	}
}

// TestEvaluateBestSplit: the niu value is the best over every choice of
// three cards. Since the five points' total is fixed, every valid split
// leaves the same remainder; the hands here have several valid splits and
// splits that do not count.
func TestEvaluateBestSplit(t *testing.T) {
	tests := []struct {
		hand  string
		typ   HandType
		value int
	}{
		// K+Q+10, K+5+5, Q+5+5, 10+5+5 all make 10s; the rest is 20.
		{"KS QH 10D 5C 5S", NiuNiu, 0},
		// 2+8+10 leaves 3+7 and 3+7+10 leaves 2+8: niuniu either way,
		// while 2+3+7 = 12 is no split at all.
		{"2S 8H 3C 7D 10S", NiuNiu, 0},
		// 6+4+K leaves Q+9, 6+4+Q leaves K+9: value 9 either way.
		{"6S 4H KC QD 9S", Niu, 9},
	}
	for _, tt := range tests {
		e, err := Rules{}.Evaluate(hand(t, tt.hand))
		require.NoError(t, err)
		require.Equal(t, tt.typ, e.Type, tt.hand)
		require.Equal(t, tt.value, e.Value, tt.hand)
	}
}

func TestEvaluateOrderIndependent(t *testing.T) {
	var rules Rules
	for seed := range uint64(40) {
		hands, err := rules.Deal(NewRNG(seed), 5)
		require.NoError(t, err)
		for _, h := range hands {
			want, err := rules.Evaluate(h)
			require.NoError(t, err)
			permute(h[:], 0, func(p Hand) {
				got, err := rules.Evaluate(p)
				require.NoError(t, err)
				require.Equal(t, want, got, "%s reordered as %s", h, p)
			})
		}
	}
}

// permute calls fn with every ordering of h[k:].
func permute(h []Card, k int, fn func(Hand)) {
	if k == len(h) {
		fn(Hand(h))
		return
	}
	for i := k; i < len(h); i++ {
		h[k], h[i] = h[i], h[k]
		permute(h, k+1, fn)
		h[k], h[i] = h[i], h[k]
	}
}

func TestEvaluateRejects(t *testing.T) {
	_, err := Rules{}.Evaluate(Hand{{Ace, Spades}, {Ace, Spades}, {Two, Hearts}, {Three, Hearts}, {Four, Hearts}})
	require.ErrorIs(t, err, ErrDuplicateCard)
	_, err = Rules{}.Evaluate(Hand{{Ace, Spades}, {Two, Spades}, {Two, Hearts}, {Three, Hearts}, {}})
	require.ErrorIs(t, err, ErrBadCard)
	_, err = Rules{}.Evaluate(Hand{{Ace, Spades}, {Two, Spades}, {Two, Hearts}, {Three, Hearts}, {King, 9}})
	require.ErrorIs(t, err, ErrBadCard)
}

func TestCompare(t *testing.T) {
	// Each hand beats every hand after it.
	order := []string{
		"AC AD 2H 2D 3C", // five small, high 3C (clubs > diamonds)
		"AS AH 2C 3D 2S", // five small, high 3D
		"2S 2H 2C 2D 5S", // bomb of 2s (a 5 is not small)
		"AS AH AC AD KS", // bomb of aces: a king kicker does not help
		"KS KH QC QD JS", // five face, high KS
		"KC QS QH JD JC", // five face, high KC
		"KD 3S 7H 5C 5D", // niuniu, high KD
		"QH 3C 7D 5S 5H", // niuniu, high QH
		"KS QH JD 4C 5D", // niu 9
		"KH QD JC 4D 4S", // niu 8, high KH
		"KC QS JS 4H 4C", // niu 8, high KC
		"KS QH JD AC AD", // niu 2
		"KS QH JD AC 10D",
		"KH QD JS AH 10C",
		"AS AH 3C 4D 9S", // none, high 9S
		"AC AD 3S 4H 9H", // none, high 9H
		"AC 2D 3H 4H 8D", // none, high 8D
	}
	evals := make([]Eval, len(order))
	for i, s := range order {
		var err error
		evals[i], err = Rules{}.Evaluate(hand(t, s))
		require.NoError(t, err, s)
	}
	for i := range evals {
		for j := range evals {
			got := Compare(evals[i], evals[j])
			switch {
			case i < j:
				require.Positive(t, got, "%s should beat %s", order[i], order[j])
			case i > j:
				require.Negative(t, got, "%s should lose to %s", order[i], order[j])
			default:
				require.Zero(t, got)
			}
		}
	}
}

func TestCompareTieBreaks(t *testing.T) {
	tests := []struct {
		name, win, lose string
	}{
		{"higher niu value whatever the cards", "2S 3H 5D AC 8C", "KS QH JD AC 10D"},
		{"same value: highest card's rank", "KS QH JD 4C 4D", "QC JS 10H 4H 4S"},
		{"same value and top rank: suit", "KS QH JD 4C 4D", "KH QD JC 4H 4S"},
		{"hearts beat clubs", "KH QD 10C 4H 4S", "KC QS 10H 4C 4D"},
		{"clubs beat diamonds", "KC QS 10H 4C 4D", "KD QH 10S 4C 4H"},
		{"bomb: rank of the four, not the kicker", "3S 3H 3C 3D 4S", "2S 2H 2C 2D KS"},
		{"five small: highest card", "AS AH 2C 2D 4D", "AC AD 2H 2S 3S"},
		{"none: highest card", "AS 2H 3C 4D KD", "AC 2D 3S 4H QS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := Rules{}.Evaluate(hand(t, tt.win))
			require.NoError(t, err)
			l, err := Rules{}.Evaluate(hand(t, tt.lose))
			require.NoError(t, err)
			require.Equal(t, w.Type, l.Type, "both hands of one type")
			require.Positive(t, Compare(w, l))
			require.Negative(t, Compare(l, w))
		})
	}
}

func TestHandTypeText(t *testing.T) {
	for ty := None; ty <= FiveSmall; ty++ {
		b, err := ty.MarshalText()
		require.NoError(t, err)
		var back HandType
		require.NoError(t, back.UnmarshalText(b))
		require.Equal(t, ty, back)
	}
	_, err := HandType(6).MarshalText()
	require.ErrorIs(t, err, ErrBadHandType)
	require.Equal(t, "HandType(6)", HandType(6).String())
	var ty HandType
	require.ErrorIs(t, ty.UnmarshalText([]byte("bomb!")), ErrBadHandType)

	b, err := json.Marshal([]Eval{{Type: Niu, Value: 7, High: Card{King, Spades}}, {Type: FiveFace}})
	require.NoError(t, err)
	require.Equal(t, `[{"type":"niu","value":7},{"type":"five_face","value":0}]`, string(b))
}
