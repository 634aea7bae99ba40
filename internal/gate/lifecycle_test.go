package gate_test

import (
	"context"
	"fmt"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/internal/gate"
	"github.com/hearth-server/hearth/pb/syspb"
	"github.com/hearth-server/hearth/wire"
)

// TestShutdown: Shutdown sends KICK 8 to every client on either transport,
// including one whose HANDSHAKE arrives after shutdown has begun, and
// stops accepting.
func TestShutdown(t *testing.T) {
	t.Parallel()
	node := hearthtest.Start(t, hearth.Config{})
	// Connected before the SDK clients below, so accepted before shutdown
	// (the TCP one by the accept queue's order, the WebSocket one by its
	// completed upgrade); they send their HANDSHAKE only once shutdown is
	// under way.
	late := map[string]*rawClient{}
	for _, tr := range hearthtest.Transports {
		late[tr] = dialRaw(t, node, tr)
	}
	sdk := map[string]*client.Client{}
	raw := map[string]*rawClient{}
	for _, tr := range hearthtest.Transports {
		sdk[tr] = node.Dial(t, tr)
		clientPing(t, sdk[tr])
		raw[tr] = dialRaw(t, node, tr)
		raw[tr].handshake(wire.CodecJSON)
	}

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		done <- node.Shutdown(ctx)
	}()

	for _, tr := range hearthtest.Transports {
		select {
		case <-sdk[tr].Done():
		case <-time.After(waitLong):
			t.Fatalf("%s client still connected after shutdown began", tr)
		}
		requireWireError(t, sdk[tr].Err(), wire.CodeShuttingDown)
		raw[tr].expectKick(wire.CodeShuttingDown)
	}
	for _, tr := range hearthtest.Transports {
		rc := late[tr]
		// The gate may already have sent this connection KICK 8 and closed
		// it (Shutdown kicks connections still handshaking): a failed
		// write is fine, the reads tell.
		var body []byte
		if tr == "tcp" {
			body = wire.AppendLength(nil, len(handshakeBody(1, wire.CodecJSON)))
		}
		body = append(body, handshakeBody(1, wire.CodecJSON)...)
		if tr == "ws" {
			_ = wsutil.WriteClientMessage(rc.conn, ws.OpBinary, body)
		} else {
			_, _ = rc.conn.Write(body)
		}
		f := rc.next()
		if f.Kind == wire.KindHandshakeAck {
			f = rc.next()
		}
		require.Equal(t, wire.KindKick, f.Kind, "%s: want KICK 8, got %v", tr, f.Kind)
		require.Equal(t, wire.CodeShuttingDown, f.Status, "%s: reason %q", tr, f.Payload)
		rc.expectClosed()
	}

	select {
	case err := <-done:
		require.NoError(t, err, "shutdown waited for a connection that was never told to go")
	case <-time.After(waitLong + time.Second):
		t.Fatal("shutdown did not return")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	for _, tr := range hearthtest.Transports {
		_, err := client.Dial(ctx, node.URL(tr), client.Options{})
		require.Error(t, err, "%s: a stopped gate accepted a connection", tr)
	}
}

// TestChannels: a channel publish reaches exactly its members, once each;
// a broadcast reaches every session; leaving or disconnecting stops
// delivery. It runs with the gate on the services' node, and with the gate
// on its own bus connection in front of a services-only node: there the
// gate's channel count can be read, and must drop when a channel's last
// local member goes.
func TestChannels(t *testing.T) {
	t.Parallel()
	for _, own := range []bool{false, true} {
		name := "gate on the services node"
		if own {
			name = "gate on its own bus connection"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testChannels(t, own)
		})
	}
}

func testChannels(t *testing.T, ownGate bool) {
	var nodeRef atomic.Pointer[hearthtest.Node]
	chat := hearth.NewService("chat")
	join := func(channel string) func(context.Context, *hearth.Session, *syspb.PushReq) (*syspb.PushResp, error) {
		return func(ctx context.Context, s *hearth.Session, _ *syspb.PushReq) (*syspb.PushResp, error) {
			return &syspb.PushResp{}, s.Join(ctx, channel)
		}
	}
	hearth.Handle(chat, "hello", join("everyone"))
	hearth.Handle(chat, "join", join("lobby"))
	hearth.Handle(chat, "leave", func(ctx context.Context, s *hearth.Session, _ *syspb.PushReq) (*syspb.PushResp, error) {
		return &syspb.PushResp{}, s.Leave(ctx, "lobby")
	})
	hearth.Handle(chat, "say", func(ctx context.Context, _ *hearth.Session, msg *syspb.Tick) (*syspb.PushResp, error) {
		return &syspb.PushResp{}, nodeRef.Load().Publish(ctx, "lobby", "chat.msg", msg)
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()

	cfg := hearth.Config{}
	if ownGate {
		cfg = hearth.Config{Roles: []string{"sys", "chat"}, NATSListen: "127.0.0.1:0"}
	}
	node := hearthtest.Start(t, cfg, chat)
	nodeRef.Store(node)
	addr := func(tr string) string { return node.Addr(tr).String() }
	// channels is the gate's channel count, where it can be read.
	var channels func() int
	if ownGate {
		require.Nil(t, node.Addr("tcp"), "the services node runs no gate")
		g := startGate(t, node, gate.Config{
			ID:      "chat-gate",
			TCPAddr: "127.0.0.1:0",
			WSAddr:  "127.0.0.1:0",
			// Without resume a disconnected session leaves its channels at
			// once; with it, only when its grace passes (see resume tests).
			Limits: gate.Limits{ResumeGrace: -1},
		})
		addr = func(tr string) string { return g.Addr(tr).String() }
		channels = g.Channels
	}
	requireChannels := func(want int) {
		t.Helper()
		if channels != nil {
			require.Equal(t, want, channels())
		}
	}

	dial := func(tr string) *client.Client {
		url := "tcp://" + addr("tcp")
		if tr == "ws" {
			url = "ws://" + addr("ws") + "/ws"
		}
		c, err := client.Dial(ctx, url, client.Options{})
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	call := func(c *client.Client, route string, req proto.Message) {
		t.Helper()
		require.NoError(t, c.Request(ctx, route, req, &syspb.PushResp{}))
	}
	mark := 0
	// publish sends a lobby message from `from` (if any), then a marker to
	// channel "everyone" behind it: both leave the same bus connection, so
	// a session that has the marker has had any lobby message before it.
	publish := func(from *client.Client, n uint32) {
		t.Helper()
		if from != nil {
			call(from, "chat.say", &syspb.Tick{N: n})
		}
		mark++
		require.NoError(t, node.Publish(ctx, "everyone", "chat.mark", &syspb.Tick{N: uint32(mark)}))
	}
	broadcast := func(n uint32) {
		t.Helper()
		mark++
		require.NoError(t, node.Broadcast(ctx, "chat.news", &syspb.Tick{N: n}))
		require.NoError(t, node.Broadcast(ctx, "chat.mark", &syspb.Tick{N: uint32(mark)}))
	}

	type member struct {
		c     *client.Client
		log   *pushLog
		seq   uint64
		alive bool
	}
	ms := []*member{{c: dial("tcp")}, {c: dial("ws")}, {c: dial("tcp")}}
	for _, m := range ms {
		m.log = logPushes(m.c)
		m.alive = true
		call(m.c, "chat.hello", &syspb.PushReq{})
	}
	// expect requires each live member's pushes up to the current marker
	// to be want[i] and then the marker, with push_seq counting up by one.
	expect := func(step string, want ...[]string) {
		t.Helper()
		for i, m := range ms {
			if !m.alive {
				continue
			}
			var got []string
			for _, p := range m.log.until(t, "chat.mark") {
				m.seq++
				require.Equal(t, m.seq, p.Seq, "%s: member %d push_seq", step, i)
				var tick syspb.Tick
				require.NoError(t, m.c.Decode(p.Payload, &tick))
				got = append(got, fmt.Sprintf("%s %d", p.Route, tick.N))
			}
			require.Equal(t, append(append([]string(nil), want[i]...), fmt.Sprintf("chat.mark %d", mark)), got, "%s: member %d", step, i)
		}
	}

	call(ms[0].c, "chat.join", &syspb.PushReq{})
	call(ms[1].c, "chat.join", &syspb.PushReq{})
	requireChannels(2) // lobby and everyone

	publish(ms[2].c, 7) // a non-member may publish
	expect("publish", []string{"chat.msg 7"}, []string{"chat.msg 7"}, nil)
	publish(ms[0].c, 8)
	expect("second publish", []string{"chat.msg 8"}, []string{"chat.msg 8"}, nil)

	broadcast(9)
	expect("broadcast", []string{"chat.news 9"}, []string{"chat.news 9"}, []string{"chat.news 9"})

	// Leaving: no more lobby messages for member 1; the lobby stays while
	// member 0 is in it.
	call(ms[1].c, "chat.leave", &syspb.PushReq{})
	publish(ms[0].c, 10)
	expect("after leave", []string{"chat.msg 10"}, nil, nil)
	requireChannels(2)

	// Disconnecting: member 0 was the lobby's last member.
	require.NoError(t, ms[0].c.Close())
	ms[0].alive = false
	if channels != nil {
		hearthtest.Eventually(t, waitLong, func() bool { return channels() == 1 }, "lobby still held after its last member disconnected (%d channels)", channels())
	}
	publish(ms[2].c, 11)
	expect("after disconnect", nil, nil, nil)

	// A new member gets lobby messages, once; leaving drops the channel.
	call(ms[2].c, "chat.join", &syspb.PushReq{})
	requireChannels(2)
	publish(ms[1].c, 12)
	expect("rejoined", nil, nil, []string{"chat.msg 12"})
	call(ms[2].c, "chat.leave", &syspb.PushReq{})
	requireChannels(1) // the lobby has no member left
	publish(ms[1].c, 13)
	expect("all left", nil, nil, nil)

	for _, m := range ms[1:] {
		require.NoError(t, m.c.Close())
	}
	if channels != nil {
		hearthtest.Eventually(t, waitLong, func() bool { return channels() == 0 }, "%d channels left with no session", channels())
	}
}

// TestMetrics: sessions, frames, request latency by route and errors by
// code are on /metrics.
func TestMetrics(t *testing.T) {
	t.Parallel()
	node := hearthtest.Start(t, hearth.Config{})
	clients := map[string]*client.Client{}
	for _, tr := range hearthtest.Transports {
		clients[tr] = node.Dial(t, tr)
		for range 3 {
			clientPing(t, clients[tr])
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	_, err := clients["tcp"].RequestRaw(ctx, "sys.nosuch", nil)
	requireWireError(t, err, wire.CodeUnknownRoute)

	m := scrape(t, node)
	for series, want := range map[string]float64{
		`hearth_sessions{transport="tcp"}`:                                   1,
		`hearth_sessions{transport="ws"}`:                                    1,
		`hearth_frames_total{direction="in",kind="any"}`:                     7,
		`hearth_frames_total{direction="out",kind="HANDSHAKE_ACK"}`:          2,
		`hearth_frames_total{direction="out",kind="RESPONSE"}`:               7,
		`hearth_request_duration_seconds_count{route="sys.ping"}`:            6,
		`hearth_request_duration_seconds_bucket{route="sys.ping",le="+Inf"}`: 6,
		`hearth_request_duration_seconds_count{route="unknown"}`:             1,
		`hearth_request_errors_total{code="300"}`:                            1,
	} {
		require.Contains(t, m, series)
		require.Equal(t, want, m[series], series)
	}
	var buckets int
	for series := range m {
		if strings.HasPrefix(series, `hearth_request_duration_seconds_bucket{route="sys.ping",`) {
			buckets++
		}
	}
	require.Greater(t, buckets, 2, "latency is a histogram")

	require.NoError(t, clients["ws"].Close())
	hearthtest.Eventually(t, waitLong, func() bool {
		return scrape(t, node)[`hearth_sessions{transport="ws"}`] == 0
	}, "hearth_sessions{transport=\"ws\"} did not drop after the client closed")
	require.Equal(t, float64(1), scrape(t, node)[`hearth_sessions{transport="tcp"}`])
}
