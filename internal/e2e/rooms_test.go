package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/wire"
)

// roomCluster is 2 gates, 2 room nodes, each running the table room type,
// the match service and the test's login, and a node running only match:
// the one left to tell players when both room nodes are gone.
//
// They run at the default --registry-interval ("0" overrides the faster
// one of the other tests): a killed room node must be reported to its
// players within 3 s as deployed, not only with a test's tuning.
var roomCluster = []nodeSpec{
	{id: "gate-a", roles: "gate", args: defaultInterval},
	{id: "gate-b", roles: "gate", args: defaultInterval},
	{id: "room-1", roles: "table,match,acct,sys", args: defaultInterval},
	{id: "room-2", roles: "table,match,acct,sys", args: defaultInterval},
	{id: "match-1", roles: "match,acct,sys", args: defaultInterval},
}

var defaultInterval = []string{"--registry-interval", "0"}

// nodeLostWithin is how soon the players of a killed room node must hear
// of it (issue 10).
const nodeLostWithin = 3 * time.Second

type seatResp struct {
	RoomID string `json:"room_id"`
	Seat   int    `json:"seat"`
}

type roomEvent struct {
	RoomID string `json:"room_id"`
	Reason string `json:"reason"`
}

// closedPushes returns the table.closed pushes p received.
func closedPushes(p *player) []roomEvent {
	p.pushes.mu.Lock()
	defer p.pushes.mu.Unlock()
	var out []roomEvent
	for _, pu := range p.pushes.pushes {
		if pu.Route == "table.closed" {
			var ev roomEvent
			_ = json.Unmarshal(pu.Payload, &ev)
			out = append(out, ev)
		}
	}
	return out
}

func hasClosed(p *player, room, reason string) bool {
	for _, ev := range closedPushes(p) {
		if ev.RoomID == room && ev.Reason == reason {
			return true
		}
	}
	return false
}

// TestRooms: on 1 gate and 2 room nodes, four players are matched into
// one room and reach it through the gate's binding; a private room is
// joined by id; the room node that drains gets no new players and closes
// its room, telling its players; the room node that is killed is reported
// to its players by a push, their next room call gets 301, and its room
// leaves the registry.
func TestRooms(t *testing.T) {
	eachBus(t, func(t *testing.T, b bus) {
		c := startCluster(t, b, roomCluster...)
		gate := c.node("gate-a")
		players := make([]*player, 6)
		// p0 reaches gate-a through a proxy the test cuts, and reconnects
		// to gate-b then.
		proxy := hearthtest.NewProxy(t, strings.TrimPrefix(gate.TCP, "tcp://"))
		p0 := &player{name: "p0", pushes: &pushLog{}}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c0, err := client.Dial(ctx, "tcp://"+proxy.Addr(), client.Options{Codec: wire.CodecJSON, Name: "e2e/p0",
			OnPush: p0.pushes.add, Reconnect: true, Addrs: []string{c.node("gate-b").TCP}})
		cancel()
		if err != nil {
			t.Fatalf("dial p0: %v", err)
		}
		t.Cleanup(func() { _ = c0.Close() })
		p0.Client = c0
		players[0] = p0
		for i := range players {
			if i > 0 {
				players[i] = dial(t, gate, "tcp", fmt.Sprintf("p%d", i))
			}
			players[i].login(t)
		}

		// Four players, one room; every one of them reaches it.
		var room string
		var host string
		seats := map[int]bool{}
		for _, p := range players[:4] {
			var s seatResp
			p.must(t, "match.join", map[string]any{"room_type": "table"}, &s)
			if room == "" {
				room = s.RoomID
			}
			if s.RoomID != room {
				t.Fatalf("%s seated in %s, the others in %s", p.name, s.RoomID, room)
			}
			seats[s.Seat] = true
			var w tableWhere
			p.must(t, "table.where", struct{}{}, &w)
			if w.Room != room || w.Seat != s.Seat {
				t.Fatalf("%s: table.where %+v, seated %+v", p.name, w, s)
			}
			host = w.Node
		}
		if len(seats) != 4 {
			t.Fatalf("seats %v, want 4 different", seats)
		}
		lastBeforeCut := players[0].LastPush()

		// p0's connection to gate-a is cut: its client resumes the session
		// on gate-b, the room follows it there (the snapshot comes after
		// the resume), and its room calls still reach the room.
		proxy.Cut()
		eventually(t, 10*time.Second, func() bool {
			for _, pu := range players[0].pushes.snapshot() {
				if pu.Route == "table.snapshot" && pu.Seq > lastBeforeCut {
					return true
				}
			}
			return false
		}, func() string { return "no snapshot for p0 after its resume on gate-b" })
		var w tableWhere
		players[0].must(t, "table.where", struct{}{}, &w)
		if w.Room != room {
			t.Fatalf("after the move p0 reaches %+v, want room %s", w, room)
		}

		// A private room, joined by id; match.join does not fill it.
		var priv, friend, other seatResp
		players[4].must(t, "match.create", map[string]any{"room_type": "table"}, &priv)
		players[5].must(t, "match.join_by_id", map[string]any{"room_id": priv.RoomID}, &friend)
		if friend.RoomID != priv.RoomID {
			t.Fatalf("join_by_id seated in %s, want %s", friend.RoomID, priv.RoomID)
		}
		latecomer := dial(t, gate, "tcp", "p6")
		latecomer.login(t)
		latecomer.must(t, "match.join", map[string]any{"room_type": "table"}, &other)
		if other.RoomID == priv.RoomID || other.RoomID == room {
			t.Fatalf("latecomer seated in %s (private %s, full %s)", other.RoomID, priv.RoomID, room)
		}

		// Drain the node hosting the four: while its room finishes its
		// hand, new players go to the other node; then its players are
		// told the room closed.
		survivor := "room-1"
		if host == "room-1" {
			survivor = "room-2"
		}
		drained := c.node(host)
		if err := drained.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		newcomers := []*player{}
		eventually(t, 10*time.Second, func() bool {
			p := dial(t, gate, "tcp", fmt.Sprintf("n%d", len(newcomers)))
			p.login(t)
			newcomers = append(newcomers, p)
			var s seatResp
			if err := p.call("match.join", map[string]any{"room_type": "table"}, &s); err != nil {
				return false
			}
			var w tableWhere
			if err := p.call("table.where", struct{}{}, &w); err != nil {
				return false
			}
			return w.Node == survivor
		}, func() string { return "no newcomer seated on " + survivor })
		for _, p := range players[:4] {
			eventually(t, 10*time.Second, func() bool { return hasClosed(p, room, "drain") },
				func() string {
					return fmt.Sprintf("%s not told its room closed for the drain: %v", p.name, closedPushes(p))
				})
		}
		<-drained.Exited()

		// The four join again, on the survivor; then it is killed.
		// They may fill the newcomers' rooms: each has its own.
		again := map[*player]seatResp{}
		for _, p := range players[:4] {
			var s seatResp
			p.must(t, "match.join", map[string]any{"room_type": "table"}, &s)
			again[p] = s
			var w tableWhere
			p.must(t, "table.where", struct{}{}, &w)
			if w.Node != survivor {
				t.Fatalf("%s seated on %s after the drain", p.name, w.Node)
			}
		}
		c.kill(survivor)
		killed := time.Now()
		for _, p := range players[:4] {
			eventually(t, 10*time.Second, func() bool { return hasClosed(p, again[p].RoomID, "node_lost") },
				func() string { return fmt.Sprintf("%s not told its room's node was lost: %v", p.name, closedPushes(p)) })
		}
		if took := time.Since(killed); took > nodeLostWithin {
			t.Errorf("players told of the killed room node after %s, want within %s", took.Round(time.Millisecond), nodeLostWithin)
		} else {
			t.Logf("players told of the killed room node after %s", took.Round(time.Millisecond))
		}
		err = players[0].call("table.where", struct{}{}, nil)
		if codeOf(err) != wire.CodeUnavailable {
			t.Fatalf("room call after the node died: %v, want 301", err)
		}
		eventually(t, 10*time.Second, func() bool {
			return codeOf(players[0].call("match.join_by_id", map[string]any{"room_id": again[players[0]].RoomID}, nil)) == 1100
		}, func() string { return "the lost room is still in the registry" })
	})
}

type tableWhere struct {
	Node string `json:"node"`
	Room string `json:"room"`
	Seat int    `json:"seat"`
}

// snapshot copies the pushes received so far.
func (l *pushLog) snapshot() []client.Push {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]client.Push(nil), l.pushes...)
}
