package niuniu

import (
	"errors"
	"fmt"
	"strings"
)

// Rank is a card's rank, Ace (1) to King (13); the number is also its order
// in tie-breaks (K high, A low). Zero is not a rank.
type Rank uint8

// The ranks.
const (
	Ace Rank = iota + 1
	Two
	Three
	Four
	Five
	Six
	Seven
	Eight
	Nine
	Ten
	Jack
	Queen
	King
)

// Suit is a card's suit; a higher number wins a tie-break (S > H > C > D).
// Zero is not a suit.
type Suit uint8

// The suits, weakest first.
const (
	Diamonds Suit = iota + 1
	Clubs
	Hearts
	Spades
)

// Card is one card of the 52-card deck. The zero Card is not a card.
// In text (and JSON) it is written rank then suit: "AS", "10H", "QD".
type Card struct {
	Rank Rank
	Suit Suit
}

// ErrBadCard is returned for text that is not a card and for invalid Card
// values.
var ErrBadCard = errors.New("not a card")

var (
	rankText = [...]string{Ace: "A", Two: "2", Three: "3", Four: "4", Five: "5", Six: "6", Seven: "7",
		Eight: "8", Nine: "9", Ten: "10", Jack: "J", Queen: "Q", King: "K"}
	suitText = [...]string{Diamonds: "D", Clubs: "C", Hearts: "H", Spades: "S"}
)

// Valid reports whether c is one of the 52 cards.
func (c Card) Valid() bool {
	return c.Rank >= Ace && c.Rank <= King && c.Suit >= Diamonds && c.Suit <= Spades
}

// Point is the card's value in sums: A = 1, 2–10 face value, J/Q/K = 10.
func (c Card) Point() int {
	return min(int(c.Rank), 10)
}

// String returns the card's notation, or "Card(r,s)" for an invalid Card.
func (c Card) String() string {
	if !c.Valid() {
		return fmt.Sprintf("Card(%d,%d)", c.Rank, c.Suit)
	}
	return rankText[c.Rank] + suitText[c.Suit]
}

// compareCards orders cards by rank, then suit: >0 if a is higher.
func compareCards(a, b Card) int {
	if a.Rank != b.Rank {
		return int(a.Rank) - int(b.Rank)
	}
	return int(a.Suit) - int(b.Suit)
}

// ParseCard parses the notation String writes (upper case only).
func ParseCard(s string) (Card, error) {
	if len(s) < 2 || len(s) > 3 {
		return Card{}, fmt.Errorf("%w: %q", ErrBadCard, s)
	}
	r, u := s[:len(s)-1], s[len(s)-1:]
	var c Card
	for i, t := range rankText {
		if t != "" && t == r {
			c.Rank = Rank(i)
		}
	}
	for i, t := range suitText {
		if t != "" && t == u {
			c.Suit = Suit(i)
		}
	}
	if !c.Valid() {
		return Card{}, fmt.Errorf("%w: %q (want rank A 2–10 J Q K, then suit S H C D, as in 10H)", ErrBadCard, s)
	}
	return c, nil
}

// MarshalText writes the card's notation.
func (c Card) MarshalText() ([]byte, error) {
	if !c.Valid() {
		return nil, fmt.Errorf("%w: %s", ErrBadCard, c)
	}
	return []byte(c.String()), nil
}

// UnmarshalText parses the card's notation.
func (c *Card) UnmarshalText(b []byte) error {
	v, err := ParseCard(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// Hand is one player's five cards in the order dealt: the first four at
// deal4, the last at deal5.
type Hand [5]Card

// String returns the cards separated by spaces.
func (h Hand) String() string {
	s := make([]string, len(h))
	for i, c := range h {
		s[i] = c.String()
	}
	return strings.Join(s, " ")
}

// deckSuits is the suit order of a new deck.
var deckSuits = [4]Suit{Spades, Hearts, Clubs, Diamonds}

// NewDeck returns the 52 cards in their order before shuffling:
// AS 2S … KS, AH … KH, AC … KC, AD … KD.
func NewDeck() []Card {
	d := make([]Card, 0, 52)
	for _, s := range deckSuits {
		for r := Ace; r <= King; r++ {
			d = append(d, Card{r, s})
		}
	}
	return d
}

// Shuffle permutes deck by Fisher–Yates with rng: for i from len-1 down to 1,
// swap cards i and rng.IntN(i+1).
func Shuffle(deck []Card, rng *RNG) {
	for i := len(deck) - 1; i > 0; i-- {
		j := rng.IntN(i + 1)
		deck[i], deck[j] = deck[j], deck[i]
	}
}

// RNG is SplitMix64, the round's source of randomness (see the package doc
// for the algorithm). It is not safe for concurrent use; a round owns its
// RNG.
type RNG struct {
	state uint64
}

// NewRNG returns an RNG whose state starts at seed.
func NewRNG(seed uint64) *RNG {
	return &RNG{state: seed}
}

// Uint64 returns the next draw.
func (r *RNG) Uint64() uint64 {
	r.state += 0x9E3779B97F4A7C15
	z := r.state
	z = (z ^ z>>30) * 0xBF58476D1CE4E5B9
	z = (z ^ z>>27) * 0x94D049BB133111EB
	return z ^ z>>31
}

// IntN returns a uniform integer in [0, n), drawing until the draw x is at
// least 2^64 mod n (so x mod n is unbiased). It panics if n ≤ 0.
func (r *RNG) IntN(n int) int {
	if n <= 0 {
		panic("niuniu: IntN with n <= 0")
	}
	un := uint64(n)
	threshold := -un % un // 2^64 mod n
	for {
		if x := r.Uint64(); x >= threshold {
			return int(x % un)
		}
	}
}
