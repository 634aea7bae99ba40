package niuniu

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func sampleViews() []View {
	hand := Hand{{Ace, Spades}, {Ten, Hearts}, {King, Clubs}, {Two, Diamonds}, {Queen, Spades}}
	return []View{
		{},
		{Phase: PhaseReady, Banker: -1, Seats: []SeatView{{User: "alice", Online: true, Grab: -1}, {Grab: -1}}},
		{
			Phase: PhaseEnd, DeadlineMS: 1764590000123, Round: "r-9f", Seed: 1<<63 + 5, Base: 100, You: 1, Banker: 0, BankerGrab: 3,
			Seats: []SeatView{
				{User: "bob", Online: true, Ready: true, Playing: true, Grab: 3, Opened: true, Cards: hand[:], Hand: &Eval{Type: Niu, Value: 3}, Delta: -300},
				{User: "carol", Playing: true, Grab: 0, Bet: 2, Cards: hand[:4], Delta: 300},
				{User: "dave", Playing: true, Grab: 1, Bet: 5, Opened: true, Cards: hand[:], Hand: &Eval{Type: FiveSmall}},
			},
			Error: "store: commit: database is locked",
		},
		{Phase: `"<tricky>" & \ back`, Round: "tab\there\nnew\x01\x7f", Error: "bad \xff utf-8 \u2028 \u2029 é 漢", Seats: []SeatView{{User: "<script>&amp;"}}},
		{Phase: PhaseBet, Base: -5, You: -1, Banker: 2, Seats: []SeatView{}},
	}
}

// The hand-written encoding is what a client written against
// encoding/json's output already reads: the same bytes.
func TestViewJSONMatchesEncodingJSON(t *testing.T) {
	for i, v := range sampleViews() {
		want, err := json.Marshal(v)
		require.NoError(t, err)
		require.Equal(t, string(want), string(v.AppendJSON(nil)), "view %d", i)
		require.Equal(t, string(want), string(v.AppendJSON([]byte("prefix")))[len("prefix"):], "view %d appended", i)
	}
}

func FuzzViewJSON(f *testing.F) {
	f.Add("open", "r-1", "", "alice", int64(1), uint64(2), 3, true, uint8(4))
	f.Add("\x00\"\\<>&\u2028", "\xff\xfe", "é", "", int64(-1), uint64(0), -1, false, uint8(0))
	f.Fuzz(func(t *testing.T, phase, round, errText, user string, n int64, seed uint64, k int, b bool, cards uint8) {
		hand := Hand{{Ace, Spades}, {Ten, Hearts}, {King, Clubs}, {Two, Diamonds}, {Queen, Spades}}
		sv := SeatView{User: user, Online: b, Ready: !b, Playing: b, Grab: k, Bet: -k, Opened: b, Cards: hand[:cards%6], Delta: n}
		if cards%2 == 1 {
			sv.Hand = &Eval{Type: HandType(cards % 6), Value: k % 10}
		}
		v := View{Phase: phase, DeadlineMS: n, Round: round, Seed: seed, Base: -n, You: k, Banker: -k, BankerGrab: k / 2,
			Seats: []SeatView{sv, {User: round, Grab: -1}}, Error: errText}
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("encoding/json: %v", err)
		}
		if got := v.AppendJSON(nil); string(got) != string(want) {
			t.Fatalf("AppendJSON\n got %s\nwant %s", got, want)
		}
	})
}

func BenchmarkViewJSON(b *testing.B) {
	v := sampleViews()[2]
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = v.AppendJSON(buf[:0])
		}
	})
}
