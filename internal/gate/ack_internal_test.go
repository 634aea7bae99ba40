package gate

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/wire"
)

// readEvery reads n frames from a session's client end, PINGs included.
func readEvery(t *testing.T, c net.Conn, n int) []wire.Frame {
	t.Helper()
	return readFramesOf(t, c, n, true)
}

// kinds lists the frames' kinds, a push as its push_seq.
func kinds(fs []wire.Frame) []string {
	var out []string
	for _, f := range fs {
		if f.Kind == wire.KindPush {
			out = append(out, "push "+strconv.FormatUint(f.PushSeq, 10))
			continue
		}
		out = append(out, f.Kind.String())
	}
	return out
}

// A connected session gets a PING after ResumeAckBytes of pushes, in the
// same write as the push that reached it, and no other while it is
// awaited. Only the PONG that echoes it acknowledges the pushes before it,
// and those leave the replay buffer once ackedKeep old, not before.
func TestPushAcks(t *testing.T) {
	payload := bytes.Repeat([]byte("x"), 200)
	one := pushEntry{Route: "t.tick", Payload: payload}
	size := entrySize(&one) // the test's pushes: 3 stay under the bound, 4 reach it
	g := replayGate(t, Limits{ResumeAckBytes: 3*size + 1})
	s, cli := connectedSession(t, g, "s1")
	push := func(n int) {
		for range n {
			b := &busBatch{}
			g.onPush(&cluster.Envelope{Type: cluster.TypePush, Sessions: []string{"s1"}, Route: "t.tick", Payload: payload}, b)
			b.release()
		}
	}
	state := func() (clock, seq, acked uint64, kept int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.ackClock, s.ackSeq, s.pushes.acked, s.pushes.len()
	}

	push(3)
	require.Equal(t, []string{"push 1", "push 2", "push 3"}, kinds(readEvery(t, cli, 3)))
	clock, _, _, _ := state()
	require.Zero(t, clock, "no PING under ResumeAckBytes")

	push(1)
	fs := readEvery(t, cli, 2)
	require.Equal(t, []string{"push 4", "PING"}, kinds(fs))
	ping := fs[1].Clock
	clock, seq, _, _ := state()
	require.Equal(t, ping, clock)
	require.Equal(t, uint64(4), seq, "the PING acknowledges the pushes queued before it")

	push(4) // over the bound again, but a PING is awaited: none more
	require.Equal(t, []string{"push 5", "push 6", "push 7", "push 8"}, kinds(readEvery(t, cli, 4)))

	require.NoError(t, s.handleFrame(wire.AppendPong(nil, ping+1)))
	_, _, acked, _ := state()
	require.Zero(t, acked, "a PONG to another PING acknowledges nothing")

	require.NoError(t, s.handleFrame(wire.AppendPong(nil, ping)))
	clock, _, acked, kept := state()
	require.Zero(t, clock)
	require.Equal(t, uint64(4), acked)
	require.Equal(t, 8, kept, "acknowledged pushes stay ackedKeep for a hand-over's duplicate check")
	require.NoError(t, s.handleFrame(wire.AppendPong(nil, ping)))
	_, _, acked, _ = state()
	require.Equal(t, uint64(4), acked, "a second PONG changes nothing")

	// Once older than ackedKeep, the acknowledged pushes go with the next
	// push, the rest stay; the bytes the gate counts follow.
	s.mu.Lock()
	for i := range s.pushes.ents {
		s.pushes.ents[i].at -= int64(ackedKeep + time.Second)
	}
	s.mu.Unlock()
	before := g.pushBytes.Load()
	push(1)
	// The four pushes since the last PING are over the bound: the next
	// push asks at once.
	fs = readEvery(t, cli, 2)
	require.Equal(t, []string{"push 9", "PING"}, kinds(fs))
	require.Greater(t, fs[1].Clock, ping, "each PING's u64 is larger than the last")
	clock, seq, _, kept = state()
	require.Equal(t, fs[1].Clock, clock)
	require.Equal(t, uint64(9), seq)
	require.Equal(t, 5, kept, "pushes 5-9 are kept")
	s.mu.Lock()
	require.Equal(t, 5*size, s.pushes.bytes)
	s.mu.Unlock()
	require.Less(t, g.pushBytes.Load(), before, "four pushes dropped, one added, in the buffer's chunks")

	// A resume can replay from any push the client has not acknowledged;
	// from before one it has, it cannot.
	s.mu.Lock()
	defer s.mu.Unlock()
	got, err := s.pushes.after(4, s.pushSeq)
	require.NoError(t, err)
	require.Len(t, got, 5)
	_, err = s.pushes.after(3, s.pushSeq)
	require.Error(t, err)
}

// The heartbeat's PING asks for an acknowledgement as well; with
// ResumeAckBytes zero (the default) or negative, pushes bring no PING.
func TestPushAcksHeartbeatAndOff(t *testing.T) {
	t.Run("heartbeat", func(t *testing.T) {
		g := replayGate(t, Limits{})
		s, cli := connectedSession(t, g, "s1")
		b := &busBatch{}
		g.onPush(&cluster.Envelope{Type: cluster.TypePush, Sessions: []string{"s1"}, Route: "t.tick", Payload: []byte(`1`)}, b)
		b.release()
		s.ping(time.Now())
		fs := readEvery(t, cli, 2)
		require.Equal(t, []string{"push 1", "PING"}, kinds(fs))
		require.NoError(t, s.handleFrame(wire.AppendPong(nil, fs[1].Clock)))
		s.mu.Lock()
		defer s.mu.Unlock()
		require.Equal(t, uint64(1), s.pushes.acked)
	})
	for _, ab := range []int{0, -1} {
		t.Run(fmt.Sprintf("off/%d", ab), func(t *testing.T) {
			g := replayGate(t, Limits{ResumeAckBytes: ab})
			s, cli := connectedSession(t, g, "s1")
			for range 20 {
				b := &busBatch{}
				g.onPush(&cluster.Envelope{Type: cluster.TypePush, Sessions: []string{"s1"}, Route: "t.tick", Payload: bytes.Repeat([]byte("x"), 1000)}, b)
				b.release()
			}
			s.ping(time.Now()) // the heartbeat's: the first PING on the wire
			fs := readEvery(t, cli, 21)
			for i, f := range fs[:20] {
				require.Equal(t, wire.KindPush, f.Kind, "frame %d", i)
			}
			require.Equal(t, wire.KindPing, fs[20].Kind)
		})
	}
}

// The PONG acknowledges the responses queued before its PING too: their
// payloads leave the cache, their seqs stay (a re-send is 306, not a
// second run), and a response queued after the PING keeps its payload.
func TestResponseAcks(t *testing.T) {
	g := replayGate(t, Limits{ResumeAckBytes: 1})
	s, cli := connectedSession(t, g, "s1")
	s.respond(1, wire.OK, []byte(`"one"`))
	b := &busBatch{}
	g.onPush(&cluster.Envelope{Type: cluster.TypePush, Sessions: []string{"s1"}, Route: "t.tick", Payload: []byte(`1`)}, b)
	b.release()
	s.respond(2, wire.OK, []byte(`"two"`))
	fs := readEvery(t, cli, 4)
	require.Equal(t, []string{"RESPONSE", "push 1", "PING", "RESPONSE"}, kinds(fs))

	require.NoError(t, s.handleFrame(wire.AppendPong(nil, fs[2].Clock)))
	s.mu.Lock()
	defer s.mu.Unlock()
	one, two := s.resps.find(1), s.resps.find(2)
	require.NotNil(t, one, "an acknowledged response's seq stays")
	require.True(t, one.gone)
	require.Zero(t, one.n)
	require.NotNil(t, two)
	require.False(t, two.gone, "queued after the PING: kept")
	require.Equal(t, `"two"`, string(s.resps.entry(two).Payload))
	require.Equal(t, len(`"two"`), s.resps.bytes)
}
