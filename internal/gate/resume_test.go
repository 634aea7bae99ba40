package gate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/pb/syspb"
	"github.com/hearth-server/hearth/wire"
)

// counter is a service that counts executions per key, so a test can tell
// a request that ran twice from one answered from the cache.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) service() *hearth.Service {
	c.n = map[string]int{}
	svc := hearth.NewService("count")
	hearth.HandleRaw(svc, "add", func(ctx context.Context, _ *hearth.Session, payload []byte) ([]byte, error) {
		var req struct {
			Key string `json:"key"`
			MS  int    `json:"ms"`
		}
		if err := json.Unmarshal(payload, &req); err != nil {
			return nil, hearth.NewError(hearth.CodeInvalidPayload, err.Error())
		}
		c.mu.Lock()
		c.n[req.Key]++
		n := c.n[req.Key]
		c.mu.Unlock()
		select {
		case <-time.After(time.Duration(req.MS) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return []byte(fmt.Sprintf(`{"key":%q,"n":%d}`, req.Key, n)), nil
	})
	hearth.HandleRaw(svc, "join", func(ctx context.Context, s *hearth.Session, _ []byte) ([]byte, error) {
		return []byte(`{}`), s.Join(ctx, "room")
	})
	hearth.HandleRaw(svc, "say", func(ctx context.Context, s *hearth.Session, payload []byte) ([]byte, error) {
		var req struct{ N uint32 }
		if err := json.Unmarshal(payload, &req); err != nil {
			return nil, hearth.NewError(hearth.CodeInvalidPayload, err.Error())
		}
		return []byte(`{}`), s.Node().Publish(ctx, "room", "count.said", &syspb.Tick{N: req.N})
	})
	// count.burst publishes n messages to the channel as fast as it can.
	hearth.HandleRaw(svc, "burst", func(ctx context.Context, s *hearth.Session, payload []byte) ([]byte, error) {
		var req struct{ N uint32 }
		if err := json.Unmarshal(payload, &req); err != nil {
			return nil, hearth.NewError(hearth.CodeInvalidPayload, err.Error())
		}
		for i := uint32(1); i <= req.N; i++ {
			if err := s.Node().Publish(ctx, "room", "count.burst", &syspb.Tick{N: i}); err != nil {
				return nil, err
			}
		}
		return []byte(`{}`), nil
	})
	// count.flood pushes n messages to another session, for filling a
	// detached session's buffer.
	hearth.HandleRaw(svc, "flood", func(ctx context.Context, s *hearth.Session, payload []byte) ([]byte, error) {
		var req struct {
			Gate, Session string
			N             int
		}
		if err := json.Unmarshal(payload, &req); err != nil {
			return nil, hearth.NewError(hearth.CodeInvalidPayload, err.Error())
		}
		for i := 1; i <= req.N; i++ {
			if err := s.Node().PushSession(ctx, req.Gate, req.Session, "count.flood", &syspb.Tick{N: uint32(i)}); err != nil {
				return nil, err
			}
		}
		return []byte(`{}`), nil
	})
	return svc
}

func (c *counter) count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

// resumeHandshake sends a HANDSHAKE that resumes with token after lastPush
// and returns the first frame the gate answers with.
func (rc *rawClient) resumeHandshake(codec, token string, lastPush uint64) wire.Frame {
	rc.t.Helper()
	p, err := json.Marshal(wire.Handshake{Version: 1, Codec: codec, Client: "resume-test/1", Resume: token, LastPush: lastPush})
	require.NoError(rc.t, err)
	rc.send(wire.AppendHandshake(nil, p))
	return rc.next()
}

func ackOf(t *testing.T, f wire.Frame) wire.HandshakeAck {
	t.Helper()
	require.Equal(t, wire.KindHandshakeAck, f.Kind, "status %d payload %q", f.Status, f.Payload)
	var ack wire.HandshakeAck
	require.NoError(t, json.Unmarshal(f.Payload, &ack))
	return ack
}

// tick reads the next frame as a sys.tick push and returns push_seq and n.
func (rc *rawClient) tick() (uint64, int) {
	rc.t.Helper()
	f := rc.next()
	require.Equal(rc.t, wire.KindPush, f.Kind, "want a push, got %v status %d payload %q", f.Kind, f.Status, f.Payload)
	require.Equal(rc.t, "sys.tick", string(f.Route))
	var tick struct {
		N int `json:"n"`
	}
	require.NoError(rc.t, json.Unmarshal(f.Payload, &tick))
	return f.PushSeq, tick.N
}

type resumeCluster struct {
	a, b  *hearthtest.Node
	count *counter
}

func startResumeCluster(t *testing.T, limits hearth.Limits) *resumeCluster {
	t.Helper()
	c := &resumeCluster{count: &counter{}}
	c.a = hearthtest.Start(t, hearth.Config{NodeID: "gate-a", NATSListen: "127.0.0.1:0", RegistryInterval: 100 * time.Millisecond, Limits: limits}, c.count.service())
	c.b = hearthtest.Start(t, hearth.Config{NodeID: "gate-b", Roles: []string{"gate"}, NATSURL: c.a.NATSURL(), RegistryInterval: 100 * time.Millisecond, Limits: limits})
	hearthtest.Eventually(t, waitLong, func() bool { return len(c.a.Nodes()) == 2 && len(c.b.Nodes()) == 2 }, "gates do not see each other")
	// gate-b's first handshake carries gate-a's routes, which every test's
	// first handshake requires: a node serves only once its registry has
	// loaded the nodes already there (Registry.Join). The probe session
	// ends with BYE (no detached session left to count; under a heartbeat
	// limit a late client may be kicked first and leave one detached on
	// gate-b, which no heartbeat test counts).
	rc := dialRaw(t, c.b, "tcp")
	rc.send(handshakeBody(wire.Version, wire.CodecJSON))
	ack := ackOf(t, rc.next())
	rc.send(wire.AppendBye(nil))
	rc.expectClosedAfterPings()
	_ = rc.conn.Close()
	require.NotEmpty(t, ack.Routes, "gate-b's first handshake has no route dictionary")
	require.Contains(t, ack.Routes, "count.burst", "gate-b's first handshake lacks gate-a's routes")
	return c
}

// A dropped connection is resumed on the same gate and on the other one:
// the same session, every push after last_push replayed in order with no
// gap and no duplicate, pushes sent while it was away included; a request
// whose answer was lost is re-sent with its seq and not executed again, and
// one already answered is answered again from the cache.
func TestResume(t *testing.T) {
	t.Parallel()
	c := startResumeCluster(t, hearth.Limits{})
	for _, tr := range hearthtest.Transports {
		for _, where := range []string{"same gate", "other gate"} {
			t.Run(tr+"/"+where, func(t *testing.T) {
				key := tr + where
				first := dialRaw(t, c.a, tr)
				ack := first.handshake(wire.CodecJSON)
				require.NotEmpty(t, ack.Resume, "the ACK carries a resume token")
				require.False(t, ack.Resumed)

				// An answered request, then a slow one whose answer is lost.
				first.send(wire.AppendRequest(nil, 1, "count.add", []byte(`{"key":"done-`+key+`"}`)))
				require.Equal(t, wire.OK, first.response(1).Status)
				first.send(wire.AppendRequest(nil, 2, "sys.push", []byte(`{"count":30,"interval_ms":20}`)))
				require.Equal(t, wire.OK, first.response(2).Status)
				var last uint64
				for want := 1; want <= 5; want++ {
					seq, n := first.tick()
					require.Equal(t, uint64(want), seq)
					require.Equal(t, want, n)
					last = seq
				}
				first.send(wire.AppendRequest(nil, 3, "count.add", []byte(`{"key":"slow-`+key+`","ms":400}`)))
				away := detached(t, c.a)
				require.NoError(t, first.conn.Close())
				// Pushes keep coming while it is away.
				hearthtest.Eventually(t, waitLong, func() bool { return detached(t, c.a) > away }, "the session never detached")

				gate := c.a
				if where == "other gate" {
					gate = c.b
				}
				second := dialRaw(t, gate, tr)
				again := ackOf(t, second.resumeHandshake(wire.CodecJSON, ack.Resume, last))
				require.True(t, again.Resumed)
				require.Equal(t, ack.Session, again.Session)
				require.NotEqual(t, ack.Resume, again.Resume, "every ACK issues a fresh token")

				// Re-send both requests with their seqs: neither runs again.
				second.send(wire.AppendRequest(nil, 1, "count.add", []byte(`{"key":"done-`+key+`"}`)))
				second.send(wire.AppendRequest(nil, 3, "count.add", []byte(`{"key":"slow-`+key+`","ms":400}`)))
				responses := map[uint32]wire.Frame{}
				for want := int(last) + 1; want <= 30 || len(responses) < 2; {
					f := second.next()
					switch f.Kind {
					case wire.KindPush:
						require.Equal(t, uint64(want), f.PushSeq, "push_seq after resume")
						var tick struct{ N int }
						require.NoError(t, json.Unmarshal(f.Payload, &tick))
						require.Equal(t, want, tick.N)
						want++
					case wire.KindResponse:
						_, dup := responses[f.Seq]
						require.False(t, dup, "seq %d answered twice", f.Seq)
						require.Equal(t, wire.OK, f.Status, "seq %d: %q", f.Seq, f.Payload)
						responses[f.Seq] = f
					default:
						t.Fatalf("unexpected %v", f.Kind)
					}
				}
				require.JSONEq(t, `{"key":"done-`+key+`","n":1}`, string(responses[1].Payload))
				require.JSONEq(t, `{"key":"slow-`+key+`","n":1}`, string(responses[3].Payload))
				require.Equal(t, 1, c.count.count("done-"+key), "an answered request ran again")
				require.Equal(t, 1, c.count.count("slow-"+key), "a request in flight ran again")
				second.ping(4)
			})
		}
	}
}

// Every resume that cannot be honoured is KICK 304, distinct from every
// other code: an unknown, forged or malformed token; a token of a gate that
// is gone; a different codec; a session whose grace passed; a session whose
// resume buffer overflowed while it was away.
func TestResumeLost(t *testing.T) {
	t.Parallel()
	c := startResumeCluster(t, hearth.Limits{ResumeGrace: 400 * time.Millisecond, ResumePushes: 10})
	open := func(tr string) (*rawClient, wire.HandshakeAck) {
		rc := dialRaw(t, c.a, tr)
		return rc, rc.handshake(wire.CodecJSON)
	}
	gone := func(tr, token string) bool {
		f := dialRaw(t, c.b, tr).resumeHandshake(wire.CodecJSON, token, 0)
		return f.Kind == wire.KindKick && f.Status == wire.CodeSessionLost
	}
	lost := func(tr, codec, token string, last uint64) {
		t.Helper()
		rc := dialRaw(t, c.b, tr)
		f := rc.resumeHandshake(codec, token, last)
		require.Equal(t, wire.KindKick, f.Kind, "want KICK 304, got %v", f.Kind)
		require.Equal(t, wire.CodeSessionLost, f.Status, "reason %q", f.Payload)
	}
	for _, tr := range hearthtest.Transports {
		t.Run(tr, func(t *testing.T) {
			rc, ack := open(tr)
			require.NoError(t, rc.conn.Close())
			// The refusals below are of a detached session's token: wait
			// until the gate has seen the close, or a resume may find the
			// session still connected and it detaches after the grace
			// step below has counted the detached ones.
			hearthtest.Eventually(t, waitLong, func() bool { return detached(t, c.a) == 1 }, "the session never detached")
			parts := strings.Split(ack.Resume, ".")
			require.Len(t, parts, 3)
			forged := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
			lost(tr, wire.CodecJSON, forged, 0)
			lost(tr, wire.CodecJSON, "not-a-token", 0)
			lost(tr, wire.CodecJSON, "gone-gate."+parts[1]+"."+parts[2], 0)
			lost(tr, wire.CodecProtobuf, ack.Resume, 0)
			lost(tr, wire.CodecJSON, ack.Resume, 99) // pushes it never had

			if tr == "ws" {
				// A close frame is a goodbye: the session ends at once.
				rc, ack = open(tr)
				rc.writeWSFrame(ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye"))))
				_, _ = rc.read()
				hearthtest.Eventually(t, waitLong, func() bool { return gone(tr, ack.Resume) }, "a resume after a close frame was not refused")
			}

			// Grace: after it, even the right token is lost.
			// Sessions of the steps above expire first (grace 400 ms), so
			// the gauge counts only this one.
			hearthtest.Eventually(t, waitLong, func() bool { return detached(t, c.a) == 0 }, "earlier sessions outlived their grace")
			before := detached(t, c.a)
			rc, ack = open(tr)
			require.NoError(t, rc.conn.Close())
			hearthtest.Eventually(t, waitLong, func() bool { return detached(t, c.a) > before }, "the session never detached")
			hearthtest.Eventually(t, waitLong, func() bool { return detached(t, c.a) == before }, "the session outlived its grace")
			lost(tr, wire.CodecJSON, ack.Resume, 0)

			// Overflow: 50 pushes, while it is away, for a session that keeps 10.
			hearthtest.Eventually(t, waitLong, func() bool { return detached(t, c.a) == 0 }, "earlier sessions outlived their grace")
			before = detached(t, c.a)
			rc, ack = open(tr)
			require.NoError(t, rc.conn.Close())
			hearthtest.Eventually(t, waitLong, func() bool { return detached(t, c.a) > before }, "the session never detached")
			other, _ := open(tr)
			other.send(wire.AppendRequest(nil, 1, "count.flood", []byte(fmt.Sprintf(`{"gate":%q,"session":%q,"n":50}`, ack.Node, ack.Session))))
			require.Equal(t, wire.OK, other.response(1).Status)
			// The overflow ends it (the sweep sees it), well before its grace.
			hearthtest.Eventually(t, waitLong, func() bool { return detached(t, c.a) == before }, "the overflowing session was not ended")
			lost(tr, wire.CodecJSON, ack.Resume, 0)
		})
	}
}

// A heartbeat timeout (KICK 7) leaves the session resumable.
func TestResumeAfterHeartbeatTimeout(t *testing.T) {
	t.Parallel()
	c := startResumeCluster(t, hearth.Limits{Heartbeat: 150 * time.Millisecond})
	rc := dialRaw(t, c.a, "tcp")
	rc.seePings = true
	ack := rc.handshake(wire.CodecProtobuf)
	for {
		f := rc.next()
		if f.Kind == wire.KindKick {
			require.Equal(t, wire.CodeHeartbeatTimeout, f.Status)
			break
		}
		require.Equal(t, wire.KindPing, f.Kind)
	}
	again := dialRaw(t, c.b, "ws")
	require.True(t, ackOf(t, again.resumeHandshake(wire.CodecProtobuf, ack.Resume, 0)).Resumed)
	again.ping(1)
}

// Draining a gate sends its clients KICK 303 naming the other gate; they
// resume there with nothing lost, and the drained gate stops.
func TestDrain(t *testing.T) {
	t.Parallel()
	c := startResumeCluster(t, hearth.Limits{})
	rc := dialRaw(t, c.b, "tcp")
	ack := rc.handshake(wire.CodecJSON)
	rc.send(wire.AppendRequest(nil, 1, "sys.push", []byte(`{"count":20,"interval_ms":30}`)))
	require.Equal(t, wire.OK, rc.response(1).Status)
	seq, _ := rc.tick()

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*waitLong)
		defer cancel()
		done <- c.b.Shutdown(ctx)
	}()
	var reason string
	for {
		f := rc.next()
		if f.Kind == wire.KindKick {
			require.Equal(t, wire.CodeReconnectElsewhere, f.Status)
			reason = string(f.Payload)
			break
		}
		require.Equal(t, wire.KindPush, f.Kind)
		seq = f.PushSeq
	}
	want := "tcp://" + c.a.Addr("tcp").String()
	require.Contains(t, reason, want, "the KICK names the other gate")
	again := dialRawAddr(t, "tcp", strings.TrimPrefix(want, "tcp://"))
	require.True(t, ackOf(t, again.resumeHandshake(wire.CodecJSON, ack.Resume, seq)).Resumed)
	for want := seq + 1; want <= 20; want++ {
		got, _ := again.tick()
		require.Equal(t, want, got)
	}
	select {
	case err := <-done:
		require.NoError(t, err, "the drained gate stops once its session moved")
	case <-time.After(2 * waitLong):
		t.Fatal("drained gate did not stop")
	}
}

// A detached channel member whose buffer overflows is ended from inside the
// channel's fan-out; the channel and the gate go on serving the others.
func TestResumeOverflowInChannel(t *testing.T) {
	t.Parallel()
	c := startResumeCluster(t, hearth.Limits{ResumePushes: 10})
	away := dialRaw(t, c.a, "tcp")
	away.handshake(wire.CodecJSON)
	away.send(wire.AppendRequest(nil, 1, "count.join", []byte(`{}`)))
	require.Equal(t, wire.OK, away.response(1).Status)
	stay := dialRaw(t, c.a, "tcp")
	stay.handshake(wire.CodecJSON)
	stay.send(wire.AppendRequest(nil, 1, "count.join", []byte(`{}`)))
	require.Equal(t, wire.OK, stay.response(1).Status)
	require.NoError(t, away.conn.Close())
	hearthtest.Eventually(t, waitLong, func() bool { return detached(t, c.a) == 1 }, "the session never detached")

	for n := 1; n <= 30; n++ {
		stay.send(wire.AppendRequest(nil, uint32(1+n), "count.say", []byte(fmt.Sprintf(`{"n":%d}`, n))))
	}
	said, answered := map[int]bool{}, 0
	for len(said) < 30 || answered < 30 {
		f := stay.next()
		switch f.Kind {
		case wire.KindResponse:
			require.Equal(t, wire.OK, f.Status, "%q", f.Payload)
			answered++
		case wire.KindPush:
			var tick struct{ N int }
			require.NoError(t, json.Unmarshal(f.Payload, &tick))
			require.False(t, said[tick.N], "message %d twice", tick.N)
			said[tick.N] = true
		}
	}
	stay.ping(100)
}

// Channel messages published while a member moves to another gate reach it
// exactly once: the old gate forwards them until the new one has joined,
// and the new one drops the copies.
func TestResumeChannelHandover(t *testing.T) {
	t.Parallel()
	c := startResumeCluster(t, hearth.Limits{})
	for round := range 3 {
		member := dialRaw(t, c.a, "tcp")
		ack := member.handshake(wire.CodecJSON)
		member.send(wire.AppendRequest(nil, 1, "count.join", []byte(`{}`)))
		require.Equal(t, wire.OK, member.response(1).Status)
		speaker := dialRaw(t, c.a, "tcp")
		speaker.handshake(wire.CodecJSON)

		const total = 200
		done := make(chan struct{})
		go func() {
			defer close(done)
			for n := 1; n <= total; n++ {
				speaker.send(wire.AppendRequest(nil, uint32(n), "count.say", []byte(fmt.Sprintf(`{"n":%d}`, n))))
				speaker.response(uint32(n))
			}
		}()
		got := map[int]int{}
		var trace []string
		var last uint64
		for len(got) < 40 {
			f := member.next()
			if f.Kind == wire.KindPush {
				var tick struct{ N int }
				require.NoError(t, json.Unmarshal(f.Payload, &tick))
				got[tick.N]++
				last = f.PushSeq
				trace = append(trace, fmt.Sprintf("A%d:%d", f.PushSeq, tick.N))
			}
		}
		require.NoError(t, member.conn.Close())
		moved := dialRaw(t, c.b, "tcp")
		require.True(t, ackOf(t, moved.resumeHandshake(wire.CodecJSON, ack.Resume, last)).Resumed)
		<-done
		for len(got) < total {
			f := moved.next()
			require.Equal(t, wire.KindPush, f.Kind)
			require.Equal(t, last+1, f.PushSeq, "round %d: push_seq gap or repeat", round)
			last = f.PushSeq
			var tick struct{ N int }
			require.NoError(t, json.Unmarshal(f.Payload, &tick))
			got[tick.N]++
			trace = append(trace, fmt.Sprintf("B%d:%d", f.PushSeq, tick.N))
		}
		for n := 1; n <= total; n++ {
			require.Equal(t, 1, got[n], "round %d: message %d delivered %d times (pushes %v)", round, n, got[n], trace)
		}
	}
}

// detached is the gate's count of sessions without a connection.
func detached(t testing.TB, node *hearthtest.Node) float64 {
	return scrape(t, node)["hearth_sessions_detached"]
}

// TestResumeWithAcks: with a PING after every push or two, answered as
// they come while the service pushes (the gate takes each PONG on the
// session's reader as another goroutine numbers pushes), a session dropped
// mid-flood resumes on either gate from its last push, and sees every push
// once, in order.
func TestResumeWithAcks(t *testing.T) {
	t.Parallel()
	c := startResumeCluster(t, hearth.Limits{ResumeAckBytes: 200})
	for _, tr := range hearthtest.Transports {
		for _, where := range []string{"same gate", "other gate"} {
			t.Run(tr+"/"+where, func(t *testing.T) {
				const total, cut = 300, 150
				first := dialRaw(t, c.a, tr)
				ack := first.handshake(wire.CodecJSON)
				first.send(wire.AppendRequest(nil, 1, "sys.push", []byte(`{"count":300,"interval_ms":0}`)))
				require.Equal(t, wire.OK, first.response(1).Status)
				for want := 1; want <= cut; want++ {
					seq, n := first.tick()
					require.Equal(t, uint64(want), seq)
					require.Equal(t, want, n)
				}
				require.Positive(t, first.pongs, "the gate asked for acknowledgements")
				require.NoError(t, first.conn.Close())

				gate := c.a
				if where == "other gate" {
					gate = c.b
				}
				second := dialRaw(t, gate, tr)
				require.True(t, ackOf(t, second.resumeHandshake(wire.CodecJSON, ack.Resume, cut)).Resumed)
				for want := cut + 1; want <= total; want++ {
					seq, n := second.tick()
					require.Equal(t, uint64(want), seq, "push_seq after resume")
					require.Equal(t, want, n)
				}
				second.ping(2)
			})
		}
	}
}
