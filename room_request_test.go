package hearth

import (
	"testing"
	"time"

	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/wire"
	"github.com/stretchr/testify/require"
)

type echoReq struct {
	N int `json:"n"`
}

// roomRouteNode starts a node with room type "echo" and its route
// "echo.say", which answers after block (nil: at once) lets it, and seats
// testPlayer(1) in a room of it. It returns the node, the type's service
// and a request envelope of that player for the route, due in deadline.
func roomRouteNode(t testing.TB, block <-chan struct{}, deadline time.Duration) (*Node, *Service, *cluster.Envelope) {
	t.Helper()
	typ := NewRoomType("echo", RoomConfig{KeepEmpty: true}, func() RoomHandler { return &scriptRoom{} })
	HandleRoomJSON(typ, "say", func(_ *Room, _ *Seat, req echoReq) (echoReq, error) {
		if block != nil {
			<-block
		}
		return req, nil
	})
	n := startRoomNode(t, typ)
	createRoom(t, n, "echo", 1)
	p := testPlayer(1)
	env := &cluster.Envelope{
		Type: cluster.TypeRequest, Route: "echo.say", Session: p.ID, Gate: p.Gate, User: p.User,
		Codec: cluster.CodecJSON, Payload: []byte(`{"n":7}`),
		Deadline: time.Now().Add(deadline).UnixNano(),
	}
	return n, n.services["echo"], env
}

// A room route answers with what the room's handler returned.
func TestRoomRouteAnswers(t *testing.T) {
	n, svc, env := roomRouteNode(t, nil, time.Minute)
	var status Code
	var body string
	n.handle(svc, env, func(c Code, payload []byte) { status, body = c, string(payload) })
	require.Equal(t, wire.OK, status, body)
	require.JSONEq(t, `{"n":7}`, body)
}

// A room that does not run the request by its deadline gets it answered
// 302: the handler waits no longer than the gate does. The requests after
// it, whose waits reuse its timer, are answered by the room as usual.
func TestRoomRouteTimesOutAtDeadline(t *testing.T) {
	block := make(chan struct{})
	n, svc, env := roomRouteNode(t, block, 100*time.Millisecond)
	type answer struct {
		code Code
		body string
	}
	ask := func(env *cluster.Envelope) answer {
		got := make(chan answer, 1)
		go n.handle(svc, env, func(c Code, payload []byte) { got <- answer{c, string(payload)} })
		select {
		case a := <-got:
			return a
		case <-time.After(30 * time.Second):
			t.Fatal("a room request was never answered")
			return answer{}
		}
	}
	a := ask(env)
	require.Equal(t, wire.CodeTimeout, a.code, a.body)
	require.Contains(t, a.body, "room did not answer in time")
	close(block) // the room runs that request and every later one at once
	for i := range 20 {
		next := *env
		next.Deadline = time.Now().Add(time.Minute).UnixNano()
		a := ask(&next)
		require.Equal(t, wire.OK, a.code, "request %d after the timeout: %s", i, a.body)
	}
}

// BenchmarkRoomRequest is one request on a room route through the node's
// handler, as a bound session's request runs on the room's node: the
// allocations a move costs the tables node besides the game's own.
func BenchmarkRoomRequest(b *testing.B) {
	n, svc, env := roomRouteNode(b, nil, time.Hour)
	reply := func(c Code, payload []byte) {
		if c != wire.OK {
			b.Fatalf("answer %d: %s", c, payload)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		n.handle(svc, env, reply)
	}
}
