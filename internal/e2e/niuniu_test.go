package e2e

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/games/niuniu"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/internal/testcluster"
	"github.com/hearth-server/hearth/store"
	"github.com/hearth-server/hearth/wire"
)

// The Niu Niu table of `hearth serve` (games/niuniu) across processes: a
// gate running match, and two room nodes running the niuniu_100 tables and
// auth, all on one PostgreSQL schema of the test's own.
const (
	nnType = "niuniu_100"
	// nnGrant is far above what 100 rounds can lose (at most 3 × 100 ×
	// 4 × 5 × 8 a round, as banker), so no payment is ever capped and
	// nobody drops below the minimum and leaves.
	nnGrant = 100_000_000
	// nnCountdown is the time to grab, bet and open: long enough for a
	// test's choices on a loaded machine, short enough to wait out for the
	// defaults. The ready countdown is long: a round starts only when all
	// four seats are ready.
	nnCountdown = 1500 * time.Millisecond
	nnWait      = 20 * time.Second
)

// nnRules are the rules niuniu_100 plays with --niuniu-seats 4, to replay
// its rounds.
var nnRules = niuniu.Rules{Seats: 4}

// niuNodes are the cluster: a gate that also runs match (it is the one
// left to tell the players when both room nodes are gone), and two room
// nodes. Each room node names itself to PostgreSQL (application_name), so
// that a test can tell whose settlement it blocked. They run at the default
// --registry-interval, as deployed (the other tests' 200 ms let a loaded
// machine's pauses look like dead nodes).
func niuNodes(dsn string) []testcluster.Node {
	room := func(id string) testcluster.Node {
		args := append([]string{"--roles", nnType + ",auth,sys", "--db", dsn + "&application_name=" + id}, niuArgs...)
		return testcluster.Node{ID: id, Args: append(args, defaultInterval...)}
	}
	gate := testcluster.Node{ID: "gate-a", Args: append([]string{"--roles", "gate,match"}, defaultInterval...)}
	return []testcluster.Node{gate, room("room-1"), room("room-2")}
}

// niuArgs are the room nodes' flags for the table and their auth.
var niuArgs = []string{
	"--niuniu-seats", "4",
	"--niuniu-countdowns", fmt.Sprintf("ready=1m,grab=%s,bet=%[1]s,open=%[1]s,end=50ms", nnCountdown),
	"--starting-grant", strconv.Itoa(nnGrant),
	"--new-accounts-per-ip", "-1/1m", "--login-rate", "-1",
}

// nnPush is one view pushed to a player: "state" or "snapshot".
type nnPush struct {
	route string
	seq   uint64
	view  niuniu.View
}

// niuPlayer is a logged-in player and everything its table pushed to it.
type niuPlayer struct {
	*client.Client
	name, user string

	mu     sync.Mutex // guards the fields below; the client's push goroutine appends
	pushes []nnPush
	closed []roomEvent
	ends   []niuniu.View // the end of every round, in order
	bad    []string      // pushes that did not decode
	wake   chan struct{} // a push arrived (capacity 1), for the bot
}

func (p *niuPlayer) onPush(pu client.Push) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch pu.Route {
	case nnType + ".state", nnType + ".snapshot":
		var v niuniu.View
		if err := json.Unmarshal(pu.Payload, &v); err != nil {
			p.bad = append(p.bad, fmt.Sprintf("%s %q: %v", pu.Route, pu.Payload, err))
			return
		}
		p.pushes = append(p.pushes, nnPush{route: strings.TrimPrefix(pu.Route, nnType+"."), seq: pu.Seq, view: v})
		if v.Phase == niuniu.PhaseEnd && (len(p.ends) == 0 || p.ends[len(p.ends)-1].Round != v.Round) {
			p.ends = append(p.ends, v)
		}
	case nnType + ".closed":
		var ev roomEvent
		if err := json.Unmarshal(pu.Payload, &ev); err != nil {
			p.bad = append(p.bad, fmt.Sprintf("%s %q: %v", pu.Route, pu.Payload, err))
			return
		}
		p.closed = append(p.closed, ev)
	default:
		return
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// niuDial connects a player to addr and logs it in as a new guest.
func niuDial(t *testing.T, addr, name string, opts client.Options) *niuPlayer {
	t.Helper()
	p := &niuPlayer{name: name, wake: make(chan struct{}, 1)}
	opts.Codec, opts.Name, opts.OnPush = wire.CodecJSON, "e2e/"+name, p.onPush
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr, opts)
	require.NoError(t, err, "dial %s", addr)
	t.Cleanup(func() { _ = c.Close() })
	p.Client = c
	var login struct {
		UserID string `json:"user_id"`
	}
	require.NoError(t, p.call("auth.guest", map[string]string{"device_id": testcluster.RandomPrefix(name + "-")}, &login))
	p.user = login.UserID
	return p
}

// call sends a JSON request and decodes its result into out (unless nil).
func (p *niuPlayer) call(route string, payload, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.RequestJSON(ctx, route, payload, out); err != nil {
		return fmt.Errorf("%s: %s: %w", p.name, route, err)
	}
	return nil
}

// act makes a table action: ready and open take no multiplier (m < 0).
func (p *niuPlayer) act(action string, m int) error {
	payload := map[string]any{}
	if m >= 0 {
		payload["multiplier"] = m
	}
	return p.call(nnType+"."+action, payload, nil)
}

func (p *niuPlayer) must(t *testing.T, action string, m int) {
	t.Helper()
	require.NoError(t, p.act(action, m))
}

// last is the newest view; p.mu is held.
func (p *niuPlayer) last() (niuniu.View, bool) {
	if len(p.pushes) == 0 {
		return niuniu.View{}, false
	}
	return p.pushes[len(p.pushes)-1].view, true
}

// await waits until the newest view pushed satisfies ok, and returns it.
func (p *niuPlayer) await(t *testing.T, what string, ok func(v niuniu.View) bool) niuniu.View {
	t.Helper()
	var got niuniu.View
	eventually(t, nnWait, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		v, some := p.last()
		got = v
		return some && ok(v)
	}, func() string { return fmt.Sprintf("%s: no view with %s; the last: %s", p.name, what, brief(got)) })
	return got
}

// awaitEnd waits for the end of round and returns that view.
func (p *niuPlayer) awaitEnd(t *testing.T, round string) niuniu.View {
	t.Helper()
	var got niuniu.View
	eventually(t, nnWait, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, v := range p.ends {
			if v.Round == round {
				got = v
				return true
			}
		}
		got, _ = p.last()
		return false
	}, func() string {
		return fmt.Sprintf("%s: round %s did not end; the last view: %s", p.name, round, brief(got))
	})
	return got
}

// awaitClosed waits until p is told that room closed for reason.
func (p *niuPlayer) awaitClosed(t *testing.T, room, reason string) {
	t.Helper()
	eventually(t, nnWait, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return slices.Contains(p.closed, roomEvent{RoomID: room, Reason: reason})
	}, func() string {
		p.mu.Lock()
		defer p.mu.Unlock()
		return fmt.Sprintf("%s not told room %s closed (%s): told %v", p.name, room, reason, p.closed)
	})
}

// endCount is how many rounds p saw end.
func (p *niuPlayer) endCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ends)
}

// phases are the phases p saw round go through, repeats dropped.
func (p *niuPlayer) phases(round string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, pu := range p.pushes {
		if pu.view.Round == round && pu.view.Phase != niuniu.PhaseReady && (len(out) == 0 || out[len(out)-1] != pu.view.Phase) {
			out = append(out, pu.view.Phase)
		}
	}
	return out
}

// brief describes a view in a line.
func brief(v niuniu.View) string {
	var seats []string
	for i, s := range v.Seats {
		seats = append(seats, fmt.Sprintf("%d:%s online=%t ready=%t playing=%t grab=%d bet=%d opened=%t cards=%v",
			i, s.User, s.Online, s.Ready, s.Playing, s.Grab, s.Bet, s.Opened, s.Cards))
	}
	return fmt.Sprintf("phase %s round %s you %d banker %d [%s] %s", v.Phase, v.Round, v.You, v.Banker, strings.Join(seats, "; "), v.Error)
}

// checkViews checks every view pushed to p: it shows p its own cards (four
// until the open phase, five from then), the same ones all round, and
// another player's only once they are opened, never before.
func checkViews(t *testing.T, p *niuPlayer) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	require.Empty(t, p.bad, "%s got pushes it could not decode", p.name)
	own := map[string][]niuniu.Card{} // by round
	for n, pu := range p.pushes {
		v := pu.view
		require.Equal(t, p.user, v.Seats[v.You].User, "%s push %d: you is another seat", p.name, n)
		for i, s := range v.Seats {
			want := 0
			switch {
			case !s.Playing:
			case s.Opened, i == v.You && (v.Phase == niuniu.PhaseOpen || v.Phase == niuniu.PhaseEnd):
				want = 5
			case i == v.You:
				want = 4
			}
			require.Len(t, s.Cards, want, "%s %s push %d, seat %d: %s", p.name, pu.route, n, i, brief(v))
			if i == v.You && want > 0 {
				if prev, ok := own[v.Round]; ok {
					n := min(len(prev), len(s.Cards))
					require.Equal(t, prev[:n], s.Cards[:n], "%s: own cards changed within round %s", p.name, v.Round)
				}
				if len(s.Cards) > len(own[v.Round]) {
					own[v.Round] = s.Cards
				}
			}
		}
		if v.Phase == niuniu.PhaseEnd {
			require.Empty(t, v.Error, "%s: round %s not settled", p.name, v.Round)
		}
	}
}

// nnDB is the test's own access to the cluster's database.
type nnDB struct {
	st *store.Store
	db *sql.DB
}

// openNNDB opens the schema at dsn, applying the migrations before any
// node starts.
func openNNDB(t *testing.T, dsn string) *nnDB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := store.Open(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	db, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return &nnDB{st: st, db: db}
}

// ledgerEntry is one row of the ledger.
type ledgerEntry struct {
	account string
	delta   int64
}

// entries returns the ledger rows whose key starts with prefix, by key.
func (d *nnDB) entries(t *testing.T, prefix string) map[string]ledgerEntry {
	t.Helper()
	rows, err := d.db.Query(`SELECT idem_key, account_id, delta FROM ledger WHERE starts_with(idem_key, $1)`, prefix)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]ledgerEntry{}
	for rows.Next() {
		var key string
		var account, delta int64
		require.NoError(t, rows.Scan(&key, &account, &delta))
		out[key] = ledgerEntry{strconv.FormatInt(account, 10), delta}
	}
	require.NoError(t, rows.Err())
	return out
}

// checkLedger checks the whole database: every balance is the sum of its
// account's ledger entries, and every round was paid whole: its entries sum
// to zero. It returns the number of rounds in the ledger.
func (d *nnDB) checkLedger(t *testing.T) int {
	t.Helper()
	rows, err := d.db.Query(`SELECT p.account_id, p.balance, COALESCE(SUM(l.delta), 0), COUNT(l.id)
		FROM profiles p LEFT JOIN ledger l ON l.account_id = p.account_id GROUP BY p.account_id, p.balance`)
	require.NoError(t, err)
	accounts := 0
	for rows.Next() {
		var account, balance, sum, n int64
		require.NoError(t, rows.Scan(&account, &balance, &sum, &n))
		require.Equal(t, sum, balance, "account %d: the balance is not the sum of its %d ledger entries", account, n)
		accounts++
	}
	require.NoError(t, rows.Err())
	rows.Close()
	require.NotZero(t, accounts)
	rounds := map[string]int64{}
	for key, e := range d.entries(t, "") {
		if strings.HasPrefix(key, "grant/") {
			require.Equal(t, int64(nnGrant), e.delta, key)
			continue
		}
		i := strings.LastIndexByte(key, '/')
		require.Positive(t, i, "ledger key %q is neither a grant nor <round>/<seat>", key)
		rounds[key[:i]] += e.delta
	}
	for round, sum := range rounds {
		require.Zero(t, sum, "round %s is paid in part: its entries sum to %d", round, sum)
	}
	return len(rounds)
}

// checkSettled checks a round's end view against the ledger (an entry
// <round>/<seat> for every playing seat whose delta is not 0, with that
// delta, to that seat's account; nothing else) and against the rules (the
// deal replays from the seed, the banker from the grabs, the deltas from
// the hands).
func (d *nnDB) checkSettled(t *testing.T, end niuniu.View) {
	t.Helper()
	require.Equal(t, niuniu.PhaseEnd, end.Phase)
	require.Empty(t, end.Error)
	got := d.entries(t, end.Round+"/")
	want := map[string]ledgerEntry{}
	var seats []int
	var sum int64
	for i, s := range end.Seats {
		if !s.Playing {
			continue
		}
		seats = append(seats, i)
		sum += s.Delta
		if s.Delta != 0 {
			want[end.Round+"/"+strconv.Itoa(i)] = ledgerEntry{s.User, s.Delta}
		}
	}
	require.Equal(t, want, got, "round %s: the ledger against the end pushed: %s", end.Round, brief(end))
	require.Zero(t, sum, "round %s makes or loses currency", end.Round)

	rng := niuniu.NewRNG(end.Seed)
	hands, err := nnRules.Deal(rng, len(seats))
	require.NoError(t, err)
	grabs := make([]int, len(seats))
	for k, i := range seats {
		require.Equal(t, hands[k][:], end.Seats[i].Cards, "round %s seat %d: the cards are not the seed's", end.Round, i)
		grabs[k] = end.Seats[i].Grab
	}
	banker, g, err := nnRules.Banker(rng, grabs)
	require.NoError(t, err)
	require.Equal(t, end.Banker, seats[banker], "round %s: the banker does not replay", end.Round)
	require.Equal(t, end.BankerGrab, g)
	tab := niuniu.Table{Base: end.Base, Banker: banker, Grab: g}
	for k, i := range seats {
		ev, err := nnRules.Evaluate(hands[k])
		require.NoError(t, err)
		require.Equal(t, ev.Type, end.Seats[i].Hand.Type)
		require.Equal(t, ev.Value, end.Seats[i].Hand.Value)
		// No balance is ever low enough to cap a payment (nnGrant).
		tab.Players = append(tab.Players, niuniu.Player{Hand: ev, Bet: max(end.Seats[i].Bet, 1), Balance: math.MaxInt64})
	}
	deltas, err := nnRules.Settle(tab)
	require.NoError(t, err)
	for k, i := range seats {
		require.Equal(t, deltas[k], end.Seats[i].Delta, "round %s seat %d: not the rules' delta", end.Round, i)
	}
}

// seatAll matches the players into one table, in order, and returns its
// room id once every player sees all four seated.
func seatAll(t *testing.T, ps []*niuPlayer) string {
	t.Helper()
	room := ""
	seats := map[int]bool{}
	for _, p := range ps {
		var s seatResp
		require.NoError(t, p.call("match.join", map[string]any{"room_type": nnType}, &s))
		if room == "" {
			room = s.RoomID
		}
		require.Equal(t, room, s.RoomID, "%s seated apart", p.name)
		seats[s.Seat] = true
	}
	require.Len(t, seats, len(ps), "seats %v", seats)
	for _, p := range ps {
		p.await(t, "all seated", func(v niuniu.View) bool {
			return v.Phase == niuniu.PhaseReady && !slices.ContainsFunc(v.Seats, func(s niuniu.SeatView) bool { return s.User == "" || !s.Online })
		})
	}
	return room
}

// startRound readies every player (in seat order) and returns the round
// each sees dealt.
func startRound(t *testing.T, ps []*niuPlayer) string {
	t.Helper()
	prev := ps[0].await(t, "the ready phase", func(v niuniu.View) bool { return v.Phase == niuniu.PhaseReady }).Round
	for _, p := range ps {
		p.must(t, "ready", -1)
	}
	var round string
	for _, p := range ps {
		v := p.await(t, "a new round", func(v niuniu.View) bool { return v.Round != prev && v.Phase != niuniu.PhaseReady })
		if round == "" {
			round = v.Round
		}
		require.Equal(t, round, v.Round, p.name)
	}
	return round
}

// play makes p a bot until ctx ends: it readies until it has seen rounds
// rounds end, and in each phase makes a random choice once it sees it.
// Refusals of a choice the table moved past (1000, 1002) are expected:
// its view may be a push behind.
func (p *niuPlayer) play(ctx context.Context, rounds int) error {
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	done := map[string]bool{} // round/phase: chosen
	for {
		if err := p.choose(ctx, rng, done, rounds); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-p.wake:
		}
	}
}

// choose makes the bot's choice for the newest view, if it has one to
// make and did not make it yet.
func (p *niuPlayer) choose(ctx context.Context, rng *rand.Rand, done map[string]bool, rounds int) error {
	p.mu.Lock()
	v, ok := p.last()
	ended := len(p.ends)
	p.mu.Unlock()
	if !ok {
		return nil
	}
	me := v.Seats[v.You]
	action, m := "", -1
	switch {
	case v.Phase == niuniu.PhaseReady:
		if !me.Ready && ended < rounds {
			action = "ready"
		}
	case !me.Playing:
	case v.Phase == niuniu.PhaseGrab && me.Grab < 0:
		action, m = "grab", rng.IntN(5)
	case v.Phase == niuniu.PhaseBet && v.Banker != v.You && me.Bet == 0:
		action, m = "bet", 1+rng.IntN(5)
	case v.Phase == niuniu.PhaseOpen && !me.Opened:
		action = "open"
	}
	key := v.Round + "/" + v.Phase
	if action == "" || done[key] {
		return nil
	}
	done[key] = true
	err := p.act(action, m)
	var we *wire.Error
	switch {
	case err == nil, ctx.Err() != nil:
	case errors.As(err, &we) && (we.Code == niuniu.CodeWrongPhase || we.Code == niuniu.CodeNotInRound):
	default:
		return err
	}
	return nil
}

// TestNiuniu plays niuniu_100 on a gate and two room nodes over one
// PostgreSQL database, with four players (TCP and WebSocket, one through a
// proxy the test cuts), in steps on one table:
//
//  1. a full round driven by the players' choices: each sees only its own
//     cards until the hands open, and the end pushed is what the ledger
//     holds and what the rules replay;
//  2. a player drops during the grab and resumes in the bet phase: the
//     snapshot shows the round as it is, with the default grab the
//     countdown gave it; it plays the rest of the round; another player
//     sends nothing all round and gets every default;
//  3. 100 rounds of bots: every round ends settled as the ledger has it,
//     and every balance is the sum of its ledger entries; replaying a
//     round's entries pays nothing twice;
//  4. the room node is killed in the middle of the settlement's
//     transaction (the test holds a row lock it needs): the players are
//     told the room's node was lost, their calls get 301, and nothing of
//     the round is paid;
//  5. the players sit again at a table on the other room node, which is
//     killed mid-round: likewise.
//
// After each step every balance is the sum of its ledger entries and every
// round in the ledger is paid whole.
func TestNiuniu(t *testing.T) {
	eachBus(t, func(t *testing.T, b bus) {
		dsn := hearthtest.PostgresDSN(t)
		db := openNNDB(t, dsn)
		natsURL := ""
		if !b.embedded {
			natsURL = testcluster.SharedNATS
		}
		c := startNodes(t, natsURL, testcluster.RandomPrefix("e2e"), niuNodes(dsn)...)
		gate := c.node("gate-a")
		proxy := hearthtest.NewProxy(t, strings.TrimPrefix(gate.TCP, "tcp://"))
		ps := []*niuPlayer{
			niuDial(t, gate.TCP, "p0", client.Options{}),
			niuDial(t, gate.WS, "p1", client.Options{}),
			niuDial(t, "tcp://"+proxy.Addr(), "p2", client.Options{Reconnect: true, ReconnectTimeout: time.Minute,
				Backoff: client.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}}),
			niuDial(t, gate.WS, "p3", client.Options{}),
		}
		room := seatAll(t, ps)
		for i, p := range ps {
			require.Equal(t, i, p.await(t, "all seated", func(niuniu.View) bool { return true }).You, "players sit in join order")
		}
		require.Zero(t, db.checkLedger(t), "only the grants before a round")
		defer func() {
			for _, p := range ps {
				checkViews(t, p)
			}
		}()

		step := func(name string, fn func(t *testing.T)) {
			if !t.Run(name, fn) {
				t.FailNow()
			}
			db.checkLedger(t)
		}
		step("full round", func(t *testing.T) {
			before := time.Now()
			round := startRound(t, ps)
			for i, p := range ps {
				v := p.await(t, "the grab", func(v niuniu.View) bool { return v.Phase == niuniu.PhaseGrab })
				// The countdown started between the readies and now.
				require.GreaterOrEqual(t, v.DeadlineMS, before.Add(nnCountdown).UnixMilli()-5, "the grab countdown")
				require.LessOrEqual(t, v.DeadlineMS, time.Now().Add(nnCountdown).UnixMilli()+5, "the grab countdown")
				require.Len(t, v.Seats[i].Cards, 4, "own four cards")
				for j, s := range v.Seats {
					require.True(t, s.Playing)
					if j != i {
						require.Empty(t, s.Cards, "%s sees seat %d's cards", p.name, j)
					}
				}
			}
			grabs := []int{0, 3, 3, 1}
			for i, p := range ps {
				p.must(t, "grab", grabs[i])
			}
			v := ps[0].await(t, "the bet", func(v niuniu.View) bool { return v.Phase == niuniu.PhaseBet })
			require.Contains(t, []int{1, 2}, v.Banker, "a top grabber banks")
			require.Equal(t, 3, v.BankerGrab)
			for i, p := range ps {
				if i != v.Banker {
					p.must(t, "bet", i+1)
				} else {
					require.Equal(t, niuniu.CodeBanker, codeOf(p.act("bet", 1)))
				}
			}
			for i, p := range ps {
				v := p.await(t, "the open", func(v niuniu.View) bool { return v.Phase == niuniu.PhaseOpen })
				require.Len(t, v.Seats[i].Cards, 5, "the fifth card")
				require.Empty(t, v.Seats[(i+1)%4].Cards, "%s sees another's cards", p.name)
			}
			ps[0].must(t, "open", -1)
			v = ps[1].await(t, "seat 0 opened", func(v niuniu.View) bool { return v.Seats[0].Opened })
			require.Len(t, v.Seats[0].Cards, 5, "an opened hand shows to all")
			require.Empty(t, v.Seats[2].Cards)
			for _, p := range ps[1:] {
				p.must(t, "open", -1)
			}
			end := ps[0].awaitEnd(t, round)
			for i, p := range ps {
				e := p.awaitEnd(t, round)
				require.Equal(t, []string{niuniu.PhaseGrab, niuniu.PhaseBet, niuniu.PhaseOpen, niuniu.PhaseEnd}, p.phases(round), p.name)
				require.Equal(t, end.Seats, e.Seats, "%s saw another end", p.name)
				require.Equal(t, grabs[i], e.Seats[i].Grab)
				if i != end.Banker {
					require.Equal(t, i+1, e.Seats[i].Bet)
				}
			}
			db.checkSettled(t, end)
		})

		step("drop, resume, defaults", func(t *testing.T) {
			round := startRound(t, ps)
			before := ps[2].await(t, "the grab", func(v niuniu.View) bool { return v.Phase == niuniu.PhaseGrab })
			lastBefore := ps[2].LastPush()
			proxy.Cut()
			// p3 sends nothing all round; p2 is away for the grab.
			ps[0].must(t, "grab", 2)
			ps[1].must(t, "grab", 1)
			v := ps[0].await(t, "the bet after the grab countdown", func(v niuniu.View) bool { return v.Phase == niuniu.PhaseBet })
			require.Equal(t, round, v.Round)
			require.False(t, v.Seats[2].Online, "p2 is offline")
			require.Equal(t, 0, v.Banker)
			require.Equal(t, 2, v.BankerGrab)
			require.Zero(t, v.Seats[2].Grab, "no grab in time, offline: 0")
			require.Zero(t, v.Seats[3].Grab, "no grab in time: 0")

			proxy.Restore() // p2's client resumes by itself
			var snap niuniu.View
			eventually(t, nnWait, func() bool {
				ps[2].mu.Lock()
				defer ps[2].mu.Unlock()
				for _, pu := range ps[2].pushes {
					if pu.route == "snapshot" && pu.seq > lastBefore {
						snap = pu.view
						return true
					}
				}
				return false
			}, func() string { return "p2 got no snapshot after resuming" })
			require.Equal(t, round, snap.Round, "the round p2 dropped from")
			require.Equal(t, niuniu.PhaseBet, snap.Phase)
			require.Equal(t, before.Seats[2].Cards, snap.Seats[2].Cards, "p2's own four cards again")
			require.Zero(t, snap.Seats[2].Grab)
			require.Equal(t, 0, snap.Banker)
			for j, s := range snap.Seats {
				if j != 2 {
					require.Empty(t, s.Cards, "p2 sees seat %d's cards", j)
				}
			}
			ps[2].must(t, "bet", 3)
			ps[1].must(t, "bet", 2)
			v = ps[0].await(t, "the open after the bet countdown", func(v niuniu.View) bool { return v.Phase == niuniu.PhaseOpen })
			require.Equal(t, 1, v.Seats[3].Bet, "no bet in time: 1")
			require.True(t, v.Seats[2].Online, "p2 is back")
			for _, p := range ps[:3] {
				p.must(t, "open", -1)
			}
			end := ps[2].awaitEnd(t, round)
			require.Equal(t, []int{2, 1, 0, 0}, []int{end.Seats[0].Grab, end.Seats[1].Grab, end.Seats[2].Grab, end.Seats[3].Grab})
			require.Equal(t, []int{0, 2, 3, 1}, []int{end.Seats[0].Bet, end.Seats[1].Bet, end.Seats[2].Bet, end.Seats[3].Bet})
			require.True(t, end.Seats[3].Opened, "every hand opens at the end")
			require.Equal(t, end.Seats, ps[3].awaitEnd(t, round).Seats)
			db.checkSettled(t, end)
		})

		step("100 rounds", func(t *testing.T) {
			const rounds = 100
			from := ps[0].endCount()
			target := from + rounds
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			var mu sync.Mutex // guards botErrs
			var botErrs []error
			for _, p := range ps {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := p.play(ctx, target); err != nil {
						mu.Lock()
						botErrs = append(botErrs, err)
						mu.Unlock()
					}
				}()
			}
			stop := sync.OnceFunc(func() { cancel(); wg.Wait() })
			defer stop()
			failed := func() error {
				mu.Lock()
				defer mu.Unlock()
				return errors.Join(botErrs...)
			}
			start := time.Now()
			eventually(t, 3*time.Minute, func() bool {
				return failed() != nil || !slices.ContainsFunc(ps, func(p *niuPlayer) bool { return p.endCount() < target })
			}, func() string {
				ps[0].mu.Lock()
				defer ps[0].mu.Unlock()
				v, _ := ps[0].last()
				return fmt.Sprintf("%d of %d rounds played; p0's last view: %s", len(ps[0].ends)-from, rounds, brief(v))
			})
			stop()
			require.NoError(t, failed(), "a bot failed")
			t.Logf("%d rounds in %s", rounds, time.Since(start))
			stop()
			ps[0].mu.Lock()
			ends := slices.Clone(ps[0].ends[from:])
			ps[0].mu.Unlock()
			require.Len(t, ends, rounds)
			last := ends[len(ends)-1].Round
			ps[0].await(t, "the table idle after the last round", func(v niuniu.View) bool {
				return v.Phase == niuniu.PhaseReady && v.Round == last
			})
			require.Equal(t, rounds+2, db.checkLedger(t), "rounds in the ledger")
			for _, end := range ends {
				for i, s := range end.Seats {
					require.True(t, s.Playing, "round %s: seat %d not playing", end.Round, i)
				}
				db.checkSettled(t, end)
			}

			// Settling a round again pays nothing twice.
			var batch []store.LedgerEntry
			for key, e := range db.entries(t, ends[0].Round+"/") {
				batch = append(batch, store.LedgerEntry{AccountID: e.account, Delta: e.delta, Key: key, Reason: "replay"})
			}
			require.NotEmpty(t, batch)
			ledgerBefore := db.entries(t, "")
			_, applied, err := db.st.ApplyLedgerBatch(context.Background(), batch)
			require.NoError(t, err)
			require.False(t, applied, "a replayed settlement was applied again")
			require.Equal(t, ledgerBefore, db.entries(t, ""))
		})

		step("killed mid-settlement", func(t *testing.T) {
			// p0 grabs and the others do not, so p0 banks. The test holds
			// the row lock of the last account the settlement updates
			// (accounts go in id order) that surely has an entry (a
			// player's, not the banker's, whose delta may be 0): the
			// settlement's transaction waits there, with the balances before
			// it updated.
			last := slices.MaxFunc(ps[1:], func(a, b *niuPlayer) int { return cmp.Compare(accountID(t, a), accountID(t, b)) })
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			tx, err := db.db.BeginTx(ctx, nil)
			require.NoError(t, err)
			defer func() { _ = tx.Rollback() }()
			var lockPID int
			require.NoError(t, tx.QueryRowContext(ctx, `SELECT pg_backend_pid() FROM profiles WHERE account_id = $1 FOR UPDATE`, accountID(t, last)).Scan(&lockPID))

			round := startRound(t, ps)
			ps[0].must(t, "grab", 1)
			for _, p := range ps[1:] {
				p.must(t, "grab", 0)
			}
			v := ps[0].await(t, "the bet", func(v niuniu.View) bool { return v.Phase == niuniu.PhaseBet })
			require.Equal(t, 0, v.Banker)
			for _, p := range ps[1:] {
				p.must(t, "bet", 2)
			}
			ps[0].await(t, "the open", func(v niuniu.View) bool { return v.Phase == niuniu.PhaseOpen })
			for _, p := range ps[:3] {
				p.must(t, "open", -1)
			}
			// The last open settles, so it is answered only once the
			// settlement ends, which it never does.
			lastOpen := make(chan error, 1)
			go func() { lastOpen <- ps[3].act("open", -1) }()

			var blockedPID int
			var host string
			eventually(t, nnWait, func() bool {
				return db.db.QueryRowContext(ctx, `SELECT pid, application_name FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, lockPID).Scan(&blockedPID, &host) == nil
			}, func() string { return "no settlement waits for the test's row lock" })
			require.Contains(t, []string{"room-1", "room-2"}, host, "the backend waiting for the lock")
			c.kill(host)
			for _, p := range ps {
				p.awaitClosed(t, room, "node_lost")
			}
			require.Equal(t, wire.CodeUnavailable, codeOf(ps[0].act("state", -1)), "a table call after its node died")
			require.Error(t, <-lastOpen, "the open that settled was answered")

			// The settlement's backend goes on once the lock is released,
			// finds its client gone and rolls back.
			require.NoError(t, tx.Rollback())
			eventually(t, nnWait, func() bool {
				var n int
				return db.db.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, blockedPID).Scan(&n) == nil && n == 0
			}, func() string {
				return fmt.Sprintf("the killed node's settlement (backend %d) is still there", blockedPID)
			})
			require.Empty(t, db.entries(t, round+"/"), "a round whose settlement died is paid")
		})

		step("killed mid-round", func(t *testing.T) {
			room = seatAll(t, ps)
			round := startRound(t, ps)
			ps[0].must(t, "grab", 4)
			ps[1].await(t, "p0's grab", func(v niuniu.View) bool { return v.Seats[0].Grab == 4 })
			// Both room nodes are gone now: the gate's match service tells.
			for _, id := range []string{"room-1", "room-2"} {
				if c.node(id).Running() {
					c.kill(id)
				}
			}
			for _, p := range ps {
				p.awaitClosed(t, room, "node_lost")
			}
			require.Equal(t, wire.CodeUnavailable, codeOf(ps[1].act("grab", 1)))
			require.Empty(t, db.entries(t, round+"/"), "a round whose node died is paid")
		})
	})
}

// accountID is p's account id as the number it is.
func accountID(t *testing.T, p *niuPlayer) int64 {
	id, err := strconv.ParseInt(p.user, 10, 64)
	require.NoError(t, err, "%s's user id", p.name)
	return id
}
