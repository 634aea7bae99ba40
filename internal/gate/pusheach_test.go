package gate_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/wire"
)

// A push-each message gives each of its sessions its own payload, follows
// a session that moved to another gate, and one that is malformed is
// dropped without touching the sessions it names.
func TestPushEach(t *testing.T) {
	t.Parallel()
	c := startResumeCluster(t, hearth.Limits{})
	bus := serviceBus(t, c)

	x, y := dialRaw(t, c.a, "tcp"), dialRaw(t, c.a, "ws")
	ax, ay := x.handshake(wire.CodecJSON), y.handshake(wire.CodecProtobuf)
	// z moves from gate-a to gate-b: gate-a forwards what still reaches it.
	z, az := movedToB(t, c)

	// Malformed: the payloads do not split into one per session.
	bad := (&cluster.Envelope{Type: cluster.TypePushEach, Sessions: []string{ax.Session, ay.Session}, Route: "t.each",
		Payload: cluster.AppendPayloads(nil, [][]byte{[]byte(`"only one"`)})}).Append(nil)
	require.NoError(t, bus.Conn().Publish("hearth.gate.gate-a.c", bad))

	sessions := []string{ax.Session, ay.Session, az.Session}
	payloads := [][]byte{[]byte(`{"to":"x"}`), {0x08, 0x02}, []byte(`{"to":"z"}`)}
	require.NoError(t, bus.PushEach("gate-a", sessions, nil, "t.each", cluster.AppendPayloads(nil, payloads)))
	require.Error(t, bus.PushEach("gate-a", sessions, nil, "t.each", cluster.AppendPayloads(nil, payloads[:2])), "two payloads for three sessions")

	for i, rc := range []*rawClient{x, y, z} {
		f := rc.next()
		require.Equal(t, wire.KindPush, f.Kind, "session %d", i)
		require.Equal(t, "t.each", string(f.Route))
		require.Equal(t, uint64(1), f.PushSeq, "session %d: the malformed message delivered nothing", i)
		require.Equal(t, string(payloads[i]), string(f.Payload), "session %d got another's payload", i)
		rc.ping(1)
	}
}

// hearth_push_delay_seconds counts each service push a gate writes to a
// connected client, from the time the service sent it: a push forwarded to
// the session's new gate keeps that time, and one sent long ago lands in
// the histogram's top bucket.
func TestPushDelayMetric(t *testing.T) {
	t.Parallel()
	c := startResumeCluster(t, hearth.Limits{})
	bus := serviceBus(t, c)

	x := dialRaw(t, c.a, "tcp")
	ax := x.handshake(wire.CodecJSON)
	z, az := movedToB(t, c)

	const (
		count = "hearth_push_delay_seconds_count"
		below = `hearth_push_delay_seconds_bucket{le="2.5"}`
	)
	a0, b0 := scrape(t, c.a), scrape(t, c.b)
	require.NoError(t, bus.PushEach("gate-a", []string{ax.Session, az.Session}, nil, "t.each",
		cluster.AppendPayloads(nil, [][]byte{[]byte(`1`), []byte(`2`)})))
	for _, rc := range []*rawClient{x, z} {
		require.Equal(t, wire.KindPush, rc.next().Kind)
	}
	hearthtest.Eventually(t, waitLong, func() bool { return scrape(t, c.a)[count] == a0[count]+1 },
		"gate-a did not count its one push (%v before)", a0[count])
	hearthtest.Eventually(t, waitLong, func() bool { return scrape(t, c.b)[count] == b0[count]+1 },
		"gate-b did not count the push gate-a forwarded (%v before)", b0[count])
	require.Equal(t, scrape(t, c.a)[below], a0[below]+1, "a fresh push is under 2.5 s")

	// A push its service sent 10 s ago: above every bucket but +Inf.
	old := (&cluster.Envelope{Type: cluster.TypePush, Sessions: []string{ax.Session}, Route: "t.old", JSON: []byte(`3`),
		Sent: time.Now().Add(-10 * time.Second).UnixNano()}).Append(nil)
	a1 := scrape(t, c.a)
	require.NoError(t, bus.Conn().Publish("hearth.gate.gate-a.c", old))
	require.Equal(t, "t.old", string(x.next().Route))
	hearthtest.Eventually(t, waitLong, func() bool { return scrape(t, c.a)[count] == a1[count]+1 },
		"gate-a did not count the old push")
	require.Equal(t, a1[below], scrape(t, c.a)[below], "a push sent 10 s ago counted under 2.5 s")
}

// serviceBus is a bus connection to c's NATS, as a service node has, to
// send gates envelopes of its own.
func serviceBus(t *testing.T, c *resumeCluster) *cluster.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	bus, err := cluster.Connect(ctx, cluster.Config{URL: c.a.NATSURL(), Name: t.Name()})
	require.NoError(t, err)
	t.Cleanup(bus.Close)
	return bus
}

// movedToB is a JSON session that began on gate-a and resumed on gate-b,
// and its first handshake's answer: gate-a forwards what still reaches it.
func movedToB(t *testing.T, c *resumeCluster) (*rawClient, wire.HandshakeAck) {
	t.Helper()
	z := dialRaw(t, c.a, "tcp")
	az := z.handshake(wire.CodecJSON)
	require.NoError(t, z.conn.Close())
	hearthtest.Eventually(t, waitLong, func() bool { return detached(t, c.a) >= 1 }, "the session never detached from gate-a")
	z = dialRaw(t, c.b, "tcp")
	require.True(t, ackOf(t, z.resumeHandshake(wire.CodecJSON, az.Resume, 0)).Resumed)
	return z, az
}

// A push-each sent with the sessions' counters (as a room sends it) is
// numbered in the same sequence as pushes whose counts the bus looks up:
// none is dropped as a repeat or held as early, and the client sees them
// in the order sent.
func TestPushEachCounters(t *testing.T) {
	t.Parallel()
	c := startResumeCluster(t, hearth.Limits{})
	bus := serviceBus(t, c)

	x := dialRaw(t, c.a, "tcp")
	ax := x.handshake(wire.CodecJSON)
	sessions := []string{ax.Session}
	counters := []*cluster.PushCounter{bus.Counter(ax.Session)}

	require.NoError(t, bus.Push("gate-a", sessions, "t.one", nil, []byte(`1`)))
	require.NoError(t, bus.PushEach("gate-a", sessions, counters, "t.each", cluster.AppendPayloads(nil, [][]byte{[]byte(`2`)})))
	require.NoError(t, bus.Push("gate-a", sessions, "t.one", nil, []byte(`3`)))
	require.NoError(t, bus.PushEach("gate-a", sessions, counters, "t.each", cluster.AppendPayloads(nil, [][]byte{[]byte(`4`)})))
	require.Error(t, bus.PushEach("gate-a", sessions, []*cluster.PushCounter{counters[0], counters[0]}, "t.each",
		cluster.AppendPayloads(nil, [][]byte{[]byte(`5`)})), "two counters for one session")

	for i := 1; i <= 4; i++ {
		f := x.next()
		require.Equal(t, wire.KindPush, f.Kind)
		require.Equal(t, uint64(i), f.PushSeq)
		require.Equal(t, fmt.Sprint(i), string(f.Payload), "push %d out of order or lost", i)
	}
	x.ping(1)
}
