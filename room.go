package hearth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/pb/roompb"
	"github.com/hearth-server/hearth/wire"
)

// Application codes of the room SDK and the match service. hearth keeps
// 1100–1199 for them; a game's own codes can use 1000–1099 and 1200 up.
const (
	// CodeRoomNotFound: no live room has that id.
	CodeRoomNotFound Code = 1100
	// CodeRoomFull: every seat of the room is taken.
	CodeRoomFull Code = 1101
	// CodeNotInRoom: the session holds no seat in a room of that type.
	CodeNotInRoom Code = 1102
	// CodeRoomClosed: the room closed while the request waited.
	CodeRoomClosed Code = 1103
	// CodeNoRoomNode: no serving node runs rooms of that type with room to spare.
	CodeNoRoomNode Code = 1104
	// CodeUnknownRoomType: no node has registered that room type.
	CodeUnknownRoomType Code = 1105
	// CodeInRoom: the player already holds a seat in another room of the
	// type; leave it first.
	CodeInRoom Code = 1106
)

// Routes every room type serves besides its handlers', and the pushes the
// SDK sends, as "<type>.<name>".
const (
	roomRouteLeave    = "leave"    // request: give up the seat
	roomRouteSnapshot = "snapshot" // request and push: the room's state for this seat
	roomPushClosed    = "closed"   // push: the room closed (RoomEvent)
	roomPushLeft      = "left"     // push: the player lost the seat (RoomEvent)
)

// RoomHandler is a room type's game logic. The SDK calls it on the room's
// goroutine (see Room), one call at a time, so it needs no lock; a slow
// handler delays only its own room. Embed BaseRoom for no-op defaults.
type RoomHandler interface {
	// Create sets the new room up; params come from match.create or
	// match.join. An error (an *Error to choose the code) refuses the room.
	Create(r *Room, params map[string]string) error
	// Join admits a player to seat s (s.User is set). An error refuses
	// the player with its code, and the seat stays empty.
	Join(r *Room, s *Seat) error
	// Leave is called before the player leaves seat s. For LeaveRequested
	// and LeaveSessionClosed an error keeps the seat (the player may come
	// back with match.join); other reasons cannot be refused.
	Leave(r *Room, s *Seat, why LeaveReason) error
	// Offline: the player's connection dropped; the session may resume.
	Offline(r *Room, s *Seat)
	// Resume: the player is back (maybe on another gate, maybe on a new
	// session after logging in again); the SDK pushes the snapshot after
	// this returns.
	Resume(r *Room, s *Seat)
	// Timer: a timer set with Room.After or Room.Every is due.
	Timer(r *Room, t *Timer)
	// Drain: the node is shutting down; finish soon and call Room.Close,
	// or the SDK closes the room at the drain deadline.
	Drain(r *Room)
	// Close: the room is closing; players are told after it returns.
	Close(r *Room, reason string)
	// Snapshot is the room's state as seat s should see it (its private
	// data, nobody else's), pushed on "<type>.snapshot" after a join or a
	// resume and returned by the "<type>.snapshot" route. Nil: none.
	Snapshot(r *Room, s *Seat) any
}

// RoomTicker is implemented by handlers of room types with RoomConfig.Tick:
// Tick runs every Tick on the room's goroutine, dt after the last one.
type RoomTicker interface {
	Tick(r *Room, dt time.Duration)
}

// BaseRoom gives a RoomHandler no-op methods; its Drain closes the room at
// once. Embed it and override what the game needs.
type BaseRoom struct{}

func (BaseRoom) Create(*Room, map[string]string) error { return nil }
func (BaseRoom) Join(*Room, *Seat) error               { return nil }
func (BaseRoom) Leave(*Room, *Seat, LeaveReason) error { return nil }
func (BaseRoom) Offline(*Room, *Seat)                  {}
func (BaseRoom) Resume(*Room, *Seat)                   {}
func (BaseRoom) Timer(*Room, *Timer)                   {}
func (BaseRoom) Drain(r *Room)                         { r.Close("drain") }
func (BaseRoom) Close(*Room, string)                   {}
func (BaseRoom) Snapshot(*Room, *Seat) any             { return nil }

// LeaveReason says why a player leaves a seat.
type LeaveReason string

const (
	// LeaveRequested: the player called "<type>.leave" or match.leave.
	LeaveRequested LeaveReason = "left"
	// LeaveSessionClosed: the player's session ended for good (logged
	// out, or the resume grace passed).
	LeaveSessionClosed LeaveReason = "session_closed"
	// LeaveKicked: the room removed the player (Room.Kick).
	LeaveKicked LeaveReason = "kicked"
)

// SeatState is what a seat holds.
type SeatState int

const (
	SeatEmpty   SeatState = iota // no player
	SeatOnline                   // a player whose session is connected
	SeatOffline                  // a player whose connection dropped; the seat is kept
)

func (s SeatState) String() string {
	switch s {
	case SeatOnline:
		return "online"
	case SeatOffline:
		return "offline"
	}
	return "empty"
}

// Seat is one place at a room's table. Its fields belong to the room's
// goroutine: read and write them only from handler code.
type Seat struct {
	// Index is the seat's place, 0 to Seats-1.
	Index int
	// User is the player's user id ("" when the seat is empty); for a
	// session not logged in it is "session:<id>".
	User string
	// State is empty, online or offline.
	State SeatState
	// Data is the handler's own state for this player; the SDK clears it
	// when the player leaves.
	Data any

	session string
	gate    string
	codec   cluster.Codec
	count   *cluster.PushCounter // session's on the node's bus; nil until PushEach needs it
}

// Session is the id of the player's session in the seat, "" when empty.
func (s *Seat) Session() string { return s.session }

// RoomConfig configures a room type. The zero value is a 2-seat room that
// closes when its last player leaves.
type RoomConfig struct {
	// Seats is the number of seats. Zero: 2.
	Seats int
	// Tick, when set, calls the handler's Tick (it must implement
	// RoomTicker) every Tick: a fixed step for real-time games. Zero: none.
	Tick time.Duration
	// Mailbox bounds the player requests waiting for one room; past it a
	// request is answered 203. Zero: 256.
	Mailbox int
	// KeepEmpty keeps a room open after its last player leaves. Zero: the
	// room closes then.
	KeepEmpty bool
	// MaxRooms caps the rooms of this type on one node; the match service
	// creates no more there. Zero: 100,000.
	MaxRooms int
}

// RoomType is a kind of room — a game — served as the service of the same
// name: clients call "<type>.<method>" for the handlers added with
// HandleRoom, plus "<type>.leave" and "<type>.snapshot". Register its
// Service on the nodes that host rooms of the type (their "room nodes").
type RoomType struct {
	name       string
	cfg        RoomConfig
	newHandler func() RoomHandler
	svc        *Service
	routes     map[string]roomRoute // set before Run, read-only after

	// host and the maps below are set when a node starts the service;
	// rooms and players are guarded by host.mu.
	host    atomic.Pointer[roomHost]
	rooms   map[string]*Room
	players map[string]*Room // seat key (user) → room
}

type roomRoute func(r *Room, s *Seat, codec cluster.Codec, payload []byte) ([]byte, error)

// NewRoomType returns the room type name, whose rooms each get a fresh
// handler from newHandler. The name follows service names'
// rule, ^[a-z][a-z0-9_]{0,31}$; NewRoomType panics otherwise.
func NewRoomType(name string, cfg RoomConfig, newHandler func() RoomHandler) *RoomType {
	if cfg.Seats <= 0 {
		cfg.Seats = 2
	}
	if cfg.Mailbox <= 0 {
		cfg.Mailbox = 256
	}
	if cfg.MaxRooms <= 0 {
		cfg.MaxRooms = 100_000
	}
	rt := &RoomType{
		name: name, cfg: cfg, newHandler: newHandler, svc: NewService(name),
		routes: map[string]roomRoute{}, rooms: map[string]*Room{}, players: map[string]*Room{},
	}
	rt.svc.OnStart(func(ctx context.Context, n *Node) error { return n.roomHost().attach(ctx, n, rt) })
	rt.svc.OnSessionEvent(rt.sessionEvent)
	handleRaw(rt.svc, roomRouteLeave, handler{ownDeadline: true}, func(ctx context.Context, s *Session, _ []byte) ([]byte, error) {
		return nil, rt.leave(ctx, s)
	})
	handleRaw(rt.svc, roomRouteSnapshot, handler{ownDeadline: true}, func(ctx context.Context, s *Session, _ []byte) ([]byte, error) {
		return rt.request(ctx, s, func(r *Room, seat *Seat, codec cluster.Codec) ([]byte, error) {
			msg := r.handler.Snapshot(r, seat)
			if msg == nil {
				return nil, nil
			}
			return encode(codec, msg)
		})
	})
	return rt
}

// Create opens a room of the type on the node running it, with no player
// yet: a table the server sets up (a tournament's, a lobby's). It is
// listed once Create returns, and closes like any other room when its
// last player leaves.
func (rt *RoomType) Create(ctx context.Context, private bool, params map[string]string) (RoomInfo, error) {
	h := rt.host.Load()
	if h == nil {
		return RoomInfo{}, ErrNotRunning
	}
	info, _, err := h.create(roomCtl{Op: "create", Type: rt.name, Private: private, Params: params})
	if err != nil {
		return RoomInfo{}, err
	}
	h.awaitRoom(ctx, info.ID)
	return info, nil
}

// Name is the room type's name, also its service's.
func (rt *RoomType) Name() string { return rt.name }

// Service is the room type's service, to Register on a node.
func (rt *RoomType) Service() *Service { return rt.svc }

// HandleRoom registers a typed handler for "<type>.<method>": the request
// of a player seated in a room of the type runs on that room's goroutine,
// with the player's seat. Return an *Error to answer its code. The answer
// is encoded on the room's goroutine as soon as fn returns, before the
// room runs anything else, so it may share memory the room reuses.
func HandleRoom[Req, Resp proto.Message](rt *RoomType, method string, fn func(r *Room, s *Seat, req Req) (Resp, error)) {
	if method == roomRouteLeave || method == roomRouteSnapshot {
		panic(fmt.Sprintf("hearth: room route %s.%s is the SDK's", rt.name, method))
	}
	newReq := newMessage[Req]()
	handleRaw(rt.svc, method, handler{pooled: true, ownDeadline: true}, func(ctx context.Context, s *Session, payload []byte) ([]byte, error) {
		req := newReq()
		if err := unmarshal(s.codec, payload, req); err != nil {
			return nil, &Error{Code: wire.CodeInvalidPayload, Message: "invalid payload: " + err.Error()}
		}
		return rt.request(ctx, s, func(r *Room, seat *Seat, codec cluster.Codec) ([]byte, error) {
			resp, err := fn(r, seat, req)
			if err != nil {
				return nil, err
			}
			return answerProto(codec, resp)
		})
	})
}

// HandleRoomJSON is HandleRoom on plain Go types, encoded as JSON in
// every session (see HandleJSON): a game without protoc. As with
// HandleRoom, the answer is encoded before the room runs anything else.
func HandleRoomJSON[Req, Resp any](rt *RoomType, method string, fn func(r *Room, s *Seat, req Req) (Resp, error)) {
	if method == roomRouteLeave || method == roomRouteSnapshot {
		panic(fmt.Sprintf("hearth: room route %s.%s is the SDK's", rt.name, method))
	}
	mustBePlain[Req]()
	mustBePlain[Resp]()
	handleRaw(rt.svc, method, handler{pooled: true, ownDeadline: true}, func(ctx context.Context, s *Session, payload []byte) ([]byte, error) {
		var req Req
		if err := decodeJSON(payload, &req); err != nil {
			return nil, &Error{Code: wire.CodeInvalidPayload, Message: "invalid payload: " + err.Error()}
		}
		return rt.request(ctx, s, func(r *Room, seat *Seat, _ cluster.Codec) ([]byte, error) {
			resp, err := fn(r, seat, req)
			if err != nil {
				return nil, err
			}
			return answerJSON(resp)
		})
	})
}

// seatKey is the player's identity in rooms: the user, or the session for
// a node that runs without login.
func seatKey(user, session string) string {
	if user != "" {
		return user
	}
	return "session:" + session
}

// request runs fn on the room of the session's player and waits for it.
func (rt *RoomType) request(ctx context.Context, s *Session, fn func(r *Room, seat *Seat, codec cluster.Codec) ([]byte, error)) ([]byte, error) {
	h := rt.host.Load()
	if h == nil {
		return nil, NewError(CodeUnavailable, "room type not running here")
	}
	key := seatKey(s.user, s.id)
	h.mu.Lock()
	r := rt.players[key]
	h.mu.Unlock()
	if r == nil {
		return nil, Errorf(CodeNotInRoom, "not seated in a %s room", rt.name)
	}
	rc, _ := ctx.(*requestContext) // nil for a caller other than the node's handle
	done := requestDone.Get().(chan roomResult)
	switch r.post(true, func() {
		if r.closed {
			done <- roomResult{err: NewError(CodeRoomClosed, "room closed")}
			return
		}
		seat := r.seatOf(key)
		if seat == nil {
			done <- roomResult{err: Errorf(CodeNotInRoom, "not seated in room %s", r.id)}
			return
		}
		r.follow(seat, s.id, s.gate, s.codec)
		out, err := r.guard(func() ([]byte, error) { return fn(r, seat, s.codec) })
		if rc != nil && rc.claimAnswer(answerRoom) {
			// Answered here, right behind the pushes the handler made and
			// before the room runs anything else: on their way to the
			// player's gate together, they reach its socket in one write.
			// Handed back to the handler's goroutine, the answer went a
			// turn later, in a write of its own.
			rc.respond(out, err)
			if rc.pooled {
				releaseAnswer(out)
			}
			out, err = nil, nil
		}
		done <- roomResult{out, err}
	}) {
	case mailFull:
		requestDone.Put(done)
		return nil, NewError(CodeOverloaded, "room busy")
	case mailShut:
		requestDone.Put(done)
		return nil, NewError(CodeRoomClosed, "room closed")
	}
	var expired <-chan time.Time // a context with a deadline of its own ends with it (ctx.Done)
	if d, ok := leftDeadline(ctx); ok {
		t := waitTimers.Get().(*time.Timer)
		t.Reset(time.Until(d))
		defer putWaitTimer(t)
		expired = t.C
	}
	select {
	case res := <-done:
		requestDone.Put(done) // empty, and the room sends on it once
		return res.out, res.err
	case <-expired:
	case <-ctx.Done():
	}
	if rc != nil && rc.reply != nil && !rc.claimAnswer(answerHandler) {
		// The room claimed the answer as the wait ended: it has sent it,
		// or is about to; what it sends on done says nothing more.
		<-done
		requestDone.Put(done)
		return nil, nil
	}
	// The room may still run the request: done is not reused.
	return nil, NewError(CodeTimeout, "room did not answer in time")
}

// roomResult is a room request's answer, from the room to the waiter.
type roomResult struct {
	out []byte
	err error
}

// requestDone are empty channels for RoomType.request's answers, reused:
// a move on a room route made one each.
var requestDone = sync.Pool{New: func() any { return make(chan roomResult, 1) }}

// waitTimers are stopped timers for RoomType.request's waits, reused: a
// move on a room route made one each.
var waitTimers = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}

// putWaitTimer stops t and gives it back to waitTimers. Its channel is
// drained too: with GODEBUG=asynctimerchan=1 a timer that fired keeps
// its value past Stop, and the next wait would read it as its own.
func putWaitTimer(t *time.Timer) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	waitTimers.Put(t)
}

// leave is "<type>.leave".
func (rt *RoomType) leave(ctx context.Context, s *Session) error {
	_, err := rt.request(ctx, s, func(r *Room, seat *Seat, _ cluster.Codec) ([]byte, error) {
		return nil, r.unseat(seat, LeaveRequested)
	})
	return err
}

// sessionEvent moves seats offline and back, and frees them when their
// session ends.
func (rt *RoomType) sessionEvent(_ context.Context, ev SessionEvent) {
	h := rt.host.Load()
	if h == nil {
		return
	}
	key := seatKey(ev.User, ev.Session)
	h.mu.Lock()
	r := rt.players[key]
	h.mu.Unlock()
	if r == nil {
		return
	}
	r.post(false, func() {
		seat := r.seatOf(key)
		if r.closed || seat == nil || seat.session != ev.Session {
			return // a newer session of the same user holds the seat
		}
		switch ev.Kind {
		case "offline":
			if seat.State == SeatOnline {
				seat.State = SeatOffline
				r.changed()
				r.call(func() { r.handler.Offline(r, seat) })
			}
		case "resumed":
			seat.gate = ev.Gate
			if seat.State == SeatOffline {
				seat.State = SeatOnline
				r.changed()
				r.call(func() { r.handler.Resume(r, seat) })
			}
			r.pushSnapshot(seat)
		case "closed":
			if err := r.unseat(seat, LeaveSessionClosed); err != nil {
				seat.State = SeatOffline
				r.changed()
			}
		}
	})
}

// Room is one live room: an actor. Its messages (requests, timers, session
// events, Post) run one at a time, in order, on whichever node worker runs
// the room's turn; "the room's goroutine" below means that. Every method
// is for it — handler code, timers — unless it says otherwise.
type Room struct {
	id      string
	typ     *RoomType
	host    *roomHost
	handler RoomHandler
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelFunc
	mb      mailbox
	turn    func() // drain, made once

	// Owned by the room's goroutine.
	seats    []*Seat
	state    string
	meta     map[string]string // nil until SetMeta
	params   map[string]string
	private  bool
	created  time.Time
	timers   map[*Timer]struct{}
	closed   bool
	draining bool
	lastTick time.Time
	scratch  []byte // PushEach's encoding buffer, reused
	batches  []pushBatch
	// The last route pushed on, and its method: a game pushes on one or two
	// routes, and the concatenation was one allocation per push.
	lastMethod, lastRoute string
}

// pushBatch is PushEach's message to one gate; the room reuses them.
type pushBatch struct {
	gate     string
	sessions []string
	counters []*cluster.PushCounter // sessions' own, in their order
	payloads []byte                 // cluster.AppendPayloads form
}

// route returns "<type>.<method>", checked.
func (r *Room) route(method string) (string, error) {
	if method == r.lastMethod && r.lastRoute != "" {
		return r.lastRoute, nil
	}
	route := r.typ.name + "." + method
	if !wire.ValidRoute(route) {
		return "", errBadRoute(route)
	}
	r.lastMethod, r.lastRoute = method, route
	return route, nil
}

// ID is the room's cluster-wide id.
func (r *Room) ID() string { return r.id }

// Type is the room type's name.
func (r *Room) Type() string { return r.typ.name }

// Seats are the room's seats, in order.
func (r *Room) Seats() []*Seat { return r.seats }

// Handler is the room's handler, for HandleRoom functions to reach the
// game's state: r.Handler().(*myGame).
func (r *Room) Handler() RoomHandler { return r.handler }

// Players counts the seats taken.
func (r *Room) Players() int {
	n := 0
	for _, s := range r.seats {
		if s.State != SeatEmpty {
			n++
		}
	}
	return n
}

// SeatOf returns the seat of user, or nil.
func (r *Room) SeatOf(user string) *Seat { return r.seatOf(user) }

func (r *Room) seatOf(key string) *Seat {
	for _, s := range r.seats {
		if s.State != SeatEmpty && s.User == key {
			return s
		}
	}
	return nil
}

// Private reports whether the room was made with match.create: it is not
// listed and match.join does not fill it.
func (r *Room) Private() bool { return r.private }

// Param is a creation parameter (match.create/join "params").
func (r *Room) Param(key string) string { return r.params[key] }

// Context ends when the room closes: for I/O a handler starts.
func (r *Room) Context() context.Context { return r.ctx }

// Logger is the room's logger (room id and type attached).
func (r *Room) Logger() *slog.Logger { return r.log }

// Node is the node hosting the room.
func (r *Room) Node() *Node { return r.host.node }

// Draining reports whether the node is shutting down.
func (r *Room) Draining() bool { return r.draining }

// SetState sets the room's state as listed in lobby.rooms ("waiting",
// "playing", …); the registry has it within a fraction of a second.
func (r *Room) SetState(state string) {
	if r.state != state {
		r.state = state
		r.changed()
	}
}

// State is the state last set with SetState.
func (r *Room) State() string { return r.state }

// SetMeta sets (or, with "", removes) a metadata field of the listing.
func (r *Room) SetMeta(key, value string) {
	if value == "" {
		delete(r.meta, key)
	} else {
		if r.meta == nil {
			r.meta = map[string]string{}
		}
		r.meta[key] = value
	}
	r.changed()
}

// After calls the handler's Timer with a timer named name once d has
// passed.
func (r *Room) After(d time.Duration, name string) *Timer {
	return r.startTimer(d, 0, name, false)
}

// Every calls the handler's Timer with a timer named name every d, until
// cancelled. A late run does not shift the ones after it.
func (r *Room) Every(d time.Duration, name string) *Timer {
	if d <= 0 {
		panic("hearth: Room.Every needs a positive interval")
	}
	return r.startTimer(d, d, name, false)
}

// TimerNamed returns the pending timer named name (the latest set), or nil:
// to show a countdown in a snapshot.
func (r *Room) TimerNamed(name string) *Timer {
	var found *Timer
	for t := range r.timers {
		if t.name == name && (found == nil || t.at.After(found.at)) {
			found = t
		}
	}
	return found
}

func (r *Room) startTimer(d, every time.Duration, name string, tick bool) *Timer {
	t := &Timer{room: r, name: name, every: every, tick: tick, index: -1}
	if r.closed {
		return t // never fires
	}
	t.live = true
	r.timers[t] = struct{}{}
	r.host.timers.add(t, time.Now().Add(d))
	return t
}

// fire is called by the timer goroutine when t is due.
func (r *Room) fire(t *Timer) {
	r.post(false, func() {
		if r.closed || !t.live {
			return
		}
		if t.every == 0 {
			t.live = false
			delete(r.timers, t)
		}
		r.host.late.Observe(max(0, time.Since(t.at)).Seconds())
		if t.tick {
			now := time.Now()
			dt := now.Sub(r.lastTick)
			r.lastTick = now
			r.call(func() { r.handler.(RoomTicker).Tick(r, dt) })
		} else {
			r.call(func() { r.handler.Timer(r, t) })
		}
		if t.live && t.every > 0 && !r.closed {
			next := t.at.Add(t.every)
			if now := time.Now(); next.Before(now) {
				next = now // a room too slow for its interval: no burst to catch up
			}
			r.host.timers.add(t, next)
		}
	})
}

// Push sends msg on "<type>.<method>" to the player in seat s (wherever
// its session is now; a detached session gets it on resume). msg is a
// proto.Message or a plain value sent as JSON, as for Session.Push.
func (r *Room) Push(s *Seat, method string, msg any) error {
	if s.State == SeatEmpty {
		return nil
	}
	route, err := r.route(method)
	if err != nil {
		return err
	}
	b, err := encode(s.codec, msg)
	if err != nil {
		return err
	}
	return r.host.node.bus.Push(s.gate, []string{s.session}, route, b, nil)
}

// PushEach sends every seated player its own message on "<type>.<method>":
// msg(s) for seat s, encoded as Push encodes it. It is one bus message per
// gate, where a Push per seat is one per player: the way to push private
// views (each player's own cards) on every change. Like every Room method
// but Post, call it on the room's goroutine (handler code).
func (r *Room) PushEach(method string, msg func(s *Seat) any) error {
	route, err := r.route(method)
	if err != nil {
		return err
	}
	batches := r.batches[:0] // a room's seats are on a few gates: a slice, not a map
	var errs []error
	for _, s := range r.seats {
		if s.State == SeatEmpty {
			continue
		}
		b, err := appendEncode(r.scratch[:0], s.codec, msg(s))
		if err != nil {
			errs = append(errs, fmt.Errorf("seat %d: %w", s.Index, err))
			continue
		}
		r.scratch = b
		i := slices.IndexFunc(batches, func(b pushBatch) bool { return b.gate == s.gate })
		if i < 0 {
			i = len(batches)
			if i < cap(batches) {
				batches = batches[:i+1]
				old := &batches[i]
				*old = pushBatch{gate: s.gate, sessions: old.sessions[:0], counters: old.counters[:0], payloads: old.payloads[:0]}
			} else {
				batches = append(batches, pushBatch{gate: s.gate})
			}
		}
		if s.count == nil {
			s.count = r.host.node.bus.Counter(s.session)
		}
		batches[i].sessions = append(batches[i].sessions, s.session)
		batches[i].counters = append(batches[i].counters, s.count)
		batches[i].payloads = cluster.AppendPayload(batches[i].payloads, b)
	}
	if cap(r.scratch) > 64<<10 {
		r.scratch = nil // one huge message does not pin its buffer
	}
	for i := range batches {
		b := &batches[i]
		if err := r.host.node.bus.PushEach(b.gate, b.sessions, b.counters, route, b.payloads); err != nil {
			errs = append(errs, err)
		}
		if cap(b.payloads) > 64<<10 {
			b.payloads = nil
		}
		clear(b.sessions) // no session id is kept past its push
		clear(b.counters)
	}
	r.batches = batches
	return errors.Join(errs...)
}

// Broadcast sends msg on "<type>.<method>" to every player in the room:
// one bus message per gate. Private data goes through Push or PushEach.
func (r *Room) Broadcast(method string, msg any) error {
	route, err := r.route(method)
	if err != nil {
		return err
	}
	return r.broadcast(route, msg)
}

func (r *Room) broadcast(route string, msg any) error {
	if !wire.ValidRoute(route) {
		return errBadRoute(route)
	}
	byGate := map[string][]string{}
	for _, s := range r.seats {
		if s.State != SeatEmpty {
			byGate[s.gate] = append(byGate[s.gate], s.session)
		}
	}
	if len(byGate) == 0 {
		return nil
	}
	pb, js, err := encodeBoth(msg)
	if err != nil {
		return err
	}
	for gate, sessions := range byGate {
		if err := r.host.node.bus.Push(gate, sessions, route, pb, js); err != nil {
			return err
		}
	}
	return nil
}

// Kick removes the player in seat s: the handler's Leave runs with
// LeaveKicked and the player gets "<type>.left".
func (r *Room) Kick(s *Seat) {
	if s.State != SeatEmpty {
		_ = r.unseat(s, LeaveKicked)
	}
}

// Post runs fn on the room's goroutine: for work a handler started on
// another goroutine (a database write) to report back. It is safe from any
// goroutine and reports false when the room has closed.
func (r *Room) Post(fn func(r *Room)) bool {
	return r.post(false, func() {
		if !r.closed {
			r.call(func() { fn(r) })
		}
	}) == mailOK
}

// Close closes the room: timers stop, the handler's Close runs, every
// player gets "<type>.closed" with reason and loses the seat.
func (r *Room) Close(reason string) {
	if r.closed {
		return
	}
	r.closed = true
	for t := range r.timers {
		t.live = false
		r.host.timers.remove(t)
	}
	clear(r.timers)
	r.call(func() { r.handler.Close(r, reason) })
	_ = r.broadcast(r.typ.name+"."+roomPushClosed, &roompb.RoomEvent{RoomId: r.id, Type: r.typ.name, Reason: reason})
	for _, s := range r.seats {
		if s.State != SeatEmpty {
			r.release(s)
		}
	}
	r.cancel()
	r.host.closed(r)
	r.log.Info("room closed", "reason", reason)
}

// unseat lets the handler refuse (for the reasons it may), then frees the
// seat and tells the player.
func (r *Room) unseat(s *Seat, why LeaveReason) error {
	var err error
	r.call(func() { err = r.handler.Leave(r, s, why) })
	if err != nil && (why == LeaveRequested || why == LeaveSessionClosed) {
		return err
	}
	_ = r.Push(s, roomPushLeft, &roompb.RoomEvent{RoomId: r.id, Type: r.typ.name, Reason: string(why)})
	r.release(s)
	r.changed()
	if r.Players() == 0 && !r.typ.cfg.KeepEmpty {
		r.Close("empty")
	}
	return nil
}

// release empties a seat and unbinds the player's session.
func (r *Room) release(s *Seat) {
	h := r.host
	h.mu.Lock()
	if r.typ.players[s.User] == r {
		delete(r.typ.players, s.User)
	}
	h.mu.Unlock()
	if err := h.node.bus.Bind(s.gate, s.session, r.typ.name, ""); err != nil {
		r.log.Warn("unbind failed", "user", s.User, "err", err)
	}
	*s = Seat{Index: s.Index}
}

// follow points seat s at the session that just reached the room: the same
// session on a new gate, or the player's new session after a new login.
func (r *Room) follow(s *Seat, session, gate string, codec cluster.Codec) {
	if s.session == session && s.gate == gate {
		return
	}
	if s.session != session {
		s.count = nil // the new session's is another
	}
	s.session, s.gate, s.codec = session, gate, codec
	if s.State == SeatOffline {
		s.State = SeatOnline
		r.call(func() { r.handler.Resume(r, s) })
	}
	r.changed()
}

func (r *Room) pushSnapshot(s *Seat) {
	var msg any
	r.call(func() { msg = r.handler.Snapshot(r, s) })
	if msg != nil {
		if err := r.Push(s, roomRouteSnapshot, msg); err != nil {
			r.log.Warn("snapshot push failed", "user", s.User, "err", err)
		}
	}
}

// changed republishes the room's listing.
func (r *Room) changed() {
	if !r.closed {
		r.host.dirty(r)
	}
}

// info is the room's listing; room goroutine only.
func (r *Room) info() RoomInfo {
	in := RoomInfo{
		ID: r.id, Type: r.typ.name, Node: r.host.node.id, Seats: len(r.seats), State: r.state,
		Private: r.private, Params: r.params, Meta: maps.Clone(r.meta), Created: r.created,
	}
	for _, s := range r.seats {
		if s.State == SeatEmpty {
			continue
		}
		if in.Users == nil {
			// Sized at once: grown by append, a table of five made four
			// slices a listing, and a table is listed twice a round.
			in.Users = make([]RoomUser, 0, len(r.seats))
		}
		in.Players++
		in.Users = append(in.Users, RoomUser{User: s.User, Session: s.session, Gate: s.gate})
	}
	return in
}

// call runs handler code, logging a panic instead of killing the node.
func (r *Room) call(fn func()) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("room handler panicked", "panic", p)
		}
	}()
	fn()
}

// guard is call for a request: a panic answers 500.
func (r *Room) guard(fn func() ([]byte, error)) (out []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("room handler panicked", "panic", p)
			err = fmt.Errorf("room handler panic: %v", p)
		}
	}()
	return fn()
}

// post queues fn for the room's goroutine. Player requests (client) count
// against the room's mailbox bound; the SDK's own messages (timers, session
// events) always get in, so a flood of requests cannot make a room miss
// its timers. The put that finds the room idle starts its turn on a node
// worker.
func (r *Room) post(client bool, fn func()) mailResult {
	res, start := r.mb.put(client, r.typ.cfg.Mailbox, fn)
	if start {
		r.host.node.work.run(r.turn)
	}
	return res
}

// drain is a room's turn: it runs the queued messages, and those that come
// in meanwhile, until the mailbox is empty. A room has no goroutine of its
// own: thousands of rooms that each allocated a little in a collection's
// mark made thousands of goroutines do at least 64 KB of marking each
// (docs/benchmarks.md § bots, session 28). One turn at a time (mailbox.busy)
// keeps the room single-threaded, and the mailbox's lock orders the turns.
func (r *Room) drain() {
	msgs := r.mb.take(nil)
	for len(msgs) > 0 {
		for i, fn := range msgs {
			fn()
			msgs[i] = nil
		}
		if r.closed {
			// Answer what slipped in before the mailbox shut: each message
			// sees r.closed.
			for _, fn := range r.mb.shut() {
				fn()
			}
			return
		}
		msgs = r.mb.take(msgs)
	}
}

// mailbox is a room's queue: any goroutine puts, the room's turn takes.
// mu guards every field.
type mailbox struct {
	mu      sync.Mutex
	q       []func()
	spare   []func() // the last turn's emptied queue, reused
	clients int      // player requests in q
	busy    bool     // a turn runs or is starting: the next put starts none
	isShut  bool
}

type mailResult int

const (
	mailOK   mailResult = iota
	mailFull            // too many player requests waiting
	mailShut            // the room has closed
)

// put queues fn; start says the room was idle and the caller must start
// its turn.
func (m *mailbox) put(client bool, limit int, fn func()) (res mailResult, start bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.isShut:
		return mailShut, false
	case client && m.clients >= limit:
		return mailFull, false
	}
	if client {
		m.clients++
	}
	m.q = append(m.q, fn)
	start = !m.busy
	m.busy = true
	return mailOK, start
}

// take returns the queued messages and keeps done (the turn's emptied
// batch) to be the next queue. With nothing queued the turn ends: take
// returns nil and the next put starts a new one.
func (m *mailbox) take(done []func()) []func() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if done != nil {
		m.spare = done[:0]
	}
	if len(m.q) == 0 {
		m.busy = false
		return nil
	}
	q := m.q
	m.q, m.spare = m.spare, nil
	m.clients = 0
	return q
}

// shut refuses every later put and returns what is still queued.
func (m *mailbox) shut() []func() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.isShut = true
	q := m.q
	m.q = nil
	return q
}
