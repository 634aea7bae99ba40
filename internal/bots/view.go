package bots

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/hearth-server/hearth/games/niuniu"
)

// view is what a bot reads of a pushed niuniu.View: the fields it plays by
// and checks, nothing else. Every bot decodes ~20 full views a round, so
// parseView reads them with a purpose-built scanner instead of
// encoding/json (reflection, a validating pre-scan, a string per card and
// user id): a quarter of the bots' CPU went there. A view is a value with
// its seats inline, parsed into storage its bot keeps: reading one
// allocates nothing (but a new round's id), so that ten thousand bots in
// one process do not make garbage at the rate pushes arrive. Their
// collections had delayed the bots' readers, and the countdowns they
// timed, by up to a few hundred milliseconds.
type view struct {
	Phase      string
	DeadlineMS int64 // Unix ms, 0 none
	Round      string
	You        int
	Banker     int
	Unsettled  bool // the view has an error: the round could not be settled
	seats      [maxSeats]seat
	nSeats     int
}

// maxSeats is the most seats a Niu Niu table has.
const maxSeats = 5

// Seats are the table's seats, in order.
func (v *view) Seats() []seat { return v.seats[:v.nSeats] }

// addSeat appends a seat (tests build views with it).
func (v *view) addSeat(st seat) {
	v.seats[v.nSeats] = st
	v.nSeats++
}

// seat is what a bot reads of a niuniu.SeatView.
type seat struct {
	Ready   bool
	Playing bool
	Opened  bool
	Grab    int
	Bet     int
	Delta   int64
	cards   [5]niuniu.Card
	nCards  int
}

// Cards are the seat's cards the view shows.
func (s *seat) Cards() []niuniu.Card { return s.cards[:s.nCards] }

// errBadView is wrapped by every parseView error.
var errBadView = errors.New("bad view")

// parseView decodes a niuniu.View's JSON as encoding/json would into the
// fields of v, which it overwrites (keys matched exactly, in any order;
// unknown keys skipped; null leaves a field zero; more than maxSeats seats
// is an error). prev, if not nil, is the view before (not v): its round's
// string is reused when the round is the same, so that only a new round
// allocates. v keeps nothing of data (strings are copied), which the
// client reuses once the handler returns.
func parseView(v *view, data []byte, prev *view) error {
	*v = view{}
	s := scanner{b: data}
	err := s.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "phase":
			v.Phase, err = s.phase()
		case "deadline_ms":
			v.DeadlineMS, err = s.int()
		case "round":
			var b []byte
			if b, err = s.str(); err == nil {
				if prev != nil && prev.Round == string(b) {
					v.Round = prev.Round
				} else {
					v.Round = string(b)
				}
			}
		case "you":
			v.You, err = s.smallInt()
		case "banker":
			v.Banker, err = s.smallInt()
		case "error":
			var b []byte
			b, err = s.str()
			v.Unsettled = len(b) > 0
		case "seats":
			err = s.seats(v)
		default:
			err = s.skip()
		}
		return err
	})
	if err == nil {
		s.ws()
		if s.i != len(s.b) {
			err = s.errorf("data after the view")
		}
	}
	return err
}

// scanner reads JSON from b[i:].
type scanner struct {
	b []byte
	i int
}

func (s *scanner) errorf(format string, a ...any) error {
	return fmt.Errorf("%w at byte %d: %s", errBadView, s.i, fmt.Sprintf(format, a...))
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek skips white space and returns the next byte, 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.i == len(s.b) {
		return 0
	}
	return s.b[s.i]
}

// null consumes a null if one comes next.
func (s *scanner) null() (bool, error) {
	if s.peek() != 'n' {
		return false, nil
	}
	return true, s.lit("null")
}

func (s *scanner) lit(l string) error {
	if len(s.b)-s.i < len(l) || string(s.b[s.i:s.i+len(l)]) != l {
		return s.errorf("want %s", l)
	}
	s.i += len(l)
	return nil
}

// object reads an object (or null), calling field for each key with the
// scanner at its value, which field must consume.
func (s *scanner) object(field func(key []byte) error) error {
	if isNull, err := s.null(); isNull || err != nil {
		return err
	}
	if s.peek() != '{' {
		return s.errorf("want an object")
	}
	s.i++
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		if s.peek() != '"' {
			return s.errorf("want a key")
		}
		key, err := s.str()
		if err != nil {
			return err
		}
		if s.peek() != ':' {
			return s.errorf("want :")
		}
		s.i++
		if err := field(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.errorf("want , or }")
		}
	}
}

// array reads an array (or null), calling elem with the scanner at each
// element, which elem must consume.
func (s *scanner) array(elem func() error) error {
	if isNull, err := s.null(); isNull || err != nil {
		return err
	}
	if s.peek() != '[' {
		return s.errorf("want an array")
	}
	s.i++
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return s.errorf("want , or ]")
		}
	}
}

// str reads a string (null reads as empty) and returns its content: the
// bytes between the quotes, or, when it has escapes, the decoded string.
// The bytes may alias the input: copy them to keep them.
func (s *scanner) str() ([]byte, error) {
	if isNull, err := s.null(); isNull || err != nil {
		return nil, err
	}
	start := s.i
	escaped, err := s.skipStr()
	if err != nil {
		return nil, err
	}
	if !escaped {
		return s.b[start+1 : s.i-1], nil
	}
	var out string // rare (the server escapes <, > and & too): let encoding/json do it
	if err := json.Unmarshal(s.b[start:s.i], &out); err != nil {
		return nil, fmt.Errorf("%w: %w", errBadView, err)
	}
	return []byte(out), nil
}

// skipStr reads a string without decoding it, and reports whether it has
// escapes. It checks only that they are one of JSON's.
func (s *scanner) skipStr() (escaped bool, err error) {
	if s.peek() != '"' {
		return false, s.errorf("want a string")
	}
	for s.i++; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '\\':
			escaped = true
			s.i++
			if s.i == len(s.b) || !strings.ContainsRune(`"\\/bfnrtu`, rune(s.b[s.i])) {
				return false, s.errorf("bad escape")
			}
		case c < 0x20:
			return false, s.errorf("control character in a string")
		case c == '"':
			s.i++
			return escaped, nil
		}
	}
	return false, s.errorf("unterminated string")
}

// phase reads the phase, without allocating for the known ones.
func (s *scanner) phase() (string, error) {
	b, err := s.str()
	if err != nil {
		return "", err
	}
	for _, p := range [...]string{niuniu.PhaseReady, niuniu.PhaseGrab, niuniu.PhaseBet, niuniu.PhaseOpen, niuniu.PhaseEnd} {
		if string(b) == p {
			return p, nil
		}
	}
	return string(b), nil
}

// int reads an integer (null reads as 0); a fraction or exponent is an
// error, as encoding/json makes it for an integer field.
func (s *scanner) int() (int64, error) {
	if isNull, err := s.null(); isNull || err != nil {
		return 0, err
	}
	start := s.i
	neg := s.i < len(s.b) && s.b[s.i] == '-'
	if neg {
		s.i++
	}
	var n uint64
	digits := s.i
	for ; s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9'; s.i++ {
		if n > (1<<63)/10 {
			return 0, s.errorf("integer out of range")
		}
		n = n*10 + uint64(s.b[s.i]-'0')
	}
	switch {
	case s.i == digits, s.i-digits > 1 && s.b[digits] == '0':
		s.i = start
		return 0, s.errorf("want an integer")
	case s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E'):
		return 0, s.errorf("want an integer, not a fraction")
	case neg && n <= 1<<63:
		return -int64(n), nil
	case !neg && n < 1<<63:
		return int64(n), nil
	}
	return 0, s.errorf("integer out of range")
}

// smallInt reads an int-sized integer.
func (s *scanner) smallInt() (int, error) {
	n, err := s.int()
	if err == nil && int64(int(n)) != n {
		return 0, s.errorf("integer out of range")
	}
	return int(n), err
}

// bool reads true or false (null reads as false).
func (s *scanner) bool() (bool, error) {
	switch s.peek() {
	case 't':
		return true, s.lit("true")
	case 'f':
		return false, s.lit("false")
	case 'n':
		return false, s.lit("null")
	}
	return false, s.errorf("want a boolean")
}

// seats reads the seats into v; a key seen twice (or null) replaces the
// seats read before whole.
func (s *scanner) seats(v *view) error {
	v.seats, v.nSeats = [maxSeats]seat{}, 0
	return s.array(func() error {
		if v.nSeats == maxSeats {
			return s.errorf("more than %d seats", maxSeats)
		}
		st := &v.seats[v.nSeats]
		v.nSeats++
		return s.object(func(key []byte) error {
			var err error
			switch string(key) {
			case "ready":
				st.Ready, err = s.bool()
			case "playing":
				st.Playing, err = s.bool()
			case "opened":
				st.Opened, err = s.bool()
			case "grab":
				st.Grab, err = s.smallInt()
			case "bet":
				st.Bet, err = s.smallInt()
			case "delta":
				st.Delta, err = s.int()
			case "cards":
				st.nCards = 0
				err = s.array(func() error {
					if st.nCards == len(st.cards) {
						return s.errorf("more than %d cards", len(st.cards))
					}
					b, err := s.str()
					if err != nil {
						return err
					}
					c, ok := parseCard(b)
					if !ok {
						return s.errorf("bad card %q", b)
					}
					st.cards[st.nCards] = c
					st.nCards++
					return nil
				})
			default:
				err = s.skip()
			}
			return err
		})
	})
}

// parseCard is niuniu.ParseCard without a string to allocate.
func parseCard(b []byte) (niuniu.Card, bool) {
	if len(b) < 2 || len(b) > 3 {
		return niuniu.Card{}, false
	}
	var c niuniu.Card
	switch r := b[:len(b)-1]; string(r) {
	case "A":
		c.Rank = niuniu.Ace
	case "J":
		c.Rank = niuniu.Jack
	case "Q":
		c.Rank = niuniu.Queen
	case "K":
		c.Rank = niuniu.King
	case "10":
		c.Rank = niuniu.Ten
	default:
		if len(r) != 1 || r[0] < '2' || r[0] > '9' {
			return niuniu.Card{}, false
		}
		c.Rank = niuniu.Rank(r[0] - '0')
	}
	switch b[len(b)-1] {
	case 'D':
		c.Suit = niuniu.Diamonds
	case 'C':
		c.Suit = niuniu.Clubs
	case 'H':
		c.Suit = niuniu.Hearts
	case 'S':
		c.Suit = niuniu.Spades
	default:
		return niuniu.Card{}, false
	}
	return c, c.Valid()
}

// skip reads any value, checking its structure.
func (s *scanner) skip() error {
	switch c := s.peek(); {
	case c == '{':
		return s.object(func([]byte) error { return s.skip() })
	case c == '[':
		return s.array(s.skip)
	case c == '"':
		_, err := s.skipStr()
		return err
	case c == 't':
		return s.lit("true")
	case c == 'f':
		return s.lit("false")
	case c == 'n':
		return s.lit("null")
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	}
	return s.errorf("want a value")
}

// number reads a number as JSON spells it: -?int frac? exp?.
func (s *scanner) number() error {
	digits := func() int {
		start := s.i
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
		}
		return s.i - start
	}
	if s.b[s.i] == '-' {
		s.i++
	}
	start := s.i
	if n := digits(); n == 0 || n > 1 && s.b[start] == '0' {
		return s.errorf("bad number")
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return s.errorf("bad number")
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return s.errorf("bad number")
		}
	}
	return nil
}
