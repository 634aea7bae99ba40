// Package match is hearth's built-in matchmaker (the seeds' locator): it
// seats players in rooms of the room types that room nodes serve.
//
//	match.join {"room_type", "params"?}   → Seat   an open room made with the same params, else a new one
//	match.create {"room_type", "params"?} → Seat   a new private room
//	match.join_by_id {"room_id"}          → Seat   that room, private or not
//	match.leave {"room_id"?}              → LeaveResp
//
// After a Seat answer the session's "<room_type>.*" requests reach the
// room's node, and the room pushes its snapshot on "<room_type>.snapshot".
//
// The service keeps no state of its own beyond a moment's cache: rooms,
// seats and room nodes are in the cluster's room registry (a KV bucket), so
// any instance answers and a restarted one carries on where it stopped.
// Which room or node a player goes to is a Policy: Pack (the default) or
// LeastLoaded.
package match

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/pb/matchpb"
)

// Policy chooses where players go. Both methods get only candidates that
// can take the player: open rooms of the type on serving, non-draining
// nodes; nodes that serve the type, are not draining and have headroom.
// The match service tries the answers in order until one seats the player.
type Policy interface {
	// Rooms orders the open rooms to try, best first; rooms left out are
	// not tried. nodes has the candidate rooms' nodes.
	Rooms(rooms []hearth.RoomInfo, nodes map[string]hearth.RoomNode) []hearth.RoomInfo
	// Nodes orders the nodes to create a room on, best first.
	Nodes(nodes []hearth.RoomNode) []hearth.RoomNode
}

// Pack fills the fullest open room anywhere (the oldest among equals), and
// opens a new room on the node with the most headroom.
type Pack struct{}

func (Pack) Rooms(rooms []hearth.RoomInfo, _ map[string]hearth.RoomNode) []hearth.RoomInfo {
	slices.SortStableFunc(rooms, func(a, b hearth.RoomInfo) int {
		return cmp.Or(cmp.Compare(b.Players, a.Players), a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
	})
	return rooms
}

func (Pack) Nodes(nodes []hearth.RoomNode) []hearth.RoomNode {
	slices.SortStableFunc(nodes, func(a, b hearth.RoomNode) int {
		return cmp.Or(cmp.Compare(b.Headroom(), a.Headroom()), cmp.Compare(a.Players, b.Players), cmp.Compare(a.ID, b.ID))
	})
	return nodes
}

// LeastLoaded spreads players over nodes: it fills the fullest open room
// of the node with the fewest players, and opens new rooms there.
type LeastLoaded struct{}

func (LeastLoaded) Rooms(rooms []hearth.RoomInfo, nodes map[string]hearth.RoomNode) []hearth.RoomInfo {
	slices.SortStableFunc(rooms, func(a, b hearth.RoomInfo) int {
		return cmp.Or(cmp.Compare(nodes[a.Node].Players, nodes[b.Node].Players),
			cmp.Compare(b.Players, a.Players), a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
	})
	return rooms
}

func (LeastLoaded) Nodes(nodes []hearth.RoomNode) []hearth.RoomNode {
	slices.SortStableFunc(nodes, func(a, b hearth.RoomNode) int {
		return cmp.Or(cmp.Compare(a.Players, b.Players), cmp.Compare(b.Headroom(), a.Headroom()), cmp.Compare(a.ID, b.ID))
	})
	return nodes
}

// Config configures the match service.
type Config struct {
	// Policy chooses rooms and nodes. Zero: Pack.
	Policy Policy
}

// maxTries bounds the rooms, then the nodes, one join tries: each try that
// fails lost a race for a seat or met a node going away.
const maxTries = 4

// maxSync bounds how long a join waits for its node's copy of the room
// registry to catch up before it opens a room.
const maxSync = time.Second

// recentTTL is how long the service trusts its own placements over the
// registry, which shows a change a moment later.
const recentTTL = 2 * time.Second

type service struct {
	node   *hearth.Node
	policy Policy

	// mu guards the maps below and is never held across a call to a room
	// node, so that placements run in parallel. Players joining at once
	// still fill one room rather than each opening their own: a placement
	// reserves its seat before it calls (pending), and while one opens a
	// room for a type and params the others wait for it (opening).
	mu      sync.Mutex
	recent  map[string]recentRoom // room id → what a placement here last saw
	pending map[string][]string   // room id → sessions whose join is in flight here
	opening map[string]*openings  // room type and params → rooms being opened here
	seats   map[string]int        // room type → seats per room, as last seen
}

// openings are the rooms being created for one room type and params. A
// join that finds no free seat waits for one that will have a seat for it;
// when none will, it opens another, so arrivals faster than one room at a
// time can be opened still find seats.
type openings struct {
	active []*opening
}

// opening is a room being created by one placement.
type opening struct {
	done    chan struct{} // closed when the creation ended, either way
	waiters int           // joins waiting for this room's seats
}

type recentRoom struct {
	info hearth.RoomInfo
	at   time.Time
}

func newService(p Policy) *service {
	return &service{policy: p, recent: map[string]recentRoom{}, pending: map[string][]string{}, opening: map[string]*openings{}, seats: map[string]int{}}
}

// New returns the match service.
func New(cfg Config) *hearth.Service {
	if cfg.Policy == nil {
		cfg.Policy = Pack{}
	}
	m := newService(cfg.Policy)
	svc := hearth.NewService("match")
	svc.OnStart(func(ctx context.Context, n *hearth.Node) error {
		m.node = n
		// Load the registry now, so the first join does not wait for it.
		_, err := n.RoomNodes(ctx)
		return err
	})
	hearth.Handle(svc, "join", m.join)
	hearth.Handle(svc, "create", m.create)
	hearth.Handle(svc, "join_by_id", func(ctx context.Context, s *hearth.Session, req *matchpb.JoinByIdReq) (*matchpb.Seat, error) {
		if req.RoomId == "" {
			return nil, hearth.NewError(hearth.CodeInvalidPayload, "room_id is required")
		}
		room, err := m.find(ctx, req.RoomId)
		if err != nil {
			return nil, err
		}
		seat, err := s.JoinRoom(ctx, room)
		if err != nil {
			return nil, err
		}
		m.remember(seat.Room)
		return seatResp(seat), nil
	})
	hearth.Handle(svc, "leave", m.leave)
	return svc
}

func seatResp(s hearth.RoomSeat) *matchpb.Seat {
	return &matchpb.Seat{RoomId: s.Room.ID, RoomType: s.Room.Type, Seat: uint32(s.Seat), Seats: uint32(s.Room.Seats), Players: uint32(s.Room.Players)}
}

// codeOf is err's application code, 0 if it has none.
func codeOf(err error) hearth.Code {
	var he *hearth.Error
	if errors.As(err, &he) {
		return he.Code
	}
	return 0
}

// retryable reports whether a failed placement should try the next
// candidate: the room filled, closed or went away, or its node is leaving.
func retryable(err error) bool {
	var he *hearth.Error
	if !errors.As(err, &he) {
		return false
	}
	switch he.Code {
	case hearth.CodeRoomFull, hearth.CodeRoomClosed, hearth.CodeRoomNotFound, hearth.CodeUnavailable, hearth.CodeNoRoomNode:
		return true
	}
	return false
}

func (m *service) join(ctx context.Context, s *hearth.Session, req *matchpb.JoinReq) (*matchpb.Seat, error) {
	if req.RoomType == "" {
		return nil, hearth.NewError(hearth.CodeInvalidPayload, "room_type is required")
	}
	if seat, ok, err := m.rejoin(ctx, s, req.RoomType); ok || err != nil {
		return seat, err
	}
	tried := map[string]bool{}
	synced := false
	for {
		rooms, nodes, err := m.candidates(ctx, req.RoomType)
		if err != nil {
			return nil, err
		}
		m.mu.Lock()
		room, ok := m.pickLocked(rooms, nodes, req.Params, tried)
		if ok {
			// Reserve the seat, so that joins running meanwhile count it.
			m.pending[room.ID] = append(m.pending[room.ID], s.ID())
			m.mu.Unlock()
			seat, err := s.JoinRoom(ctx, room)
			m.mu.Lock()
			m.unreserveLocked(room.ID, s.ID())
			if err == nil {
				m.rememberLocked(seat.Room)
				m.mu.Unlock()
				return seatResp(seat), nil
			}
			if ctx.Err() != nil {
				// This join's time ran out, not the room: keep it for the
				// next joins, and try no other room (nor open one) with no
				// time left to be answered.
				m.mu.Unlock()
				return nil, ctx.Err()
			}
			if codeOf(err) == hearth.CodeRoomFull {
				// Full, whatever a lagging registry says: the other joins
				// must not try it either.
				full := room
				full.Players = full.Seats
				m.rememberLocked(full)
			} else {
				m.forgetLocked(room.ID)
			}
			m.mu.Unlock()
			if !retryable(err) {
				return nil, err
			}
			tried[room.ID] = true
			continue
		}
		// No free seat in this instance's copy of the registry, which
		// shows another instance's placements a moment late: catch it up
		// once, so that players joining one after another fill one room
		// whichever instance answers each (and a player whose seat another
		// instance just gave goes back to it).
		if !synced && !m.alone() {
			m.mu.Unlock()
			synced = true
			sctx, cancel := context.WithTimeout(ctx, maxSync)
			err := m.node.SyncRooms(sctx)
			cancel()
			switch {
			case ctx.Err() != nil:
				return nil, ctx.Err()
			case err != nil:
				// A copy this far behind is a registry under strain: open
				// a room rather than fail the join (a second room at
				// worst, as without the sync).
				s.Logger().Warn("match: room registry copy not caught up; placing from it as it is", "room_type", req.RoomType, "err", err)
			}
			if seat, ok, err := m.rejoin(ctx, s, req.RoomType); ok || err != nil {
				return seat, err
			}
			continue
		}
		// Still none: wait for a room being opened for the same type and
		// params that will have one, or open one.
		key := openingKey(req.RoomType, req.Params)
		ops := m.opening[key]
		if ops == nil {
			ops = &openings{}
			m.opening[key] = ops
		}
		free := m.seatsLocked(req.RoomType) - 1 // a new room's seats beside its opener's
		if i := slices.IndexFunc(ops.active, func(o *opening) bool { return o.waiters < free }); i >= 0 {
			op := ops.active[i]
			op.waiters++
			m.mu.Unlock()
			select {
			case <-op.done:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		op := &opening{done: make(chan struct{})}
		ops.active = append(ops.active, op)
		m.mu.Unlock()
		seat, err := m.open(ctx, s, req.RoomType, false, req.Params, nodes)
		m.mu.Lock()
		ops.active = slices.DeleteFunc(ops.active, func(o *opening) bool { return o == op })
		if len(ops.active) == 0 {
			delete(m.opening, key)
		}
		close(op.done)
		m.mu.Unlock()
		return seat, err
	}
}

// alone reports whether this node runs the only live match instance. Its
// own placements (m.recent) are then all the placements there are, and
// its registry copy needs no sync before it opens a room: under load the
// copy's watch lags, and every join that found no seat waited for it.
func (m *service) alone() bool {
	for _, info := range m.node.Nodes() {
		if info.ID != m.node.ID() && slices.Contains(info.Routes, "match.join") {
			return false
		}
	}
	return true
}

// rejoin seats a player already seated in a room of roomType back in it:
// the answer to a join whose response was lost, or a new session's. ok is
// false when the player sits in none, or theirs went away.
func (m *service) rejoin(ctx context.Context, s *hearth.Session, roomType string) (*matchpb.Seat, bool, error) {
	cur, ok, err := m.seated(ctx, s, roomType)
	if err != nil || !ok {
		return nil, false, err
	}
	seat, err := s.JoinRoom(ctx, cur)
	switch {
	case err == nil:
		return seatResp(seat), true, nil
	case retryable(err):
		return nil, false, nil
	}
	return nil, false, err
}

// seatsLocked is how many seats a room of roomType has, as the last room
// seen of it said. Before any was seen it is unknown: one room is opened
// at a time until the first shows it. m.mu is held.
func (m *service) seatsLocked(roomType string) int {
	if n, ok := m.seats[roomType]; ok {
		return max(n, 2)
	}
	return math.MaxInt32
}

// pickLocked chooses the open room a join tries next: the policy's first
// among the rooms made with params, on serving, non-draining nodes, with
// a seat nobody here has reserved, that this join has not tried; m.mu is
// held. Reserved seats count as taken, also for the policy's order.
func (m *service) pickLocked(rooms []hearth.RoomInfo, nodes []hearth.RoomNode, params map[string]string, tried map[string]bool) (hearth.RoomInfo, bool) {
	if len(tried) >= maxTries {
		return hearth.RoomInfo{}, false
	}
	byID := make(map[string]hearth.RoomNode, len(nodes))
	for _, n := range nodes {
		byID[n.ID] = n
	}
	var open []hearth.RoomInfo
	for _, r := range rooms {
		r.Players += m.reservedLocked(r)
		if n, ok := byID[r.Node]; ok && !n.Draining && !tried[r.ID] && r.Open() && maps.Equal(r.Params, params) {
			open = append(open, r)
		}
	}
	if len(open) == 0 {
		return hearth.RoomInfo{}, false
	}
	best := m.policy.Rooms(open, byID)
	if len(best) == 0 {
		return hearth.RoomInfo{}, false
	}
	r := best[0]
	r.Players -= m.reservedLocked(r)
	return r, true
}

// reservedLocked counts the seats of r that joins in flight here have
// reserved and r does not list yet: a join the room has taken in shows in
// its listing before the join's reservation ends, and counting it twice
// made a room look full to the joins beside it, which then opened another.
// m.mu is held.
func (m *service) reservedLocked(r hearth.RoomInfo) int {
	n := 0
	for _, sid := range m.pending[r.ID] {
		if !slices.ContainsFunc(r.Users, func(u hearth.RoomUser) bool { return u.Session == sid }) {
			n++
		}
	}
	return n
}

// unreserveLocked ends session sid's reservation in room id; m.mu is held.
func (m *service) unreserveLocked(id, sid string) {
	ids := m.pending[id]
	if i := slices.Index(ids, sid); i >= 0 {
		ids = slices.Delete(ids, i, i+1)
	}
	if len(ids) == 0 {
		delete(m.pending, id)
		return
	}
	m.pending[id] = ids
}

// openingKey names the rooms a join would open: its type and params.
func openingKey(roomType string, params map[string]string) string {
	var b strings.Builder
	b.WriteString(roomType)
	for _, k := range slices.Sorted(maps.Keys(params)) {
		b.WriteString("\x00")
		b.WriteString(k)
		b.WriteString("\x00")
		b.WriteString(params[k])
	}
	return b.String()
}

func (m *service) create(ctx context.Context, s *hearth.Session, req *matchpb.JoinReq) (*matchpb.Seat, error) {
	if req.RoomType == "" {
		return nil, hearth.NewError(hearth.CodeInvalidPayload, "room_type is required")
	}
	if cur, ok, err := m.seated(ctx, s, req.RoomType); err != nil {
		return nil, err
	} else if ok {
		return nil, hearth.Errorf(hearth.CodeInRoom, "already seated in %s room %s: leave it first", req.RoomType, cur.ID)
	}
	_, nodes, err := m.candidates(ctx, req.RoomType)
	if err != nil {
		return nil, err
	}
	return m.open(ctx, s, req.RoomType, true, req.Params, nodes)
}

// open creates a room on the best node that takes one; m.mu is not held.
func (m *service) open(ctx context.Context, s *hearth.Session, roomType string, private bool, params map[string]string, nodes []hearth.RoomNode) (*matchpb.Seat, error) {
	var fit []hearth.RoomNode
	for _, n := range nodes {
		if !n.Draining && n.Headroom() > 0 {
			fit = append(fit, n)
		}
	}
	if len(fit) == 0 {
		return nil, hearth.Errorf(hearth.CodeNoRoomNode, "no room node can open a %s room now", roomType)
	}
	var last error
	for i, n := range m.policy.Nodes(fit) {
		if i == maxTries {
			break
		}
		seat, err := s.CreateRoom(ctx, n.ID, roomType, private, params)
		if err == nil {
			m.remember(seat.Room)
			return seatResp(seat), nil
		}
		if !retryable(err) {
			return nil, err
		}
		last = err
	}
	return nil, last
}

// candidates returns the open rooms of roomType (the registry's, overlaid
// with this instance's newer placements) and the live nodes serving it.
func (m *service) candidates(ctx context.Context, roomType string) ([]hearth.RoomInfo, []hearth.RoomNode, error) {
	all, err := m.node.RoomNodes(ctx)
	if err != nil {
		return nil, nil, err
	}
	var nodes []hearth.RoomNode
	for _, n := range all {
		if n.Serves(roomType) {
			nodes = append(nodes, n)
		}
	}
	if len(nodes) == 0 {
		return nil, nil, hearth.Errorf(hearth.CodeUnknownRoomType, "no room node serves %q", roomType)
	}
	rooms, err := m.node.OpenRooms(ctx, roomType)
	if err != nil {
		return nil, nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.overlayLocked(rooms, roomType, time.Now()), nodes, nil
}

// overlayLocked lays this instance's recent placements over rooms, the
// registry's open rooms of roomType: a room listed with fewer players than
// a placement here saw shows that placement's count, and an open room
// placed here that rooms lacks is added. Placements older than recentTTL
// are forgotten. m.mu is held.
func (m *service) overlayLocked(rooms []hearth.RoomInfo, roomType string, now time.Time) []hearth.RoomInfo {
	// seen holds only the registry's rooms that have a recent placement,
	// not every open room: a join at 20,000 bots would make a set of
	// thousands.
	seen := map[string]bool{}
	for i, r := range rooms {
		rec, ok := m.recent[r.ID]
		if !ok {
			continue
		}
		seen[r.ID] = true
		if now.Sub(rec.at) < recentTTL && rec.info.Players > r.Players {
			rooms[i] = rec.info
		}
	}
	for id, rec := range m.recent {
		switch {
		case now.Sub(rec.at) >= recentTTL:
			delete(m.recent, id)
		case !seen[id] && rec.info.Type == roomType && rec.info.Open():
			// A room placed here that the registry's open rooms do not
			// show yet. Not a full one: no join can take it, and every
			// join copied each room filled here in the last recentTTL (at
			// 20,000 Niu Niu bots the match service's largest garbage).
			rooms = append(rooms, rec.info)
		}
	}
	return rooms
}

// seated finds the room of roomType where the session's player sits: in
// this instance's placements, which the registry may not show yet, else in
// the registry.
func (m *service) seated(ctx context.Context, s *hearth.Session, roomType string) (hearth.RoomInfo, bool, error) {
	m.mu.Lock()
	for _, rec := range m.recent {
		if rec.info.Type == roomType && time.Since(rec.at) < recentTTL && s.SeatedIn(rec.info) {
			m.mu.Unlock()
			return rec.info, true, nil
		}
	}
	m.mu.Unlock()
	return s.RoomOf(ctx, roomType)
}

// find looks a room up: in this instance's placements, which the registry
// may not show yet, else in the registry.
func (m *service) find(ctx context.Context, id string) (hearth.RoomInfo, error) {
	m.mu.Lock()
	rec, ok := m.recent[id]
	m.mu.Unlock()
	if ok && time.Since(rec.at) < recentTTL {
		return rec.info, nil
	}
	room, ok, err := m.node.RoomByID(ctx, id)
	if err != nil {
		return hearth.RoomInfo{}, err
	}
	if !ok {
		return hearth.RoomInfo{}, hearth.Errorf(hearth.CodeRoomNotFound, "no room %q", id)
	}
	return room, nil
}

func (m *service) remember(info hearth.RoomInfo) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rememberLocked(info)
}

// rememberLocked records what a placement saw of a room. Placements into
// one room answer in any order, so a smaller count than the one recorded is
// an older view and does not replace it (a leave forgets the room instead).
func (m *service) rememberLocked(info hearth.RoomInfo) {
	m.seats[info.Type] = info.Seats
	if rec, ok := m.recent[info.ID]; ok && rec.info.Players > info.Players {
		info = rec.info
	}
	m.recent[info.ID] = recentRoom{info: info, at: time.Now()}
}

// forget drops this instance's view of a room after a change it did not
// see the result of (a leave): the registry is the better source then.
func (m *service) forget(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forgetLocked(id)
}

func (m *service) forgetLocked(id string) { delete(m.recent, id) }

func (m *service) leave(ctx context.Context, s *hearth.Session, req *matchpb.LeaveReq) (*matchpb.LeaveResp, error) {
	if req.RoomId != "" {
		room, err := m.find(ctx, req.RoomId)
		if err != nil {
			return nil, err
		}
		if err := s.LeaveRoom(ctx, room); err != nil {
			return nil, err
		}
		m.forget(room.ID)
		return &matchpb.LeaveResp{Left: 1}, nil
	}
	rooms, err := s.SeatedRooms(ctx)
	if err != nil {
		return nil, err
	}
	// Add the placements the registry may not show yet.
	m.mu.Lock()
	for _, rec := range m.recent {
		if time.Since(rec.at) < recentTTL && s.SeatedIn(rec.info) &&
			!slices.ContainsFunc(rooms, func(r hearth.RoomInfo) bool { return r.ID == rec.info.ID }) {
			rooms = append(rooms, rec.info)
		}
	}
	m.mu.Unlock()
	left := uint32(0)
	for _, r := range rooms {
		err := s.LeaveRoom(ctx, r)
		m.forget(r.ID)
		var he *hearth.Error
		if errors.As(err, &he) && (he.Code == hearth.CodeNotInRoom || he.Code == hearth.CodeRoomNotFound) {
			continue // gone already
		}
		if err != nil {
			return nil, err
		}
		left++
	}
	return &matchpb.LeaveResp{Left: left}, nil
}
