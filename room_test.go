package hearth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// startRoomNode runs a single-process node (embedded NATS) serving types.
func startRoomNode(t testing.TB, types ...*RoomType) *Node {
	t.Helper()
	return startRoomNodeIn(t, Config{DataDir: t.TempDir()}, types...)
}

func startRoomNodeIn(t testing.TB, cfg Config, types ...*RoomType) *Node {
	t.Helper()
	cfg.TCPAddr, cfg.WSAddr, cfg.AdminAddr = Off, Off, Off
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := New(cfg)
	require.NoError(t, err)
	for _, rt := range types {
		require.NoError(t, n.Register(rt.Service()))
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- n.Run(ctx) }()
	select {
	case <-n.Ready():
	case err := <-errc:
		cancel()
		t.Fatalf("node did not start: %v", err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = n.Shutdown(sctx)
		cancel()
		if err := <-errc; err != nil {
			t.Logf("node stopped: %v", err)
		}
	})
	return n
}

// waitFor polls cond until it holds, failing with msg after timeout.
func waitFor(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, fmt.Sprintf(msg, args...))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// scriptRoom is a handler whose behaviour each test supplies.
type scriptRoom struct {
	BaseRoom
	create func(r *Room)
	timer  func(r *Room, t *Timer)
	close  func(r *Room, reason string)
}

func (s *scriptRoom) Create(r *Room, _ map[string]string) error {
	if s.create != nil {
		s.create(r)
	}
	return nil
}

func (s *scriptRoom) Timer(r *Room, t *Timer) {
	if s.timer != nil {
		s.timer(r, t)
	}
}

func (s *scriptRoom) Close(r *Room, reason string) {
	if s.close != nil {
		s.close(r, reason)
	}
}

// testPlayer is a control-request session for a player that no gate holds:
// the room's pushes and binds go nowhere, which these tests do not read.
func testPlayer(i int) ctlSession {
	return ctlSession{ID: fmt.Sprintf("sess%d", i), Gate: "nogate", User: fmt.Sprintf("user%d", i)}
}

func createRoom(t testing.TB, n *Node, typ string, player int) RoomInfo {
	t.Helper()
	resp := n.rooms.serveControl(mustJSON(t, roomCtl{Op: "create", Type: typ, Session: testPlayer(player)}))
	require.Zero(t, resp.Code, resp.Message)
	return resp.Room
}

func mustJSON(t testing.TB, c roomCtl) []byte {
	t.Helper()
	b, err := json.Marshal(c)
	require.NoError(t, err)
	return b
}

func TestRoomTimersFireInOrder(t *testing.T) {
	var mu sync.Mutex // guards fired, done
	var fired []string
	done := false
	rt := NewRoomType("order", RoomConfig{}, func() RoomHandler {
		every := 0
		return &scriptRoom{
			create: func(r *Room) {
				r.After(30*time.Millisecond, "c")
				r.After(10*time.Millisecond, "a")
				r.After(20*time.Millisecond, "b")
				r.Every(7*time.Millisecond, "tick")
			},
			timer: func(r *Room, tm *Timer) {
				mu.Lock()
				defer mu.Unlock()
				switch tm.Name() {
				case "tick":
					every++
					fired = append(fired, fmt.Sprintf("tick%d", every))
					if every == 3 {
						tm.Cancel()
						r.After(40*time.Millisecond, "end")
					}
				case "end":
					done = true
				default:
					fired = append(fired, tm.Name())
				}
			},
		}
	})
	n := startRoomNode(t, rt)
	createRoom(t, n, "order", 1)
	waitFor(t, 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return done }, "end timer never fired")
	mu.Lock()
	defer mu.Unlock()
	// One-shots in deadline order; the Every fired exactly 3 times.
	var oneShots, ticks []string
	for _, f := range fired {
		if len(f) > 4 && f[:4] == "tick" {
			ticks = append(ticks, f)
		} else {
			oneShots = append(oneShots, f)
		}
	}
	require.Equal(t, []string{"a", "b", "c"}, oneShots)
	require.Equal(t, []string{"tick1", "tick2", "tick3"}, ticks)
	// Every call is measured for hearth_room_timer_lateness_seconds.
	mfs, err := n.metrics.Gather()
	require.NoError(t, err)
	calls := uint64(0)
	for _, mf := range mfs {
		if mf.GetName() == "hearth_room_timer_lateness_seconds" {
			calls = mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	require.EqualValues(t, 7, calls, "a, b, c, three ticks and end")
}

func TestRoomTimerNeverFiresAfterCancelOrClose(t *testing.T) {
	var mu sync.Mutex // guards the fields below
	var late []string
	closed, ended := false, false
	rt := NewRoomType("cancel", RoomConfig{KeepEmpty: true}, func() RoomHandler {
		return &scriptRoom{
			create: func(r *Room) {
				due := r.After(time.Millisecond, "cancelled-when-due")
				time.Sleep(3 * time.Millisecond) // let it fall due while this room is busy
				if !due.Cancel() || due.Cancel() {
					mu.Lock()
					late = append(late, "cancel result")
					mu.Unlock()
				}
				r.After(0, "cancelled-at-once").Cancel()
				r.Every(time.Millisecond, "cancelled-every").Cancel()
				r.After(20*time.Millisecond, "close")
				r.After(20*time.Millisecond, "after-close")
				r.Every(time.Millisecond, "every-after-close")
			},
			timer: func(r *Room, tm *Timer) {
				if tm.Name() == "close" {
					r.Close("test")
					return
				}
				mu.Lock()
				defer mu.Unlock()
				switch tm.Name() {
				case "every-after-close":
					if closed {
						late = append(late, tm.Name())
					}
				default:
					late = append(late, tm.Name())
				}
			},
			close: func(r *Room, _ string) {
				mu.Lock()
				closed = true
				mu.Unlock()
				// A timer set while closing never fires either.
				r.After(0, "set-while-closing")
			},
		}
	})
	// A second room type whose timer marks the end: set after the first
	// room closed, due well after anything the first room had queued.
	endType := NewRoomType("end", RoomConfig{KeepEmpty: true}, func() RoomHandler {
		return &scriptRoom{
			create: func(r *Room) { r.After(50*time.Millisecond, "end") },
			timer: func(*Room, *Timer) {
				mu.Lock()
				ended = true
				mu.Unlock()
			},
		}
	})
	n := startRoomNode(t, rt, endType)
	createRoom(t, n, "cancel", 1)
	waitFor(t, 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return closed }, "room never closed")
	createRoom(t, n, "end", 2)
	waitFor(t, 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return ended }, "end timer never fired")
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, late, "timers fired after cancel or close")
	waitFor(t, 5*time.Second, func() bool { return n.rooms.timers.len() == 0 }, "timers left queued")
}

func TestThousandRoomsEachWithTimers(t *testing.T) {
	const rooms, fires = 1000, 3
	var mu sync.Mutex // guards counts, bad
	counts := map[string]int{}
	var bad []string
	rt := NewRoomType("many", RoomConfig{}, func() RoomHandler {
		last := time.Time{}
		return &scriptRoom{
			create: func(r *Room) { r.Every(5*time.Millisecond, "step") },
			timer: func(r *Room, tm *Timer) {
				mu.Lock()
				defer mu.Unlock()
				if tm.Deadline().Before(last) {
					bad = append(bad, r.ID())
				}
				last = tm.Deadline()
				counts[r.ID()]++
				if counts[r.ID()] == fires {
					r.Close("done")
				}
				if counts[r.ID()] > fires {
					bad = append(bad, r.ID())
				}
			},
		}
	})
	n := startRoomNode(t, rt)
	for i := range rooms {
		createRoom(t, n, "many", i)
	}
	waitFor(t, 30*time.Second, func() bool {
		n.rooms.mu.Lock()
		defer n.rooms.mu.Unlock()
		return len(rt.rooms) == 0
	}, "rooms still open")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, counts, rooms)
	for id, c := range counts {
		require.Equal(t, fires, c, "room %s", id)
	}
	require.Empty(t, bad)
}

// FuzzRoomControl: a control request from the bus is parsed without
// panicking, and one that is accepted names an op, a session and what the
// op needs.
func FuzzRoomControl(f *testing.F) {
	f.Add([]byte(`{"op":"create","type":"cards","session":{"id":"s1","gate":"g1"}}`))
	f.Add([]byte(`{"op":"join","room":"abc","session":{"id":"s1","gate":"g1","user":"u","codec":1}}`))
	f.Add([]byte(`{"op":"leave"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeRoomCtl(b)
		if err != nil {
			return
		}
		if c.Session.ID == "" || c.Session.Gate == "" {
			t.Fatalf("accepted without a session: %+v", c)
		}
		if c.Op == "create" && c.Type == "" {
			t.Fatalf("create without a type: %+v", c)
		}
		if c.Op != "create" && c.Room == "" {
			t.Fatalf("%s without a room: %+v", c.Op, c)
		}
	})
}

// TestSlowRoomDelaysNoOther: a room stuck in its handler holds only its
// own messages; another room's timers keep firing, and players' requests
// to the stuck room past its mailbox bound are refused at once.
func TestSlowRoomDelaysNoOther(t *testing.T) {
	release, blocked := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex // guards fires
	fires := 0
	slow := NewRoomType("slow", RoomConfig{Mailbox: 4, KeepEmpty: true}, func() RoomHandler {
		return &scriptRoom{
			create: func(r *Room) { r.After(0, "block") },
			timer: func(*Room, *Timer) {
				close(blocked)
				<-release
			},
		}
	})
	fast := NewRoomType("fast", RoomConfig{KeepEmpty: true}, func() RoomHandler {
		return &scriptRoom{
			create: func(r *Room) { r.Every(2*time.Millisecond, "tick") },
			timer: func(*Room, *Timer) {
				mu.Lock()
				fires++
				mu.Unlock()
			},
		}
	})
	n := startRoomNode(t, slow, fast)
	t.Cleanup(func() { close(release) })
	info := createRoom(t, n, "slow", 1)
	<-blocked
	createRoom(t, n, "fast", 2)
	waitFor(t, 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return fires >= 20 }, "the fast room's timers stalled behind the slow room")

	r := n.rooms.room(info.ID)
	require.NotNil(t, r)
	results := map[mailResult]int{}
	for range 10 {
		results[r.post(true, func() {})]++
	}
	require.Equal(t, map[mailResult]int{mailOK: 4, mailFull: 6}, results)
	// The SDK's own messages still get in.
	require.Equal(t, mailOK, r.post(false, func() {}))
}

type tickRoom struct {
	BaseRoom
	mu    *sync.Mutex // guards ticks, bad
	ticks *int
	bad   *bool
}

func (tr *tickRoom) Tick(_ *Room, dt time.Duration) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	*tr.ticks++
	if dt <= 0 {
		*tr.bad = true
	}
}

func TestRoomTick(t *testing.T) {
	var mu sync.Mutex
	ticks, bad := 0, false
	ticking := NewRoomType("ticking", RoomConfig{Tick: 2 * time.Millisecond}, func() RoomHandler {
		return &tickRoom{mu: &mu, ticks: &ticks, bad: &bad}
	})
	// A Tick with a handler that cannot tick is refused, not a crash.
	broken := NewRoomType("broken", RoomConfig{Tick: time.Millisecond}, func() RoomHandler { return BaseRoom{} })
	n := startRoomNode(t, ticking, broken)
	createRoom(t, n, "ticking", 1)
	waitFor(t, 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return ticks >= 10 }, "the room did not tick")
	mu.Lock()
	require.False(t, bad, "a tick with dt ≤ 0")
	mu.Unlock()
	resp := n.rooms.serveControl(mustJSON(t, roomCtl{Op: "create", Type: "broken", Session: testPlayer(2)}))
	require.Equal(t, CodeInternal, resp.Code)
}

// FuzzRoomRegistryEntry: any registry entry, well-formed or not, leaves
// the directory consistent: every seated user points at a room that lists
// that user.
func FuzzRoomRegistryEntry(f *testing.F) {
	f.Add("r.abc", []byte(`{"id":"abc","type":"cards","node":"n1","seats":4,"players":1,"users":[{"user":"u1"}]}`), false)
	f.Add("n.n1", []byte(`{"id":"n1","capacity":{"cards":10}}`), false)
	f.Add("r.abc", []byte(`{"id":"abd"}`), false)
	f.Add("r.abc", []byte(nil), true)
	f.Add("x", []byte(`[]`), false)
	f.Fuzz(func(t *testing.T, key string, value []byte, del bool) {
		d := &roomDirectory{}
		d.init()
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		seed := []byte(`{"id":"abc","type":"cards","node":"n1","seats":4,"players":1,"users":[{"user":"u1"}]}`)
		d.applyEntry(log, "r.abc", seed, 1, false)
		d.applyEntry(log, key, value, 2, del)
		for user, seats := range d.byUser {
			refs := seats.all()
			if len(refs) == 0 {
				t.Fatalf("user %q is kept with no room", user)
			}
			for _, ref := range refs {
				r, ok := d.rooms[ref.room]
				if !ok {
					t.Fatalf("user %q points at a room not in the directory", user)
				}
				found := false
				for _, u := range r.info.Users {
					found = found || r.info.Type == ref.typ && u.User == user
				}
				if !found {
					t.Fatalf("user %q points at room %s, which does not list it", user, ref.room)
				}
			}
		}
		// Every seat a listing shows is found from its user.
		for id, r := range d.rooms {
			for _, u := range r.info.Users {
				seats := d.byUser[u.User]
				if _, ok := seats.room(r.info.Type); !ok {
					t.Fatalf("user %q seated in room %s is not found from the user", u.User, id)
				}
			}
		}
		// The open-room index holds exactly the open rooms, under their type.
		for typ, ids := range d.openByType {
			for id := range ids {
				r, ok := d.rooms[id]
				if !ok || r.info.Type != typ || !r.info.Open() {
					t.Fatalf("open index lists %s under %q: %+v (in directory %v)", id, typ, r.info, ok)
				}
			}
		}
		for id, r := range d.rooms {
			if _, listed := d.openByType[r.info.Type][id]; listed != r.info.Open() {
				t.Fatalf("room %s open=%v but listed=%v", id, r.info.Open(), listed)
			}
		}
		// Each node's tally is what its rooms add up to.
		if want := recountLoad(d); !maps.Equal(want, d.load) {
			t.Fatalf("node load %v, rooms add up to %v", d.load, want)
		}
	})
}

// TestRestartedNodeDropsItsOldRooms: rooms listed under a node id whose
// process died are removed when a node with that id starts again.
func TestRestartedNodeDropsItsOldRooms(t *testing.T) {
	cfg := Config{DataDir: t.TempDir(), NodeID: "room-x"}
	newType := func() *RoomType { return NewRoomType("cards", RoomConfig{}, func() RoomHandler { return BaseRoom{} }) }
	first := startRoomNodeIn(t, cfg, newType())
	ghost, err := json.Marshal(RoomInfo{ID: "ghost", Type: "cards", Node: "room-x", Seats: 2})
	require.NoError(t, err)
	_, err = first.rooms.kv.Put(context.Background(), roomKey("ghost"), ghost)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, first.Shutdown(ctx))

	second := startRoomNodeIn(t, cfg, newType())
	_, ok, err := second.RoomByID(ctx, "ghost")
	require.NoError(t, err)
	require.False(t, ok, "the dead process's room is still listed")
}

// TestReapedLiveNodeListsItselfAgain: when another node deletes this live
// node's record and rooms from the registry (it looked dead while too busy
// to refresh), the node writes them again, so match finds it once more.
func TestReapedLiveNodeListsItselfAgain(t *testing.T) {
	n := startRoomNode(t, NewRoomType("cards", RoomConfig{Seats: 2}, func() RoomHandler { return BaseRoom{} }))
	room := createRoom(t, n, "cards", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// What a reaper on another node does.
	require.NoError(t, n.rooms.kv.Delete(ctx, roomKey(room.ID)))
	require.NoError(t, n.rooms.kv.Delete(ctx, nodeKey(n.id)))
	waitFor(t, 10*time.Second, func() bool {
		_, err := n.rooms.kv.Get(ctx, roomKey(room.ID))
		return err == nil
	}, "the live room's listing was not written again")
	waitFor(t, 10*time.Second, func() bool {
		nodes, err := n.RoomNodes(ctx)
		return err == nil && slices.ContainsFunc(nodes, func(rn RoomNode) bool { return rn.ID == n.id && rn.Serves("cards") })
	}, "the live node's record was not written again")
	info, ok, err := n.RoomByID(ctx, room.ID)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 1, info.Players, "the listing written again is the room's current one")
}

// A seat is acknowledged once its own room's listing is in the registry —
// not after a backlog of other rooms' listings (thousands of tables
// changing phase under load): the waited listing is written first, and the
// backlog after it.
func TestSeatWaitsForItsOwnListingOnly(t *testing.T) {
	t.Parallel()
	n := startRoomNode(t, NewRoomType("cards", RoomConfig{Seats: 2}, func() RoomHandler { return BaseRoom{} }))
	h := &n.rooms
	ctx := context.Background()
	const backlog = 3000
	queueBacklog := func(prefix string) {
		h.mu.Lock()
		for i := range backlog {
			id := fmt.Sprintf("%s%04d", prefix, i)
			h.pending[id] = &RoomInfo{ID: id, Type: "elsewhere", Node: "node-elsewhere", Seats: 2}
		}
		h.mu.Unlock()
	}
	written := func(prefix string) int {
		keys, err := h.kv.Keys(ctx)
		require.NoError(t, err)
		k := 0
		for _, key := range keys {
			if strings.HasPrefix(key, roomKey(prefix)) {
				k++
			}
		}
		return k
	}
	listed := func(id string) RoomInfo {
		e, err := h.kv.Get(ctx, roomKey(id))
		require.NoError(t, err, "room %s is not in the registry when its seat is acknowledged", id)
		var info RoomInfo
		require.NoError(t, json.Unmarshal(e.Value(), &info))
		return info
	}

	// The backlog's 3,000 KV writes take seconds on a loaded machine (a
	// CI run beside other tests): the waits below bound only a hang.
	queueBacklog("aa")
	room := createRoom(t, n, "cards", 1)
	require.Equal(t, 1, listed(room.ID).Players)
	require.Less(t, written("aa"), backlog/2, "the create waited for the other rooms' listings")
	waitFor(t, 90*time.Second, func() bool { return written("aa") == backlog }, "the backlog was never written")

	queueBacklog("bb")
	resp := h.serveControl(mustJSON(t, roomCtl{Op: "join", Room: room.ID, Session: testPlayer(2)}))
	require.Zero(t, resp.Code, resp.Message)
	require.Equal(t, 2, listed(room.ID).Players)
	require.Less(t, written("bb"), backlog/2, "the join waited for the other rooms' listings")
	waitFor(t, 90*time.Second, func() bool { return written("bb") == backlog }, "the backlog was never written")
}

// A room's messages run one at a time and in the order each sender posted
// them, through the mailbox's swaps of its queue as senders race the room's
// goroutine and the queue runs dry: the room's state needs no lock of its
// own. Under -race, an unordered hand-over would be reported on the plain
// counters.
func TestRoomMessagesRunOneAtATimeInOrder(t *testing.T) {
	typ := NewRoomType("serial", RoomConfig{KeepEmpty: true}, func() RoomHandler { return &scriptRoom{} })
	n := startRoomNode(t, typ)
	info := createRoom(t, n, "serial", 1)
	r := n.rooms.room(info.ID)
	require.NotNil(t, r)

	const senders, each = 8, 2000
	var (
		running sync.Mutex // TryLock fails if two turns overlap
		ran     int        // room state: no lock
		last    [senders]int
		bad     []string
	)
	var wg sync.WaitGroup
	for k := range senders {
		wg.Go(func() {
			for i := 1; i <= each; i++ {
				ok := r.Post(func(*Room) {
					if !running.TryLock() {
						bad = append(bad, "two messages ran at once")
						return
					}
					defer running.Unlock()
					if last[k] != i-1 {
						bad = append(bad, fmt.Sprintf("sender %d: message %d ran after %d", k, i, last[k]))
					}
					last[k] = i
					ran++
				})
				if !ok {
					t.Errorf("sender %d: post %d refused", k, i)
					return
				}
				if i%100 == 0 { // wait for the room now and then, so that its queue runs dry
					ack := make(chan struct{})
					if !r.Post(func(*Room) { close(ack) }) {
						t.Errorf("sender %d: ack refused", k)
						return
					}
					select {
					case <-ack:
					case <-time.After(10 * time.Second):
						t.Errorf("sender %d: the room stopped running its messages", k)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	done := make(chan int)
	require.True(t, r.Post(func(*Room) { done <- ran }))
	select {
	case got := <-done:
		require.Equal(t, senders*each, got, "messages run")
	case <-time.After(10 * time.Second):
		t.Fatal("the room's last message never ran")
	}
	require.Empty(t, bad)
}

// Rooms run on the node's workers: a node with hundreds of quiet rooms
// keeps no goroutine for each (a mark made each allocating goroutine help
// it; docs/benchmarks.md § bots, session 28).
func TestRoomsHaveNoGoroutineOfTheirOwn(t *testing.T) {
	typ := NewRoomType("quiet", RoomConfig{KeepEmpty: true}, func() RoomHandler { return &scriptRoom{} })
	n := startRoomNode(t, typ)
	busy := func() int { return runtime.NumGoroutine() - n.work.idle() }
	before := busy()
	const rooms = 300
	for i := range rooms {
		createRoom(t, n, "quiet", i)
	}
	n.rooms.mu.Lock()
	open := len(typ.rooms)
	n.rooms.mu.Unlock()
	require.Equal(t, rooms, open)
	// The registry writer may still be busy with the listings; wait for a
	// count that a goroutine a room could not reach.
	waitFor(t, 10*time.Second, func() bool { return busy()-before < rooms/10 },
		"the node kept a goroutine for each of %d quiet rooms", rooms)
}
