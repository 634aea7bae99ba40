package bots

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/cli"
	"github.com/hearth-server/hearth/games/niuniu"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/internal/hugepage"
	"github.com/hearth-server/hearth/internal/testcluster"
	"github.com/hearth-server/hearth/services/auth"
	"github.com/hearth-server/hearth/services/lobby"
	"github.com/hearth-server/hearth/services/match"
	"github.com/hearth-server/hearth/store"
)

// hearthBin is cmd/hearth, built by TestMain: the worker processes.
var hearthBin string

func TestMain(m *testing.M) { os.Exit(testcluster.RunWithBinary(m, "../../cmd/hearth", &hearthBin)) }

const (
	testType  = "nn"
	testGrant = 10_000
)

// startTables is a node with auth, lobby, match and a Niu Niu room type
// whose countdowns are short, so that rounds pass quickly.
func startTables(t *testing.T) (*hearthtest.Node, *store.Store) {
	t.Helper()
	st := hearthtest.Store(t, "sqlite")
	rules := niuniu.Rules{
		ReadyCountdown: 200 * time.Millisecond, GrabCountdown: 300 * time.Millisecond,
		BetCountdown: 300 * time.Millisecond, OpenCountdown: 300 * time.Millisecond, EndPause: 100 * time.Millisecond,
	}
	rt, err := niuniu.NewRoomType(testType, niuniu.TableConfig{Rules: rules, Grant: testGrant}, st)
	require.NoError(t, err)
	_, authSvc := auth.New(st, auth.Config{LoginRate: -1, NewAccountsPerIP: -1, MaxWriteBacklog: -1})
	node := hearthtest.Start(t, hearth.Config{RequireUser: true}, authSvc, lobby.New(st), match.New(match.Config{}), rt.Service())
	return node, st
}

// playFor starts players bots on urls, quick to think, and returns their
// stats and a stop that waits until every bot has left its table.
func playFor(t *testing.T, urls []string, players int) (*stats, func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	rc := runConfig{
		urls: urls, players: players, runID: "test", game: "niuniu", roomType: testType,
		thinkMin: 0, thinkMax: 20 * time.Millisecond, ramp: 1000, drain: 20 * time.Second,
		client: clientOptions(false, urls), seed: 7,
	}
	s := newStats()
	r := startRunner(ctx, rc, s)
	return s, func() {
		t.Helper()
		r.stop()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Fatal("the bots did not finish their rounds within 30s of stop")
		}
	}
}

// Ten bots over both transports play several rounds with no error; every
// bot's balance is its ledger's sum and what the round results showed it,
// and the game moved no currency in or out.
func TestBotsPlayRounds(t *testing.T) {
	node, st := startTables(t)
	const players = 10
	s, stop := playFor(t, []string{node.URL("tcp"), node.URL("ws")}, players)
	hearthtest.Eventually(t, 30*time.Second, func() error {
		if n := s.rounds.Load(); n < 6 {
			sn := s.snapshot()
			return fmt.Errorf("%d rounds completed, want 6; seated %d, errors %v", n, sn.Seated, sn.Why)
		}
		return nil
	})
	stop()
	sn := s.snapshot()
	require.Empty(t, sn.Errors, "errors: %v", sn.Why)
	require.Zero(t, sn.Failed)
	require.Zero(t, sn.Undrained)
	require.Equal(t, int64(players), sn.EverSeated)
	require.Zero(t, sn.Seated, "every bot left its table at the end")
	require.Equal(t, int64(players), sn.Checked, "every bot checked its balance")
	require.Zero(t, sn.Mismatched)
	require.GreaterOrEqual(t, sn.Played, 2*sn.Rounds, "each round has 2 to 5 players")
	require.LessOrEqual(t, sn.Played, 5*sn.Rounds)
	require.Positive(t, sn.Countdowns, "the end pause ends by its countdown every round")
	require.LessOrEqual(t, sn.Late, sn.Countdowns)
	require.Positive(t, sn.Actions)
	// A move can reach the table just after its countdown ran out; with
	// countdowns of a few hundred ms that is rare, not the rule.
	require.LessOrEqual(t, sn.LateMoves, 1+sn.Actions/20)

	ctx := context.Background()
	var sum int64
	for i := range players {
		acct, err := st.FindGuestAccount(ctx, fmt.Sprintf("bots-test-%d", i))
		require.NoError(t, err)
		p, err := st.Profile(ctx, acct.ID)
		require.NoError(t, err)
		entries, err := st.Ledger(ctx, acct.ID, 10_000)
		require.NoError(t, err)
		var ledger int64
		for _, e := range entries {
			ledger += e.Delta
		}
		require.Equal(t, p.Balance, ledger, "bot %d: balance against its ledger", i)
		sum += p.Balance
	}
	require.Equal(t, int64(players*testGrant), sum, "rounds only move currency between players")
}

// slowLedger settles every round after a pause longer than the gate's
// request timeout: the move that ends a round gets 302.
type slowLedger struct {
	*store.Store
	pause time.Duration
}

func (l slowLedger) ApplyLedgerBatch(ctx context.Context, entries []store.LedgerEntry) ([]int64, bool, error) {
	time.Sleep(l.pause)
	return l.Store.ApplyLedgerBatch(ctx, entries)
}

// A move the server gives up on (302: its room did not answer in time) is
// counted as an error under its own code, and the bot plays on: bots that
// quit on it turned a few seconds of a busy tables node into thousands of
// players gone, reported as 30 s timeouts that never happened.
func TestBotsPlayOnAfterALostMove(t *testing.T) {
	st := hearthtest.Store(t, "sqlite")
	rules := niuniu.Rules{
		ReadyCountdown: 200 * time.Millisecond, GrabCountdown: 300 * time.Millisecond,
		BetCountdown: 300 * time.Millisecond, OpenCountdown: 300 * time.Millisecond, EndPause: 100 * time.Millisecond,
	}
	rt, err := niuniu.NewRoomType(testType, niuniu.TableConfig{Rules: rules, Grant: testGrant}, slowLedger{st, 1500 * time.Millisecond})
	require.NoError(t, err)
	_, authSvc := auth.New(st, auth.Config{LoginRate: -1, NewAccountsPerIP: -1, MaxWriteBacklog: -1})
	node := hearthtest.Start(t, hearth.Config{RequireUser: true, Limits: hearth.Limits{RequestTimeout: time.Second}},
		authSvc, lobby.New(st), match.New(match.Config{}), rt.Service())

	s, stop := playFor(t, []string{node.URL("tcp")}, 4)
	hearthtest.Eventually(t, 45*time.Second, func() error {
		sn := s.snapshot()
		lost := int64(0)
		for k, n := range sn.Errors {
			if strings.HasSuffix(k, " 302 timeout") {
				lost += n
			}
		}
		switch {
		case sn.Failed > 0:
			return fmt.Errorf("%d bots gave up: %v", sn.Failed, sn.Why)
		case lost < 2 || s.rounds.Load() < 3:
			return fmt.Errorf("%d moves lost to 302 and %d rounds completed, want 2 and 3; errors %v", lost, s.rounds.Load(), sn.Errors)
		}
		return nil
	})
	stop()
	sn := s.snapshot()
	require.Zero(t, sn.Failed, "no bot gave up: %v", sn.Why)
	for k := range sn.Errors {
		// Not "open timeout", the bots' own 30 s, as every lost move was.
		require.True(t, strings.HasSuffix(k, " 302 timeout"), "only moves lost to 302, named so: %q (%v)", k, sn.Why)
	}
}

// The command starts its own server, splits the bots over worker
// processes and adds their numbers up; each worker writes its own CPU
// profile.
// ownServer makes the bots start the built cmd/hearth as their own server
// and workers, and returns a context for a run and its outputs.
func ownServer(t *testing.T) (context.Context, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	old := executable
	executable = func() (string, error) { return hearthBin, nil }
	t.Cleanup(func() { executable = old })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx, new(bytes.Buffer), new(bytes.Buffer)
}

func TestBotsWorkers(t *testing.T) {
	ctx, stdout, stderr := ownServer(t)
	// Two full tables: every seat is ready at once, so a round takes the
	// bots' moves and the end pause, not the ready countdown. 4 s, not 1:
	// under CI's other packages a table seated last may not finish its
	// first round in a second.
	prof := filepath.Join(t.TempDir(), "bots.prof")
	code := Main(ctx, []string{"--players", "10", "--procs", "2", "--think", "0s-10ms", "--duration", "4s", "--ramp", "100", "--json", "--cpuprofile", prof},
		cli.Options{Stdout: stdout, Stderr: stderr})
	require.Equal(t, 0, code, "stderr:\n%s", stderr.String())
	var res Result
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &res), stdout.String())
	require.Equal(t, 2, res.Procs)
	require.Equal(t, int64(10), res.EverSeated)
	require.GreaterOrEqual(t, res.Rounds, int64(2), "each table played a round")
	require.Empty(t, res.Errors)
	require.Equal(t, int64(10), res.Checked)
	require.Zero(t, res.Mismatched)
	require.NotNil(t, res.ServerCPU, "the server's CPU from its /metrics")
	require.Positive(t, res.ServerRSS)
	require.NotNil(t, res.ServerHuge, "the part of the server's memory on huge pages, from its /metrics")
	require.LessOrEqual(t, *res.ServerHuge, res.ServerRSS)
	require.NotNil(t, res.ServerTimers, "the server's room timers from its /metrics (a round's end pause is one)")
	require.LessOrEqual(t, *res.ServerTimersLate, *res.ServerTimers)
	require.NotNil(t, res.ServerPushes, "the server's hearth_push_delay_seconds from its /metrics")
	require.Positive(t, *res.ServerPushes, "the tables pushed their views in the window")
	require.LessOrEqual(t, *res.ServerPushesLate, *res.ServerPushes)
	// Each timer that ends a phase pushes the table to every seat, and the
	// moves push too: more pushes than timers, whatever else the counts are.
	require.Greater(t, *res.ServerPushes, *res.ServerTimers, "the pushes' row counts its own series")
	require.Equal(t, hugepage.Mode(), res.HugePages, "the machine's huge page mode is in the summary")
	require.NotNil(t, res.ServerWaits, "the server's go_sched_latencies_seconds from its /metrics, with a bucket at 10.49 ms")
	require.Positive(t, *res.ServerWaits)
	require.LessOrEqual(t, *res.ServerSlowWaits, *res.ServerWaits)
	require.Positive(t, res.BotsWaits, "both bot processes' /sched/latencies added up")
	require.LessOrEqual(t, res.BotsSlowWaits, res.BotsWaits)
	require.NotNil(t, res.MachineCPU, "the machine's busy CPU in the window, from /proc/stat")
	require.Positive(t, *res.MachineCPU, "the bots and the server were busy in the window")
	require.NotNil(t, res.StolenCPU)
	require.GreaterOrEqual(t, *res.StolenCPU, 0.0)
	var late int64
	for phase, n := range res.LateTo {
		require.Contains(t, []string{niuniu.PhaseReady, niuniu.PhaseGrab, niuniu.PhaseBet, niuniu.PhaseOpen, niuniu.PhaseEnd}, phase)
		late += n
	}
	require.Equal(t, res.Late, late, "the late countdowns by phase add up to the late countdowns")
	require.Empty(t, res.LateVia, "one gate: no breakdown by gate")
	require.Empty(t, res.ServerCPUBy, "one process: no breakdown by process")
	require.Empty(t, res.ServerPushesLateBy, "one process: no breakdown by process")
	require.Contains(t, stderr.String(), "bots  seated", "a progress line")
	for _, f := range []string{"bots.1.prof", "bots.2.prof"} {
		fi, err := os.Stat(filepath.Join(filepath.Dir(prof), f))
		require.NoError(t, err, "each bot process writes its CPU profile")
		require.Positive(t, fi.Size(), f)
	}
}

// With --gates 2 the own server is a cluster of two processes, both
// taking bots: the tables' node runs a gate too.
func TestBotsGates(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra []string
		want  map[string]int64
	}{
		{"even", nil, map[string]int64{"tables": 2, "gate-1": 2}},
		// In two bot processes, so the share reaches the workers too.
		{"tables-bots", []string{"--tables-bots", "3", "--procs", "2"}, map[string]int64{"tables": 3, "gate-1": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, stdout, stderr := ownServer(t)
			args := append([]string{"--players", "4", "--gates", "2", "--think", "0s-10ms", "--duration", "2s", "--ramp", "100", "--json"}, tc.extra...)
			code := Main(ctx, args, cli.Options{Stdout: stdout, Stderr: stderr})
			require.Equal(t, 0, code, "stderr:\n%s", stderr.String())
			var res Result
			require.NoError(t, json.Unmarshal(stdout.Bytes(), &res), stdout.String())
			require.Contains(t, res.Server, "a cluster of 2 processes")
			require.Equal(t, tc.want, res.ServerSessions, "the bots' sessions on each process")
			require.Len(t, res.ServerCPUBy, 2, "each process's CPU: %v", res.ServerCPUBy)
			require.Positive(t, res.ServerCPUBy["tables"], "the tables' node ran rooms in the window")
			require.Contains(t, res.ServerCPUBy, "gate-1")
			require.InDelta(t, *res.ServerCPU, res.ServerCPUBy["tables"]+res.ServerCPUBy["gate-1"], 0.021, "the processes' CPU adds up to the server's")
			require.Len(t, res.ServerPushesLateBy, 2, "each process's late pushes: %v", res.ServerPushesLateBy)
			require.NotNil(t, res.ServerPushesLate, "the tables pushed views in the window")
			require.Equal(t, *res.ServerPushesLate, res.ServerPushesLateBy["tables"]+res.ServerPushesLateBy["gate-1"], "the processes' late pushes add up to the server's")
			require.Len(t, res.LateVia, 2, "late countdowns by gate: %v", res.LateVia)
			require.Equal(t, res.Late, res.LateVia["tables"]+res.LateVia["gate-1"], "the late countdowns by gate add up to the late countdowns")
			require.Equal(t, int64(4), res.EverSeated)
			require.Empty(t, res.Errors)
			require.Contains(t, stderr.String(), "a server cluster of 2 processes: the tables' node and 1 gate-only")
		})
	}
}

// gateOf gives urls[0] its share of the bots spread over their numbers
// (the order they start in), and the other gates the rest in turn.
func TestGateOf(t *testing.T) {
	for _, tc := range []struct {
		gates, gate0, n int
		want            []int // bots per gate
	}{
		{1, 0, 10, []int{10}},
		{2, 0, 20000, []int{10000, 10000}},
		{3, 0, 9, []int{3, 3, 3}},
		{2, 15000, 20000, []int{15000, 5000}},
		{2, 7000, 20000, []int{7000, 13000}}, // 0.35 is not exact in binary
		{3, 10000, 30001, []int{10000, 10001, 10000}},
		{3, 15000, 30000, []int{15000, 7500, 7500}},
		{2, 100, 100, []int{100, 0}},
	} {
		c := runConfig{urls: make([]string, tc.gates), gate0: tc.gate0, all: tc.n}
		got := make([]int, tc.gates)
		firstHalf := 0
		for n := range tc.n {
			g := c.gateOf(n)
			got[g]++
			if g == 0 && n < tc.n/2 {
				firstHalf++
			}
		}
		require.Equal(t, tc.want, got, "%+v", tc)
		require.InDelta(t, tc.want[0]/2, firstHalf, 1, "urls[0]'s bots spread over the numbers, not in a block: %+v", tc)
	}
}

// --server-log keeps all of the own server's stderr in a file as it comes:
// name itself for one process, each node's id before the extension for a
// cluster.
func TestServerLog(t *testing.T) {
	for _, tc := range []struct {
		gates int
		files []string
	}{
		{1, []string{"srv.log"}},
		{2, []string{"srv.tables.log", "srv.gate-1.log"}},
	} {
		t.Run(fmt.Sprintf("gates=%d", tc.gates), func(t *testing.T) {
			ctx, _, _ := ownServer(t)
			dir := t.TempDir()
			cf := &config{
				players: 2, ramp: 100, roomType: "niuniu_100", transport: "tcp", gates: tc.gates, srvLog: filepath.Join(dir, "srv.log"),
				serverArgs: []string{"--log-level", "info"}, // the bots' warn would log nothing
			}
			srv, err := startServer(ctx, cf, []string{"bots"})
			require.NoError(t, err)
			stopped := false
			t.Cleanup(func() {
				if !stopped {
					srv.stop()
				}
			})
			read := func(f string) string {
				b, err := os.ReadFile(filepath.Join(dir, f))
				require.NoError(t, err)
				return string(b)
			}
			for _, f := range tc.files {
				hearthtest.Eventually(t, 20*time.Second, func() error {
					if log := read(f); !strings.Contains(log, `msg="node serving"`) {
						return fmt.Errorf("while the server runs, %s has no node serving line: %q", f, log)
					}
					return nil
				})
			}
			srv.stop()
			stopped = true
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			require.ElementsMatch(t, tc.files, names)
			for i, f := range tc.files {
				log := read(f)
				require.Contains(t, log, `msg="node stopped"`, "%s: written up to the process's exit", f)
				require.Equal(t, srv.logs[i].Count(), strings.Count(log, "\n"), "%s holds every line the process wrote", f)
			}
		})
	}
}

// --dump-stalls through the command: a threshold every action passes
// saves the own server's goroutines from its admin listener.
func TestBotsDumpStalls(t *testing.T) {
	ctx, stdout, stderr := ownServer(t)
	dir := filepath.Join(t.TempDir(), "stalls")
	code := Main(ctx, []string{"--players", "5", "--think", "0s-10ms", "--duration", "2s", "--ramp", "100", "--json",
		"--dump-stalls", dir, "--dump-stalls-after", "1ns"}, cli.Options{Stdout: stdout, Stderr: stderr})
	require.Equal(t, 0, code, "stderr:\n%s", stderr.String())
	files, err := filepath.Glob(filepath.Join(dir, "goroutines-server-*.txt"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "stderr:\n%s", stderr.String())
	b, err := os.ReadFile(files[0])
	require.NoError(t, err)
	require.Contains(t, string(b), "goroutine ", "a debug=2 goroutine dump")
	require.Contains(t, stderr.String(), "goroutines of the server (set 1 of at most 20): "+files[0])
}

func TestSessionsFromMetrics(t *testing.T) {
	require.Equal(t, int64(-1), sessionsFromMetrics(map[string]float64{"process_cpu_seconds_total": 3}), "not a gate")
	require.Equal(t, int64(7), sessionsFromMetrics(map[string]float64{
		`hearth_sessions{transport="tcp"}`: 5, `hearth_sessions{transport="ws"}`: 2, "hearth_sessions_detached": 9,
	}))
}

// Flag mistakes exit 2 and say what is wrong.
func TestBotsFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--players", "0"}, "--players must be at least 1"},
		{[]string{"--game", "chess"}, `--game "chess"`},
		{[]string{"--think", "1s-200ms"}, "MIN ≤ MAX"},
		{[]string{"--think", "soon"}, "--think"},
		{[]string{"--transport", "udp"}, "--transport"},
		{[]string{"--ramp", "0"}, "--ramp must be positive"},
		{[]string{"--duration", "0s"}, "--duration must be positive"},
		{[]string{"--players", "2", "--procs", "3"}, "--procs 3 is more than --players 2"},
		{[]string{"--addr", "ftp://x"}, "the scheme must be"},
		{[]string{"--addr", "tcp://x:1", "--server-cpuprofile", "f"}, "needs the bots' own server"},
		{[]string{"--addr", "tcp://x:1", "--gates", "2"}, "--gates is for the bots' own server"},
		{[]string{"--addr", "tcp://x:1", "--server-log", "f"}, "--server-log needs the bots' own server"},
		{[]string{"--addr", "tcp://x:1", "--tables-bots", "1"}, "--tables-bots needs the bots' own server"},
		{[]string{"--players", "10", "--tables-bots", "11"}, "--tables-bots 11: want 0"},
		{[]string{"--tables-bots", "-1"}, "--tables-bots -1: want 0"},
		{[]string{"--players", "10", "--tables-bots", "5"}, "--tables-bots is for a cluster"},
		{[]string{"--players", "10", "--gates", "1", "--tables-bots", "5"}, "--tables-bots is for a cluster"},
		{[]string{"--addr", "tcp://x:1", "--dump-stalls", "d"}, "--dump-stalls with --addr needs --admin-url"},
		{[]string{"--dump-stalls", "d", "--dump-stalls-after", "0s"}, "--dump-stalls-after must be positive"},
		{[]string{"--admin-url", "http://x"}, "--admin-url is for --addr"},
		{[]string{"--server-env", "GOGC"}, "want KEY=VALUE"},
		{[]string{"--server-env", "=1"}, "want KEY=VALUE"},
		{[]string{"--server-env", ":GOGC=1"}, "want KEY=VALUE or PROCESS:KEY=VALUE"},
		{[]string{"--server-env", "tables:=1"}, "want KEY=VALUE or PROCESS:KEY=VALUE"},
		{[]string{"--addr", "tcp://x:1", "--server-env", "GOGC=200"}, "--server-env is for the bots' own server"},
		{[]string{"--addr", "tcp://x:1", "--nats", "nats://127.0.0.1:4222"}, "--nats is for the bots' own server"},
		{[]string{"players"}, `unexpected argument "players"`},
		{[]string{"--nope"}, "flag provided but not defined"},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), tc.args, cli.Options{Stdout: &stdout, Stderr: &stderr})
		require.Equal(t, 2, code, "%v", tc.args)
		require.Contains(t, stderr.String(), tc.want, "%v", tc.args)
		require.Empty(t, stdout.String(), "%v", tc.args)
	}
	var stderr bytes.Buffer
	require.Equal(t, 0, Main(context.Background(), []string{"-h"}, cli.Options{Stdout: &bytes.Buffer{}, Stderr: &stderr}))
	require.True(t, strings.HasPrefix(stderr.String(), "Usage: hearth bots"))
}

func TestByProcess(t *testing.T) {
	require.Empty(t, byProcess(nil))
	require.Empty(t, byProcess(map[string]float64{"server": 1.2}), "one process: the total says it")
	require.Equal(t, " (gate-1 0.31, tables 0.90)", byProcess(map[string]float64{"tables": 0.9, "gate-1": 0.314}))
}
