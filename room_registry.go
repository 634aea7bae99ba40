package hearth

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unique"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/pb/roompb"
)

// The room registry is the KV bucket "<prefix>_rooms": "r.<room id>" holds
// a RoomInfo (JSON), written by the hosting node a moment after each
// change; "n.<node id>" holds a nodeRecord for each room node. Any node can
// read it through Node.Rooms and Node.RoomNodes, which keep a watched copy.

// RoomInfo is a room's entry in the cluster's room registry.
type RoomInfo struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Node    string `json:"node"`
	Seats   int    `json:"seats"`
	Players int    `json:"players"`
	State   string `json:"state,omitempty"`
	Private bool   `json:"private,omitempty"`
	// Params are the room's creation parameters (match.join/create
	// "params"): match.join fills only rooms made with the same ones.
	Params  map[string]string `json:"params,omitempty"`
	Meta    map[string]string `json:"meta,omitempty"`
	Users   []RoomUser        `json:"users,omitempty"`
	Created time.Time         `json:"created"`
}

// Open reports whether match.join may seat a player in the room: public
// and with a free seat.
func (ri RoomInfo) Open() bool { return !ri.Private && ri.Players < ri.Seats }

// RoomUser is a seated player as the registry knows it, so that players
// can be told when their room's node is lost.
type RoomUser struct {
	User    string `json:"user"`
	Session string `json:"session"`
	Gate    string `json:"gate"`
}

// RoomNode is a node that hosts rooms, as the match service sees it.
type RoomNode struct {
	ID string
	// Types are the room types it serves.
	Types []string
	// Rooms and Players count its rooms of every type.
	Rooms   int
	Players int
	// Capacity is the most rooms it takes (the sum of its types' MaxRooms).
	Capacity int
	// Draining nodes take no new rooms or players.
	Draining bool
}

// Headroom is how many more rooms the node takes.
func (rn RoomNode) Headroom() int { return rn.Capacity - rn.Rooms }

// Serves reports whether the node runs rooms of roomType.
func (rn RoomNode) Serves(roomType string) bool { return slices.Contains(rn.Types, roomType) }

type nodeRecord struct {
	ID       string         `json:"id"`
	Draining bool           `json:"draining,omitempty"`
	Capacity map[string]int `json:"capacity"`
}

func roomKey(id string) string   { return "r." + id }
func nodeKey(node string) string { return "n." + node }

// roomDirectory is a node's watched copy of the room registry, opened on
// first use. It also reaps the entries of room nodes that died.
type roomDirectory struct {
	once    sync.Once
	openErr error
	ready   chan struct{} // closed when the initial values are in

	mu    sync.Mutex // guards everything below
	kv    jetstream.KeyValue
	rooms map[string]dirRoom
	nodes map[string]dirNode
	// byUser holds, by user, the rooms the user sits in (one a type):
	// RoomOf and SeatedRooms look one user up rather than every seat.
	byUser map[string]userSeats
	// open holds, by type, the ids of the public rooms with a free seat:
	// what a join looks at, a few among thousands of full tables.
	openByType map[string]map[string]struct{}
	// load tallies the rooms and players in rooms by the node hosting
	// them, kept as entries come and go: RoomNodes runs on every
	// match.join, and counting thousands of rooms each time made joins
	// cost more the more tables there were.
	load    map[string]nodeLoad
	reaping map[string]bool
	// rev is the stream sequence of the last change the watch delivered;
	// synced holds the SyncRooms calls waiting for it to reach theirs.
	rev    uint64
	synced []revWait
	stop   context.CancelFunc
	done   chan struct{}
}

// revWait is a SyncRooms call waiting until the watch delivered rev.
type revWait struct {
	rev  uint64
	done chan struct{}
}

type dirRoom struct {
	info RoomInfo
	rev  uint64
}

// seatRef is a room a user sits in, and its type.
type seatRef struct{ typ, room string }

// userSeats are the rooms one user sits in, one a type: nearly always a
// single one, kept in first without an allocation. A room id is never
// empty (applyEntry), so an empty first.room is no room.
type userSeats struct {
	first seatRef
	more  *[]seatRef // rarely set: a map slot stays small
}

// room returns the user's room of type typ.
func (u *userSeats) room(typ string) (string, bool) {
	if u.first.room != "" && u.first.typ == typ {
		return u.first.room, true
	}
	if u.more != nil {
		for _, s := range *u.more {
			if s.typ == typ {
				return s.room, true
			}
		}
	}
	return "", false
}

// set makes room the user's room of type typ.
func (u *userSeats) set(typ, room string) {
	if u.first.room == "" || u.first.typ == typ {
		u.first = seatRef{typ, room}
		return
	}
	if u.more == nil {
		u.more = new([]seatRef)
	}
	for i, s := range *u.more {
		if s.typ == typ {
			(*u.more)[i].room = room
			return
		}
	}
	*u.more = append(*u.more, seatRef{typ, room})
}

// drop removes the user's room of type typ if it is room, and reports
// whether the user sits nowhere now.
func (u *userSeats) drop(typ, room string) (empty bool) {
	ref := seatRef{typ, room}
	var more []seatRef
	if u.more != nil {
		more = *u.more
	}
	switch i := slices.Index(more, ref); {
	case u.first == ref:
		u.first = seatRef{}
		if n := len(more); n > 0 {
			u.first, more[n-1] = more[n-1], seatRef{}
			more = more[:n-1]
		}
	case i >= 0:
		more = slices.Delete(more, i, i+1)
	}
	if len(more) == 0 {
		u.more = nil
	} else {
		*u.more = more
	}
	return u.first.room == ""
}

// all lists the user's rooms.
func (u *userSeats) all() []seatRef {
	if u.first.room == "" {
		return nil
	}
	out := []seatRef{u.first}
	if u.more != nil {
		out = append(out, *u.more...)
	}
	return out
}

// intern returns the canonical copy of s: the strings listings repeat
// from room to room (types, nodes, states, gates) are then one string
// each, not one per listing for the collector to mark. unique holds them
// weakly, so values no longer used are let go.
func intern(s string) string { return unique.Make(s).Value() }

type dirNode struct {
	rec nodeRecord
	rev uint64
}

// init makes the directory's maps; d.mu is held or d not yet shared.
func (d *roomDirectory) init() {
	d.rooms, d.nodes, d.byUser = map[string]dirRoom{}, map[string]dirNode{}, map[string]userSeats{}
	d.openByType, d.load = map[string]map[string]struct{}{}, map[string]nodeLoad{}
}

// nodeLoad is what a node hosts, by the registry.
type nodeLoad struct{ rooms, players int }

// tally adds (sign 1) or removes (sign -1) a room's share of its node's
// load; d.mu is held.
func (d *roomDirectory) tally(info RoomInfo, sign int) {
	l := d.load[info.Node]
	l.rooms += sign
	l.players += sign * info.Players
	if l.rooms == 0 {
		delete(d.load, info.Node)
		return
	}
	d.load[info.Node] = l
}

// directory opens the node's room directory, waiting for its initial sync.
func (n *Node) directory(ctx context.Context) (*roomDirectory, error) {
	if n.bus == nil {
		return nil, ErrNotRunning
	}
	d := &n.rooms.dir
	d.once.Do(func() { d.openErr = d.open(n) })
	if d.openErr != nil {
		return nil, d.openErr
	}
	select {
	case <-d.ready:
		return d, nil
	case <-ctx.Done():
		select {
		case <-d.ready: // both were ready: the registry is not the one late
			return d, nil
		default:
		}
		return nil, fmt.Errorf("hearth: room registry not loaded: %w", ctx.Err())
	}
}

func (d *roomDirectory) open(n *Node) error {
	ctx, cancel := context.WithCancel(n.baseCtx)
	kv, err := openRoomsKV(ctx, n)
	if err != nil {
		cancel()
		return err
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		cancel()
		return fmt.Errorf("hearth: watch the room registry: %w", err)
	}
	d.mu.Lock()
	d.kv, d.stop = kv, cancel
	d.init()
	d.reaping = map[string]bool{}
	d.ready, d.done = make(chan struct{}), make(chan struct{})
	d.mu.Unlock()
	unwatch := n.reg.Watch(func(ev cluster.RegistryEvent) {
		if ev.Kind == cluster.NodeLeft {
			d.sweep(n)
		}
	})
	go func() {
		defer close(d.done)
		defer unwatch()
		sweep := time.NewTicker(500 * time.Millisecond)
		defer sweep.Stop()
		// ahead holds the revisions backfill applied ahead of the watch.
		var ahead cluster.Ahead
		for {
			select {
			case <-ctx.Done():
				_ = w.Stop()
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					ahead = d.backfill(ctx, n, kv)
					close(d.ready)
					continue
				}
				if ahead.Stale(e) {
					d.advance(e.Revision())
					continue
				}
				d.apply(n, e)
			case <-sweep.C:
				d.sweep(n)
			}
		}
	}()
	return nil
}

// backfill applies the entries of the registry that the watch has not
// delivered although it says it has (see cluster.Bus.KVKeys): a room or
// node rewritten while the watch started. The directory is ready only
// after it, so a lookup right after a node starts finds every room already
// listed. It runs on the watch's goroutine and returns the revisions it
// applied.
func (d *roomDirectory) backfill(ctx context.Context, n *Node, kv jetstream.KeyValue) cluster.Ahead {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	known := func(key string) bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		var ok bool
		switch {
		case strings.HasPrefix(key, "r."):
			_, ok = d.rooms[key[2:]]
		case strings.HasPrefix(key, "n."):
			_, ok = d.nodes[key[2:]]
		default:
			ok = true // not the directory's
		}
		return ok
	}
	apply := func(e jetstream.KeyValueEntry) { d.applyEntry(n.log, e.Key(), e.Value(), e.Revision(), false) }
	ahead, err := n.bus.KVBackfill(ctx, kv, known, apply)
	if err != nil {
		n.log.Warn("room registry: list its keys", "err", err)
	}
	return ahead
}

// close stops the watch, if the directory was ever opened.
func (d *roomDirectory) close() {
	d.mu.Lock()
	stop, done := d.stop, d.done
	d.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

func (d *roomDirectory) apply(n *Node, e jetstream.KeyValueEntry) {
	del := e.Operation() != jetstream.KeyValuePut
	d.applyEntry(n.log, e.Key(), e.Value(), e.Revision(), del)
	d.advance(e.Revision())
	if del {
		// Not on this goroutine: attach holds the host's lock while it
		// waits for this directory's first values.
		go n.rooms.restore(e.Key())
	}
}

// advance records that the watch delivered the change at stream sequence
// rev, and releases the SyncRooms calls waiting for it.
func (d *roomDirectory) advance(rev uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if rev <= d.rev {
		return
	}
	d.rev = rev
	d.synced = slices.DeleteFunc(d.synced, func(w revWait) bool {
		if w.rev <= rev {
			close(w.done)
			return true
		}
		return false
	})
}

// SyncRooms waits until this node's copy of the room registry holds every
// change written to the registry before the call. Another node's change
// reaches the copy a moment after it was written: a player seated by one
// match instance can ask the next instance for a seat before that instance
// sees the room. A matchmaker about to open a room calls it first, so that
// joins one after another fill one room whichever instance answers them.
// It costs a round trip to the registry's stream.
func (n *Node) SyncRooms(ctx context.Context) error {
	d, err := n.directory(ctx)
	if err != nil {
		return err
	}
	d.mu.Lock()
	kv := d.kv
	d.mu.Unlock()
	st, err := kv.Status(ctx)
	if err != nil {
		return fmt.Errorf("hearth: room registry status: %w", err)
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return fmt.Errorf("hearth: room registry status is a %T, not a stream's", st)
	}
	state := bs.StreamInfo().State
	if state.Msgs == 0 {
		return nil // nothing listed, nothing to wait for
	}
	last := state.LastSeq
	d.mu.Lock()
	if d.rev >= last {
		d.mu.Unlock()
		return nil
	}
	w := revWait{rev: last, done: make(chan struct{})}
	d.synced = append(d.synced, w)
	d.mu.Unlock()
	select {
	case <-w.done:
		return nil
	case <-d.done:
		return fmt.Errorf("hearth: room registry watch stopped: %w", ErrNotRunning)
	case <-ctx.Done():
		d.mu.Lock()
		d.synced = slices.DeleteFunc(d.synced, func(o revWait) bool { return o.done == w.done })
		d.mu.Unlock()
		return fmt.Errorf("hearth: room registry sync: %w", ctx.Err())
	}
}

// applyEntry takes in one registry change: a put of value under key, or
// its deletion. A malformed entry is logged and ignored.
func (d *roomDirectory) applyEntry(log *slog.Logger, key string, value []byte, rev uint64, del bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case strings.HasPrefix(key, "r."):
		id := key[2:]
		if old, ok := d.rooms[id]; ok {
			for _, u := range old.info.Users {
				if seats, ok := d.byUser[u.User]; ok {
					if seats.drop(old.info.Type, id) {
						delete(d.byUser, u.User)
					} else {
						d.byUser[u.User] = seats
					}
				}
			}
			delete(d.rooms, id)
			delete(d.openByType[old.info.Type], id)
			d.tally(old.info, -1)
		}
		if del {
			return
		}
		var info RoomInfo
		if err := json.Unmarshal(value, &info); err != nil || info.ID != id || id == "" {
			log.Warn("bad room registry entry", "key", key, "err", err)
			return
		}
		info.ID, info.Type, info.Node, info.State = id, intern(info.Type), intern(info.Node), intern(info.State)
		for i := range info.Users {
			info.Users[i].Gate = intern(info.Users[i].Gate)
		}
		d.rooms[id] = dirRoom{info: info, rev: rev}
		d.tally(info, 1)
		if info.Open() {
			if d.openByType[info.Type] == nil {
				d.openByType[info.Type] = map[string]struct{}{}
			}
			d.openByType[info.Type][id] = struct{}{}
		}
		for _, u := range info.Users {
			seats := d.byUser[u.User]
			seats.set(info.Type, id)
			d.byUser[u.User] = seats
		}
	case strings.HasPrefix(key, "n."):
		id := key[2:]
		if del {
			delete(d.nodes, id)
			return
		}
		var rec nodeRecord
		if err := json.Unmarshal(value, &rec); err != nil || rec.ID != id {
			log.Warn("bad room registry entry", "key", key, "err", err)
			return
		}
		d.nodes[id] = dirNode{rec: rec, rev: rev}
	}
}

// sweep reaps the entries of room nodes that are gone from the node
// registry.
func (d *roomDirectory) sweep(n *Node) {
	d.mu.Lock()
	var dead []string
	for id := range d.nodes {
		// Never this node: one too busy to refresh its entry in time is
		// still running its rooms.
		if id != n.id && !n.reg.Alive(id) && !d.reaping[id] {
			d.reaping[id] = true
			dead = append(dead, id)
		}
	}
	d.mu.Unlock()
	for _, id := range dead {
		go d.reap(n, id)
	}
}

// reap removes a dead room node's rooms from the registry and tells their
// players. Every node with a directory may try; a delete conditioned on the
// entry's revision lets exactly one of them tell each room's players.
func (d *roomDirectory) reap(n *Node, node string) {
	defer func() {
		d.mu.Lock()
		delete(d.reaping, node)
		d.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(n.baseCtx, 10*time.Second)
	defer cancel()
	// The local view may only have lost the bus or lagged: reap a node
	// only once the bucket agrees that it stopped refreshing.
	if dead, err := n.reg.Dead(ctx, node); err != nil || !dead {
		return
	}
	d.reapRooms(ctx, n, node, true)
}

// reapRooms removes node's rooms from the registry, telling their players,
// and with forget also the node's record.
func (d *roomDirectory) reapRooms(ctx context.Context, n *Node, node string, forget bool) {
	d.mu.Lock()
	var rooms []dirRoom
	for _, r := range d.rooms {
		if r.info.Node == node {
			rooms = append(rooms, r)
		}
	}
	rec, hasRec := d.nodes[node]
	kv := d.kv
	d.mu.Unlock()
	for _, r := range rooms {
		if err := kv.Delete(ctx, roomKey(r.info.ID), jetstream.LastRevision(r.rev)); err != nil {
			continue // another node reaped it, or it changed
		}
		d.applyEntry(n.log, roomKey(r.info.ID), nil, 0, true) // before the watch says so
		n.log.Warn("room lost with its node", "room", r.info.ID, "room_type", r.info.Type, "room_node", node, "players", r.info.Players)
		tellLost(ctx, n, r.info)
	}
	if hasRec && forget {
		_ = kv.Delete(ctx, nodeKey(node), jetstream.LastRevision(rec.rev))
	}
}

// tellLost pushes "<type>.closed" (reason "node_lost") to a lost room's
// players, wherever they are now.
func tellLost(ctx context.Context, n *Node, info RoomInfo) {
	ev := &roompb.RoomEvent{RoomId: info.ID, Type: info.Type, Reason: "node_lost"}
	route := info.Type + "." + roomPushClosed
	// Each player on its own: one whose presence cannot be read, or who
	// is between gates, is still told through the session the listing
	// names (its old gate forwards to a new one).
	for _, u := range info.Users {
		if !strings.HasPrefix(u.User, "session:") {
			online, err := n.PushUsers(ctx, []string{u.User}, route, ev)
			if err == nil && online == 1 {
				continue
			}
			if err != nil {
				n.log.Warn("room loss: presence unavailable; telling the listed session", "room", info.ID, "user", u.User, "err", err)
			}
		}
		if err := n.PushSession(ctx, u.Gate, u.Session, route, ev); err != nil {
			n.log.Warn("room loss not told", "room", info.ID, "user", u.User, "err", err)
		}
	}
}

// Rooms lists the cluster's rooms of roomType ("" for every type), as the
// room registry has them (a change shows within a fraction of a second).
func (n *Node) Rooms(ctx context.Context, roomType string) ([]RoomInfo, error) {
	d, err := n.directory(ctx)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	out := make([]RoomInfo, 0, len(d.rooms))
	for _, r := range d.rooms {
		if roomType == "" || r.info.Type == roomType {
			out = append(out, r.info)
		}
	}
	d.mu.Unlock()
	slices.SortFunc(out, func(a, b RoomInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// OpenRooms returns the public rooms of roomType that have a free seat,
// as the registry shows them, in no particular order: what a matchmaker
// chooses from. It costs what the open rooms do, not every room.
func (n *Node) OpenRooms(ctx context.Context, roomType string) ([]RoomInfo, error) {
	d, err := n.directory(ctx)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	ids := d.openByType[roomType]
	out := make([]RoomInfo, 0, len(ids))
	for id := range ids {
		out = append(out, d.rooms[id].info)
	}
	return out, nil
}

// RoomByID returns a room's registry entry.
func (n *Node) RoomByID(ctx context.Context, id string) (RoomInfo, bool, error) {
	d, err := n.directory(ctx)
	if err != nil {
		return RoomInfo{}, false, err
	}
	d.mu.Lock()
	r, ok := d.rooms[id]
	kv := d.kv
	d.mu.Unlock()
	if ok {
		return r.info, true, nil
	}
	// The watch may not have delivered a room made a moment ago.
	e, err := kv.Get(ctx, roomKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return RoomInfo{}, false, nil
	}
	if err != nil {
		return RoomInfo{}, false, fmt.Errorf("hearth: room registry: %w", err)
	}
	var info RoomInfo
	if err := json.Unmarshal(e.Value(), &info); err != nil {
		return RoomInfo{}, false, fmt.Errorf("hearth: room registry entry %s: %w", id, err)
	}
	return info, true, nil
}

// RoomOf returns the room of roomType where the session's player holds a
// seat.
func (s *Session) RoomOf(ctx context.Context, roomType string) (RoomInfo, bool, error) {
	d, err := s.node.directory(ctx)
	if err != nil {
		return RoomInfo{}, false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	seats := d.byUser[seatKey(s.user, s.id)]
	id, ok := seats.room(roomType)
	if !ok {
		return RoomInfo{}, false, nil
	}
	r, ok := d.rooms[id]
	return r.info, ok, nil
}

// SeatedIn reports whether the session's player holds a seat in room, as
// the listing has it.
func (s *Session) SeatedIn(room RoomInfo) bool {
	key := seatKey(s.user, s.id)
	return slices.ContainsFunc(room.Users, func(u RoomUser) bool { return u.User == key })
}

// SeatedRooms lists the rooms of every type where the session's player
// holds a seat.
func (s *Session) SeatedRooms(ctx context.Context) ([]RoomInfo, error) {
	d, err := s.node.directory(ctx)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	var out []RoomInfo
	seats := d.byUser[seatKey(s.user, s.id)]
	for _, ref := range seats.all() {
		if r, ok := d.rooms[ref.room]; ok {
			out = append(out, r.info)
		}
	}
	d.mu.Unlock()
	slices.SortFunc(out, func(a, b RoomInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// RoomNodes lists the live nodes that host rooms, with their load, sorted
// by id.
func (n *Node) RoomNodes(ctx context.Context) ([]RoomNode, error) {
	d, err := n.directory(ctx)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	out := make([]RoomNode, 0, len(d.nodes))
	for id, dn := range d.nodes {
		// A node the registry saw leave is out; one it has not seen yet
		// (this node itself, just started) is in, until the sweep finds it
		// gone from the bucket.
		if n.reg.Left(id) {
			continue
		}
		info, _ := n.reg.Node(id)
		load := d.load[id]
		rn := RoomNode{ID: id, Draining: dn.rec.Draining || info.State == cluster.StateDraining, Rooms: load.rooms, Players: load.players}
		for t, c := range dn.rec.Capacity {
			rn.Types = append(rn.Types, t)
			rn.Capacity += c
		}
		slices.Sort(rn.Types)
		out = append(out, rn)
	}
	d.mu.Unlock()
	slices.SortFunc(out, func(a, b RoomNode) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// RoomSeat is where a player was seated.
type RoomSeat struct {
	Room RoomInfo
	Seat int
}

// CreateRoom makes a room of roomType on node (a RoomNodes id) and seats
// the session's player in it. A private room is not listed and is joined
// only by id.
func (s *Session) CreateRoom(ctx context.Context, node, roomType string, private bool, params map[string]string) (RoomSeat, error) {
	return s.roomControl(ctx, node, roomCtl{Op: "create", Type: roomType, Private: private, Params: params})
}

// JoinRoom seats the session's player in room (found with RoomByID or
// Rooms), on the node hosting it; a player already seated there is seated
// again (same seat, fresh binding and snapshot). A player holds one seat
// per room type: one seated in another room of the type on that node gets
// that seat back instead, and RoomSeat.Room says which room it is.
func (s *Session) JoinRoom(ctx context.Context, room RoomInfo) (RoomSeat, error) {
	return s.roomControl(ctx, room.Node, roomCtl{Op: "join", Room: room.ID})
}

// LeaveRoom gives up the session's player's seat in room.
func (s *Session) LeaveRoom(ctx context.Context, room RoomInfo) error {
	_, err := s.roomControl(ctx, room.Node, roomCtl{Op: "leave", Room: room.ID})
	return err
}

func (s *Session) roomControl(ctx context.Context, node string, c roomCtl) (RoomSeat, error) {
	if err := cluster.ValidateNodeID(node); err != nil {
		return RoomSeat{}, fmt.Errorf("hearth: room node %q: %w", node, err)
	}
	if err := ctx.Err(); err != nil {
		// The caller's time is up: asking would fail at once, and say the
		// room's node did not answer when it was never asked.
		return RoomSeat{}, fmt.Errorf("hearth: room %s on %s not asked: %w", c.Op, node, err)
	}
	c.Session = ctlSession{ID: s.id, Gate: s.where(), User: s.user, Codec: s.codec}
	b, err := json.Marshal(c)
	if err != nil {
		return RoomSeat{}, err
	}
	if _, has := ctx.Deadline(); !has {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	m, err := s.node.bus.Conn().RequestWithContext(ctx, roomCtlSubject(s.node, node), b)
	if err != nil {
		s.Logger().Warn("room control request failed", "op", c.Op, "room_node", node, "err", err)
		return RoomSeat{}, NewError(CodeUnavailable, "the room's node did not answer")
	}
	var resp roomCtlResp
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return RoomSeat{}, fmt.Errorf("hearth: room control answer: %w", err)
	}
	if resp.Code != 0 {
		return RoomSeat{}, NewError(resp.Code, resp.Message)
	}
	return RoomSeat{Room: resp.Room, Seat: resp.Seat}, nil
}
