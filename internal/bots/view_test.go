package bots

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth/games/niuniu"
)

// fromJSON is what a bot would read of a niuniu.View's JSON decoded with
// encoding/json, the reference parseView must match.
func fromJSON(t testing.TB, data []byte) *view {
	var nv niuniu.View
	require.NoError(t, json.Unmarshal(data, &nv))
	v := &view{Phase: nv.Phase, DeadlineMS: nv.DeadlineMS, Round: nv.Round, You: nv.You, Banker: nv.Banker, Unsettled: nv.Error != ""}
	for _, s := range nv.Seats {
		st := seat{Ready: s.Ready, Playing: s.Playing, Opened: s.Opened, Grab: s.Grab, Bet: s.Bet, Delta: s.Delta}
		st.nCards = copy(st.cards[:], s.Cards)
		v.addSeat(st)
	}
	return v
}

// randomView is a view as a table could show it, with every field set to
// something.
func randomView(rng *rand.Rand) niuniu.View {
	phases := []string{niuniu.PhaseReady, niuniu.PhaseGrab, niuniu.PhaseBet, niuniu.PhaseOpen, niuniu.PhaseEnd}
	v := niuniu.View{
		Phase: phases[rng.IntN(len(phases))], DeadlineMS: rng.Int64N(2e12), Round: fmt.Sprintf("r-%d", rng.IntN(1000)),
		Seed: rng.Uint64(), Base: rng.Int64N(1000) + 1, Banker: rng.IntN(6) - 1, BankerGrab: rng.IntN(5),
	}
	n := 2 + rng.IntN(4)
	v.You = rng.IntN(n)
	for range n {
		s := niuniu.SeatView{
			User: fmt.Sprintf("u<%d>&\"x\"", rng.IntN(1e6)), Online: rng.IntN(2) == 0, Ready: rng.IntN(2) == 0,
			Playing: rng.IntN(2) == 0, Grab: rng.IntN(6) - 1, Bet: rng.IntN(6), Opened: rng.IntN(2) == 0,
			Delta: rng.Int64N(2e9) - 1e9,
		}
		for range rng.IntN(6) {
			s.Cards = append(s.Cards, niuniu.Card{Rank: niuniu.Rank(1 + rng.IntN(13)), Suit: niuniu.Suit(1 + rng.IntN(4))})
		}
		if len(s.Cards) == 5 {
			s.Hand = &niuniu.Eval{Type: niuniu.HandType(rng.IntN(5)), Value: rng.IntN(10)}
		}
		v.Seats = append(v.Seats, s)
	}
	if rng.IntN(5) == 0 {
		v.Error = "could not be settled: \u00e9\n"
	}
	return v
}

// parseView reads views as encoding/json does, whatever the key order and
// spacing, and reuses the previous view's round.
func TestParseViewMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var views [2]view
	var prev *view
	for i := range 2000 {
		data, err := json.Marshal(randomView(rng))
		require.NoError(t, err)
		if i%3 == 1 {
			// Keys in another order, with white space.
			var m map[string]any
			require.NoError(t, json.Unmarshal(data, &m))
			data, err = json.MarshalIndent(m, " ", "\t")
			require.NoError(t, err)
		}
		got := &views[i%2]
		got.Round = "stale"
		require.NoError(t, parseView(got, data, prev), "%s", data)
		require.Equal(t, fromJSON(t, data), got, "%s", data)
		if prev != nil && prev.Round == got.Round {
			require.Same(t, unsafe.StringData(prev.Round), unsafe.StringData(got.Round), "the round's string is reused")
		}
		prev = got
	}
}

// A view keeps nothing of the data it was parsed from: the client reuses
// a push's payload once onView returns (client.Options.PushOnReader).
func TestParseViewKeepsNoInput(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		nv := randomView(rng)
		nv.Phase += "x" // not a known phase: parseView makes the string
		data, err := json.Marshal(nv)
		require.NoError(t, err)
		want := fromJSON(t, data)
		got := &view{}
		require.NoError(t, parseView(got, data, nil))
		for i := range data {
			data[i] = '#'
		}
		require.Equal(t, want, got, "the view changed with the payload's bytes")
	}
}

func TestParseViewNulls(t *testing.T) {
	data := []byte(`{"phase":null,"deadline_ms":null,"round":null,"you":null,"banker":null,"seats":[{"ready":null,"cards":null,"hand":null,"grab":null}],"error":null,"x":[1.5e-3,-0,{"a":[true,false,null]}]}`)
	got := &view{}
	require.NoError(t, parseView(got, data, nil))
	require.Equal(t, fromJSON(t, data), got)
	require.NoError(t, parseView(got, []byte(`null`), nil))
	require.Equal(t, &view{}, got, "a view parsed into is overwritten")
	// Seats seen twice: the second replaces the first whole (encoding/json
	// would keep the first's grab in the reused element).
	twice := []byte(`{"seats":[{"grab":1},{"grab":2},{"grab":3}],"seats":[{"bet":4}],"you":0}`)
	require.NoError(t, parseView(got, twice, nil))
	want := &view{}
	want.addSeat(seat{Bet: 4})
	require.Equal(t, want, got)
}

// Whatever encoding/json refuses to decode into a View, parseView refuses
// too (it reads only the fields a bot needs, so this is one way).
func TestParseViewRefusesBadJSON(t *testing.T) {
	for _, bad := range []string{
		``, `{`, `{"phase":"grab"`, `{"phase":"grab",}`, `{"phase" "grab"}`, `{"phase":grab}`,
		`{"you":1.5}`, `{"you":1e2}`, `{"you":01}`, `{"you":-}`, `{"deadline_ms":99999999999999999999}`,
		`{"seats":[{"cards":["1H"]}]}`, `{"seats":[{"cards":["10X"]}]}`, `{"seats":[{"cards":[3]}]}`,
		`{"seats":[{"ready":"yes"}]}`, `{"seats":{}}`, `{"x":[1,]}`, `{"x":01}`, `{"x":1.}`, `{"x":1e}`, `{"x":tru}`,
		`{"round":"a` + "\x01" + `"}`, `{"round":"\x"}`, `{} {}`, `[]`,
	} {
		require.ErrorIs(t, parseView(&view{}, []byte(bad), nil), errBadView, "%q", bad)
		var nv niuniu.View
		require.Error(t, json.Unmarshal([]byte(bad), &nv), "%q: encoding/json takes it", bad)
	}
	require.ErrorIs(t, parseView(&view{}, []byte(`{"seats":[{"cards":["AH","2H","3H","4H","5H","6H"]}]}`), nil), errBadView, "a seat has at most 5 cards")
	require.ErrorIs(t, parseView(&view{}, []byte(`{"seats":[{},{},{},{},{},{}]}`), nil), errBadView, "a table has at most 5 seats")
}

// Every card's notation parses as niuniu.ParseCard parses it.
func TestParseCard(t *testing.T) {
	for r := niuniu.Ace; r <= niuniu.King; r++ {
		for s := niuniu.Diamonds; s <= niuniu.Spades; s++ {
			c := niuniu.Card{Rank: r, Suit: s}
			got, ok := parseCard([]byte(c.String()))
			require.True(t, ok, c.String())
			require.Equal(t, c, got)
		}
	}
	for _, bad := range []string{"", "A", "1H", "11H", "0S", "AX", "10", "AHH"} {
		_, ok := parseCard([]byte(bad))
		require.False(t, ok, bad)
		_, err := niuniu.ParseCard(bad)
		require.Error(t, err, bad)
	}
}

func BenchmarkViewDecode(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	nv := randomView(rng)
	nv.Seats = nv.Seats[:0]
	for range 5 {
		nv.Seats = append(nv.Seats, randomView(rng).Seats[0])
	}
	nv.You = 2
	data, err := json.Marshal(nv)
	require.NoError(b, err)
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var v niuniu.View
			if err := json.Unmarshal(data, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parseView", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		var prev, v view
		if err := parseView(&prev, data, nil); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if err := parseView(&v, data, &prev); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A view wakes the bot when it may change its move or whether it may
// leave, not for another seat's move.
func TestMayMatter(t *testing.T) {
	grab := func(mine, other int) *view {
		v := &view{Phase: niuniu.PhaseGrab, Round: "r1", You: 0, Banker: -1}
		v.addSeat(seat{Playing: true, Grab: mine})
		v.addSeat(seat{Playing: true, Grab: other})
		return v
	}
	require.True(t, mayMatter(nil, grab(-1, -1)), "the first view")
	require.False(t, mayMatter(grab(-1, -1), grab(-1, 2)), "another seat grabbed")
	require.True(t, mayMatter(grab(-1, -1), grab(1, -1)), "the bot's grab is in: no move left")
	bet := grab(1, 2)
	bet.Phase = niuniu.PhaseBet
	require.True(t, mayMatter(grab(1, 2), bet), "a new phase")
	next := grab(1, 2)
	next.Round = "r2"
	require.True(t, mayMatter(grab(1, 2), next), "a new round")
	out := grab(-1, -1)
	out.seats[0].Playing = false
	require.True(t, mayMatter(grab(-1, -1), out), "no longer in the round: it may leave")
}
