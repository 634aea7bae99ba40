package gate_test

import (
	"context"
	"encoding/binary"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/pb/syspb"
	"github.com/hearth-server/hearth/wire"
)

// malformed is one bad input: what the raw client sends and what the gate
// must answer.
type malformed struct {
	name string
	// only restricts the case to one transport; "" runs it on both.
	only string
	// fresh skips the HANDSHAKE, so send is the connection's first frame.
	fresh bool
	send  func(rc *rawClient)
	// kick is the expected KICK code; zero means a RESPONSE to seq 7 with
	// status, after which the session must still serve requests.
	kick   wire.Code
	status wire.Code
}

// withByte returns body with body[i] = v.
func withByte(body []byte, i int, v byte) []byte {
	body[i] = v
	return body
}

func sendBody(body []byte) func(*rawClient) {
	return func(rc *rawClient) { rc.send(body) }
}

func tcpLength(n uint32) func(*rawClient) {
	return func(rc *rawClient) { rc.writeRaw(binary.BigEndian.AppendUint32(nil, n)) }
}

var malformedCases = []malformed{
	// Bodies too short for their kind: KICK 1.
	{name: "request shorter than its seq", send: sendBody([]byte{wire.Version, byte(wire.KindRequest), 0, 0, 0}), kick: wire.CodeBadFrame},
	{name: "request without route", send: sendBody(binary.BigEndian.AppendUint32([]byte{wire.Version, byte(wire.KindRequest), 0}, 1)), kick: wire.CodeBadFrame},
	{name: "route length past the end", send: sendBody([]byte{wire.Version, byte(wire.KindNotify), 0, 20, 's', '.', 'p'}), kick: wire.CodeBadFrame},
	{name: "route id cut short", send: sendBody([]byte{wire.Version, byte(wire.KindNotify), wire.FlagRouteID, 0}), kick: wire.CodeBadFrame},
	{name: "ping without clock", send: sendBody([]byte{wire.Version, byte(wire.KindPing), 0}), kick: wire.CodeBadFrame},
	{name: "pong with long clock", send: sendBody(append(wire.AppendPong(nil, 1), 0)), kick: wire.CodeBadFrame},
	{name: "ws message shorter than the header", only: "ws", send: sendBody([]byte{wire.Version, byte(wire.KindPing)}), kick: wire.CodeBadFrame},
	// TCP length prefix: checked before the body is read (none is sent).
	{name: "tcp length below 3", only: "tcp", send: tcpLength(2), kick: wire.CodeBadFrame},
	{name: "tcp length zero", only: "tcp", send: tcpLength(0), kick: wire.CodeBadFrame},
	{name: "tcp length above max frame", only: "tcp", send: tcpLength(wire.DefaultMaxFrame + 1), kick: wire.CodeFrameTooLarge},
	{name: "tcp length 4GiB", only: "tcp", send: tcpLength(0xffffffff), kick: wire.CodeFrameTooLarge},
	{name: "ws message above max frame", only: "ws", send: func(rc *rawClient) {
		// Only the header: the gate must refuse it without the payload.
		h := ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Mask: ws.NewMask(), Length: wire.DefaultMaxFrame + 1}
		require.NoError(rc.t, ws.WriteHeader(rc.conn, h))
	}, kick: wire.CodeFrameTooLarge},
	// Header fields.
	{name: "bad version", send: sendBody(withByte(wire.AppendPing(nil, 1), 0, 2)), kick: wire.CodeUnsupported},
	{name: "version zero", send: sendBody(withByte(wire.AppendRequest(nil, 7, "sys.ping", nil), 0, 0)), kick: wire.CodeUnsupported},
	{name: "unknown kind", send: sendBody([]byte{wire.Version, 0x0b, 0}), kick: wire.CodeUnknownKind},
	{name: "bye with a body", send: sendBody([]byte{wire.Version, byte(wire.KindBye), 0, 1}), kick: wire.CodeBadFrame},
	{name: "kind zero", send: sendBody([]byte{wire.Version, 0, 0}), kick: wire.CodeUnknownKind},
	{name: "reserved flag bit on a request", send: sendBody(withByte(wire.AppendRequest(nil, 7, "sys.ping", nil), 2, 0x02)), kick: wire.CodeBadFrame},
	{name: "high flag bit on a notify", send: sendBody(withByte(wire.AppendNotify(nil, "sys.ping", nil), 2, 0x80)), kick: wire.CodeBadFrame},
	{name: "route-id flag on a ping", send: sendBody(withByte(wire.AppendPing(nil, 1), 2, wire.FlagRouteID)), kick: wire.CodeBadFrame},
	// Routes: a request is answered with 300, anything else is KICK 5.
	{name: "bad route string in a request", send: sendBody(wire.AppendRequest(nil, 7, "Sys.Ping", []byte(`{}`))), status: wire.CodeUnknownRoute},
	{name: "route without a dot in a request", send: sendBody(wire.AppendRequest(nil, 7, "sysping", nil)), status: wire.CodeUnknownRoute},
	{name: "route with a subject wildcard in a request", send: sendBody(wire.AppendRequest(nil, 7, "sys.*", nil)), status: wire.CodeUnknownRoute},
	{name: "unknown route id in a request", send: sendBody(wire.AppendRequestID(nil, 7, 0xfff0, nil)), status: wire.CodeUnknownRoute},
	{name: "route id zero in a request", send: sendBody(wire.AppendRequestID(nil, 7, 0, nil)), status: wire.CodeUnknownRoute},
	{name: "bad route in a notify", send: sendBody(wire.AppendNotify(nil, "sys", nil)), kick: wire.CodeBadRoute},
	{name: "route with a subject wildcard in a notify", send: sendBody(wire.AppendNotify(nil, "sys.>", nil)), kick: wire.CodeBadRoute},
	{name: "unknown route id in a notify", send: sendBody(wire.AppendNotifyID(nil, 0xfff0, nil)), kick: wire.CodeBadRoute},
	// Frames clients do not send.
	{name: "second handshake", send: sendBody(handshakeBody(1, "json")), kick: wire.CodeBadFrame},
	{name: "response from the client", send: sendBody(wire.AppendResponse(nil, 1, 0, nil)), kick: wire.CodeBadFrame},
	{name: "push from the client", send: sendBody(wire.AppendPush(nil, 1, "sys.tick", nil)), kick: wire.CodeBadFrame},
	{name: "kick from the client", send: sendBody(wire.AppendKick(nil, 1, "bye")), kick: wire.CodeBadFrame},
	// The first frame.
	{name: "request before handshake", fresh: true, send: sendBody(wire.AppendRequest(nil, 1, "sys.ping", nil)), kick: wire.CodeHandshakeRequired},
	{name: "ping before handshake", fresh: true, send: sendBody(wire.AppendPing(nil, 0)), kick: wire.CodeHandshakeRequired},
	{name: "handshake version 2", fresh: true, send: sendBody(handshakeBody(2, "json")), kick: wire.CodeUnsupported},
	{name: "handshake version 0", fresh: true, send: sendBody(handshakeBody(0, "json")), kick: wire.CodeUnsupported},
	{name: "handshake codec xml", fresh: true, send: sendBody(handshakeBody(1, "xml")), kick: wire.CodeUnsupported},
	{name: "handshake without codec", fresh: true, send: sendBody(handshakeBody(1, "")), kick: wire.CodeUnsupported},
	{name: "handshake payload not json", fresh: true, send: sendBody(wire.AppendHandshake(nil, []byte("hello"))), kick: wire.CodeBadFrame},
	// WebSocket framing.
	{name: "ws text message", only: "ws", send: func(rc *rawClient) {
		rc.writeWSFrame(ws.MaskFrame(ws.NewTextFrame(wire.AppendPing(nil, 1))))
	}, kick: wire.CodeBadFrame},
	{name: "ws text handshake", only: "ws", fresh: true, send: func(rc *rawClient) {
		rc.writeWSFrame(ws.MaskFrame(ws.NewTextFrame(handshakeBody(1, "json"))))
	}, kick: wire.CodeBadFrame},
	{name: "ws unmasked frame", only: "ws", send: func(rc *rawClient) {
		rc.writeWSFrame(ws.NewBinaryFrame(wire.AppendPing(nil, 1)))
	}, kick: wire.CodeBadFrame},
	{name: "ws continuation without a start", only: "ws", send: func(rc *rawClient) {
		rc.writeWSFrame(ws.MaskFrame(ws.NewFrame(ws.OpContinuation, true, wire.AppendPing(nil, 1))))
	}, kick: wire.CodeBadFrame},
	{name: "ws reserved bits", only: "ws", send: func(rc *rawClient) {
		f := ws.NewBinaryFrame(wire.AppendPing(nil, 1))
		f.Header.Rsv = ws.Rsv(true, false, false)
		rc.writeWSFrame(ws.MaskFrame(f))
	}, kick: wire.CodeBadFrame},
}

// TestMalformedInput sends every kind of bad input over both transports:
// each gets its KICK code (as the last frame, the connection closed right
// after) or its error response, and only that connection suffers: another
// client on the same gate is answered right after each.
func TestMalformedInput(t *testing.T) {
	t.Parallel()
	node := hearthtest.Start(t, hearth.Config{})
	bystander := node.Dial(t, "tcp")
	var mu sync.Mutex
	kicks := map[wire.Code]int{}

	t.Run("cases", func(t *testing.T) {
		for _, tc := range malformedCases {
			for _, tr := range hearthtest.Transports {
				if tc.only != "" && tc.only != tr {
					continue
				}
				t.Run(tr+"/"+tc.name, func(t *testing.T) {
					t.Parallel()
					rc := dialRaw(t, node, tr)
					if !tc.fresh {
						rc.handshake(wire.CodecJSON)
					}
					tc.send(rc)
					if tc.kick != 0 {
						rc.expectKick(tc.kick)
						mu.Lock()
						kicks[tc.kick]++
						mu.Unlock()
					} else {
						f := rc.response(7)
						require.Equal(t, tc.status, f.Status, "message %q", f.Payload)
						require.NotEmpty(t, f.Payload, "an error response carries a message")
						rc.ping(8) // the session is still open
					}
					clientPing(t, bystander)
				})
			}
		}
	})

	// Every kick above was counted once, under its code.
	m := scrape(t, node)
	for code, n := range kicks {
		require.Equal(t, float64(n), m[`hearth_kicks_total{code="`+strconv.Itoa(int(code))+`"}`], "kicks with code %d", code)
	}
	select {
	case <-bystander.Done():
		t.Fatalf("the bystander's connection ended: %v", bystander.Err())
	default:
	}
	clientPing(t, bystander)
}

// TestHandshakeTimeout: a connection that sends nothing is kicked with 6 at
// the handshake deadline; one that sends half a HANDSHAKE too.
func TestHandshakeTimeout(t *testing.T) {
	t.Parallel()
	node := hearthtest.Start(t, hearth.Config{Limits: hearth.Limits{HandshakeTimeout: 300 * time.Millisecond}})
	cases := []struct {
		name string
		send func(rc *rawClient)
	}{
		{"silent", func(*rawClient) {}},
		{"partial handshake", func(rc *rawClient) {
			// One complete frame would be answered; send all but its last byte.
			body := handshakeBody(1, "json")
			if rc.tr == "tcp" {
				rc.writeRaw(append(wire.AppendLength(nil, len(body)), body[:len(body)-1]...))
				return
			}
			f := ws.MaskFrame(ws.NewBinaryFrame(body))
			b, err := ws.CompileFrame(f)
			require.NoError(t, err)
			rc.writeRaw(b[:len(b)-1])
		}},
	}
	for _, tc := range cases {
		for _, tr := range hearthtest.Transports {
			t.Run(tr+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				bystander := node.Dial(t, tr)
				rc := dialRaw(t, node, tr)
				tc.send(rc)
				rc.expectKick(wire.CodeHandshakeRequired)
				clientPing(t, bystander)
			})
		}
	}
}

// TestHeartbeat: a session that never sends anything, not even PONG, gets
// server PINGs and then KICK 7; one that answers every PING stays open.
func TestHeartbeat(t *testing.T) {
	t.Parallel()
	const hb = 200 * time.Millisecond
	node := hearthtest.Start(t, hearth.Config{Limits: hearth.Limits{Heartbeat: hb}})
	for _, tr := range hearthtest.Transports {
		t.Run(tr+"/silent", func(t *testing.T) {
			t.Parallel()
			rc := dialRaw(t, node, tr)
			rc.seePings = true
			ack := rc.handshake(wire.CodecJSON)
			require.Equal(t, hb.Milliseconds(), ack.HeartbeatMS)
			pings := 0
			for {
				f := rc.next()
				if f.Kind != wire.KindPing {
					require.Equal(t, wire.KindKick, f.Kind)
					require.Equal(t, wire.CodeHeartbeatTimeout, f.Status, "reason %q", f.Payload)
					break
				}
				pings++
			}
			require.GreaterOrEqual(t, pings, 1, "the gate PINGs an idle session before it gives up")
			rc.expectClosed()
		})
		t.Run(tr+"/answers pings", func(t *testing.T) {
			t.Parallel()
			rc := dialRaw(t, node, tr)
			rc.seePings = true
			rc.handshake(wire.CodecJSON)
			// The client's own PING is answered with its clock.
			rc.send(wire.AppendPing(nil, 4242))
			sawPong := false
			// The gate PINGs only after a heartbeat of silence, so five
			// PINGs answered mean the session outlived 3 heartbeats.
			for pings := 0; pings < 5; {
				f := rc.next()
				switch f.Kind {
				case wire.KindPing:
					pings++
					rc.send(wire.AppendPong(nil, f.Clock))
				case wire.KindPong:
					require.Equal(t, uint64(4242), f.Clock)
					sawPong = true
				default:
					t.Fatalf("unexpected %v frame (status %d, payload %q)", f.Kind, f.Status, f.Payload)
				}
			}
			require.True(t, sawPong)
			rc.ping(1)
		})
	}
}

// TestRouting: the three ways a valid route can fail.
func TestRouting(t *testing.T) {
	t.Parallel()
	exited := make(chan struct{}, 4)
	slow := hearth.NewService("slow")
	// Both end when their context does, which is the gate's deadline; what
	// they answer then is too late and must not reach the client.
	hearth.HandleRaw(slow, "call", func(ctx context.Context, _ *hearth.Session, _ []byte) ([]byte, error) {
		<-ctx.Done()
		exited <- struct{}{}
		return nil, ctx.Err()
	})
	hearth.HandleRaw(slow, "late", func(ctx context.Context, _ *hearth.Session, _ []byte) ([]byte, error) {
		<-ctx.Done()
		exited <- struct{}{}
		return []byte(`{}`), nil
	})
	// With a one-minute request timeout, an answer within waitLong cannot
	// be the timeout's.
	prompt := hearthtest.Start(t, hearth.Config{Limits: hearth.Limits{RequestTimeout: time.Minute}})
	timeouts := hearthtest.Start(t, hearth.Config{Limits: hearth.Limits{RequestTimeout: 300 * time.Millisecond}}, slow)

	cases := []struct {
		name   string
		node   *hearthtest.Node
		route  string
		status wire.Code
	}{
		{"unknown method of a running service", prompt, "sys.nosuch", wire.CodeUnknownRoute},
		{"service with no instance", prompt, "ghost.call", wire.CodeUnavailable},
		{"service that does not answer", timeouts, "slow.call", wire.CodeTimeout},
		{"service that answers after the deadline", timeouts, "slow.late", wire.CodeTimeout},
	}
	for _, tc := range cases {
		for _, tr := range hearthtest.Transports {
			t.Run(tr+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				rc := dialRaw(t, tc.node, tr)
				rc.handshake(wire.CodecJSON)
				rc.send(wire.AppendRequest(nil, 1, tc.route, []byte(`{}`)))
				f := rc.response(1)
				require.Equal(t, tc.status, f.Status, "message %q", f.Payload)
				require.NotEmpty(t, f.Payload)
				if tc.status == wire.CodeTimeout {
					select {
					case <-exited:
					case <-time.After(waitLong):
						t.Fatal("the slow handler's context did not end")
					}
				}
				// Exactly one response per request: the next frames answer
				// the next requests.
				rc.ping(2)
				rc.ping(3)
			})
		}
	}
}

// TestSysPushOrder: sys.push answers first, then pushes sys.tick n = 1..50
// with push_seq 1..50, in order, in either codec.
func TestSysPushOrder(t *testing.T) {
	t.Parallel()
	node := hearthtest.Start(t, hearth.Config{})
	const count = 50
	for _, codec := range []string{wire.CodecJSON, wire.CodecProtobuf} {
		for _, tr := range hearthtest.Transports {
			t.Run(tr+"/"+codec, func(t *testing.T) {
				t.Parallel()
				marshal := proto.Marshal
				unmarshal := proto.Unmarshal
				if codec == wire.CodecJSON {
					marshal = protojson.Marshal
					unmarshal = protojson.Unmarshal
				}
				rc := dialRaw(t, node, tr)
				rc.handshake(codec)
				req, err := marshal(&syspb.PushReq{Count: count})
				require.NoError(t, err)
				rc.send(wire.AppendRequest(nil, 1, "sys.push", req))
				f := rc.response(1)
				require.Equal(t, wire.OK, f.Status, "message %q", f.Payload)
				var resp syspb.PushResp
				require.NoError(t, unmarshal(f.Payload, &resp))
				require.Equal(t, uint32(count), resp.Count)
				for i := uint32(1); i <= count; i++ {
					f := rc.next()
					require.Equal(t, wire.KindPush, f.Kind)
					require.Equal(t, uint64(i), f.PushSeq)
					require.Equal(t, "sys.tick", string(f.Route))
					var tick syspb.Tick
					require.NoError(t, unmarshal(f.Payload, &tick), "payload %q", f.Payload)
					require.Equal(t, i, tick.N)
				}
				// Nothing more: the next frame answers the next request.
				rc.ping(2)
			})
		}
	}
}
