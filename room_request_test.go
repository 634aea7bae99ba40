package hearth

import (
	"strconv"
	"sync"
	"sync/atomic"
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

// A room answers a request on its own goroutine as soon as the handler
// returns, before it runs anything else: what the handler posted runs
// after the answer has gone, never before.
func TestRoomRouteAnswersBeforeTheRoomGoesOn(t *testing.T) {
	typ := NewRoomType("echo", RoomConfig{KeepEmpty: true}, func() RoomHandler { return &scriptRoom{} })
	var ran atomic.Bool
	HandleRoomJSON(typ, "say", func(r *Room, _ *Seat, req echoReq) (echoReq, error) {
		ran.Store(false)
		r.Post(func(*Room) { ran.Store(true) })
		if req.N < 0 {
			return req, NewError(4000, "negative")
		}
		return req, nil
	})
	n := startRoomNode(t, typ)
	createRoom(t, n, "echo", 1)
	p := testPlayer(1)
	svc := n.services["echo"]
	for i := range 200 {
		num := i
		if i%3 == 0 {
			num = -i - 1
		}
		env := &cluster.Envelope{
			Type: cluster.TypeRequest, Route: "echo.say", Session: p.ID, Gate: p.Gate, User: p.User,
			Codec: cluster.CodecJSON, Payload: []byte(`{"n":` + strconv.Itoa(num) + `}`),
			Deadline: time.Now().Add(time.Minute).UnixNano(),
		}
		// The reply runs on the room's goroutine: it records, the test
		// asserts once handle has returned.
		var answers int
		var postedFirst bool
		var code Code
		var body string
		n.handle(svc, env, func(c Code, payload []byte) {
			answers++
			postedFirst = ran.Load()
			code, body = c, string(payload)
		})
		require.Equal(t, 1, answers, "request %d: answers", i)
		require.False(t, postedFirst, "request %d: what the handler posted ran before the answer went", i)
		if num < 0 {
			require.Equal(t, Code(4000), code, body)
			require.Equal(t, "negative", body)
		} else {
			require.Equal(t, wire.OK, code, body)
			require.JSONEq(t, `{"n":`+strconv.Itoa(num)+`}`, body)
		}
	}
}

// A request whose deadline meets the room's answer is answered once: by
// the room, or with 302 by the wait that gave up, never both.
func TestRoomRouteAnswersOnceAtTheDeadline(t *testing.T) {
	n, svc, env := roomRouteNode(t, nil, time.Minute)
	const requests = 200 // fewer than a mailbox holds (256): none is refused
	answers := make([]atomic.Int32, requests)
	codes := make([]atomic.Int32, requests)
	var wg sync.WaitGroup
	for i := range requests {
		next := *env
		wg.Add(1)
		go func() {
			defer wg.Done()
			// From already due to a few milliseconds: some wait out their
			// deadline, some are answered, some meet it.
			next.Deadline = time.Now().Add(time.Duration(i%40) * 50 * time.Microsecond).UnixNano()
			n.handle(svc, &next, func(c Code, _ []byte) {
				answers[i].Add(1)
				codes[i].Store(int32(c))
			})
		}()
	}
	wg.Wait()
	// The room runs its mail in order: once a later request is answered,
	// it has run every one above, and any second answer would be in.
	last := *env
	last.Deadline = time.Now().Add(time.Minute).UnixNano()
	var final Code = 999
	n.handle(svc, &last, func(c Code, _ []byte) { final = c })
	require.Equal(t, wire.OK, final)
	var ok, timedOut, dropped int
	for i := range requests {
		switch a, c := answers[i].Load(), Code(codes[i].Load()); {
		case a == 0:
			dropped++ // due before handle ran: dropped, as the gate has answered 302
		case a != 1:
			t.Fatalf("request %d answered %d times", i, a)
		case c == wire.OK:
			ok++
		case c == wire.CodeTimeout:
			timedOut++
		default:
			t.Fatalf("request %d answered %d", i, c)
		}
	}
	t.Logf("%d answered by the room, %d timed out, %d dropped", ok, timedOut, dropped)
	require.Positive(t, ok, "no request was answered by the room")
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
