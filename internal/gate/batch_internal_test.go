package gate

// White-box tests of batched writes: frames queued while more bus (or
// channel) messages wait are written once the batch is released, one write
// per session, and always on the session that holds the connection.

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/wire"
)

// connectedSession adds an active TCP session id to g (JSON codec) and
// returns the client's end of its connection.
func connectedSession(t *testing.T, g *Gate, id string) (*Session, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	cli, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	srv, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { _ = cli.Close(); _ = srv.Close() })
	s := newSession(g, srv, false)
	s.id, s.codec = id, cluster.CodecJSON
	s.setStateLocked(StateActive)
	g.sessMap.add(s)
	return s, cli
}

// readFrames reads n frames from a session's client end, passing over
// the gate's PINGs (unanswered).
func readFrames(t *testing.T, c net.Conn, n int) []wire.Frame {
	t.Helper()
	return readFramesOf(t, c, n, false)
}

// readFramesOf reads n frames from a session's client end; PINGs count
// among them with pings, and are passed over otherwise.
func readFramesOf(t *testing.T, c net.Conn, n int, pings bool) []wire.Frame {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	out := make([]wire.Frame, 0, n)
	for len(out) < n {
		body, err := wire.ReadTCP(c, nil, 1<<20)
		require.NoError(t, err, "frame %d of %d", len(out)+1, n)
		f, err := wire.Decode(body)
		require.NoError(t, err)
		if f.Kind == wire.KindPing && !pings {
			continue
		}
		f.Payload = append([]byte(nil), f.Payload...)
		out = append(out, f)
	}
	return out
}

func counterValue(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}

// A move's push and its answer, delivered in one batch, leave in one write,
// and only when the batch is released.
func TestBusBatchWritesOnce(t *testing.T) {
	g := replayGate(t, Limits{})
	s, cli := connectedSession(t, g, "mover")
	b := &busBatch{}

	push := cluster.Envelope{Type: cluster.TypePush, Sessions: []string{"mover"}, Route: "t.state", Payload: []byte(`{"phase":"bet"}`)}
	g.onPush(&push, b)
	s.inflight.Add(1)
	g.complete(pending{s: s, seq: 7, route: "t.bet", start: time.Now().UnixNano()}, wire.OK, []byte(`{"you":1}`), b)

	require.Zero(t, counterValue(t, g.m.writes), "written before the batch was released")
	require.Equal(t, []*Session{s}, b.held, "the session is held once for its two frames")
	b.release()
	require.Equal(t, 1.0, counterValue(t, g.m.writes), "two frames, one write")
	require.Empty(t, b.held)

	fs := readFrames(t, cli, 2)
	require.Equal(t, wire.KindPush, fs[0].Kind)
	require.Equal(t, uint64(1), fs[0].PushSeq)
	require.Equal(t, `{"phase":"bet"}`, string(fs[0].Payload))
	require.Equal(t, wire.KindResponse, fs[1].Kind)
	require.Equal(t, uint32(7), fs[1].Seq)
	require.Equal(t, `{"you":1}`, string(fs[1].Payload))

	// Released, the session is no longer marked: the next batch holds it
	// again, and a frame outside any batch is written at once.
	g.onPush(&push, b)
	require.Equal(t, []*Session{s}, b.held)
	b.release()
	s.mu.Lock()
	s.wroteAt = 0 // quiet again, whatever the clock did
	s.mu.Unlock()
	g.onPush(&push, nil)
	fs = readFrames(t, cli, 2)
	require.Equal(t, []uint64{2, 3}, []uint64{fs[0].PushSeq, fs[1].PushSeq})
}

// A channel member replaced on this gate (a resume here) is still in the
// channel's list under its old session: the batch must hold, and write, the
// session that replaced it, or the new one stays marked and its channel
// messages wait for some other frame to carry them.
func TestBatchHoldsTheReplacingSession(t *testing.T) {
	g := replayGate(t, Limits{})
	old := &Session{g: g, id: "p1", codec: cluster.CodecJSON}
	old.setStateLocked(StateClosed)
	old.movedTo = g.cfg.ID
	nu, cli := connectedSession(t, g, "p1")
	joinAll(g, "room", old)

	msg := func() *nats.Msg {
		e := cluster.Envelope{Type: cluster.TypePublish, Channel: "room", Route: "room.said", Payload: []byte(`"hi"`), MsgID: "m1"}
		return &nats.Msg{Subject: "ch.room", Data: e.Append(nil)}
	}
	held := g.chans.fanout(msg(), nil)
	require.Equal(t, []*Session{nu}, held, "the batch holds the session with the connection")
	for _, s := range held {
		s.flushHeld(false)
	}
	fs := readFrames(t, cli, 1)
	require.Equal(t, "room.said", string(fs[0].Route))
	nu.mu.Lock()
	marked := nu.heldMark
	nu.mu.Unlock()
	require.False(t, marked, "the replacing session is still marked as held")
}

// A frame to a quiet session is written by the goroutine that queued it
// (sendLocked), and that write allocates nothing: it made a closure and
// two escaping results per write, garbage at every push to a Niu Niu
// player.
func TestInlineWriteAllocatesNothing(t *testing.T) {
	g := replayGate(t, Limits{})
	s, cli := connectedSession(t, g, "quiet")
	body := wire.AppendPush(nil, 1, "room.state", []byte(`{"phase":"bet"}`))
	allocs := testing.AllocsPerRun(100, func() {
		s.mu.Lock()
		s.wroteAt = 0 // quiet: written in place, not by the flush goroutine
		s.startFrameLocked(len(body))
		s.out = append(s.out, body...)
		s.sendLocked()
		if s.flushing || len(s.out) != 0 {
			t.Errorf("the write was left to the flush goroutine (%d bytes queued)", len(s.out))
		}
		s.mu.Unlock()
	})
	require.Zero(t, allocs, "an inline write allocated")
	require.Len(t, readFrames(t, cli, 101), 101, "every frame written arrives")
}

// A response to a quiet session is framed in a pooled buffer and written
// in place: nothing allocated once the pools hold buffers (it was a new
// buffer, grown twice, per response).
func TestQuietResponseAllocatesNothing(t *testing.T) {
	g := replayGate(t, Limits{ResumeGrace: -1}) // no response cache: its copy is another matter
	s, cli := connectedSession(t, g, "quiet")
	payload := bytes.Repeat([]byte{'v'}, 700) // a Niu Niu view
	seq := uint32(0)
	allocs := testing.AllocsPerRun(100, func() {
		seq++
		s.mu.Lock()
		s.wroteAt = 0 // quiet: written in place
		s.mu.Unlock()
		s.respond(seq, wire.OK, payload)
	})
	require.Zero(t, allocs, "a response allocated")
	frames := readFrames(t, cli, int(seq))
	for i, f := range frames {
		require.Equal(t, wire.KindResponse, f.Kind)
		require.Equal(t, uint32(i+1), f.Seq)
		require.Equal(t, payload, f.Payload)
	}
}
