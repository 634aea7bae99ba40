package niuniu

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// hand parses five space-separated cards.
func hand(t testing.TB, s string) Hand {
	t.Helper()
	f := strings.Fields(s)
	require.Len(t, f, 5, s)
	var h Hand
	for i, c := range f {
		var err error
		h[i], err = ParseCard(c)
		require.NoError(t, err)
	}
	return h
}

func TestParseCard(t *testing.T) {
	good := map[string]Card{
		"AS": {Ace, Spades}, "10H": {Ten, Hearts}, "QD": {Queen, Diamonds},
		"2C": {Two, Clubs}, "KS": {King, Spades}, "JH": {Jack, Hearts},
	}
	for s, want := range good {
		c, err := ParseCard(s)
		require.NoError(t, err, s)
		require.Equal(t, want, c, s)
		require.Equal(t, s, c.String())
	}
	for _, s := range []string{"", "A", "1S", "11S", "as", "AX", "10", "0H", "AS ", " AS", "10HH", "TS", "\xffS"} {
		_, err := ParseCard(s)
		require.ErrorIs(t, err, ErrBadCard, "%q", s)
	}
}

func TestCardPoints(t *testing.T) {
	want := map[Rank]int{Ace: 1, Two: 2, Five: 5, Nine: 9, Ten: 10, Jack: 10, Queen: 10, King: 10}
	for r, p := range want {
		require.Equal(t, p, Card{r, Hearts}.Point(), "rank %d", r)
	}
}

func TestCardText(t *testing.T) {
	b, err := json.Marshal(Hand{{Ace, Spades}, {Ten, Hearts}, {Jack, Clubs}, {Queen, Diamonds}, {King, Spades}})
	require.NoError(t, err)
	require.JSONEq(t, `["AS","10H","JC","QD","KS"]`, string(b))
	var h Hand
	require.NoError(t, json.Unmarshal(b, &h))
	require.Equal(t, "AS 10H JC QD KS", h.String())

	_, err = json.Marshal(Card{})
	require.ErrorIs(t, err, ErrBadCard)
	require.Equal(t, "Card(0,0)", Card{}.String())
	require.ErrorIs(t, json.Unmarshal([]byte(`["ZZ"]`), &[]Card{}), ErrBadCard)
}

func TestNewDeck(t *testing.T) {
	d := NewDeck()
	require.Len(t, d, 52)
	seen := map[Card]bool{}
	for _, c := range d {
		require.True(t, c.Valid(), c)
		require.False(t, seen[c], "duplicate %s", c)
		seen[c] = true
	}
	require.Equal(t, "AS", d[0].String())
	require.Equal(t, "KS", d[12].String())
	require.Equal(t, "AH", d[13].String())
	require.Equal(t, "AC", d[26].String())
	require.Equal(t, "KD", d[51].String())
}

func TestRNGSplitMix64(t *testing.T) {
	// The published SplitMix64 reference outputs.
	r := NewRNG(1234567)
	for _, want := range []uint64{6457827717110365317, 3203168211198807973, 9817491932198370423,
		4593380528125082431, 16408922859458223821} {
		require.Equal(t, want, r.Uint64())
	}
	require.Equal(t, uint64(0xE220A8397B1DCDAF), NewRNG(0).Uint64())
}

func TestRNGIntN(t *testing.T) {
	r, ref := NewRNG(9), NewRNG(9)
	require.Equal(t, 0, r.IntN(1))
	ref.Uint64()
	require.Equal(t, ref.Uint64(), r.Uint64(), "IntN(1) takes exactly one draw")

	counts := make([]int, 5)
	for range 5000 {
		counts[r.IntN(5)]++
	}
	for v, n := range counts {
		require.Greater(t, n, 800, "value %d drawn %d of 5000 times", v, n)
	}
	require.Panics(t, func() { r.IntN(0) })
}

func TestShuffleAndDeal(t *testing.T) {
	var rules Rules
	deck := NewDeck()
	Shuffle(deck, NewRNG(1))
	hands, err := rules.Deal(NewRNG(1), 5)
	require.NoError(t, err)
	seen := map[Card]bool{}
	for i, h := range hands {
		require.Equal(t, deck[5*i:5*i+5], h[:], "seat %d gets cards %d to %d", i, 5*i, 5*i+4)
		for _, c := range h {
			require.False(t, seen[c], "%s dealt twice", c)
			seen[c] = true
		}
	}
	// Checked against an independent implementation of the package doc.
	require.Equal(t, "7H 9S 4H 8C 8H", hands[0].String())
	require.Equal(t, "5H KH 3S 2H JC", hands[2].String())

	again, err := rules.Deal(NewRNG(1), 5)
	require.NoError(t, err)
	require.Equal(t, hands, again, "a seed replays its deal")
	other, err := rules.Deal(NewRNG(2), 5)
	require.NoError(t, err)
	require.NotEqual(t, hands, other)

	for _, n := range []int{0, 1, 6} {
		_, err := rules.Deal(NewRNG(1), n)
		require.ErrorIs(t, err, ErrBadChoice, "%d players", n)
	}
	ten, err := Rules{Seats: 10}.Deal(NewRNG(3), 10)
	require.NoError(t, err)
	require.Len(t, ten, 10)
}

func FuzzParseCard(f *testing.F) {
	for _, s := range []string{"AS", "10H", "QD", "1S", "", "10", "KX"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCard(s)
		if err != nil {
			require.ErrorIs(t, err, ErrBadCard)
			return
		}
		require.True(t, c.Valid())
		require.Equal(t, s, c.String(), "a parsed card writes back as its text")
	})
}
