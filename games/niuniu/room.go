package niuniu

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/store"
)

// Codes a Niu Niu room answers with (hearth keeps 1100–1199 for its rooms;
// games use 1000–1099). docs/protocol.md §8c lists them.
const (
	// CodeWrongPhase: the action does not belong to the table's phase
	// (grab outside grab, a second ready, …).
	CodeWrongPhase hearth.Code = 1000
	// CodeBadValue: the multiplier is outside the rules' range.
	CodeBadValue hearth.Code = 1001
	// CodeNotInRound: the seat takes no part in the running round (it sat
	// down after it started, or was not ready).
	CodeNotInRound hearth.Code = 1002
	// CodeBanker: the banker does not bet.
	CodeBanker hearth.Code = 1003
	// CodeLowBalance: the player's balance is below the table's minimum,
	// so they cannot sit.
	CodeLowBalance hearth.Code = 1004
	// CodeNoAccount: the player has no profile (not logged in), so has no
	// balance to play with.
	CodeNoAccount hearth.Code = 1005
	// CodeInRound: a player in a running round cannot leave before it
	// ends; an offline player keeps the seat until then.
	CodeInRound hearth.Code = 1006
)

// Phases of a table, as View.Phase.
const (
	PhaseReady = "ready" // waiting for players to mark ready
	PhaseGrab  = "grab"  // four cards dealt; players choose a grab multiplier
	PhaseBet   = "bet"   // the banker is known; the others choose a bet
	PhaseOpen  = "open"  // fifth card dealt; players reveal their hands
	PhaseEnd   = "end"   // settled; results shown until the pause ends
)

// A table's state as lobby.rooms lists it.
const (
	ListingWaiting = "waiting" // between rounds (PhaseReady)
	ListingPlaying = "playing" // a round runs (every other phase)
)

// TableConfig configures a Niu Niu room type. The zero value is a standard
// 5-seat table with a stake of 1 and no starting grant.
type TableConfig struct {
	// Rules are the game's rules; the zero value is the standard game.
	// Rules.Seats must be 2 to 5 here (zero means 5).
	Rules Rules
	// Base is the stake every amount is a multiple of. Zero means 1.
	Base int64
	// MinBalance is the balance a player needs to sit down (and to stay
	// after a round). Zero means Base.
	MinBalance int64
	// Grant is credited once per account (ledger key "grant/<user>") the
	// first time it sits at a table of any Niu Niu room type, so that a
	// fresh guest can play. The key is the auth service's starting grant's
	// (auth.Config.StartingGrant): an account granted there, with whatever
	// amount, gets nothing more here. Zero means no grant.
	Grant int64
	// TopUp is credited when a player below MinBalance tries to sit, at
	// most once per account per UTC day (ledger key
	// "topup/<user>/<yyyy-mm-dd>"). Zero means no top-up.
	TopUp int64
	// LedgerTimeout bounds each ledger call a room makes. Zero means 5 s.
	LedgerTimeout time.Duration
}

// ErrBadConfig is returned by NewRoomType for an invalid TableConfig.
var ErrBadConfig = errors.New("invalid niuniu table config")

// Ledger is what a table needs of the store: balances, and the ledger it
// settles into. *store.Store is the one implementation.
type Ledger interface {
	Profile(ctx context.Context, accountID string) (store.Profile, error)
	Balances(ctx context.Context, accountIDs []string) (map[string]int64, error)
	ApplyLedger(ctx context.Context, e store.LedgerEntry) (balance int64, applied bool, err error)
	ApplyLedgerBatch(ctx context.Context, entries []store.LedgerEntry) (balances []int64, applied bool, err error)
	LedgerApplied(ctx context.Context, key string) (bool, error)
}

var _ Ledger = (*store.Store)(nil)

// NewRoomType returns the room type name: Niu Niu tables that settle every
// round into st's ledger. Register its Service on the room nodes. Routes,
// all JSON: "<name>.ready", "<name>.grab" {"multiplier"}, "<name>.bet"
// {"multiplier"}, "<name>.open", "<name>.state", each answering the
// caller's View; every change is pushed to each player as "<name>.state".
func NewRoomType(name string, cfg TableConfig, st Ledger) (*hearth.RoomType, error) {
	if err := cfg.Rules.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	cfg.Rules = cfg.Rules.WithDefaults()
	if cfg.Base == 0 {
		cfg.Base = 1
	}
	if cfg.MinBalance == 0 {
		cfg.MinBalance = cfg.Base
	}
	if cfg.LedgerTimeout == 0 {
		cfg.LedgerTimeout = 5 * time.Second
	}
	switch {
	case cfg.Rules.Seats > 5:
		return nil, fmt.Errorf("%w: %d seats, want 2 to 5", ErrBadConfig, cfg.Rules.Seats)
	case cfg.Base < 1 || cfg.MinBalance < 0 || cfg.Grant < 0 || cfg.TopUp < 0 || cfg.LedgerTimeout < 0:
		return nil, fmt.Errorf("%w: negative base, minimum, grant, top-up or timeout", ErrBadConfig)
	case st == nil || st == Ledger((*store.Store)(nil)):
		return nil, fmt.Errorf("%w: no store", ErrBadConfig)
	}
	// Reject a stake whose largest round cannot be computed, now rather
	// than at the first settlement.
	if _, ok := mul(cfg.Base, int64(max(cfg.Rules.MaxGrab, cfg.Rules.AllPassGrab)), int64(cfg.Rules.MaxBet), int64(cfg.Rules.maxMultiplier()), int64(cfg.Rules.Seats)); !ok {
		return nil, fmt.Errorf("%w: base %d: %w", ErrBadConfig, cfg.Base, ErrOverflow)
	}
	rt := hearth.NewRoomType(name, hearth.RoomConfig{Seats: cfg.Rules.Seats}, func() hearth.RoomHandler {
		return &table{cfg: cfg, st: st}
	})
	type choice struct {
		Multiplier int `json:"multiplier"`
	}
	action := func(method string, fn func(t *table, r *hearth.Room, s *hearth.Seat, req choice) error) {
		hearth.HandleRoomJSON(rt, method, func(r *hearth.Room, s *hearth.Seat, req choice) (View, error) {
			t := r.Handler().(*table)
			if err := fn(t, r, s, req); err != nil {
				r.Logger().Info("niuniu action refused", "action", method, "user", s.User, "err", err)
				return View{}, err
			}
			// The answer is encoded before the room runs anything else
			// (HandleRoomJSON), so it can be built in the pushes' view.
			t.pushed = t.viewInto(r, s.Index, t.pushed.Seats[:0])
			return t.pushed, nil
		})
	}
	action("ready", func(t *table, r *hearth.Room, s *hearth.Seat, _ choice) error { return t.ready(r, s) })
	action("grab", func(t *table, r *hearth.Room, s *hearth.Seat, req choice) error { return t.grab(r, s, req.Multiplier) })
	action("bet", func(t *table, r *hearth.Room, s *hearth.Seat, req choice) error { return t.bet(r, s, req.Multiplier) })
	action("open", func(t *table, r *hearth.Room, s *hearth.Seat, _ choice) error { return t.open(r, s) })
	action("state", func(*table, *hearth.Room, *hearth.Seat, choice) error { return nil })
	return rt, nil
}

// View is a table as one player sees it: the "<type>.state" push, the
// answer to every route and the snapshot. Other players' cards are hidden
// until they open (or the round ends).
type View struct {
	Phase string `json:"phase"`
	// DeadlineMS is when the phase's countdown ends, in Unix milliseconds;
	// 0 when none runs.
	DeadlineMS int64  `json:"deadline_ms"`
	Round      string `json:"round,omitempty"` // the current or last round's id
	// Seed is the round's deal seed, shown once the round has ended: with
	// the grabs it replays the round through Rules.Deal and Rules.Banker.
	Seed       uint64     `json:"seed,omitempty"`
	Base       int64      `json:"base"`
	You        int        `json:"you"`         // the viewer's seat
	Banker     int        `json:"banker"`      // banker's seat, -1 before grab ends
	BankerGrab int        `json:"banker_grab"` // its multiplier, 0 before
	Seats      []SeatView `json:"seats"`
	Error      string     `json:"error,omitempty"` // why a round was not settled
}

// SeatView is one seat of a View.
type SeatView struct {
	User    string `json:"user,omitempty"` // "" for an empty seat
	Online  bool   `json:"online"`
	Ready   bool   `json:"ready"`
	Playing bool   `json:"playing"` // takes part in the current round
	Grab    int    `json:"grab"`    // -1 until chosen
	Bet     int    `json:"bet"`     // 0 until chosen, and for the banker
	Opened  bool   `json:"opened"`
	// Cards are the seat's cards as far as the viewer may see them: its
	// own from the deal, another's once opened.
	Cards []Card `json:"cards,omitempty"`
	Hand  *Eval  `json:"hand,omitempty"`  // with five visible cards
	Delta int64  `json:"delta,omitempty"` // balance change, at the end
}

// table is one room's game state; the room's goroutine owns all of it.
type table struct {
	hearth.BaseRoom
	cfg TableConfig
	st  Ledger

	phase   string
	clock   *hearth.Timer // the phase's countdown, nil when none runs
	rounds  int
	round   string
	seed    uint64
	rng     *RNG
	banker  int
	bgrab   int
	errText string
	isReady []bool    // by seat
	players []*player // by seat; nil for a seat not in the round
	pushed  View      // the view pushAll and the moves' answers build, reused
}

// player is one seat's part in the running (or last) round.
type player struct {
	// hand and its evaluation never change once dealt (a round deals new
	// players), so views point at them rather than copy.
	hand    Hand
	eval    Eval
	balance int64 // at the round's start: the most it can lose
	after   int64 // after the round's settlement (balance when unsettled)
	grab    int   // -1 until chosen
	bet     int   // 0 until chosen
	opened  bool
	delta   int64
}

func (t *table) Create(r *hearth.Room, _ map[string]string) error {
	t.isReady = make([]bool, len(r.Seats()))
	t.players = make([]*player, len(r.Seats()))
	t.banker = -1
	t.setPhase(r, PhaseReady, 0)
	return nil
}

// Join credits the starting grant once per account (and the day's top-up
// to a player below the minimum) and admits players whose balance reaches
// the minimum.
func (t *table) Join(r *hearth.Room, s *hearth.Seat) error {
	ctx, cancel := context.WithTimeout(r.Context(), t.cfg.LedgerTimeout)
	defer cancel()
	bal, err := t.balance(ctx, s.User)
	if err != nil {
		return err
	}
	credit := func(amount int64, reason, key string) error {
		b, applied, err := t.st.ApplyLedger(ctx, store.LedgerEntry{AccountID: s.User, Delta: amount, Reason: reason, Key: key})
		if err != nil {
			return fmt.Errorf("niuniu: %s: %w", reason, err)
		}
		if applied {
			bal = b
		}
		return nil
	}
	if t.cfg.Grant > 0 {
		// The auth service's starting grant uses the same key: whichever
		// pays first, the account is granted once. A conflict is a grant
		// paid before with another amount. The read first spares a write
		// transaction per join for the usual case, a grant paid at login.
		key := "grant/" + s.User
		granted, err := t.st.LedgerApplied(ctx, key)
		if err != nil {
			return fmt.Errorf("niuniu: starting grant: %w", err)
		}
		if !granted {
			err := credit(t.cfg.Grant, "niuniu starting grant", key)
			if err != nil && !errors.Is(err, store.ErrKeyConflict) {
				return err
			}
		}
	}
	if bal < t.cfg.MinBalance && t.cfg.TopUp > 0 {
		day := time.Now().UTC().Format(time.DateOnly)
		if err := credit(t.cfg.TopUp, "niuniu daily top-up", "topup/"+s.User+"/"+day); err != nil {
			return err
		}
	}
	if bal < t.cfg.MinBalance {
		return hearth.Errorf(CodeLowBalance, "balance %d is below this table's minimum %d", bal, t.cfg.MinBalance)
	}
	t.pushAll(r)
	return nil
}

func (t *table) balance(ctx context.Context, user string) (int64, error) {
	p, err := t.st.Profile(ctx, user)
	if errors.Is(err, store.ErrNotFound) {
		return 0, hearth.NewError(CodeNoAccount, "log in to play for currency")
	}
	if err != nil {
		return 0, fmt.Errorf("niuniu: balance of %s: %w", user, err)
	}
	return p.Balance, nil
}

// Leave keeps a player of the running round seated until it ends.
func (t *table) Leave(r *hearth.Room, s *hearth.Seat, why hearth.LeaveReason) error {
	if t.players[s.Index] != nil && t.phase != PhaseReady && t.phase != PhaseEnd && why != hearth.LeaveKicked {
		return hearth.NewError(CodeInRound, "the round is on; leave after it ends")
	}
	t.isReady[s.Index] = false
	t.players[s.Index] = nil
	r.Post(func(r *hearth.Room) { t.pushAll(r) }) // after the SDK emptied the seat
	return nil
}

func (t *table) Offline(r *hearth.Room, _ *hearth.Seat) { t.pushAll(r) }
func (t *table) Resume(r *hearth.Room, _ *hearth.Seat)  { t.pushAll(r) }

// Drain finishes a running round as if every countdown had ended, so the
// node's shutdown settles it instead of dropping it, then closes the room.
func (t *table) Drain(r *hearth.Room) {
	switch t.phase {
	case PhaseGrab:
		t.defaultGrabs()
		t.pickBanker()
		fallthrough
	case PhaseBet:
		t.defaultBets()
		fallthrough
	case PhaseOpen:
		t.settle(r)
	}
	r.Close("drain")
}

func (t *table) Snapshot(r *hearth.Room, s *hearth.Seat) any { return t.view(r, s.Index) }

// Timer ends the phase whose countdown ran out; players who did not choose
// get the rules' defaults.
func (t *table) Timer(r *hearth.Room, tm *hearth.Timer) {
	if tm != t.clock {
		return
	}
	t.clock = nil
	switch t.phase {
	case PhaseReady:
		t.startRound(r)
	case PhaseGrab:
		t.defaultGrabs()
		t.endGrab(r)
	case PhaseBet:
		t.defaultBets()
		t.setPhase(r, PhaseOpen, t.cfg.Rules.OpenCountdown)
	case PhaseOpen:
		t.settle(r)
	case PhaseEnd:
		t.endRound(r)
	}
}

func (t *table) ready(r *hearth.Room, s *hearth.Seat) error {
	switch {
	case t.phase != PhaseReady:
		return hearth.Errorf(CodeWrongPhase, "ready is for the %s phase, not %s", PhaseReady, t.phase)
	case t.isReady[s.Index]:
		return hearth.NewError(CodeWrongPhase, "already ready")
	}
	t.isReady[s.Index] = true
	n := t.readyCount()
	switch {
	case n == len(r.Seats()):
		t.startRound(r)
	case n >= t.cfg.Rules.MinPlayers && t.clock == nil:
		t.setPhase(r, PhaseReady, t.cfg.Rules.ReadyCountdown)
	default:
		t.pushAll(r)
	}
	return nil
}

func (t *table) readyCount() int {
	n := 0
	for _, ok := range t.isReady {
		if ok {
			n++
		}
	}
	return n
}

// startRound deals to the ready players, or waits for more.
func (t *table) startRound(r *hearth.Room) {
	seats := r.Seats()
	var in []int
	for i, ok := range t.isReady {
		if ok && seats[i].State != hearth.SeatEmpty {
			in = append(in, i)
		}
	}
	if len(in) < t.cfg.Rules.MinPlayers {
		t.setPhase(r, PhaseReady, 0)
		return
	}
	// One query for every player's balance: the table's goroutine waits
	// for it, and its timers and moves with it.
	ctx, cancel := context.WithTimeout(r.Context(), t.cfg.LedgerTimeout)
	defer cancel()
	users := make([]string, len(in))
	for k, i := range in {
		users[k] = seats[i].User
	}
	byUser, err := t.st.Balances(ctx, users)
	if err != nil {
		r.Logger().Error("niuniu: round not started", "err", err)
		t.setPhase(r, PhaseReady, 0)
		return
	}
	balances := make([]int64, len(in))
	for k, u := range users {
		b, ok := byUser[u]
		if !ok {
			r.Logger().Error("niuniu: round not started: a player has no profile", "user", u)
			t.setPhase(r, PhaseReady, 0)
			return
		}
		balances[k] = b
	}
	t.rounds++
	t.round = r.ID() + "." + strconv.Itoa(t.rounds)
	t.seed = newSeed()
	t.rng = NewRNG(t.seed)
	hands, err := t.cfg.Rules.Deal(t.rng, len(in))
	if err != nil { // the player count is within the rules
		panic(err)
	}
	clear(t.players)
	for k, i := range in {
		ev, err := t.cfg.Rules.Evaluate(hands[k])
		if err != nil { // a dealt hand is always valid
			panic(err)
		}
		t.players[i] = &player{hand: hands[k], eval: ev, balance: balances[k], grab: -1}
	}
	t.banker, t.bgrab, t.errText = -1, 0, ""
	clear(t.isReady)
	r.Logger().Info("niuniu round", "round", t.round, "seed", t.seed, "seats", in)
	t.setPhase(r, PhaseGrab, t.cfg.Rules.GrabCountdown)
}

func newSeed() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return binary.LittleEndian.Uint64(b[:])
}

// inRound returns the seat's part in the round, or an error for a seat
// that has none or a phase other than want.
func (t *table) inRound(s *hearth.Seat, want string) (*player, error) {
	if t.phase != want {
		return nil, hearth.Errorf(CodeWrongPhase, "this is for the %s phase, not %s", want, t.phase)
	}
	p := t.players[s.Index]
	if p == nil {
		return nil, hearth.NewError(CodeNotInRound, "you are not in this round")
	}
	return p, nil
}

func (t *table) grab(r *hearth.Room, s *hearth.Seat, m int) error {
	p, err := t.inRound(s, PhaseGrab)
	switch {
	case err != nil:
		return err
	case p.grab >= 0:
		return hearth.NewError(CodeWrongPhase, "already grabbed")
	case m < 0 || m > t.cfg.Rules.MaxGrab:
		return hearth.Errorf(CodeBadValue, "grab %d: want 0 to %d", m, t.cfg.Rules.MaxGrab)
	}
	p.grab = m
	if t.all(func(_ int, p *player) bool { return p.grab >= 0 }) {
		t.endGrab(r)
	} else {
		t.pushAll(r)
	}
	return nil
}

// defaultGrabs and defaultBets give the players who did not choose in time
// the rules' defaults.
func (t *table) defaultGrabs() {
	for _, p := range t.players {
		if p != nil && p.grab < 0 {
			p.grab = t.cfg.Rules.DefaultGrab
		}
	}
}

func (t *table) defaultBets() {
	for i, p := range t.players {
		if p != nil && i != t.banker && p.bet == 0 {
			p.bet = t.cfg.Rules.DefaultBet
		}
	}
}

func (t *table) endGrab(r *hearth.Room) {
	t.pickBanker()
	t.setPhase(r, PhaseBet, t.cfg.Rules.BetCountdown)
}

// pickBanker picks the banker from the round's RNG, right after the deal,
// as the package doc specifies, so the seed and the grabs replay it.
func (t *table) pickBanker() {
	var seats []int
	var grabs []int
	for i, p := range t.players {
		if p != nil {
			seats = append(seats, i)
			grabs = append(grabs, p.grab)
		}
	}
	k, g, err := t.cfg.Rules.Banker(t.rng, grabs)
	if err != nil { // grabs were checked as they came
		panic(err)
	}
	t.banker, t.bgrab = seats[k], g
}

func (t *table) bet(r *hearth.Room, s *hearth.Seat, m int) error {
	p, err := t.inRound(s, PhaseBet)
	switch {
	case err != nil:
		return err
	case s.Index == t.banker:
		return hearth.NewError(CodeBanker, "the banker does not bet")
	case p.bet > 0:
		return hearth.NewError(CodeWrongPhase, "already bet")
	case m < 1 || m > t.cfg.Rules.MaxBet:
		return hearth.Errorf(CodeBadValue, "bet %d: want 1 to %d", m, t.cfg.Rules.MaxBet)
	}
	p.bet = m
	if t.all(func(i int, p *player) bool { return i == t.banker || p.bet > 0 }) {
		t.setPhase(r, PhaseOpen, t.cfg.Rules.OpenCountdown)
	} else {
		t.pushAll(r)
	}
	return nil
}

func (t *table) open(r *hearth.Room, s *hearth.Seat) error {
	p, err := t.inRound(s, PhaseOpen)
	switch {
	case err != nil:
		return err
	case p.opened:
		return hearth.NewError(CodeWrongPhase, "already open")
	}
	p.opened = true
	if t.all(func(_ int, p *player) bool { return p.opened }) {
		t.settle(r)
	} else {
		t.pushAll(r)
	}
	return nil
}

// all reports whether ok holds for every seat in the round.
func (t *table) all(ok func(seat int, p *player) bool) bool {
	for i, p := range t.players {
		if p != nil && !ok(i, p) {
			return false
		}
	}
	return true
}

// settle evaluates every hand and writes the round's transfers to the
// ledger in one transaction, keyed "<round>/<seat>": all or nothing, and a
// repeat never pays twice. It runs on the room's goroutine because the
// round cannot go on before it is settled; only this room waits.
func (t *table) settle(r *hearth.Room) {
	var seats []int
	tab := Table{Base: t.cfg.Base, Grab: t.bgrab}
	for i, p := range t.players {
		if p == nil {
			continue
		}
		p.opened = true
		if i == t.banker {
			tab.Banker = len(seats)
		}
		seats = append(seats, i)
		tab.Players = append(tab.Players, Player{Hand: p.eval, Bet: max(p.bet, 1), Balance: p.balance})
	}
	deltas, err := t.cfg.Rules.Settle(tab)
	var after map[int]int64
	if err == nil {
		after, err = t.pay(r, seats, deltas)
	}
	if err != nil {
		r.Logger().Error("niuniu round not settled", "round", t.round, "seed", t.seed, "err", err)
		t.errText = "the round could not be settled; no balance changed"
		deltas = make([]int64, len(seats))
	}
	for k, i := range seats {
		p := t.players[i]
		p.delta = deltas[k]
		p.after = p.balance
		if b, ok := after[i]; ok {
			p.after = b
		}
	}
	r.Logger().Info("niuniu round settled", "round", t.round, "seed", t.seed, "banker", t.banker, "deltas", deltas)
	t.setPhase(r, PhaseEnd, t.cfg.Rules.EndPause)
}

// pay writes the round's transfers in one ledger transaction and returns
// the balances after it of the seats that had one.
func (t *table) pay(r *hearth.Room, seats []int, deltas []int64) (map[int]int64, error) {
	var entries []store.LedgerEntry
	var paid []int
	for k, i := range seats {
		if deltas[k] != 0 {
			entries = append(entries, store.LedgerEntry{
				AccountID: r.Seats()[i].User, Delta: deltas[k],
				Reason: "niuniu round " + t.round, Key: t.round + "/" + strconv.Itoa(i),
			})
			paid = append(paid, i)
		}
	}
	if len(entries) == 0 {
		return nil, nil
	}
	apply := func() ([]int64, error) {
		ctx, cancel := context.WithTimeout(r.Context(), t.cfg.LedgerTimeout)
		defer cancel()
		b, _, err := t.st.ApplyLedgerBatch(ctx, entries)
		return b, err
	}
	balances, err := apply()
	if err != nil && !errors.Is(err, store.ErrInsufficientFunds) && !errors.Is(err, store.ErrKeyConflict) &&
		!errors.Is(err, store.ErrNotFound) && r.Context().Err() == nil {
		// A timeout or a lost connection may come after the commit: the
		// outcome is unknown. The same keys again settle it either way —
		// applied now, or found applied with the balances it left — so
		// the players are shown what the ledger holds.
		r.Logger().Warn("niuniu settlement failed; trying the same entries once more", "round", t.round, "err", err)
		balances, err = apply()
	}
	if err != nil {
		return nil, err
	}
	out := make(map[int]int64, len(paid))
	for k, i := range paid {
		out[i] = balances[k]
	}
	return out, nil
}

// endRound returns the table to ready, first removing the players who are
// offline or below the minimum balance.
//
// The balances are the settlement's (the ledger's answer), so ending a
// round reads nothing; a player who sat the round out sat down with at
// least the minimum, which this table has not changed.
func (t *table) endRound(r *hearth.Room) {
	low := make([]bool, len(t.players))
	for i, p := range t.players {
		low[i] = p != nil && p.after < t.cfg.MinBalance
	}
	clear(t.players)
	t.banker, t.bgrab = -1, 0
	t.setPhase(r, PhaseReady, 0)
	for i, s := range r.Seats() {
		switch {
		case s.State == hearth.SeatEmpty:
		case s.State == hearth.SeatOffline, low[i]:
			r.Kick(s)
		}
	}
}

// setPhase enters phase with a countdown of d (none when 0) and pushes the
// table to every player.
func (t *table) setPhase(r *hearth.Room, phase string, d time.Duration) {
	if t.clock != nil {
		t.clock.Cancel()
		t.clock = nil
	}
	t.phase = phase
	if d > 0 {
		t.clock = r.After(d, phase)
	}
	// The listing says only whether a round runs: each phase would be a
	// registry write (a stream write in the cluster's KV) five times a
	// round per table, for a lobby that needs no more than this.
	if phase == PhaseReady {
		r.SetState(ListingWaiting)
	} else {
		r.SetState(ListingPlaying)
	}
	t.pushAll(r)
}

// pushAll pushes each player its own view (a broadcast would show
// everyone's cards): one bus message per gate.
func (t *table) pushAll(r *hearth.Room) {
	// One view at a time, encoded before the next is made: the table's
	// own, reused, where a View per player per push was the table's largest
	// share of the garbage.
	err := r.PushEach("state", func(s *hearth.Seat) any {
		t.pushed = t.viewInto(r, s.Index, t.pushed.Seats[:0])
		return &t.pushed
	})
	if err != nil {
		r.Logger().Warn("niuniu push failed", "err", err)
	}
}

func (t *table) view(r *hearth.Room, viewer int) View {
	return t.viewInto(r, viewer, make([]SeatView, 0, len(r.Seats())))
}

// viewInto is view with its seats appended to seats. A view shares its
// cards and hand with the table's players, which never change them: a
// round deals new players.
func (t *table) viewInto(r *hearth.Room, viewer int, seats []SeatView) View {
	v := View{
		Phase: t.phase, Round: t.round, Base: t.cfg.Base, You: viewer,
		Banker: t.banker, BankerGrab: t.bgrab, Error: t.errText,
		Seats: seats,
	}
	if t.clock != nil {
		v.DeadlineMS = t.clock.Deadline().UnixMilli()
	}
	if t.phase == PhaseEnd {
		v.Seed = t.seed
	}
	for i, s := range r.Seats() {
		sv := SeatView{User: s.User, Online: s.State == hearth.SeatOnline, Ready: t.isReady[i], Grab: -1}
		if p := t.players[i]; p != nil {
			sv.Playing, sv.Grab, sv.Bet, sv.Opened, sv.Delta = true, p.grab, p.bet, p.opened, p.delta
			cards := 0
			switch {
			case p.opened:
				cards = 5
			case i == viewer && (t.phase == PhaseOpen || t.phase == PhaseEnd):
				cards = 5
			case i == viewer:
				cards = 4
			}
			if cards > 0 {
				sv.Cards = p.hand[:cards:cards]
			}
			if cards == 5 {
				sv.Hand = &p.eval
			}
		}
		v.Seats = append(v.Seats, sv)
	}
	return v
}
