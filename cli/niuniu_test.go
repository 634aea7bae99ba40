package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth/games/niuniu"
)

// runSim runs `hearth niuniu sim args…` in process.
func runSim(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), append([]string{"niuniu", "sim"}, args...), Options{Stdout: &out, Stderr: &errb})
	return code, out.String(), errb.String()
}

// TestNiuniuSimGolden pins the simulator's output. Every line was checked
// against an independent implementation of the rules and of the package
// doc's RNG and dealing, and the first case and the capped case by hand:
//
// seed 1, round 1: the banker (seat 3, grab 3) holds 5H KH 3S 2H JC,
// niuniu (5+3+2, K+J) with KH high; seat 2's niuniu (5+6+9, J+J) has JS
// high and loses on rank. Seats 1 (niu 6, bet 4), 2 (bet 3) and 4 (niu 9,
// bet 4) each pay 1×3×bet×4: 48, 36, 48; the banker gets 132.
//
// seed 7 with balances of 30: the banker (seat 4, grab 4) holds 2C 7S 4S
// 7D 2D, none, 7S high, and every player beats it: seat 1 (none, JC high,
// bet 2) is owed 2×4×2×1 = 16, seat 2 (niu 7, bet 3) 48, seat 3 (niu 1,
// bet 5) 40, seat 5 (none, QC high, bet 5) 40. The banker's 30 pays seat 1
// in full, seat 2 the 14 left, seats 3 and 5 nothing. In round 2 seat 3
// (balance 30) owes 32 and pays 30, seat 4 (balance 0) pays nothing.
func TestNiuniuSimGolden(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"a table of four, uncapped", []string{"--seed", "1", "--rounds", "3", "--players", "4", "--base", "1"}, []string{
			`{"round":1,"seed":1,"base":1,"banker":3,"banker_grab":3,"grab":[2,3,3,1],"bets":[4,3,0,4],"hands":[["7H","9S","4H","8C","8H"],["5D","JH","6H","9D","JS"],["5H","KH","3S","2H","JC"],["5C","7C","4C","2S","AH"]],"types":[{"type":"niu","value":6},{"type":"niuniu","value":0},{"type":"niuniu","value":0},{"type":"niu","value":9}],"deltas":[-48,-36,132,-48]}`,
			`{"round":2,"seed":2,"base":1,"banker":4,"banker_grab":3,"grab":[1,2,3,3],"bets":[1,2,2,0],"hands":[["QC","3D","4S","5C","7C"],["2H","KC","10H","AS","6S"],["7D","3S","QS","7H","6C"],["JC","10S","9D","JH","8S"]],"types":[{"type":"niu","value":9},{"type":"none","value":0},{"type":"niu","value":3},{"type":"niu","value":7}],"deltas":[9,-12,-12,15]}`,
			`{"round":3,"seed":3,"base":1,"banker":2,"banker_grab":3,"grab":[3,3,1,0],"bets":[3,0,3,1],"hands":[["AH","3H","7D","QD","9D"],["2S","5D","AC","3C","JS"],["KD","QC","6S","6D","5S"],["QS","KC","KH","JH","4D"]],"types":[{"type":"niuniu","value":0},{"type":"niu","value":1},{"type":"none","value":0},{"type":"niu","value":4}],"deltas":[36,-30,-9,3]}`,
		}},
		{"heads-up, base 5", []string{"--seed", "42", "--rounds", "2", "--players", "2", "--base", "5"}, []string{
			`{"round":1,"seed":42,"base":5,"banker":1,"banker_grab":3,"grab":[3,2],"bets":[0,3],"hands":[["7S","3C","KS","AD","2D"],["AS","AC","KH","10H","5S"]],"types":[{"type":"niu","value":3},{"type":"none","value":0}],"deltas":[45,-45]}`,
			`{"round":2,"seed":43,"base":5,"banker":2,"banker_grab":4,"grab":[3,4],"bets":[5,0],"hands":[["5C","6H","5S","4S","2S"],["3D","6C","KH","5H","KC"]],"types":[{"type":"none","value":0},{"type":"none","value":0}],"deltas":[-100,100]}`,
		}},
		{"balances cap and carry over", []string{"--seed", "7", "--rounds", "4", "--players", "5", "--base", "2", "--balance", "30"}, []string{
			`{"round":1,"seed":7,"base":2,"banker":4,"banker_grab":4,"grab":[0,3,2,4,3],"bets":[2,3,5,0,5],"hands":[["4H","5S","JC","3D","4C"],["10C","KD","6H","4D","7C"],["9H","2S","KH","JD","10S"],["2C","7S","4S","7D","2D"],["10D","9D","3S","QC","2H"]],"types":[{"type":"none","value":0},{"type":"niu","value":7},{"type":"niu","value":1},{"type":"none","value":0},{"type":"none","value":0}],"deltas":[16,14,0,-30,0]}`,
			`{"round":2,"seed":8,"base":2,"banker":1,"banker_grab":4,"grab":[4,2,1,4,4],"bets":[0,4,4,5,1],"hands":[["8H","2S","KS","KD","4S"],["5C","10H","6H","AD","6C"],["AC","7C","4H","JC","KH"],["3D","2H","7D","7S","7H"],["3S","3H","KC","6D","AH"]],"types":[{"type":"niu","value":4},{"type":"none","value":0},{"type":"none","value":0},{"type":"none","value":0},{"type":"niu","value":3}],"deltas":[70,-32,-30,0,-8]}`,
			`{"round":3,"seed":9,"base":2,"banker":1,"banker_grab":4,"grab":[4,2,1,1,0],"bets":[0,2,2,5,3],"hands":[["7D","8D","AH","7S","7C"],["5C","6D","2S","6C","9S"],["3H","QC","3S","7H","QD"],["JD","10C","3D","4H","AC"],["10D","4S","AD","QH","KD"]],"types":[{"type":"none","value":0},{"type":"niu","value":8},{"type":"niu","value":3},{"type":"none","value":0},{"type":"niu","value":5}],"deltas":[-112,32,16,40,24]}`,
			`{"round":4,"seed":10,"base":2,"banker":3,"banker_grab":4,"grab":[4,4,4,2,3],"bets":[4,5,0,4,1],"hands":[["AS","6C","KC","2S","KH"],["AD","7C","6S","QC","10H"],["9H","AH","4C","10D","8H"],["5H","4D","QD","8C","3S"],["JH","3H","AC","KD","2H"]],"types":[{"type":"none","value":0},{"type":"none","value":0},{"type":"niu","value":2},{"type":"none","value":0},{"type":"none","value":0}],"deltas":[-4,-40,84,-32,-8]}`,
		}},
		{"the seed wraps at 2^64", []string{"--seed", "18446744073709551615", "--rounds", "2", "--players", "3", "--base", "1"}, []string{
			`{"round":1,"seed":18446744073709551615,"base":1,"banker":1,"banker_grab":3,"grab":[3,2,0],"bets":[0,3,5],"hands":[["JS","KD","7D","4S","AH"],["JC","5H","2C","AC","7H"],["6H","6D","4H","AD","4D"]],"types":[{"type":"none","value":0},{"type":"niu","value":5},{"type":"none","value":0}],"deltas":[6,9,-15]}`,
			`{"round":2,"seed":0,"base":1,"banker":2,"banker_grab":4,"grab":[1,4,1],"bets":[5,0,4],"hands":[["8D","JC","9S","2D","2H"],["QH","6D","10S","3H","AS"],["JS","7S","9C","8S","QD"]],"types":[{"type":"niu","value":1},{"type":"niuniu","value":0},{"type":"none","value":0}],"deltas":[-80,144,-64]}`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, stderr := runSim(t, tt.args...)
			require.Equal(t, 0, code, stderr)
			require.Equal(t, strings.Join(tt.want, "\n")+"\n", out)
		})
	}
}

func TestNiuniuSimReplay(t *testing.T) {
	code, out, stderr := runSim(t, "--seed", "1000", "--rounds", "25", "--players", "5", "--base", "3")
	require.Equal(t, 0, code, stderr)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 25)
	for i, line := range lines {
		var l niuniu.RoundLog
		require.NoError(t, json.Unmarshal([]byte(line), &l))
		require.Equal(t, i+1, l.Round)
		require.Equal(t, uint64(1000+i), l.Seed)
		var sum int64
		for _, d := range l.Deltas {
			sum += d
		}
		require.Zero(t, sum, line)

		code, again, stderr := runSim(t, "--seed", strconv.FormatUint(l.Seed, 10), "--rounds", "1", "--players", "5", "--base", "3")
		require.Equal(t, 0, code, stderr)
		want := strings.Replace(line, `{"round":`+strconv.Itoa(i+1)+`,`, `{"round":1,`, 1)
		require.Equal(t, want+"\n", again, "round %d replayed from its seed", i+1)
	}
}

func TestNiuniuSimBalances(t *testing.T) {
	code, out, stderr := runSim(t, "--seed", "5", "--rounds", "300", "--players", "4", "--base", "10", "--balance", "200")
	require.Equal(t, 0, code, stderr)
	balances := []int64{200, 200, 200, 200}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var l niuniu.RoundLog
		require.NoError(t, json.Unmarshal([]byte(line), &l))
		var total int64
		for i, d := range l.Deltas {
			require.GreaterOrEqual(t, d, -balances[i], "seat %d lost more than its balance: %s", i+1, line)
			balances[i] += d
			total += balances[i]
		}
		require.Equal(t, int64(800), total, "money is conserved")
	}
}

func TestNiuniuSimRandomSeed(t *testing.T) {
	code, out, stderr := runSim(t, "--players", "3")
	require.Equal(t, 0, code, stderr)
	var l niuniu.RoundLog
	require.NoError(t, json.Unmarshal([]byte(out), &l))
	require.Len(t, l.Hands, 3)
	require.Equal(t, int64(1), l.Base, "the default stake")

	code, again, stderr := runSim(t, "--seed", strconv.FormatUint(l.Seed, 10), "--players", "3")
	require.Equal(t, 0, code, stderr)
	require.Equal(t, out, again, "the printed seed replays the round")
}

func TestNiuniuSimBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--players", "1"}, "--players 1: a table seats 2 to 5 players"},
		{[]string{"--players", "6"}, "--players 6: a table seats 2 to 5 players"},
		{[]string{"--rounds", "0"}, "--rounds 0: pass at least 1"},
		{[]string{"--base", "0"}, "--base 0: the stake must be at least 1"},
		{[]string{"--balance", "-1"}, "--balance -1: pass 0 to"},
		{[]string{"--base", "9223372036854775807"}, "is too large"},
		{[]string{"--seed", "-3"}, `invalid value "-3" for flag -seed`},
		{[]string{"--seed", "x"}, `invalid value "x" for flag -seed`},
		{[]string{"--rounds", "5", "extra"}, `unexpected argument "extra"`},
		{[]string{"--colour", "red"}, "flag provided but not defined: -colour"},
	}
	for _, tt := range tests {
		code, out, stderr := runSim(t, tt.args...)
		require.Equal(t, 2, code, "%v", tt.args)
		require.Empty(t, out, "%v", tt.args)
		require.Contains(t, stderr, tt.want, "%v", tt.args)
	}

	var errb bytes.Buffer
	require.Equal(t, 2, Main(context.Background(), []string{"niuniu"}, Options{Stdout: &errb, Stderr: &errb}))
	require.Contains(t, errb.String(), "hearth niuniu sim -h")

	code, _, stderr := runSim(t, "-h")
	require.Equal(t, 0, code)
	require.Contains(t, stderr, "replays it")
	require.Contains(t, stderr, "-balance")
}
