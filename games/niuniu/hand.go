package niuniu

import (
	"errors"
	"fmt"
)

// HandType is the type of a hand; a higher number is a better type.
type HandType uint8

// The hand types, worst first.
const (
	// None: no three cards' points sum to a multiple of 10.
	None HandType = iota
	// Niu: three cards sum to a multiple of 10, the other two to v (mod 10),
	// v = 1–9 (Eval.Value).
	Niu
	// NiuNiu: three cards sum to a multiple of 10 and so do the other two.
	NiuNiu
	// FiveFace: all five cards are J, Q or K.
	FiveFace
	// Bomb: four cards of one rank.
	Bomb
	// FiveSmall: every card is below 5 and the points sum to at most 10.
	FiveSmall
)

var typeText = [...]string{None: "none", Niu: "niu", NiuNiu: "niuniu", FiveFace: "five_face", Bomb: "bomb", FiveSmall: "five_small"}

// String returns the type's name as the simulator writes it: "none", "niu",
// "niuniu", "five_face", "bomb", "five_small".
func (t HandType) String() string {
	if int(t) < len(typeText) {
		return typeText[t]
	}
	return fmt.Sprintf("HandType(%d)", t)
}

// ErrBadHandType is returned when text is not a hand type's name.
var ErrBadHandType = errors.New("not a hand type")

// MarshalText writes the type's name.
func (t HandType) MarshalText() ([]byte, error) {
	if int(t) >= len(typeText) {
		return nil, fmt.Errorf("%w: %d", ErrBadHandType, t)
	}
	return []byte(typeText[t]), nil
}

// UnmarshalText parses a type's name.
func (t *HandType) UnmarshalText(b []byte) error {
	for i, s := range typeText {
		if s == string(b) {
			*t = HandType(i)
			return nil
		}
	}
	return fmt.Errorf("%w: %q", ErrBadHandType, b)
}

// Eval is an evaluated hand. In JSON it is {"type":"niu","value":7}.
type Eval struct {
	Type HandType `json:"type"`
	// Value is the niu value 1–9 for type Niu, 0 for every other type.
	Value int `json:"value"`
	// High is the hand's highest card (by rank, then suit).
	High Card `json:"-"`
	// Quad is the rank of the four for type Bomb, 0 otherwise.
	Quad Rank `json:"-"`
}

// ErrDuplicateCard is returned for a hand holding the same card twice.
var ErrDuplicateCard = errors.New("duplicate card")

// Evaluate returns the best type of h under r: five_small, bomb, five_face,
// niuniu, niu 9 … niu 1, none, skipping the special hands r switches off.
// For niu the best split counts: the highest value over every choice of
// three cards whose points sum to a multiple of 10. The order of the cards
// does not matter.
func (r Rules) Evaluate(h Hand) (Eval, error) {
	var e Eval
	var ranks [King + 1]int
	small, faces, sum := true, true, 0
	for i, c := range h {
		if !c.Valid() {
			return Eval{}, fmt.Errorf("card %d: %w: %s", i, ErrBadCard, c)
		}
		for _, d := range h[:i] {
			if d == c {
				return Eval{}, fmt.Errorf("%w: %s", ErrDuplicateCard, c)
			}
		}
		if i == 0 || compareCards(c, e.High) > 0 {
			e.High = c
		}
		ranks[c.Rank]++
		small = small && c.Rank < Five
		faces = faces && c.Rank >= Jack
		sum += c.Point()
	}
	if !r.NoFiveSmall && small && sum <= 10 {
		e.Type = FiveSmall
		return e, nil
	}
	if !r.NoBomb {
		for rank, n := range ranks {
			if n == 4 {
				e.Type, e.Quad = Bomb, Rank(rank)
				return e, nil
			}
		}
	}
	if !r.NoFiveFace && faces {
		e.Type = FiveFace
		return e, nil
	}
	best := 0 // the best split's value, 10 for niuniu
	for i := 0; i < 5; i++ {
		for j := i + 1; j < 5; j++ {
			for k := j + 1; k < 5; k++ {
				three := h[i].Point() + h[j].Point() + h[k].Point()
				if three%10 != 0 {
					continue
				}
				v := (sum - three) % 10
				if v == 0 {
					v = 10
				}
				best = max(best, v)
			}
		}
	}
	switch {
	case best == 10:
		e.Type = NiuNiu
	case best > 0:
		e.Type, e.Value = Niu, best
	}
	return e, nil
}

// Compare returns a positive number if a beats b, negative if b beats a,
// and 0 only if the two cannot be told apart (never for two hands from one
// deck). A better type wins; for niu a higher value; then, for bomb, the
// higher rank of the four; otherwise the higher highest card, by rank then
// suit.
func Compare(a, b Eval) int {
	switch {
	case a.Type != b.Type:
		return int(a.Type) - int(b.Type)
	case a.Value != b.Value:
		return a.Value - b.Value
	case a.Type == Bomb && a.Quad != b.Quad:
		return int(a.Quad) - int(b.Quad)
	}
	return compareCards(a.High, b.High)
}
