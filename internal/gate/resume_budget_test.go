package gate_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/wire"
)

// The replay buffers of a whole gate are bounded in bytes: past the budget
// connected sessions keep only their newest pushes, a detached session
// keeps every push it has not been sent (and resumes whole), and the gauge
// returns to zero when the sessions are gone.
func TestResumeGateBudget(t *testing.T) {
	t.Parallel()
	const perSession, budget = 16 << 10, 4 << 10
	c := startResumeCluster(t, hearth.Limits{ResumeBytes: perSession, ResumeGateBytes: budget, ResumeGrace: 2 * time.Second})
	kept := func(n *hearthtest.Node) float64 { return scrape(t, n)["hearth_resume_buffer_bytes"] }

	// A detached session first, with nothing sent to it yet.
	away := dialRaw(t, c.a, "tcp")
	awayAck := away.handshake(wire.CodecJSON)
	require.NoError(t, away.conn.Close())
	hearthtest.Eventually(t, waitLong, func() bool { return detached(t, c.a) == 1 }, "the session never detached")

	// Three connected sessions take 300 pushes each: far past the budget.
	var live []*rawClient
	for i := range 3 {
		rc := dialRaw(t, c.a, hearthtest.Transports[i%2])
		rc.handshake(wire.CodecJSON)
		rc.send(wire.AppendRequest(nil, 1, "sys.push", []byte(`{"count":300}`)))
		require.Equal(t, wire.OK, rc.response(1).Status)
		for want := 1; want <= 300; want++ {
			seq, n := rc.tick()
			require.Equal(t, uint64(want), seq)
			require.Equal(t, want, n)
		}
		live = append(live, rc)
	}
	// Each connected session keeps at most perSession/8 once the budget is
	// spent; without the budget they would keep 300 pushes each.
	got := kept(c.a)
	require.Positive(t, got)
	require.LessOrEqual(t, got, float64(budget+3*perSession/8), "the gate keeps %v bytes for replay", got)

	// The detached session gets 40 pushes while the budget is spent, and
	// still resumes with every one of them.
	other := live[0]
	other.send(wire.AppendRequest(nil, 2, "count.flood", []byte(fmt.Sprintf(`{"gate":%q,"session":%q,"n":40}`, awayAck.Node, awayAck.Session))))
	require.Equal(t, wire.OK, other.response(2).Status)
	back := dialRaw(t, c.b, "tcp")
	require.True(t, ackOf(t, back.resumeHandshake(wire.CodecJSON, awayAck.Resume, 0)).Resumed)
	for want := uint64(1); want <= 40; want++ {
		f := back.next()
		require.Equal(t, wire.KindPush, f.Kind)
		require.Equal(t, want, f.PushSeq, "a detached session's pushes were dropped for the gate's budget")
	}

	// Everything kept is released when the sessions end.
	require.NoError(t, back.conn.Close())
	for _, rc := range live {
		require.NoError(t, rc.conn.Close())
	}
	hearthtest.Eventually(t, waitLong, func() error {
		if a, b := kept(c.a), kept(c.b); a != 0 || b != 0 {
			return fmt.Errorf("replay bytes still counted: gate-a %v, gate-b %v", a, b)
		}
		return nil
	})
}

// Connected sessions share the gate's budget before it is spent: each
// keeps at most half the budget over the sessions (here 16 KiB, a quarter
// of its own bound), so the gate settles well below the budget instead of
// at its edge, where every push flipped some session's bound between
// ResumeBytes and ResumeBytes/8 and its buffer shrank and grew again.
func TestResumeConnectedShareOfGateBudget(t *testing.T) {
	t.Parallel()
	const perSession, budget, sessions = 64 << 10, 256 << 10, 8
	c := startResumeCluster(t, hearth.Limits{ResumeBytes: perSession, ResumeGateBytes: budget, ResumeGrace: 2 * time.Second})
	var live []*rawClient
	for i := range sessions {
		rc := dialRaw(t, c.a, hearthtest.Transports[i%2])
		rc.handshake(wire.CodecJSON)
		live = append(live, rc)
	}
	for _, rc := range live {
		// 1,000 ticks: ~100 KiB counted, past the session's share.
		rc.send(wire.AppendRequest(nil, 1, "sys.push", []byte(`{"count":1000}`)))
		require.Equal(t, wire.OK, rc.response(1).Status)
		for want := 1; want <= 1000; want++ {
			seq, _ := rc.tick()
			require.Equal(t, uint64(want), seq)
		}
	}
	got := scrape(t, c.a)["hearth_resume_buffer_bytes"]
	share := float64(budget / 2 / sessions)
	require.Greater(t, got, float64(sessions)*share/2, "the sessions keep less than half their share: %v bytes", got)
	// Up to a quarter more for a buffer's spare capacity.
	require.LessOrEqual(t, got, float64(sessions)*share*1.25+sessions*512, "the gate keeps %v bytes, more than the sessions' shares", got)
}

// A channel message kept by several sessions' replay buffers is one copy
// of its encoding, which the gate's gauge counts once; it is released when
// the sessions end.
func TestResumeBufferCountsSharedMessageOnce(t *testing.T) {
	t.Parallel()
	node := hearthtest.Start(t, hearth.Config{Limits: hearth.Limits{ResumeGrace: time.Second}}, benchService())
	kept := func() float64 { return scrape(t, node)["hearth_resume_buffer_bytes"] }
	ctx := context.Background()
	const members = 4
	var got atomic.Int64
	var clients []*client.Client
	for range members {
		c := node.Dial(t, "tcp", client.Options{Codec: wire.CodecJSON})
		c.OnPush(benchRoute, func(client.Push) { got.Add(1) })
		_, err := c.RequestRaw(ctx, "gbench.join", nil)
		require.NoError(t, err)
		clients = append(clients, c)
	}
	require.Zero(t, kept())

	text := strings.Repeat("x", 8<<10)
	require.NoError(t, node.Publish(ctx, benchChannel, benchRoute, map[string]string{"text": text}))
	hearthtest.Eventually(t, waitLong, func() bool { return got.Load() == members }, "not every member got the message")
	// The bus message carries the JSON twice (as both encodings); the rings
	// keep one copy of it, and a few hundred bytes per entry.
	n := kept()
	require.GreaterOrEqual(t, n, float64(len(text)))
	require.Less(t, n, 1.25*float64(len(text))+members*512, "the gate counts the message more than once")

	for _, c := range clients {
		require.NoError(t, c.Close())
	}
	hearthtest.Eventually(t, waitLong, func() error {
		if n := kept(); n != 0 {
			return fmt.Errorf("replay bytes still counted: %v", n)
		}
		return nil
	})
}
