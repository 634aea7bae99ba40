package bots

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/games/niuniu"
	"github.com/hearth-server/hearth/pb/lobbypb"
	"github.com/hearth-server/hearth/wire"
)

// nnBot is one bot at a Niu Niu table: it reacts to the table's
// "<type>.state" pushes as a player would, marking ready, grabbing, betting
// and opening after a think time, and keeps its own ledger of the round
// deltas it was shown, to check against the server's balance at the end.
//
// The client's reader goroutine (client.Options.PushOnReader) runs onView
// and onRemoved and owns views, cur, hasPrev, prevDeadline, removedSince and
// lastEnd; the bot's goroutine owns rng, answer and timer; everything else
// shared between them is under mu. Those handlers must not block, nor keep
// p.Payload (the reader's buffer) past their return: parseView copies the
// strings it keeps.
type nnBot struct {
	c      *client.Client
	gate   int    // c's gate, its index in the urls
	user   string // the bot's user id, for messages
	rt     string // room type
	st     *stats
	think  func() time.Duration
	rng    *rand.Rand        // the bot goroutine's
	routes map[string]string // action → route, shared by the process's bots (read only)
	answer []byte            // the bot goroutine's buffer for moves' answers (unread)
	timer  *time.Timer       // the bot goroutine's think timer, stopped when idle

	// The client's reader goroutine only (it runs the push handlers).
	views        [2]view // parsed into in turn: views[cur] is the view before
	cur          int
	hasPrev      bool  // views[cur] holds a view
	prevDeadline int64 // Unix ms, 0 none
	removedSince bool  // a removal came after the view before
	lastEnd      string

	mu      sync.Mutex    // guards the fields below
	view    view          // the latest pushed, if hasView; the bot goroutine copies it
	hasView bool          // false before the first view and after a removal
	deltas  int64         // sum of this bot's deltas at every end it played
	removed string        // "<type>.left" or "<type>.closed" reason, until handled
	wake    chan struct{} // cap 1: a new view or removal
}

// moveRoutes maps each move's action to its route on room type rt: made
// once for a process's bots, who share it (read only).
func moveRoutes(rt string) map[string]string {
	m := make(map[string]string, 4)
	for _, a := range [...]string{"ready", "grab", "bet", "open"} {
		m[a] = rt + "." + a
	}
	return m
}

// newNNBot makes a bot playing room type roomType; routes is
// moveRoutes(roomType), gate the index of c's gate in the urls.
func newNNBot(c *client.Client, gate int, roomType string, routes map[string]string, st *stats, think func() time.Duration, rng *rand.Rand) *nnBot {
	b := &nnBot{c: c, gate: gate, rt: roomType, routes: routes, st: st, think: think, rng: rng, wake: make(chan struct{}, 1)}
	c.OnPush(roomType+".state", b.onView)
	c.OnPush(roomType+".snapshot", b.onView)
	c.OnPush(roomType+".left", func(p client.Push) { b.onRemoved(p, "left") })
	c.OnPush(roomType+".closed", func(p client.Push) { b.onRemoved(p, "closed") })
	return b
}

func (b *nnBot) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// onView takes a pushed view. A phase change that arrives after the
// deadline the previous view announced was driven by the countdown (a
// player's action ends a phase only before its deadline): its lateness is
// the arrival time minus that deadline, as this client sees it.
//
// It wakes the bot only when the view may change what the bot does: most
// views show another seat's move, which changes nothing for it.
func (b *nnBot) onView(p client.Push) {
	now := time.Now()
	var before *view
	if b.hasPrev {
		before = &b.views[b.cur]
	}
	v := &b.views[1-b.cur]
	if err := parseView(v, p.Payload, before); err != nil {
		b.st.fail("push bad view", err)
		return
	}
	if before != nil && (v.Phase != before.Phase || v.Round != before.Round) && b.prevDeadline > 0 {
		if late := now.Sub(time.UnixMilli(b.prevDeadline)); late >= 0 {
			b.st.countdowns.Add(1)
			b.st.lag.record(late)
			if late > lateLimit {
				b.st.lateInto(v.Phase, b.gate)
			}
		}
	}
	prev := before
	if b.removedSince {
		prev = nil // a new table: wake the bot whatever the view
	}
	b.cur, b.hasPrev = 1-b.cur, true
	b.prevDeadline, b.removedSince = v.DeadlineMS, false
	if v.You < 0 || v.You >= v.nSeats {
		b.st.fail("push bad view", fmt.Errorf("seat %d of %d", v.You, v.nSeats))
		return
	}
	b.st.seats.Store(int64(v.nSeats))
	me := &v.seats[v.You]
	var delta int64
	if v.Phase == niuniu.PhaseEnd && me.Playing && v.Round != b.lastEnd {
		b.lastEnd = v.Round
		delta = me.Delta
		b.st.played.Add(1)
		if lowestPlaying(v) == v.You {
			b.st.rounds.Add(1)
			if v.Unsettled {
				b.st.unsettled.Add(1)
			}
		}
	}
	b.mu.Lock()
	b.view, b.hasView = *v, true
	b.deltas += delta
	b.mu.Unlock()
	if mayMatter(prev, v) {
		b.signal()
	}
}

// mayMatter reports whether view v may change what the bot's goroutine
// does after view prev: its move (decide), whether it may leave
// (leavable), or what tooLate waits for (another phase or round).
func mayMatter(prev, v *view) bool {
	if prev == nil || prev.Phase != v.Phase || prev.Round != v.Round {
		return true
	}
	m1, ok1 := decide(prev, false)
	m2, ok2 := decide(v, false)
	return ok1 != ok2 || m1 != m2 || leavable(prev) != leavable(v)
}

func lowestPlaying(v *view) int {
	for i, s := range v.Seats() {
		if s.Playing {
			return i
		}
	}
	return -1
}

func (b *nnBot) onRemoved(p client.Push, what string) {
	var ev struct {
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(p.Payload, &ev)
	b.removedSince = true
	b.mu.Lock()
	b.removed = what + " " + ev.Reason
	b.hasView = false
	b.mu.Unlock()
	b.signal()
}

// latestLocked copies the latest view into dst and returns dst, or nil
// when there is none. b.mu is held.
func (b *nnBot) latestLocked(dst *view) *view {
	if !b.hasView {
		return nil
	}
	*dst = b.view
	return dst
}

// move is a game action, named within its round so that it is sent once:
// the route suffix; the multiplier of a grab or bet is the bot goroutine's
// choice when it sends it.
type move struct {
	action string
	round  string
}

// decide is the bot's strategy: what to do in view v, if anything. It is
// a function of v alone (and stopping), so that onView can tell whether a
// view changes it.
func decide(v *view, stopping bool) (move, bool) {
	if v == nil || v.You < 0 || v.You >= v.nSeats {
		return move{}, false
	}
	me := &v.seats[v.You]
	switch v.Phase {
	case niuniu.PhaseReady:
		if !me.Ready && !stopping {
			return move{action: "ready", round: v.Round}, true
		}
	case niuniu.PhaseGrab:
		if me.Playing && me.Grab < 0 {
			return move{action: "grab", round: v.Round}, true
		}
	case niuniu.PhaseBet:
		if me.Playing && v.You != v.Banker && me.Bet == 0 {
			return move{action: "bet", round: v.Round}, true
		}
	case niuniu.PhaseOpen:
		if me.Playing && !me.Opened {
			return move{action: "open", round: v.Round}, true
		}
	}
	return move{}, false
}

// strength rates four cards 0–3 the way a casual player does: a niu
// already made of three of them (the fourth's point is then most of the
// value), or many ten-point cards, look good.
func strength(cards []niuniu.Card) int {
	if len(cards) < 4 {
		return 0
	}
	tens := 0
	for _, c := range cards[:4] {
		if c.Point() == 10 {
			tens++
		}
	}
	for skip := range 4 {
		sum := 0
		for i, c := range cards[:4] {
			if i != skip {
				sum += c.Point()
			}
		}
		if sum%10 == 0 {
			if cards[skip].Point() >= 7 {
				return 3
			}
			return 2
		}
	}
	if tens >= 3 {
		return 2
	}
	if tens == 2 {
		return 1
	}
	return 0
}

// grabFor and betFor follow the hand's strength, with some whim.
func (b *nnBot) grabFor(cards []niuniu.Card) int {
	return min(4, max(0, strength(cards)+b.rng.IntN(3)-1))
}

func (b *nnBot) betFor(cards []niuniu.Card) int {
	return min(5, max(1, 1+strength(cards)+b.rng.IntN(2)))
}

// multiplierJSON[n] is the request of a grab or a bet of n, encoded once.
var multiplierJSON = [...][]byte{
	[]byte(`{"multiplier":0}`), []byte(`{"multiplier":1}`), []byte(`{"multiplier":2}`),
	[]byte(`{"multiplier":3}`), []byte(`{"multiplier":4}`), []byte(`{"multiplier":5}`),
}

// errStopped ends a bot that was told to stop before it sat down.
var errStopped = errors.New("stopped")

// play seats the bot and plays until stopping is closed and its round is
// over; then it leaves the table and checks its balance. It returns an
// error when the bot cannot go on (the caller counts it).
func (b *nnBot) play(ctx context.Context, stopping, abandon <-chan struct{}) error {
	start, hasBalance, err := b.sit(ctx, stopping)
	if err != nil {
		return err
	}
	b.st.seated.Add(1)
	b.st.everSeated.Add(1)
	seated := true
	defer func() {
		if seated {
			b.st.seated.Add(-1)
		}
	}()
	var done move
	var cur view // the bot goroutine's copy of the latest view
	stop := stopping
	isStopping := false
loop:
	for {
		select {
		case <-b.wake:
		case <-stop:
			isStopping, stop = true, nil // a nil channel blocks: wait for views now
		case <-abandon:
			b.st.undrained.Add(1)
			return nil
		case <-b.c.Done():
			return fmt.Errorf("%w: %w", errLost, b.c.Err())
		case <-ctx.Done():
			return ctx.Err()
		}
		b.mu.Lock()
		v, removed := b.latestLocked(&cur), b.removed
		b.removed = ""
		b.mu.Unlock()
		if removed != "" {
			// Kicked for a low balance at a round's end, or the table
			// closed (its node drains): sit down again, as a player would.
			b.st.seated.Add(-1)
			seated = false
			if isStopping {
				break loop
			}
			if err := b.join(ctx, stopping); err != nil {
				var we *wire.Error
				if errors.As(err, &we) && we.Code == wire.Code(niuniu.CodeLowBalance) {
					b.st.broke.Add(1)
					break loop
				}
				return err
			}
			b.st.seated.Add(1)
			seated = true
			continue
		}
		if isStopping && leavable(v) {
			rctx, cancel := context.WithTimeout(ctx, requestTimeout)
			err := b.c.RequestJSON(rctx, b.rt+".leave", nil, nil)
			cancel()
			var we *wire.Error
			if errors.As(err, &we) && we.Code == wire.Code(niuniu.CodeInRound) {
				continue // the round started after the view: play it out
			}
			if err != nil {
				if ctx.Err() == nil {
					b.st.fail(errorKey("leave", err), err)
				}
				return err
			}
			b.st.seated.Add(-1)
			seated = false
			break loop
		}
		m, ok := decide(v, isStopping)
		if !ok || m == done {
			continue
		}
		if err := b.pause(ctx); err != nil {
			return err
		}
		b.mu.Lock()
		v = b.latestLocked(&cur)
		b.mu.Unlock()
		if m2, ok := decide(v, isStopping); !ok || m2 != m {
			b.signal() // the table moved on while the bot thought: look again
			continue
		}
		done = m
		var req []byte
		route := b.routes[m.action]
		switch me := &v.seats[v.You]; m.action {
		case "grab":
			req = multiplierJSON[b.grabFor(me.Cards())]
		case "bet":
			req = multiplierJSON[b.betFor(me.Cards())]
		}
		t0 := time.Now()
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		var err error
		b.answer, err = b.c.RequestRawAppend(rctx, route, req, b.answer[:0])
		// Before cancel: after it, rctx.Err() is set whatever happened, and
		// every failed move read as a 30 s timeout.
		timedOut := rctx.Err() != nil && ctx.Err() == nil
		cancel()
		b.st.action.record(time.Since(t0))
		b.st.actions.Add(1)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case b.tooLate(err, v):
			// The phase ended (its countdown ran out) while the move was
			// on its way: a slow player's fate, not a server error.
			b.st.lateMoves.Add(1)
		case isApp(err), moveLost(err):
			b.st.fail(errorKey(m.action, err), err)
		default:
			if timedOut {
				err = fmt.Errorf("%w: %s after %s", errTimeout, m.action, requestTimeout)
			}
			b.st.fail(errorKey(m.action, err), err)
			return err
		}
		b.signal() // the response may have overtaken the push: look again
	}
	if hasBalance {
		b.checkBalance(ctx, start)
	}
	return nil
}

// leavable reports whether the bot, told to stop, can leave the table now:
// it has no part in a round in progress (the room would refuse with 1006).
func leavable(v *view) bool {
	if v == nil || v.You < 0 || v.You >= v.nSeats {
		return true
	}
	me := &v.seats[v.You]
	switch v.Phase {
	case niuniu.PhaseReady, niuniu.PhaseEnd:
		return true
	}
	return !me.Playing
}

// pause waits the bot's think time.
func (b *nnBot) pause(ctx context.Context) error {
	d := b.think()
	if d <= 0 {
		return nil
	}
	if b.timer == nil {
		b.timer = time.NewTimer(d)
	} else {
		b.timer.Reset(d) // stopped or fired: Reset needs no drain (Go 1.23)
	}
	defer b.timer.Stop()
	select {
	case <-b.timer.C:
		return nil
	case <-b.c.Done():
		return fmt.Errorf("%w: %w", errLost, b.c.Err())
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sit joins a table and reads the balance the bot starts with (after the
// table's starting grant). hasBalance is false when the server has no
// lobby service to ask.
func (b *nnBot) sit(ctx context.Context, stop <-chan struct{}) (start int64, hasBalance bool, err error) {
	if err := b.join(ctx, stop); err != nil {
		var we *wire.Error
		if errors.As(err, &we) && we.Code == wire.Code(niuniu.CodeLowBalance) {
			b.st.broke.Add(1)
		}
		return 0, false, err
	}
	// No round can have settled for the bot yet: it is not ready.
	p, err := b.profile(ctx)
	if err != nil {
		return 0, false, nil
	}
	return p.Balance, true, nil
}

// join asks match.join for a seat, and asks again while the server is
// too busy to place the player (301, 302, 203, 200: counted as errors
// each time), with a growing pause, as a player would press the button
// again; until stop. A 1106 answer (already seated) means an earlier
// attempt the bot had given up on did seat it: it asks the table for its
// view and plays there.
func (b *nnBot) join(ctx context.Context, stop <-chan struct{}) error {
	pause := 500 * time.Millisecond
	for {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		err := b.c.RequestJSON(rctx, "match.join", map[string]string{"room_type": b.rt}, nil)
		timedOut := rctx.Err() != nil && ctx.Err() == nil
		cancel()
		var we *wire.Error
		switch {
		case err == nil, ctx.Err() != nil:
		case errors.As(err, &we) && we.Code == hearth.CodeInRoom:
		case timedOut:
			err = fmt.Errorf("%w: match.join after %s", errTimeout, requestTimeout)
			b.st.fail(errorKey("join", err), err)
		default:
			b.st.fail(errorKey("join", err), err)
		}
		if errors.As(err, &we) && we.Code == hearth.CodeInRoom {
			raw, err := b.do(ctx, b.rt+".snapshot", "snapshot")
			if err != nil {
				return err
			}
			var v view
			if err := parseView(&v, raw, nil); err != nil {
				b.st.fail("snapshot bad view", err)
				return err
			}
			b.mu.Lock()
			if !b.hasView {
				b.view, b.hasView = v, true
			}
			b.mu.Unlock()
			b.signal()
			return nil
		}
		if err == nil || !errors.As(err, &we) || !retryJoin(we.Code) {
			return err
		}
		select {
		case <-time.After(pause):
		case <-stop:
			return errStopped
		case <-ctx.Done():
			return ctx.Err()
		}
		pause = min(2*pause, 10*time.Second)
	}
}

func retryJoin(c wire.Code) bool {
	switch c {
	case wire.CodeUnavailable, wire.CodeTimeout, wire.CodeOverloaded, wire.CodeRateLimited:
		return true
	}
	return false
}

func (b *nnBot) profile(ctx context.Context) (*lobbypb.Profile, error) {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	var p lobbypb.Profile
	err := b.c.Request(rctx, "lobby.profile", &lobbypb.ProfileReq{}, &p)
	if err != nil {
		b.st.fail(errorKey("profile", err), err)
	}
	return &p, err
}

// checkBalance compares the server's balance with the start plus every
// delta the bot was shown.
func (b *nnBot) checkBalance(ctx context.Context, start int64) {
	p, err := b.profile(ctx)
	if err != nil {
		return
	}
	b.mu.Lock()
	want := start + b.deltas
	b.mu.Unlock()
	b.st.checked.Add(1)
	if p.Balance != want {
		b.st.mismatched.Add(1)
		b.st.fail("balance mismatch", fmt.Errorf("user %s: balance %d, but the start %d plus the deltas shown make %d", b.user, p.Balance, start, want))
	}
}

// do sends a request with an empty payload and returns the answer's; an
// error is counted under what.
func (b *nnBot) do(ctx context.Context, route, what string) ([]byte, error) {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	out, err := b.c.RequestRaw(rctx, route, nil)
	if err != nil {
		if rctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w: %s after %s", errTimeout, route, requestTimeout)
		}
		if ctx.Err() == nil {
			b.st.fail(errorKey(what, err), err)
		}
	}
	return out, err
}

// tooLate reports whether err refuses a move made in view v because the
// table has left v's phase since: a view in another phase or round comes
// within a second (the refusal may overtake the push of the change: they
// travel apart). A refusal while the table still shows the phase is an
// error.
func (b *nnBot) tooLate(err error, v *view) bool {
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.Code(niuniu.CodeWrongPhase) || v == nil {
		return false
	}
	defer b.signal() // the caller looks at the views again
	t := time.NewTimer(time.Second)
	defer t.Stop()
	var buf view
	for {
		b.mu.Lock()
		now := b.latestLocked(&buf)
		b.mu.Unlock()
		if now == nil || now.Phase != v.Phase || now.Round != v.Round {
			return true
		}
		select {
		case <-b.wake:
		case <-t.C:
			return false
		}
	}
}

// moveLost reports whether err is the server giving up on a move (302:
// its room did not answer in time) or having no room for it (203): the
// move is lost, as a player's click can be, but the session and the table
// go on, and so does the bot. It counts the error; a bot that quit on it
// turned a few seconds of overload into thousands of players gone.
func moveLost(err error) bool {
	var we *wire.Error
	return errors.As(err, &we) && (we.Code == wire.CodeTimeout || we.Code == wire.CodeOverloaded)
}

// isApp reports whether err is the game refusing a move (a code of 1000
// and up), after which the bot plays on.
func isApp(err error) bool {
	var we *wire.Error
	return errors.As(err, &we) && we.Code >= wire.CodeApplication
}
