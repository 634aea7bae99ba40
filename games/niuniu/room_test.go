package niuniu_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/games/niuniu"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/pb/authpb"
	"github.com/hearth-server/hearth/services/auth"
	"github.com/hearth-server/hearth/services/match"
	"github.com/hearth-server/hearth/store"
)

const (
	roomType = "nn"
	wait     = 10 * time.Second
	forever  = time.Hour // a countdown a test never waits for
)

// server is a node with auth, match and a Niu Niu room type over one store.
type server struct {
	*hearthtest.Node
	st *store.Store
}

func start(t *testing.T, cfg niuniu.TableConfig) *server {
	t.Helper()
	return startOn(t, cfg, hearthtest.Store(t, "sqlite"))
}

// startOn starts the server over st.
func startOn(t *testing.T, cfg niuniu.TableConfig, st *store.Store) *server {
	t.Helper()
	return startLedger(t, cfg, st, st)
}

// startLedger starts the server over st, its tables settling through
// ledger.
func startLedger(t *testing.T, cfg niuniu.TableConfig, st *store.Store, ledger niuniu.Ledger) *server {
	t.Helper()
	rt, err := niuniu.NewRoomType(roomType, cfg, ledger)
	require.NoError(t, err)
	_, authSvc := auth.New(st, auth.Config{LoginRate: -1, NewAccountsPerIP: -1, MaxWriteBacklog: -1})
	node := hearthtest.Start(t, hearth.Config{RequireUser: true}, authSvc, match.New(match.Config{}), rt.Service())
	return &server{Node: node, st: st}
}

// seat is a logged-in player and every view pushed to it.
type seat struct {
	*client.Client
	user  string
	mu    sync.Mutex // guards views
	views []niuniu.View
}

var devices atomic.Uint64

// login logs a new guest in at url and records its views.
func login(t *testing.T, url string, opts client.Options) *seat {
	t.Helper()
	p := &seat{}
	opts.OnPush = p.onPush
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := client.Dial(ctx, url, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	var resp authpb.LoginResp
	device := "niuniu-test-" + strconv.FormatUint(devices.Add(1), 10)
	require.NoError(t, c.Request(ctx, "auth.guest", &authpb.GuestReq{DeviceId: device}, &resp))
	p.Client, p.user = c, resp.UserId
	return p
}

func (p *seat) onPush(pu client.Push) {
	if pu.Route != roomType+".state" && pu.Route != roomType+".snapshot" {
		return
	}
	var v niuniu.View
	if json.Unmarshal(pu.Payload, &v) == nil {
		p.mu.Lock()
		p.views = append(p.views, v)
		p.mu.Unlock()
	}
}

func (p *seat) join(t *testing.T) {
	t.Helper()
	require.NoError(t, p.do("match.join", `{"room_type":"`+roomType+`"}`))
}

// do calls a route and returns its error, if any.
func (p *seat) do(route, payload string) error {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, err := p.RequestRaw(ctx, route, []byte(payload))
	return err
}

func (p *seat) act(action string, multiplier int) error {
	return p.do(roomType+"."+action, fmt.Sprintf(`{"multiplier":%d}`, multiplier))
}

// await waits until the newest view satisfies ok and returns it.
func (p *seat) await(t *testing.T, what string, ok func(v niuniu.View) bool) niuniu.View {
	t.Helper()
	var got niuniu.View
	hearthtest.Eventually(t, wait, func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.views) == 0 || !ok(p.views[len(p.views)-1]) {
			return fmt.Errorf("%s: %d views, last %+v", what, len(p.views), p.last())
		}
		got = p.views[len(p.views)-1]
		return nil
	})
	return got
}

// awaitEnd waits for the end of round (pushed at some point, even if the
// table has moved on since) and returns that view.
func (p *seat) awaitEnd(t *testing.T, round string) niuniu.View {
	t.Helper()
	var got niuniu.View
	hearthtest.Eventually(t, wait, func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, v := range p.views {
			if v.Phase == niuniu.PhaseEnd && (round == "" || v.Round == round) {
				got = v
				return nil
			}
		}
		return fmt.Errorf("no end of round %q: last %+v", round, p.last())
	})
	return got
}

// awaitEndAfter waits for the end of the first round after prev.
func (p *seat) awaitEndAfter(t *testing.T, prev string) niuniu.View {
	t.Helper()
	var got niuniu.View
	hearthtest.Eventually(t, wait, func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		seen := prev == ""
		for _, v := range p.views {
			if v.Round == prev {
				seen = true
			} else if seen && v.Phase == niuniu.PhaseEnd {
				got = v
				return nil
			}
		}
		return fmt.Errorf("no end of a round after %q: last %+v", prev, p.last())
	})
	return got
}

// last is the newest view; p.mu must be held.
func (p *seat) last() *niuniu.View {
	if len(p.views) == 0 {
		return nil
	}
	return &p.views[len(p.views)-1]
}

// phases are the phases p saw for round (views of the ready phase before
// it count for it), duplicates in a row dropped.
func (p *seat) phases(round string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, v := range p.views {
		if v.Round != round && !(v.Phase == niuniu.PhaseReady && len(out) == 0) {
			continue
		}
		if len(out) == 0 || out[len(out)-1] != v.Phase {
			out = append(out, v.Phase)
		}
	}
	return out
}

func codeOf(err error) hearth.Code {
	var he *hearth.Error
	if errors.As(err, &he) {
		return he.Code
	}
	return 0
}

// replay recomputes a round from its end view with the rules alone: the
// deal from the seed, the banker from the grabs, the deltas from the
// balances the players had.
func replay(t *testing.T, rules niuniu.Rules, v niuniu.View, balances map[int]int64) {
	t.Helper()
	var seats []int
	for i, s := range v.Seats {
		if s.Playing {
			seats = append(seats, i)
		}
	}
	rng := niuniu.NewRNG(v.Seed)
	hands, err := rules.Deal(rng, len(seats))
	require.NoError(t, err)
	grabs := make([]int, len(seats))
	tab := niuniu.Table{Base: v.Base}
	for k, i := range seats {
		require.Equal(t, hands[k][:], v.Seats[i].Cards, "seat %d's cards come from the seed", i)
		grabs[k] = v.Seats[i].Grab
	}
	banker, g, err := rules.Banker(rng, grabs)
	require.NoError(t, err)
	require.Equal(t, v.Banker, seats[banker], "the banker replays")
	require.Equal(t, v.BankerGrab, g)
	tab.Banker, tab.Grab = banker, g
	for k, i := range seats {
		ev, err := rules.Evaluate(hands[k])
		require.NoError(t, err)
		require.Equal(t, ev.Type, v.Seats[i].Hand.Type)
		require.Equal(t, ev.Value, v.Seats[i].Hand.Value)
		tab.Players = append(tab.Players, niuniu.Player{Hand: ev, Bet: max(v.Seats[i].Bet, 1), Balance: balances[i]})
	}
	deltas, err := rules.Settle(tab)
	require.NoError(t, err)
	for k, i := range seats {
		require.Equal(t, deltas[k], v.Seats[i].Delta, "seat %d's delta is Settle's", i)
	}
}

// ledgerSum checks that user's balance is the sum of their ledger entries
// and returns it.
func (s *server) ledgerSum(t *testing.T, user string) int64 {
	t.Helper()
	ctx := context.Background()
	entries, err := s.st.Ledger(ctx, user, 1000)
	require.NoError(t, err)
	var sum int64
	for _, e := range entries {
		sum += e.Delta
	}
	p, err := s.st.Profile(ctx, user)
	require.NoError(t, err)
	require.Equal(t, sum, p.Balance, "%s's balance is the sum of their ledger", user)
	return sum
}

func TestFullRound(t *testing.T) {
	const grant, base = 10_000, 10
	cfg := niuniu.TableConfig{
		Rules: niuniu.Rules{Seats: 4, ReadyCountdown: forever, GrabCountdown: forever, BetCountdown: forever, OpenCountdown: forever, EndPause: forever},
		Base:  base, Grant: grant,
	}
	srv := start(t, cfg)
	var ps []*seat
	for i := range 4 {
		p := login(t, srv.URL(hearthtest.Transports[i%2]), client.Options{}) // TCP and WS in turn
		p.join(t)
		ps = append(ps, p)
	}
	for i, p := range ps {
		v := p.await(t, "4 seated", func(v niuniu.View) bool {
			n := 0
			for _, s := range v.Seats {
				if s.User != "" {
					n++
				}
			}
			return n == 4
		})
		require.Equal(t, i, v.You, "players sit in join order")
		require.Equal(t, niuniu.PhaseReady, v.Phase)
	}
	srv.awaitListing(t, niuniu.ListingWaiting)
	for _, p := range ps {
		require.NoError(t, p.do(roomType+".ready", `{}`))
	}
	for i, p := range ps {
		v := p.await(t, "grab", func(v niuniu.View) bool { return v.Phase == niuniu.PhaseGrab })
		require.Positive(t, v.DeadlineMS)
		for j, s := range v.Seats {
			require.True(t, s.Playing)
			if j == i {
				require.Len(t, s.Cards, 4, "own four cards")
			} else {
				require.Empty(t, s.Cards, "nobody else's cards before open")
			}
		}
	}
	srv.awaitListing(t, niuniu.ListingPlaying)
	grabs := []int{0, 3, 3, 1}
	for i, p := range ps {
		require.NoError(t, p.act("grab", grabs[i]))
	}
	v := ps[0].await(t, "bet", func(v niuniu.View) bool { return v.Phase == niuniu.PhaseBet })
	require.Contains(t, []int{1, 2}, v.Banker, "a top grabber is banker")
	require.Equal(t, 3, v.BankerGrab)
	for i, p := range ps {
		if i != v.Banker {
			require.NoError(t, p.act("bet", i+1))
		}
	}
	for i, p := range ps {
		v := p.await(t, "open", func(v niuniu.View) bool { return v.Phase == niuniu.PhaseOpen })
		require.Positive(t, v.DeadlineMS)
		require.Len(t, v.Seats[i].Cards, 5, "the fifth card")
		require.Empty(t, v.Seats[(i+1)%4].Cards, "still nobody else's")
	}
	require.NoError(t, ps[0].do(roomType+".open", `{}`))
	v = ps[1].await(t, "seat 0 opened", func(v niuniu.View) bool { return v.Seats[0].Opened })
	require.Len(t, v.Seats[0].Cards, 5, "an opened hand is shown to all")
	for _, p := range ps[1:] {
		require.NoError(t, p.do(roomType+".open", `{}`))
	}
	round := v.Round
	var end niuniu.View
	for _, p := range ps {
		end = p.awaitEnd(t, round)
		require.Equal(t, []string{niuniu.PhaseReady, niuniu.PhaseGrab, niuniu.PhaseBet, niuniu.PhaseOpen, niuniu.PhaseEnd}, p.phases(round))
	}
	replay(t, cfg.Rules, end, map[int]int64{0: grant, 1: grant, 2: grant, 3: grant})
	var total int64
	for i, p := range ps {
		require.Equal(t, grant+end.Seats[i].Delta, srv.ledgerSum(t, p.user))
		total += end.Seats[i].Delta
	}
	require.Zero(t, total, "a round moves currency, it makes none")
}

// awaitListing waits until the server's one table is listed with state.
func (s *server) awaitListing(t *testing.T, state string) {
	t.Helper()
	hearthtest.Eventually(t, wait, func() error {
		rooms, err := s.Rooms(context.Background(), roomType)
		switch {
		case err != nil:
			return err
		case len(rooms) != 1:
			return fmt.Errorf("%d tables listed, want 1", len(rooms))
		case rooms[0].State != state:
			return fmt.Errorf("the table is listed as %q, want %q", rooms[0].State, state)
		}
		return nil
	})
}

// seatTwoReady seats two players, over TCP and WS, and marks both ready.
func seatTwoReady(t *testing.T, srv *server) (a, b *seat) {
	t.Helper()
	a, b = login(t, srv.URL("tcp"), client.Options{}), login(t, srv.URL("ws"), client.Options{})
	a.join(t)
	b.join(t)
	require.NoError(t, a.do(roomType+".ready", `{}`))
	require.NoError(t, b.do(roomType+".ready", `{}`))
	return a, b
}

func TestSilentPlayersGetDefaults(t *testing.T) {
	cfg := niuniu.TableConfig{
		Rules: niuniu.Rules{Seats: 2, GrabCountdown: time.Millisecond, BetCountdown: time.Millisecond, OpenCountdown: time.Millisecond, EndPause: forever},
		Base:  5, Grant: 1000,
	}
	srv := start(t, cfg)
	a, b := seatTwoReady(t, srv)
	end := a.awaitEnd(t, "")
	for i, s := range end.Seats {
		require.Zero(t, s.Grab, "no grab in time is 0")
		require.True(t, s.Opened, "every hand is revealed at the end")
		if i == end.Banker {
			require.Zero(t, s.Bet)
		} else {
			require.Equal(t, 1, s.Bet, "no bet in time is 1")
		}
	}
	require.Equal(t, 1, end.BankerGrab, "all passed: the banker plays at 1")
	replay(t, cfg.Rules, end, map[int]int64{0: 1000, 1: 1000})
	require.Equal(t, 1000+end.Seats[0].Delta, srv.ledgerSum(t, a.user))
	require.Equal(t, 1000+end.Seats[1].Delta, srv.ledgerSum(t, b.user))
}

func TestDropAndResumeMidRound(t *testing.T) {
	cfg := niuniu.TableConfig{
		Rules: niuniu.Rules{Seats: 2, GrabCountdown: forever, BetCountdown: forever, OpenCountdown: forever, EndPause: forever},
		Base:  1, Grant: 100,
	}
	srv := start(t, cfg)
	px := hearthtest.NewProxy(t, strings.TrimPrefix(srv.URL("tcp"), "tcp://"))
	a := login(t, srv.URL("tcp"), client.Options{})
	b := login(t, "tcp://"+px.Addr(), client.Options{Reconnect: true, ReconnectTimeout: time.Minute, Backoff: client.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}})
	a.join(t)
	b.join(t)
	require.NoError(t, a.do(roomType+".ready", `{}`))
	require.NoError(t, b.do(roomType+".ready", `{}`))
	before := b.await(t, "grab", func(v niuniu.View) bool { return v.Phase == niuniu.PhaseGrab })

	px.Cut()
	a.await(t, "b offline", func(v niuniu.View) bool { return !v.Seats[1].Online })
	require.NoError(t, a.act("grab", 2))
	a.await(t, "a's grab", func(v niuniu.View) bool { return v.Seats[0].Grab == 2 })

	px.Restore() // b's client reconnects and resumes by itself
	resumed := b
	snap := resumed.await(t, "the snapshot", func(v niuniu.View) bool { return v.Seats[0].Grab == 2 && v.Seats[1].Online })
	require.Equal(t, niuniu.PhaseGrab, snap.Phase, "still the same round")
	require.Equal(t, before.Round, snap.Round)
	require.Equal(t, before.Seats[1].Cards, snap.Seats[1].Cards, "b's own cards again")
	require.Empty(t, snap.Seats[0].Cards)

	require.NoError(t, resumed.act("grab", 0))
	v := a.await(t, "bet", func(v niuniu.View) bool { return v.Phase == niuniu.PhaseBet })
	require.Equal(t, 0, v.Banker)
	require.NoError(t, resumed.act("bet", 3))
	require.NoError(t, a.do(roomType+".open", `{}`))
	require.NoError(t, resumed.do(roomType+".open", `{}`))
	end := resumed.awaitEnd(t, before.Round)
	require.Equal(t, 3, end.Seats[1].Bet)
	replay(t, cfg.Rules, end, map[int]int64{0: 100, 1: 100})
	require.Equal(t, 100+end.Seats[1].Delta, srv.ledgerSum(t, b.user))
}

func TestLedgerAfterRounds(t *testing.T) {
	// The grant is far above what 5 rounds can lose, so nobody drops
	// below the minimum and leaves the table.
	const rounds, grant = 5, 100_000
	cfg := niuniu.TableConfig{
		Rules: niuniu.Rules{Seats: 3, GrabCountdown: time.Millisecond, BetCountdown: time.Millisecond, OpenCountdown: time.Millisecond, EndPause: time.Millisecond},
		Base:  10, Grant: grant,
	}
	srv := start(t, cfg)
	var ps []*seat
	for i := range 3 {
		p := login(t, srv.URL(hearthtest.Transports[i%2]), client.Options{})
		p.join(t)
		ps = append(ps, p)
	}
	balances := map[int]int64{0: grant, 1: grant, 2: grant}
	round := ""
	for n := range rounds {
		for _, p := range ps {
			p.await(t, "ready", func(v niuniu.View) bool { return v.Phase == niuniu.PhaseReady && v.Round == round })
			require.NoError(t, p.do(roomType+".ready", `{}`), "round %d", n)
		}
		end := ps[0].awaitEndAfter(t, round)
		replay(t, cfg.Rules, end, balances)
		for i, s := range end.Seats {
			balances[i] += s.Delta
		}
		round = end.Round
	}
	var total int64
	for i, p := range ps {
		got := srv.ledgerSum(t, p.user)
		require.Equal(t, balances[i], got, "seat %d", i)
		total += got
	}
	require.Equal(t, int64(3*grant), total, "rounds only move currency")
}

func TestInvalidActions(t *testing.T) {
	cfg := niuniu.TableConfig{
		Rules: niuniu.Rules{Seats: 3, ReadyCountdown: time.Millisecond, GrabCountdown: forever, BetCountdown: forever, OpenCountdown: forever, EndPause: forever},
		Base:  10, MinBalance: 50, Grant: 60,
	}
	srv := start(t, cfg)
	a, b := login(t, srv.URL("tcp"), client.Options{}), login(t, srv.URL("ws"), client.Options{})
	require.Equal(t, hearth.CodeNotInRoom, codeOf(a.do(roomType+".ready", `{}`)), "not seated")
	a.join(t)
	b.join(t)
	require.Equal(t, niuniu.CodeWrongPhase, codeOf(a.act("grab", 1)), "grab before the round")
	require.NoError(t, a.do(roomType+".ready", `{}`))
	require.Equal(t, niuniu.CodeWrongPhase, codeOf(a.do(roomType+".ready", `{}`)), "ready twice")
	require.NoError(t, b.do(roomType+".ready", `{}`))
	a.await(t, "grab", func(v niuniu.View) bool { return v.Phase == niuniu.PhaseGrab })

	late := login(t, srv.URL("tcp"), client.Options{})
	late.join(t)
	require.Equal(t, niuniu.CodeNotInRound, codeOf(late.act("grab", 1)), "seated after the deal")
	require.Equal(t, niuniu.CodeBadValue, codeOf(a.act("grab", 5)))
	require.Equal(t, niuniu.CodeBadValue, codeOf(a.act("grab", -1)))
	require.Equal(t, hearth.CodeInvalidPayload, codeOf(a.do(roomType+".grab", `{"multiplier":"x"}`)))
	require.Equal(t, niuniu.CodeWrongPhase, codeOf(a.do(roomType+".open", `{}`)), "open before bet")
	require.Equal(t, niuniu.CodeInRound, codeOf(a.do(roomType+".leave", `{}`)), "leave mid-round")
	require.NoError(t, a.act("grab", 4))
	require.Equal(t, niuniu.CodeWrongPhase, codeOf(a.act("grab", 3)), "grab twice")
	require.NoError(t, b.act("grab", 1))
	v := a.await(t, "bet", func(v niuniu.View) bool { return v.Phase == niuniu.PhaseBet })
	require.Equal(t, 0, v.Banker)
	require.Equal(t, niuniu.CodeBanker, codeOf(a.act("bet", 2)))
	require.Equal(t, niuniu.CodeBadValue, codeOf(b.act("bet", 0)))
	require.Equal(t, niuniu.CodeBadValue, codeOf(b.act("bet", 6)))

}

func TestLowBalanceCannotSit(t *testing.T) {
	srv := start(t, niuniu.TableConfig{Base: 10, MinBalance: 50, Grant: 40})
	p := login(t, srv.URL("tcp"), client.Options{})
	for range 2 {
		err := p.do("match.join", `{"room_type":"`+roomType+`"}`)
		require.Equal(t, niuniu.CodeLowBalance, codeOf(err), "%v", err)
		require.Equal(t, int64(40), srv.ledgerSum(t, p.user), "the grant is paid once")
	}
	require.Equal(t, hearth.CodeNotInRoom, codeOf(p.do(roomType+".ready", `{}`)))
}

func TestBadConfig(t *testing.T) {
	st := hearthtest.Store(t, "sqlite")
	for _, cfg := range []niuniu.TableConfig{
		{Rules: niuniu.Rules{Seats: 6}},
		{Rules: niuniu.Rules{Seats: 1}},
		{Base: -1},
		{TopUp: -1},
		{Grant: -5},
		{Base: math.MaxInt64 / 10},
	} {
		_, err := niuniu.NewRoomType("nn", cfg, st)
		require.ErrorIs(t, err, niuniu.ErrBadConfig, "%+v", cfg)
	}
	_, err := niuniu.NewRoomType("nn", niuniu.TableConfig{}, nil)
	require.ErrorIs(t, err, niuniu.ErrBadConfig, "no store")
}

// A player who drops and never comes back plays the round on defaults and
// is removed when it ends.
func TestOfflinePlayerPlaysDefaultsThenLeaves(t *testing.T) {
	cfg := niuniu.TableConfig{
		Rules: niuniu.Rules{Seats: 2, GrabCountdown: time.Millisecond, BetCountdown: time.Millisecond, OpenCountdown: time.Millisecond, EndPause: time.Millisecond},
		Base:  2, Grant: 1000,
	}
	srv := start(t, cfg)
	px := hearthtest.NewProxy(t, strings.TrimPrefix(srv.URL("tcp"), "tcp://"))
	a := login(t, srv.URL("ws"), client.Options{})
	b := login(t, "tcp://"+px.Addr(), client.Options{})
	a.join(t)
	b.join(t)
	require.NoError(t, b.do(roomType+".ready", `{}`))
	px.Cut()
	a.await(t, "b offline", func(v niuniu.View) bool { return !v.Seats[1].Online && v.Seats[1].Ready })
	require.NoError(t, a.do(roomType+".ready", `{}`))

	end := a.awaitEnd(t, "")
	require.True(t, end.Seats[1].Playing, "an offline player keeps its seat in the round")
	require.Zero(t, end.Seats[1].Grab)
	replay(t, cfg.Rules, end, map[int]int64{0: 1000, 1: 1000})
	v := a.await(t, "b removed", func(v niuniu.View) bool { return v.Phase == niuniu.PhaseReady && v.Seats[1].User == "" })
	require.Equal(t, end.Round, v.Round)
	require.Equal(t, 1000+end.Seats[1].Delta, srv.ledgerSum(t, b.user), "the absent player's round is settled")
}

func TestDailyTopUp(t *testing.T) {
	for _, tc := range []struct {
		name  string
		topUp int64
		sits  bool
		want  int64
	}{
		{"reaches the minimum", 100, true, 140},
		{"falls short, once a day", 5, false, 45},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := start(t, niuniu.TableConfig{Base: 10, MinBalance: 50, Grant: 40, TopUp: tc.topUp})
			p := login(t, srv.URL("tcp"), client.Options{})
			for range 2 {
				err := p.do("match.join", `{"room_type":"`+roomType+`"}`)
				if tc.sits {
					require.NoError(t, err)
					require.NoError(t, p.do(roomType+".leave", `{}`))
				} else {
					require.Equal(t, niuniu.CodeLowBalance, codeOf(err), "%v", err)
				}
				require.Equal(t, tc.want, srv.ledgerSum(t, p.user), "grant and top-up are paid once")
			}
		})
	}
}

// A node shutting down mid-round settles the round with the defaults
// before the room closes.
func TestDrainSettlesRound(t *testing.T) {
	const grant = 1000
	cfg := niuniu.TableConfig{
		Rules: niuniu.Rules{Seats: 2, GrabCountdown: forever, BetCountdown: forever, OpenCountdown: forever, EndPause: forever},
		Base:  3, Grant: grant,
	}
	srv := start(t, cfg)
	a, b := login(t, srv.URL("tcp"), client.Options{}), login(t, srv.URL("ws"), client.Options{})
	a.join(t)
	b.join(t)
	require.NoError(t, a.do(roomType+".ready", `{}`))
	require.NoError(t, b.do(roomType+".ready", `{}`))
	require.NoError(t, a.act("grab", 2))
	v := a.await(t, "a's grab", func(v niuniu.View) bool { return v.Seats[0].Grab == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	require.NoError(t, srv.Shutdown(ctx))
	entries, err := srv.st.Ledger(context.Background(), a.user, 10)
	require.NoError(t, err)
	require.Len(t, entries, 2, "the grant and the round")
	require.Equal(t, v.Round+"/0", entries[0].Key)
	d := entries[0].Delta
	require.NotZero(t, d, "banker at 2, bet 1: someone pays")
	require.Equal(t, grant+d, srv.ledgerSum(t, a.user))
	require.Equal(t, grant-d, srv.ledgerSum(t, b.user))
}

// A settlement that cannot finish within the ledger timeout (on
// PostgreSQL, a profile row it updates locked by the test) pays nothing:
// the end of the round says so, with no deltas, and the table plays on.
func TestSettlementTimeoutPaysNothing(t *testing.T) {
	dsn := hearthtest.PostgresDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, dsn, store.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	db, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	cfg := niuniu.TableConfig{
		Rules:         niuniu.Rules{Seats: 2, GrabCountdown: forever, BetCountdown: forever, OpenCountdown: forever, EndPause: time.Millisecond},
		Base:          10,
		Grant:         1000,
		LedgerTimeout: 300 * time.Millisecond,
	}
	srv := startOn(t, cfg, st)
	a, b := login(t, srv.URL("tcp"), client.Options{}), login(t, srv.URL("ws"), client.Options{})
	a.join(t)
	b.join(t)
	play := func(round string) niuniu.View {
		t.Helper()
		require.NoError(t, a.act("grab", 1))
		require.NoError(t, b.act("grab", 0))
		require.NoError(t, b.act("bet", 2))
		require.NoError(t, a.do(roomType+".open", `{}`))
		require.NoError(t, b.do(roomType+".open", `{}`))
		return a.awaitEnd(t, round)
	}
	start := func(prev string) string {
		t.Helper()
		for _, p := range []*seat{a, b} {
			p.await(t, "ready", func(v niuniu.View) bool { return v.Phase == niuniu.PhaseReady && v.Round == prev })
			require.NoError(t, p.do(roomType+".ready", `{}`))
		}
		return a.await(t, "grab", func(v niuniu.View) bool { return v.Phase == niuniu.PhaseGrab }).Round
	}

	tx, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback() }()
	var one int
	require.NoError(t, tx.QueryRowContext(ctx, `SELECT 1 FROM profiles WHERE account_id = $1 FOR UPDATE`, b.user).Scan(&one))
	first := start("")
	end := play(first)
	require.NotEmpty(t, end.Error, "the round says it was not settled")
	for i, s := range end.Seats {
		require.Zero(t, s.Delta, "seat %d", i)
	}
	require.NoError(t, tx.Rollback())
	require.Equal(t, int64(1000), srv.ledgerSum(t, a.user))
	require.Equal(t, int64(1000), srv.ledgerSum(t, b.user))

	end = play(start(first))
	require.Empty(t, end.Error)
	replay(t, cfg.Rules, end, map[int]int64{0: 1000, 1: 1000})
	require.NotZero(t, end.Seats[0].Delta)
	require.Equal(t, 1000+end.Seats[0].Delta, srv.ledgerSum(t, a.user))
	require.Equal(t, 1000+end.Seats[1].Delta, srv.ledgerSum(t, b.user))
}

// A player whose settlement leaves it below the minimum is removed when
// the round ends, on the balance the ledger answered (the table reads
// none); the winner stays.
func TestBelowMinimumAfterRoundLeaves(t *testing.T) {
	cfg := niuniu.TableConfig{
		Rules: niuniu.Rules{Seats: 2, GrabCountdown: forever, BetCountdown: forever, OpenCountdown: forever, EndPause: time.Millisecond},
		// Everyone starts at the minimum: whoever loses is below it.
		Base: 10, MinBalance: 100, Grant: 100,
	}
	srv := start(t, cfg)
	a, b := login(t, srv.URL("tcp"), client.Options{}), login(t, srv.URL("ws"), client.Options{})
	a.join(t)
	b.join(t)
	for _, p := range []*seat{a, b} {
		p.await(t, "ready", func(v niuniu.View) bool { return v.Phase == niuniu.PhaseReady })
		require.NoError(t, p.do(roomType+".ready", `{}`))
	}
	round := a.await(t, "grab", func(v niuniu.View) bool { return v.Phase == niuniu.PhaseGrab }).Round
	require.NoError(t, a.act("grab", 1))
	require.NoError(t, b.act("grab", 0))
	require.NoError(t, b.act("bet", 1))
	require.NoError(t, a.do(roomType+".open", `{}`))
	require.NoError(t, b.do(roomType+".open", `{}`))
	end := a.awaitEnd(t, round)
	require.Empty(t, end.Error)
	winner, loser := a, b
	if end.Seats[0].Delta < 0 {
		winner, loser = b, a
	}
	require.NotZero(t, end.Seats[0].Delta, "a two-player round always has a loser")
	require.Less(t, srv.ledgerSum(t, loser.user), cfg.MinBalance)
	hearthtest.Eventually(t, wait, func() error {
		if c := codeOf(loser.do(roomType+".state", `{}`)); c != hearth.CodeNotInRoom {
			return fmt.Errorf("the loser below the minimum still at the table (state answered code %d)", c)
		}
		return nil
	})
	require.NoError(t, winner.do(roomType+".state", `{}`), "the winner keeps the seat")
}

// ambiguousLedger is the real store whose first settlement commits and
// then reports a timeout, as a lost answer after the commit would.
type ambiguousLedger struct {
	*store.Store
	calls atomic.Int32
}

func (l *ambiguousLedger) ApplyLedgerBatch(ctx context.Context, entries []store.LedgerEntry) ([]int64, bool, error) {
	b, applied, err := l.Store.ApplyLedgerBatch(ctx, entries)
	if l.calls.Add(1) == 1 && err == nil {
		return nil, false, fmt.Errorf("store: commit: %w", context.DeadlineExceeded)
	}
	return b, applied, err
}

// A settlement whose outcome is unknown (committed, then timed out) is
// tried once more with the same keys: it pays nothing twice, and the
// players are shown the round's deltas and the balances the ledger holds.
func TestSettlementCommittedThenTimedOut(t *testing.T) {
	cfg := niuniu.TableConfig{
		Rules: niuniu.Rules{Seats: 2, GrabCountdown: time.Millisecond, BetCountdown: time.Millisecond, OpenCountdown: time.Millisecond, EndPause: forever},
		Base:  5, Grant: 1000,
	}
	st := hearthtest.Store(t, "sqlite")
	ledger := &ambiguousLedger{Store: st}
	srv := startLedger(t, cfg, st, ledger)
	a, b := seatTwoReady(t, srv)
	end := a.awaitEnd(t, "")
	require.Empty(t, end.Error, "the retry found the round settled")
	require.EqualValues(t, 2, ledger.calls.Load(), "one settlement, one retry")
	require.NotZero(t, end.Seats[0].Delta, "a round with a banker moves currency")
	require.Zero(t, end.Seats[0].Delta+end.Seats[1].Delta)
	// Paid once: each balance is the grant plus the one delta shown.
	require.Equal(t, 1000+end.Seats[0].Delta, srv.ledgerSum(t, a.user))
	require.Equal(t, 1000+end.Seats[1].Delta, srv.ledgerSum(t, b.user))
	entries, err := st.Ledger(context.Background(), a.user, 100)
	require.NoError(t, err)
	require.Len(t, entries, 2, "the grant and one settlement entry, not two")
}
