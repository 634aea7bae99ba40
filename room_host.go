package hearth

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-server/hearth/internal/cluster"
)

// roomHost is a node's share of the room SDK: the room types it serves,
// their rooms, the one timer heap for all of them, the writer of their
// registry entries and the control subject the match service reaches them
// on. It starts with the first room type a node starts.
type roomHost struct {
	dir roomDirectory // the cluster's rooms as seen from this node

	mu       sync.Mutex // guards every field below, and each RoomType's rooms and players
	node     *Node
	log      *slog.Logger
	timers   *timerQueue
	late     prometheus.Histogram // hearth_room_timer_lateness_seconds
	kv       jetstream.KeyValue
	types    map[string]*RoomType
	pending  map[string]*RoomInfo       // listings to write; nil removes the room
	waiters  map[string][]chan struct{} // pending listings someone waits for, closed once written
	writing  map[string]chan struct{}   // listings being written, closed once done
	nodeRec  bool                       // the node's record needs writing
	draining bool
	empty    chan struct{} // closed when the last room closes during a drain
	sub      *nats.Subscription
	wake     chan struct{} // cap 1: pending is not empty
	urgent   chan struct{} // cap 1: someone waits for a listing
	stop     chan struct{}
	done     chan struct{} // the writer has finished
}

func (n *Node) roomHost() *roomHost { return &n.rooms }

// attach starts rt on this node (and the host with the first type).
func (h *roomHost) attach(ctx context.Context, n *Node, rt *RoomType) error {
	if !rt.host.CompareAndSwap(nil, h) {
		return fmt.Errorf("hearth: room type %s already runs on another node: make one RoomType per node", rt.name)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.node == nil {
		kv, err := openRoomsKV(ctx, n)
		if err != nil {
			return err
		}
		h.node, h.kv, h.log = n, kv, n.log.With("part", "rooms")
		h.types = map[string]*RoomType{}
		h.pending = map[string]*RoomInfo{}
		h.waiters = map[string][]chan struct{}{}
		h.writing = map[string]chan struct{}{}
		h.timers = newTimerQueue()
		h.late = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hearth_room_timer_lateness_seconds",
			Help:    "How late room timers (After, Every, the tick) run their handler: from the deadline to the call, on the room's goroutine.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		})
		if err := n.metrics.Register(h.late); err != nil {
			return fmt.Errorf("hearth: room metrics: %w", err)
		}
		h.wake = make(chan struct{}, 1)
		h.urgent = make(chan struct{}, 1)
		h.stop = make(chan struct{})
		h.done = make(chan struct{})
		h.sub, err = n.bus.Conn().Subscribe(roomCtlSubject(n, n.id), h.control)
		if err != nil {
			return fmt.Errorf("hearth: subscribe room control: %w", err)
		}
		// The node's record below goes on the JetStream connection: a match
		// instance that reads it may ask this subject at once, so the
		// server must have the subscription first.
		if err := n.bus.Conn().FlushTimeout(5 * time.Second); err != nil {
			return fmt.Errorf("hearth: subscribe room control: %w", err)
		}
		go h.timers.run()
		go h.write()
		// A room node keeps a registry copy too, so that it reports the
		// rooms of a room node that dies even where no match service runs.
		d, err := n.directory(ctx)
		if err != nil {
			return err
		}
		// Rooms listed under this node id belong to an earlier process
		// with the same id that died: they are gone.
		d.reapRooms(ctx, n, n.id, false)
	}
	h.types[rt.name] = rt
	// Written before the type takes requests, and into this node's copy at
	// once, so the match service knows the node as soon as it can serve.
	rec := h.nodeRecord()
	rev, err := h.kv.Put(ctx, nodeKey(n.id), rec)
	if err != nil {
		return fmt.Errorf("hearth: register room node: %w", err)
	}
	h.dir.applyEntry(h.log, nodeKey(n.id), rec, rev, false)
	return nil
}

// nodeRecord is the node's entry in the room registry; h.mu is held.
func (h *roomHost) nodeRecord() []byte {
	rec := nodeRecord{ID: h.node.id, Draining: h.draining, Capacity: map[string]int{}}
	for name, rt := range h.types {
		rec.Capacity[name] = rt.cfg.MaxRooms
	}
	b, _ := json.Marshal(rec)
	return b
}

func openRoomsKV(ctx context.Context, n *Node) (jetstream.KeyValue, error) {
	kv, err := n.bus.OpenKV(ctx, "rooms", 0)
	if err != nil {
		return nil, fmt.Errorf("hearth: open the room registry: %w", err)
	}
	return kv, nil
}

func roomCtlSubject(n *Node, node string) string {
	return n.bus.Subjects().Prefix + ".roomctl." + node
}

func (h *roomHost) signal() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// urge tells the writer a listing is waited for.
func (h *roomHost) urge() {
	select {
	case h.urgent <- struct{}{}:
	default:
	}
}

// dirty queues r's listing for the registry; room goroutine only.
func (h *roomHost) dirty(r *Room) {
	info := r.info()
	h.mu.Lock()
	h.pending[r.id] = &info
	h.mu.Unlock()
	h.signal()
}

// closed forgets r; room goroutine only.
func (h *roomHost) closed(r *Room) {
	h.mu.Lock()
	delete(r.typ.rooms, r.id)
	h.pending[r.id] = nil
	if h.empty != nil && h.roomCount() == 0 {
		close(h.empty)
		h.empty = nil
	}
	h.mu.Unlock()
	h.signal()
}

// restore lists again what another node deleted from the registry while
// this node still runs it: a node too busy to refresh its cluster entry in
// time looks dead to the others, which reap its record and rooms; once it
// is heard again it must not stay hidden from the match service. Deletes
// this node made itself (a closed room, a drain) find nothing to restore.
func (h *roomHost) restore(key string) {
	h.mu.Lock()
	if h.node == nil || h.draining {
		h.mu.Unlock()
		return
	}
	var r *Room
	restored := false
	switch {
	case key == nodeKey(h.node.id):
		h.nodeRec, restored = true, true
	case len(key) > 2 && key[:2] == "r.":
		// A listing already queued (a write, or this node's own removal)
		// settles it.
		_, queued := h.pending[key[2:]]
		if _, inFlight := h.writing[key[2:]]; !queued && !inFlight {
			for _, rt := range h.types {
				if r = rt.rooms[key[2:]]; r != nil {
					restored = true
					break
				}
			}
		}
	}
	h.mu.Unlock()
	if r != nil {
		r.post(false, r.changed)
	}
	if restored {
		h.log.Warn("registry entry of this live node was deleted by another node; writing it again", "key", key)
		h.signal()
	}
}

// roomCount counts the node's rooms; h.mu is held.
func (h *roomHost) roomCount() int {
	total := 0
	for _, rt := range h.types {
		total += len(rt.rooms)
	}
	return total
}

// write is the registry writer's goroutine. Each pass writes every listing
// pending when it began, once, up to writers at a time, then pauses
// flushInterval, so that a busy room's changes coalesce. A listing someone
// waits for (awaitRoom: a seat being acknowledged) goes first, also in the
// middle of a pass and during the pause: a join waits for its own room's
// write, never for a backlog of other rooms' (thousands of tables changing
// phase at once under load).
func (h *roomHost) write() {
	defer close(h.done)
	const flushInterval = 50 * time.Millisecond
	sem := make(chan struct{}, registryWriters)
	var wg sync.WaitGroup
	defer wg.Wait()
	pause := time.NewTimer(flushInterval)
	defer pause.Stop()
	for {
		select {
		case <-h.wake:
		case <-h.urgent:
		case <-h.stop:
			h.last(sem, &wg)
			return
		}
		h.pass(sem, &wg)
		pause.Reset(flushInterval)
	paused:
		for {
			select {
			case <-pause.C:
				break paused
			case <-h.urgent:
				h.writeWaited(sem, &wg)
			case <-h.stop:
				h.last(sem, &wg)
				return
			}
		}
	}
}

// registryWriters bounds the registry writes in flight: each is a round
// trip to the stream.
const registryWriters = 16

// pass writes the node record if it changed, then the listings pending now,
// waited ones first.
func (h *roomHost) pass(sem chan struct{}, wg *sync.WaitGroup) {
	h.mu.Lock()
	var rec []byte
	if h.nodeRec {
		h.nodeRec = false
		rec = h.nodeRecord()
	}
	ids := make([]string, 0, len(h.pending))
	for id := range h.pending {
		ids = append(ids, id)
	}
	h.mu.Unlock()
	if rec != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := h.kv.Put(ctx, nodeKey(h.node.id), rec); err != nil {
			h.log.Warn("room node record not written", "err", err)
		}
		cancel()
	}
	for _, id := range ids {
		h.writeWaited(sem, wg)
		sem <- struct{}{}
		if !h.start(id, wg, sem) {
			<-sem
		}
	}
	h.writeWaited(sem, wg)
}

// last writes everything still pending, also what changed while its
// previous write was in flight (a closed room's removal).
func (h *roomHost) last(sem chan struct{}, wg *sync.WaitGroup) {
	for {
		h.pass(sem, wg)
		wg.Wait()
		h.mu.Lock()
		n := len(h.pending)
		h.mu.Unlock()
		if n == 0 {
			return
		}
	}
}

// writeWaited starts the writes of the pending listings someone waits for.
func (h *roomHost) writeWaited(sem chan struct{}, wg *sync.WaitGroup) {
	for {
		h.mu.Lock()
		var next string
		for id := range h.waiters {
			if _, busy := h.writing[id]; !busy {
				next = id
				break
			}
		}
		h.mu.Unlock()
		if next == "" {
			return
		}
		sem <- struct{}{}
		if !h.start(next, wg, sem) {
			<-sem
			return
		}
	}
}

// start writes room id's pending listing on one of the node's workers
// (which keep the stack a write grows, where a fresh goroutine grew one
// for each) holding a slot of sem, unless it is no longer pending or its
// previous write is still in flight (two writes of one key at once could
// land in either order).
func (h *roomHost) start(id string, wg *sync.WaitGroup, sem chan struct{}) bool {
	h.mu.Lock()
	info, pending := h.pending[id]
	_, busy := h.writing[id]
	if !pending || busy {
		h.mu.Unlock()
		return false
	}
	delete(h.pending, id)
	waiters := h.waiters[id]
	delete(h.waiters, id)
	flight := make(chan struct{})
	h.writing[id] = flight
	h.mu.Unlock()
	wg.Add(1)
	h.node.work.run(func() {
		defer func() { <-sem; wg.Done() }()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var err error
		if info == nil {
			err = h.kv.Delete(ctx, roomKey(id))
		} else {
			b, _ := json.Marshal(info)
			_, err = h.kv.Put(ctx, roomKey(id), b)
		}
		cancel()
		if err != nil {
			h.log.Warn("room registry entry not written", "room", id, "err", err)
		}
		h.mu.Lock()
		delete(h.writing, id)
		_, again := h.waiters[id] // changed and waited for again meanwhile
		h.mu.Unlock()
		close(flight)
		for _, ch := range waiters {
			close(ch)
		}
		if again {
			h.urge()
		}
	})
	return true
}

// awaitRoom waits until room id's listing as it is now is in the registry,
// so that a player told of a seat is also in the registry's list of the
// room's players (whom a lost node's rooms are reported to). The room's
// goroutine has queued the listing (dirty) before this is called.
func (h *roomHost) awaitRoom(ctx context.Context, id string) {
	h.mu.Lock()
	var ch chan struct{}
	if _, pending := h.pending[id]; pending {
		ch = make(chan struct{})
		h.waiters[id] = append(h.waiters[id], ch)
	} else {
		ch = h.writing[id] // nil: written already
	}
	h.mu.Unlock()
	if ch == nil {
		return
	}
	h.urge()
	select {
	case <-ch:
	case <-ctx.Done():
	case <-h.done:
	}
}

// roomCtl is a request to a room node from another node's service (the
// match service): JSON on <prefix>.roomctl.<node>, answered by roomCtlResp.
type roomCtl struct {
	Op      string            `json:"op"` // "create", "join" or "leave"
	Type    string            `json:"type,omitempty"`
	Room    string            `json:"room,omitempty"`
	Params  map[string]string `json:"params,omitempty"`
	Private bool              `json:"private,omitempty"`
	Session ctlSession        `json:"session"`
}

// ctlSession is the session a control request acts for.
type ctlSession struct {
	ID    string        `json:"id"`
	Gate  string        `json:"gate"`
	User  string        `json:"user,omitempty"`
	Codec cluster.Codec `json:"codec,omitempty"`
}

type roomCtlResp struct {
	Code    Code     `json:"code,omitempty"`
	Message string   `json:"message,omitempty"`
	Room    RoomInfo `json:"room"`
	Seat    int      `json:"seat"`
}

var (
	errBadControl = errors.New("hearth: bad room control request")
	errRoomType   = errors.New("hearth: room type misconfigured")
)

// decodeRoomCtl parses and checks a control request.
func decodeRoomCtl(b []byte) (roomCtl, error) {
	var c roomCtl
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%w: %w", errBadControl, err)
	}
	switch {
	case c.Op != "create" && c.Op != "join" && c.Op != "leave":
		return c, fmt.Errorf("%w: op %q", errBadControl, c.Op)
	case c.Session.ID == "" || cluster.ValidateNodeID(c.Session.Gate) != nil:
		return c, fmt.Errorf("%w: no session", errBadControl)
	case c.Op == "create" && c.Type == "":
		return c, fmt.Errorf("%w: create without a type", errBadControl)
	case c.Op != "create" && c.Room == "":
		return c, fmt.Errorf("%w: %s without a room", errBadControl, c.Op)
	}
	return c, nil
}

// control serves one control request on one of the node's workers, off
// the bus's delivery goroutine.
func (h *roomHost) control(m *nats.Msg) {
	h.node.work.run(func() {
		resp := h.serveControl(m.Data)
		b, _ := json.Marshal(resp)
		if err := m.Respond(b); err != nil {
			h.log.Warn("room control answer not sent", "err", err)
		}
	})
}

func (h *roomHost) serveControl(data []byte) roomCtlResp {
	c, err := decodeRoomCtl(data)
	if err != nil {
		h.log.Warn("room control refused", "err", err)
		return roomCtlResp{Code: CodeInvalidPayload, Message: err.Error()}
	}
	var seat int
	var info RoomInfo
	switch c.Op {
	case "create":
		info, seat, err = h.create(c)
	case "join":
		info, seat, err = h.join(c)
	case "leave":
		err = h.leave(c)
	}
	if err == nil && c.Op != "leave" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		h.awaitRoom(ctx, info.ID)
		cancel()
	}
	if err != nil {
		var we *Error
		if !errors.As(err, &we) {
			h.log.Error("room control failed", "op", c.Op, "err", err)
			we = NewError(CodeInternal, "internal error")
		}
		return roomCtlResp{Code: we.Code, Message: we.Message}
	}
	return roomCtlResp{Room: info, Seat: seat}
}

// newRoomID makes a cluster-wide room id: 12 random base-32 characters,
// which says nothing about the node.
func newRoomID() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
	var b [12]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[b[i]&31]
	}
	return string(b[:])
}

// create makes a room and seats c.Session's player in it, if any.
func (h *roomHost) create(c roomCtl) (RoomInfo, int, error) {
	h.mu.Lock()
	rt := h.types[c.Type]
	switch {
	case rt == nil:
		h.mu.Unlock()
		return RoomInfo{}, 0, Errorf(CodeUnknownRoomType, "no room type %q on this node", c.Type)
	case h.draining:
		h.mu.Unlock()
		return RoomInfo{}, 0, NewError(CodeUnavailable, "room node draining")
	case len(rt.rooms) >= rt.cfg.MaxRooms:
		h.mu.Unlock()
		return RoomInfo{}, 0, NewError(CodeNoRoomNode, "room node full")
	}
	handler := rt.newHandler()
	if _, ok := handler.(RoomTicker); rt.cfg.Tick > 0 && !ok {
		h.mu.Unlock()
		return RoomInfo{}, 0, fmt.Errorf("%w: room type %s has a Tick but its handler no Tick method", errRoomType, rt.name)
	}
	r := h.newRoom(rt, handler, c.Private, c.Params)
	h.mu.Unlock()
	var (
		info RoomInfo
		seat int
		err  error
	)
	done := make(chan struct{})
	r.post(false, func() {
		defer close(done)
		r.call(func() { err = r.handler.Create(r, maps.Clone(c.Params)) })
		if err != nil {
			r.Close("create refused")
			return
		}
		if rt.cfg.Tick > 0 {
			r.lastTick = time.Now()
			r.startTimer(rt.cfg.Tick, rt.cfg.Tick, "tick", true)
		}
		if c.Session.ID != "" {
			seat, err = r.join(c.Session)
			if err != nil && !r.closed && r.Players() == 0 && !rt.cfg.KeepEmpty {
				r.Close("empty")
			}
		} else {
			r.changed() // a room the server made: listed with no players
		}
		info = r.info()
	})
	<-done
	if err != nil {
		return RoomInfo{}, 0, err
	}
	return info, seat, nil
}

// newRoom registers a room of rt; h.mu is held.
func (h *roomHost) newRoom(rt *RoomType, handler RoomHandler, private bool, params map[string]string) *Room {
	ctx, cancel := context.WithCancel(h.node.baseCtx)
	r := &Room{
		id: newRoomID(), typ: rt, host: h, handler: handler,
		ctx: ctx, cancel: cancel,
		params: maps.Clone(params), private: private,
		created: time.Now().UTC(), timers: map[*Timer]struct{}{}, draining: h.draining,
	}
	r.turn = func() {
		r.drain()
		h.node.handleGateInbox()
	}
	r.log = h.log.With("room", r.id, "room_type", rt.name)
	// The seats in one allocation: an object less to mark per seat, for a
	// node holding thousands of tables.
	seats := make([]Seat, rt.cfg.Seats)
	r.seats = make([]*Seat, len(seats))
	for i := range seats {
		seats[i].Index = i
		r.seats[i] = &seats[i]
	}
	rt.rooms[r.id] = r
	return r
}

// room finds a live room by id.
func (h *roomHost) room(id string) *Room {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, rt := range h.types {
		if r := rt.rooms[id]; r != nil {
			return r
		}
	}
	return nil
}

// onRoom runs fn on room id's goroutine and waits for it.
func (h *roomHost) onRoom(id string, fn func(r *Room)) error {
	r := h.room(id)
	if r == nil {
		return Errorf(CodeRoomNotFound, "no room %s", id)
	}
	done := make(chan struct{})
	ran := false
	if r.post(false, func() {
		defer close(done)
		if !r.closed {
			ran = true
			fn(r)
		}
	}) != mailOK {
		return NewError(CodeRoomClosed, "room closed")
	}
	<-done
	if !ran {
		return NewError(CodeRoomClosed, "room closed")
	}
	return nil
}

// join seats c.Session's player in room c.Room; a player who already sits
// in another room of the type on this node is answered with that seat
// instead (one room per type and player: the answer says which).
func (h *roomHost) join(c roomCtl) (info RoomInfo, seat int, err error) {
	if r := h.room(c.Room); r != nil {
		h.mu.Lock()
		if cur := r.typ.players[seatKey(c.Session.User, c.Session.ID)]; cur != nil {
			c.Room = cur.id
		}
		h.mu.Unlock()
	}
	rerr := h.onRoom(c.Room, func(r *Room) {
		seat, err = r.join(c.Session)
		info = r.info()
	})
	if rerr != nil {
		return RoomInfo{}, 0, rerr
	}
	return info, seat, err
}

func (h *roomHost) leave(c roomCtl) error {
	var err error
	rerr := h.onRoom(c.Room, func(r *Room) {
		s := r.seatOf(seatKey(c.Session.User, c.Session.ID))
		if s == nil {
			err = Errorf(CodeNotInRoom, "not seated in room %s", r.id)
			return
		}
		err = r.unseat(s, LeaveRequested)
	})
	if rerr != nil {
		return rerr
	}
	return err
}

// join seats the session's player: back in its own seat when it has one
// (a rejoin, maybe from a new session), else in the first free seat if the
// handler admits it. Room goroutine only.
func (r *Room) join(cs ctlSession) (int, error) {
	key := seatKey(cs.User, cs.ID)
	if s := r.seatOf(key); s != nil {
		r.follow(s, cs.ID, cs.Gate, cs.Codec)
		r.bind(s)
		r.pushSnapshot(s)
		return s.Index, nil
	}
	if r.draining {
		return 0, NewError(CodeUnavailable, "room node draining")
	}
	h := r.host
	h.mu.Lock()
	other := r.typ.players[key]
	h.mu.Unlock()
	if other != nil && other != r {
		return 0, Errorf(CodeInRoom, "already seated in %s room %s", r.typ.name, other.id)
	}
	i := slices.IndexFunc(r.seats, func(s *Seat) bool { return s.State == SeatEmpty })
	if i < 0 {
		return 0, NewError(CodeRoomFull, "room full")
	}
	s := r.seats[i]
	s.User, s.State, s.session, s.gate, s.codec = key, SeatOnline, cs.ID, cs.Gate, cs.Codec
	var err error
	r.call(func() { err = r.handler.Join(r, s) })
	if err != nil {
		*s = Seat{Index: s.Index}
		return 0, err
	}
	h.mu.Lock()
	r.typ.players[key] = r
	h.mu.Unlock()
	r.bind(s)
	r.changed()
	r.pushSnapshot(s)
	return s.Index, nil
}

// bind routes the seat's session's "<type>.*" requests to this node.
func (r *Room) bind(s *Seat) {
	if err := r.host.node.bus.Bind(s.gate, s.session, r.typ.name, r.host.node.id); err != nil {
		r.log.Warn("bind failed", "user", s.User, "err", err)
	}
}

// drain ends the node's rooms before it stops: no new rooms or players,
// each handler's Drain, then Close for the rooms still open at the drain
// deadline.
func (h *roomHost) drain(ctx context.Context) {
	h.mu.Lock()
	if h.node == nil {
		h.mu.Unlock()
		h.dir.close()
		return
	}
	h.draining = true
	h.nodeRec = true
	var rooms []*Room
	for _, rt := range h.types {
		for _, r := range rt.rooms {
			rooms = append(rooms, r)
		}
	}
	empty := make(chan struct{})
	if len(rooms) == 0 {
		close(empty)
	} else {
		h.empty = empty
	}
	timeout := h.node.cfg.DrainTimeout
	h.mu.Unlock()
	h.signal()
	if len(rooms) > 0 {
		h.log.Info("draining rooms", "rooms", len(rooms), "deadline", timeout)
	}
	for _, r := range rooms {
		r.post(false, func() {
			if !r.closed {
				r.draining = true
				r.call(func() { r.handler.Drain(r) })
			}
		})
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	select {
	case <-empty:
	case <-dctx.Done():
		h.log.Warn("drain deadline: closing the rooms left")
		for _, r := range rooms {
			r.post(false, func() { r.Close("drain") })
		}
		select {
		case <-empty:
		case <-ctx.Done():
		}
	}
	h.sub.Unsubscribe()
	close(h.stop)
	<-h.done
	h.timers.close()
	dctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if err := h.kv.Delete(dctx2, nodeKey(h.node.id)); err != nil {
		h.log.Warn("room node record not removed", "err", err)
	}
	h.dir.close()
}
