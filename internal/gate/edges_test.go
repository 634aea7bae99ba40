package gate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/wire"
)

// The protocol's edges, as a client written from docs/protocol.md meets
// them: each is answered the way the doc says.
func TestProtocolEdges(t *testing.T) {
	t.Parallel()
	c := startResumeCluster(t, hearth.Limits{})
	for _, tr := range hearthtest.Transports {
		t.Run(tr+"/resume while connected", func(t *testing.T) {
			// The replaced connection is told 305 (do not resume), so its
			// client does not log in again and kick the new one.
			old := dialRaw(t, c.a, tr)
			ack := old.handshake(wire.CodecJSON)
			nu := dialRaw(t, c.b, tr)
			again := ackOf(t, nu.resumeHandshake(wire.CodecJSON, ack.Resume, 0))
			require.True(t, again.Resumed)
			old.expectKick(wire.CodeResumedElsewhere)
			nu.ping(1)
		})
		t.Run(tr+"/notify to an unknown route", func(t *testing.T) {
			rc := dialRaw(t, c.a, tr)
			rc.handshake(wire.CodecJSON)
			rc.send(wire.AppendNotify(nil, "nosuch.route", []byte(`{}`)))
			rc.expectKick(wire.CodeBadRoute)
		})
		t.Run(tr+"/version as a string", func(t *testing.T) {
			rc := dialRaw(t, c.a, tr)
			rc.send(wire.AppendHandshake(nil, []byte(`{"version":"1","codec":"json"}`)))
			rc.expectKick(wire.CodeUnsupported)
		})
		t.Run(tr+"/client is optional", func(t *testing.T) {
			rc := dialRaw(t, c.a, tr)
			rc.send(wire.AppendHandshake(nil, []byte(`{"version":1,"codec":"json"}`)))
			require.Equal(t, wire.KindHandshakeAck, rc.next().Kind)
		})
		t.Run(tr+"/last_push beyond what was sent", func(t *testing.T) {
			rc := dialRaw(t, c.a, tr)
			ack := rc.handshake(wire.CodecJSON)
			require.NoError(t, rc.conn.Close())
			f := dialRaw(t, c.a, tr).resumeHandshake(wire.CodecJSON, ack.Resume, 99)
			require.Equal(t, wire.KindKick, f.Kind)
			require.Equal(t, wire.CodeSessionLost, f.Status)
			require.Contains(t, string(f.Payload), "beyond the last push this session sent (0)")
		})
		t.Run(tr+"/seq reused on one connection", func(t *testing.T) {
			rc := dialRaw(t, c.a, tr)
			rc.handshake(wire.CodecJSON)
			rc.send(wire.AppendRequest(nil, 7, "sys.ping", []byte(`{"a":1}`)))
			require.Equal(t, wire.OK, rc.response(7).Status)
			rc.send(wire.AppendRequest(nil, 7, "sys.ping", []byte(`{"b":2}`)))
			f := rc.response(7)
			require.Equal(t, wire.CodeInvalidPayload, f.Status)
			require.Contains(t, string(f.Payload), "already used")
		})
	}
	t.Run("ws/resume after a close frame", func(t *testing.T) {
		rc := dialRaw(t, c.a, "ws")
		ack := rc.handshake(wire.CodecJSON)
		rc.writeWSFrame(ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye"))))
		_, err := rc.read()
		require.ErrorIs(t, err, errCloseFrame)
		hearthtest.Eventually(t, waitLong, func() error {
			f := dialRaw(t, c.a, "ws").resumeHandshake(wire.CodecJSON, ack.Resume, 0)
			if f.Kind != wire.KindKick || f.Status != wire.CodeSessionLost || !strings.Contains(string(f.Payload), "ended by its client") {
				return fmt.Errorf("resume after a close frame: %v %d %q", f.Kind, f.Status, f.Payload)
			}
			return nil
		})
	})
}

// A client that closes cleanly ends its session at once, over TCP (BYE) as
// over WebSocket: no detached session is left for the grace period, and
// its token no longer resumes.
func TestCleanCloseEndsSession(t *testing.T) {
	t.Parallel()
	node := hearthtest.Start(t, hearth.Config{})
	for _, tr := range hearthtest.Transports {
		t.Run(tr, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitLong)
			defer cancel()
			cl, err := client.Dial(ctx, node.URL(tr), client.Options{})
			require.NoError(t, err)
			token := cl.ResumeToken()
			require.NotEmpty(t, token)
			require.NoError(t, cl.Close())
			// Wait until the gate has ended it (a resume racing the BYE
			// would legitimately win): no session left, none detached.
			hearthtest.Eventually(t, waitLong, func() error {
				m := scrape(t, node)
				if conn, det := m[`hearth_sessions{transport="`+tr+`"}`], m["hearth_sessions_detached"]; conn != 0 || det != 0 {
					return fmt.Errorf("after Close: %v connected, %v detached", conn, det)
				}
				return nil
			})
			f := dialRaw(t, node, tr).resumeHandshake(wire.CodecJSON, token, 0)
			require.Equal(t, wire.KindKick, f.Kind)
			require.Equal(t, wire.CodeSessionLost, f.Status)
			require.Contains(t, string(f.Payload), "ended by its client")
		})
	}
}

// Abuse b: responses are cached for a resume only up to a size and a byte
// budget; a re-send of a request whose response was not kept gets 306 and
// never runs twice. Abuse c: a response larger than the client's frame
// limit becomes a 501 error response, not a dropped connection.
func TestResponseBounds(t *testing.T) {
	t.Parallel()
	c := startResumeCluster(t, hearth.Limits{})
	for _, tr := range hearthtest.Transports {
		t.Run(tr, func(t *testing.T) {
			rc := dialRaw(t, c.a, tr)
			ack := rc.handshake(wire.CodecJSON)
			big := `{"pad":"` + strings.Repeat("x", 40<<10) + `"}`
			rc.send(wire.AppendRequest(nil, 1, "sys.ping", []byte(big)))
			require.Equal(t, wire.OK, rc.response(1).Status)
			before := scrape(t, c.a)["hearth_response_cache_bytes"]
			require.Less(t, before, float64(16<<10), "a 40 KiB response is not cached")
			require.NoError(t, rc.conn.Close())

			again := dialRaw(t, c.b, tr)
			require.True(t, ackOf(t, again.resumeHandshake(wire.CodecJSON, ack.Resume, 0)).Resumed)
			again.send(wire.AppendRequest(nil, 1, "sys.ping", []byte(big)))
			f := again.response(1)
			require.Equal(t, wire.CodeResponseGone, f.Status, "%q", f.Payload)

			// A client that takes frames of at most 4 KiB.
			small := dialRaw(t, c.a, tr)
			small.send(wire.AppendHandshake(nil, []byte(`{"version":1,"codec":"json","max_frame":4096}`)))
			require.Equal(t, wire.KindHandshakeAck, small.next().Kind)
			small.send(wire.AppendRequest(nil, 1, "sys.ping", []byte(`{"pad":"`+strings.Repeat("y", 5000)+`"}`)))
			f = small.response(1)
			require.Equal(t, wire.CodeResponseTooLarge, f.Status)
			require.Contains(t, string(f.Payload), "frame limit of 4096")
			small.ping(2)
		})
	}
}

// Abuse b at scale: 100 sessions sending 40 KiB pings and dropping keep the
// gate's response cache under its budget however much they send.
func TestResponseCacheBudget(t *testing.T) {
	t.Parallel()
	limits := hearth.Limits{ResponseCacheGate: 256 << 10, ResponseCacheItem: 64 << 10, ResponseCacheBytes: 128 << 10, MaxConnsPerIP: -1, ConnRatePerIP: -1}
	node := hearthtest.Start(t, hearth.Config{Limits: limits})
	big := []byte(`{"pad":"` + strings.Repeat("z", 40<<10) + `"}`)
	for i := range 100 {
		rc := dialRaw(t, node, "tcp")
		rc.handshake(wire.CodecJSON)
		for seq := uint32(1); seq <= 3; seq++ {
			rc.send(wire.AppendRequest(nil, seq, "sys.ping", big))
			require.Equal(t, wire.OK, rc.response(seq).Status, "session %d", i)
		}
		require.NoError(t, rc.conn.Close())
	}
	require.LessOrEqual(t, scrape(t, node)["hearth_response_cache_bytes"], float64(256<<10))
}

// Abuse d: a handshake whose resume token names a live session with a wrong
// secret, or a gate that does not exist, changes nothing but the attacker's
// connection: the victim keeps its pushes, its requests and its own token.
func TestForgedResumeHarmsNothing(t *testing.T) {
	t.Parallel()
	c := startResumeCluster(t, hearth.Limits{})
	for _, tr := range hearthtest.Transports {
		t.Run(tr, func(t *testing.T) {
			victim := dialRaw(t, c.a, tr)
			ack := victim.handshake(wire.CodecJSON)
			victim.send(wire.AppendRequest(nil, 1, "sys.push", []byte(`{"count":6,"interval_ms":20}`)))
			require.Equal(t, wire.OK, victim.response(1).Status)
			seq, _ := victim.tick()

			parts := strings.Split(ack.Resume, ".")
			for _, forged := range []string{
				parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])),
				"nosuchgate." + parts[1] + "." + parts[2],
			} {
				for _, at := range []*hearthtest.Node{c.a, c.b} {
					f := dialRaw(t, at, tr).resumeHandshake(wire.CodecJSON, forged, 0)
					require.Equal(t, wire.KindKick, f.Kind)
					require.Equal(t, wire.CodeSessionLost, f.Status)
				}
			}
			// Every push still arrives, in order, and the session answers.
			for want := seq + 1; want <= 6; want++ {
				got, _ := victim.tick()
				require.Equal(t, want, got)
			}
			victim.ping(2)
			// Its own token still resumes it.
			require.NoError(t, victim.conn.Close())
			again := dialRaw(t, c.b, tr)
			require.True(t, ackOf(t, again.resumeHandshake(wire.CodecJSON, ack.Resume, 6)).Resumed)
			again.ping(3)
		})
	}
}

// Abuse a: a WebSocket client that pings without reading its pongs is a
// slow consumer — KICK 202 — before its handshake as after, and the gate
// keeps serving others.
func TestWebSocketPingFlood(t *testing.T) {
	t.Parallel()
	node := hearthtest.Start(t, hearth.Config{Limits: hearth.Limits{SendQueueBytes: 64 << 10}})
	for _, handshake := range []bool{false, true} {
		t.Run(fmt.Sprint("handshake=", handshake), func(t *testing.T) {
			kicks := scrape(t, node)[`hearth_kicks_total{code="202"}`]
			rc := dialRaw(t, node, "ws")
			if handshake {
				rc.handshake(wire.CodecJSON)
			}
			// Pings with the largest control payload, never reading: the
			// kernel's buffers fill, then the gate's queue.
			ping := ws.MaskFrame(ws.NewPingFrame(bytes.Repeat([]byte{'p'}, 125)))
			var buf bytes.Buffer
			require.NoError(t, ws.WriteFrame(&buf, ping))
			frame := buf.Bytes()
			_ = rc.conn.SetWriteDeadline(time.Now().Add(waitLong))
			for range 40_000 {
				if _, err := rc.conn.Write(frame); err != nil {
					break // the gate closed the connection
				}
			}
			hearthtest.Eventually(t, waitLong, func() bool {
				return scrape(t, node)[`hearth_kicks_total{code="202"}`] > kicks
			}, "the ping flood was never kicked with 202")
			require.LessOrEqual(t, scrape(t, node)["hearth_send_queue_peak_bytes"], float64(64<<10), "the gate's queue for the flood stayed within its bound")
			other, err := client.Dial(context.Background(), node.URL("tcp"), client.Options{})
			require.NoError(t, err)
			defer other.Close()
			_, err = other.RequestRaw(context.Background(), "sys.ping", []byte(`{}`))
			require.NoError(t, err)
		})
	}
}

// Join returns once the gate has added the session: a publish made right
// after it reaches the member.
func TestJoinThenPublish(t *testing.T) {
	t.Parallel()
	c := startResumeCluster(t, hearth.Limits{})
	for round := range 20 {
		rc := dialRaw(t, c.b, "tcp") // the service runs on gate-a's node
		rc.handshake(wire.CodecJSON)
		rc.send(wire.AppendRequest(nil, 1, "count.join", []byte(`{}`)))
		require.Equal(t, wire.OK, rc.response(1).Status)
		rc.send(wire.AppendRequest(nil, 2, "count.say", []byte(fmt.Sprintf(`{"n":%d}`, round))))
		var pushed bool
		for !pushed {
			f := rc.next()
			if f.Kind == wire.KindPush {
				var p struct{ N int }
				require.NoError(t, json.Unmarshal(f.Payload, &p))
				require.Equal(t, round, p.N)
				pushed = true
			}
		}
		require.NoError(t, rc.conn.Close())
	}
}

// A gate that cannot keep up with a channel says so: the drop is counted,
// and the members see a gap in push_seq (a number skipped before the next
// push), so nothing is lost silently; a resume across the gap is 304.
func TestChannelOverflowIsVisible(t *testing.T) {
	t.Parallel()
	c := startResumeCluster(t, hearth.Limits{ChannelBuffer: 1})
	member := dialRaw(t, c.a, "tcp")
	ack := member.handshake(wire.CodecJSON)
	member.send(wire.AppendRequest(nil, 1, "count.join", []byte(`{}`)))
	require.Equal(t, wire.OK, member.response(1).Status)
	speaker := dialRaw(t, c.a, "tcp")
	speaker.handshake(wire.CodecJSON)
	var seq uint32 = 1
	hearthtest.Eventually(t, 4*waitLong, func() bool {
		seq++
		speaker.send(wire.AppendRequest(nil, seq, "count.burst", []byte(`{"n":3000}`)))
		require.Equal(t, wire.OK, speaker.response(seq).Status)
		return scrape(t, c.a)["hearth_channel_drops_total"] >= 1
	}, "a one-message channel buffer never overflowed")
	// A marker after the drop: its push_seq is beyond the pushes received.
	// A marker may itself be dropped while the fan-out is still behind,
	// so one is said every 50 ms until the member has one.
	stop, said := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(said)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for n := seq + 1; ; n++ {
			body := wire.AppendRequest(nil, n, "count.say", []byte(`{"n":424242}`))
			if _, err := speaker.conn.Write(append(wire.AppendLength(nil, len(body)), body...)); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	var received, last, before uint64
	for {
		f := member.next()
		if f.Kind != wire.KindPush {
			continue
		}
		received++
		require.Greater(t, f.PushSeq, last, "push_seq goes up")
		if f.PushSeq > last+1 && before == 0 {
			before = last // the last push before the first gap
		}
		last = f.PushSeq
		if string(f.Route) == "count.said" {
			break
		}
	}
	close(stop)
	<-said
	require.Greater(t, last, received, "the member sees a gap: %d pushes received, the last numbered %d", received, last)
	// Markers said before the stop may still be on their way, and one
	// dropped after last would be a gap no resume from last can cross.
	// Once the member has heard nothing for a second they are delivered or
	// dropped; then one more marker, alone in the fan-out, is not dropped,
	// and it is where the session resumes from.
	for {
		if _, err := member.readWithin(time.Second); err != nil {
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)
			break
		}
	}
	final := seq + 1_000_000
	body := wire.AppendRequest(nil, final, "count.say", []byte(`{"n":777777}`))
	_, err := speaker.conn.Write(append(wire.AppendLength(nil, len(body)), body...))
	require.NoError(t, err)
	for {
		f := member.next()
		if f.Kind == wire.KindPush {
			last = f.PushSeq
			if string(f.Route) == "count.said" && bytes.Contains(f.Payload, []byte("777777")) {
				break
			}
		}
	}
	require.NoError(t, member.conn.Close())
	f := dialRaw(t, c.b, "tcp").resumeHandshake(wire.CodecJSON, ack.Resume, before)
	require.Equal(t, wire.KindKick, f.Kind)
	require.Equal(t, wire.CodeSessionLost, f.Status, "a resume across the gap: %q", f.Payload)
	// From after the gap, the session goes on.
	again := dialRaw(t, c.b, "tcp")
	require.True(t, ackOf(t, again.resumeHandshake(wire.CodecJSON, ack.Resume, last)).Resumed)
}
