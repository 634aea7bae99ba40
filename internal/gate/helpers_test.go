package gate_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/internal/gate"
	"github.com/hearth-server/hearth/wire"
)

// waitLong bounds every wait in these tests. It only keeps a broken gate
// from hanging the run; no test asserts on it.
const waitLong = 10 * time.Second

// rawClient speaks the protocol by hand over a real socket, so a test can
// send anything (malformed frames included) and see every frame the gate
// sends, in order.
type rawClient struct {
	t    testing.TB
	tr   string // "tcp" or "ws"
	conn net.Conn
	br   *bufio.Reader
	// seePings: read returns the gate's PINGs. Otherwise it answers each
	// with a PONG, as every client must, and reads on: the gate PINGs
	// sessions that get pushes, to learn what they have read.
	seePings bool
	pongs    int // PONGs it sent
}

// errCloseFrame is what rawClient.read returns for a WebSocket close frame.
var errCloseFrame = errors.New("websocket close frame")

// dialRaw connects a raw client to the node's listener for tr, without a
// HANDSHAKE (over WebSocket the HTTP upgrade is done).
func dialRaw(t testing.TB, node *hearthtest.Node, tr string) *rawClient {
	t.Helper()
	a := node.Addr(tr)
	require.NotNil(t, a, "node has no %s listener", tr)
	return dialRawAddr(t, tr, a.String())
}

func dialRawAddr(t testing.TB, tr, addr string) *rawClient {
	t.Helper()
	rc := &rawClient{t: t, tr: tr}
	switch tr {
	case "tcp":
		conn, err := net.DialTimeout("tcp", addr, waitLong)
		require.NoError(t, err)
		rc.conn, rc.br = conn, bufio.NewReader(conn)
	case "ws":
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		conn, br, _, err := ws.Dial(ctx, "ws://"+addr+"/ws")
		require.NoError(t, err)
		if br == nil {
			br = bufio.NewReader(conn)
		}
		rc.conn, rc.br = conn, br
	default:
		t.Fatalf("unknown transport %q", tr)
	}
	t.Cleanup(func() { _ = rc.conn.Close() })
	return rc
}

// writeRaw writes bytes as they are, with no framing.
func (rc *rawClient) writeRaw(b []byte) {
	rc.t.Helper()
	_ = rc.conn.SetWriteDeadline(time.Now().Add(waitLong))
	_, err := rc.conn.Write(b)
	require.NoError(rc.t, err)
}

// send writes one frame body with the transport's framing: the u32 length
// prefix on TCP, one masked binary message on WebSocket.
func (rc *rawClient) send(body []byte) {
	rc.t.Helper()
	rc.sendAll(body)
}

// sendAll writes several frame bodies back to back; on TCP in one write.
func (rc *rawClient) sendAll(bodies ...[]byte) {
	rc.t.Helper()
	if rc.tr == "ws" {
		_ = rc.conn.SetWriteDeadline(time.Now().Add(waitLong))
		for _, b := range bodies {
			require.NoError(rc.t, wsutil.WriteClientMessage(rc.conn, ws.OpBinary, b))
		}
		return
	}
	var buf []byte
	for _, b := range bodies {
		buf = append(wire.AppendLength(buf, len(b)), b...)
	}
	rc.writeRaw(buf)
}

// writeWSFrame writes one WebSocket frame as given (ws only).
func (rc *rawClient) writeWSFrame(f ws.Frame) {
	rc.t.Helper()
	require.Equal(rc.t, "ws", rc.tr)
	_ = rc.conn.SetWriteDeadline(time.Now().Add(waitLong))
	require.NoError(rc.t, ws.WriteFrame(rc.conn, f))
}

// read returns the next frame from the gate, decoded. A WebSocket close
// frame is errCloseFrame.
func (rc *rawClient) read() (wire.Frame, error) { return rc.readWithin(waitLong) }

// readWithin is read with d for the frame to come.
func (rc *rawClient) readWithin(d time.Duration) (wire.Frame, error) {
	for {
		f, err := rc.readAny(d)
		if err != nil || f.Kind != wire.KindPing || rc.seePings {
			return f, err
		}
		// The gate may have closed already: what the PONG's write says
		// is left to the next read.
		rc.pongs++
		body := wire.AppendPong(nil, f.Clock)
		_ = rc.conn.SetWriteDeadline(time.Now().Add(waitLong))
		if rc.tr == "ws" {
			_ = wsutil.WriteClientMessage(rc.conn, ws.OpBinary, body)
		} else {
			_, _ = rc.conn.Write(append(wire.AppendLength(nil, len(body)), body...))
		}
	}
}

// readAny reads the next frame, whatever its kind.
func (rc *rawClient) readAny(d time.Duration) (wire.Frame, error) {
	_ = rc.conn.SetReadDeadline(time.Now().Add(d))
	var body []byte
	if rc.tr == "ws" {
		h, err := ws.ReadHeader(rc.br)
		if err != nil {
			return wire.Frame{}, err
		}
		if h.Length > 1<<20 {
			return wire.Frame{}, fmt.Errorf("websocket frame of %d bytes from the gate", h.Length)
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(rc.br, payload); err != nil {
			return wire.Frame{}, err
		}
		f := ws.Frame{Header: h, Payload: payload}
		switch {
		case h.OpCode == ws.OpClose:
			return wire.Frame{}, errCloseFrame
		case h.OpCode != ws.OpBinary || !h.Fin || h.Masked || h.Rsv != 0:
			return wire.Frame{}, fmt.Errorf("unexpected websocket frame from the gate: %+v", h)
		}
		body = f.Payload
	} else {
		b, err := wire.ReadTCP(rc.br, nil, wire.DefaultMaxFrame)
		if err != nil {
			return wire.Frame{}, err
		}
		body = b
	}
	f, err := wire.Decode(body)
	if err != nil {
		return f, fmt.Errorf("gate sent an undecodable frame %x: %w", body, err)
	}
	return f, nil
}

// next reads the next frame and fails the test if there is none.
func (rc *rawClient) next() wire.Frame {
	rc.t.Helper()
	f, err := rc.read()
	require.NoError(rc.t, err)
	return f
}

// nextNotPing is next, passing over the gate's PINGs unanswered.
func (rc *rawClient) nextNotPing() wire.Frame {
	rc.t.Helper()
	f := rc.next()
	for f.Kind == wire.KindPing {
		f = rc.next()
	}
	return f
}

// expectKick requires the next frame to be KICK code, and the connection
// to end right after it.
func (rc *rawClient) expectKick(code wire.Code) {
	rc.t.Helper()
	f := rc.next()
	require.Equal(rc.t, wire.KindKick, f.Kind, "want KICK %d, got %v (status %d, payload %q)", code, f.Kind, f.Status, f.Payload)
	require.Equal(rc.t, code, f.Status, "kick reason %q", f.Payload)
	require.NotEmpty(rc.t, f.Payload, "a KICK carries a reason")
	rc.expectClosed()
}

// expectClosed requires the gate to have closed the connection with
// nothing more sent: on WebSocket only the close frame may come first.
func (rc *rawClient) expectClosed() {
	rc.t.Helper()
	f, err := rc.read()
	rc.requireClosedFrom(f, err)
}

// expectClosedAfterPings is expectClosed for a session with a short
// heartbeat: the gate may have sent PINGs before it read what ends the
// session, and on a loaded machine the client may even be late enough for
// the heartbeat KICK to come before the gate reads its BYE (the session
// then detaches instead of ending). Nothing else may come.
func (rc *rawClient) expectClosedAfterPings() {
	rc.t.Helper()
	f, err := rc.read()
	for err == nil && f.Kind == wire.KindPing {
		f, err = rc.read()
	}
	if err == nil && f.Kind == wire.KindKick {
		require.Equal(rc.t, wire.CodeHeartbeatTimeout, f.Status, "want the connection closed, got KICK %d %q", f.Status, f.Payload)
		rc.expectClosed()
		return
	}
	rc.requireClosedFrom(f, err)
}

// requireClosedFrom requires f, err (the next read) and what follows to be
// the end of the connection: on WebSocket its close frame, then the end.
func (rc *rawClient) requireClosedFrom(f wire.Frame, err error) {
	rc.t.Helper()
	if rc.tr == "ws" {
		require.ErrorIs(rc.t, err, errCloseFrame, "the gate sends a close frame before it closes, got %v %+v", err, f)
		f, err = rc.read()
	}
	requireClosed(rc.t, err, f)
}

// requireClosed requires err to be the end of the connection. A reset is
// accepted as well as EOF: a gate that closes a socket with unread input
// (the body it refused to read) makes the kernel send RST instead of FIN.
func requireClosed(t testing.TB, err error, f wire.Frame) {
	t.Helper()
	require.Error(t, err, "want the connection closed, got another frame: %v status %d payload %q", f.Kind, f.Status, f.Payload)
	require.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET),
		"want the connection closed (EOF), got %v", err)
}

// handshake sends HANDSHAKE with codec and requires HANDSHAKE_ACK.
func (rc *rawClient) handshake(codec string) wire.HandshakeAck {
	rc.t.Helper()
	rc.send(handshakeBody(wire.Version, codec))
	f := rc.next()
	require.Equal(rc.t, wire.KindHandshakeAck, f.Kind, "status %d payload %q", f.Status, f.Payload)
	var ack wire.HandshakeAck
	require.NoError(rc.t, json.Unmarshal(f.Payload, &ack))
	require.NotEmpty(rc.t, ack.Session)
	require.NotEmpty(rc.t, ack.Routes)
	return ack
}

// response requires the next frame to be the RESPONSE to seq.
func (rc *rawClient) response(seq uint32) wire.Frame {
	rc.t.Helper()
	f := rc.next()
	require.Equal(rc.t, wire.KindResponse, f.Kind, "want RESPONSE %d, got %v status %d payload %q", seq, f.Kind, f.Status, f.Payload)
	require.Equal(rc.t, seq, f.Seq, "status %d payload %q", f.Status, f.Payload)
	return f
}

// ping round-trips sys.ping with seq and requires the echo.
func (rc *rawClient) ping(seq uint32) {
	rc.t.Helper()
	payload := []byte(`{"seq":` + strconv.Itoa(int(seq)) + `}`)
	rc.send(wire.AppendRequest(nil, seq, "sys.ping", payload))
	f := rc.response(seq)
	require.Equal(rc.t, wire.OK, f.Status, "payload %q", f.Payload)
	require.Equal(rc.t, string(payload), string(f.Payload))
}

func handshakeBody(version int, codec string) []byte {
	p, err := json.Marshal(wire.Handshake{Version: version, Codec: codec, Client: "gate-test/1"})
	if err != nil {
		panic(err)
	}
	return wire.AppendHandshake(nil, p)
}

// clientPing round-trips sys.ping on an SDK client and requires the echo.
func clientPing(t testing.TB, c *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	out, err := c.RequestRaw(ctx, "sys.ping", []byte(`{"k":"v"}`))
	require.NoError(t, err)
	require.Equal(t, `{"k":"v"}`, string(out))
}

// requireWireError requires err to be a *wire.Error with code.
func requireWireError(t testing.TB, err error, code wire.Code) {
	t.Helper()
	var we *wire.Error
	require.True(t, errors.As(err, &we), "want *wire.Error %d, got %T %v", code, err, err)
	require.Equal(t, code, we.Code, "message %q", we.Message)
}

// scrape reads the node's /metrics into series → value, the series spelled
// as the text format prints it, e.g. `hearth_kicks_total{code="202"}`.
func scrape(t testing.TB, node *hearthtest.Node) map[string]float64 {
	t.Helper()
	hc := &http.Client{Timeout: waitLong}
	resp, err := hc.Get(node.AdminURL() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	m := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		require.Positive(t, i, "metrics line %q", line)
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, "metrics line %q", line)
		m[line[:i]] = v
	}
	require.NoError(t, sc.Err())
	return m
}

// pushLog records an SDK client's pushes, in order.
type pushLog struct {
	c  *client.Client
	ch chan client.Push
}

func logPushes(c *client.Client) *pushLog {
	l := &pushLog{c: c, ch: make(chan client.Push, 4096)}
	c.OnPush("", func(p client.Push) { l.ch <- p })
	return l
}

// until returns the pushes received up to and including the first one
// on route; it fails the test if that does not come.
func (l *pushLog) until(t testing.TB, route string) []client.Push {
	t.Helper()
	var got []client.Push
	timeout := time.After(waitLong)
	for {
		select {
		case p := <-l.ch:
			got = append(got, p)
			if p.Route == route {
				return got
			}
		case <-timeout:
			t.Fatalf("no push on %s after %s; got %d others", route, waitLong, len(got))
		}
	}
}

// take returns the next n pushes.
func (l *pushLog) take(t testing.TB, n int) []client.Push {
	t.Helper()
	got := make([]client.Push, 0, n)
	timeout := time.After(waitLong)
	for len(got) < n {
		select {
		case p := <-l.ch:
			got = append(got, p)
		case <-timeout:
			t.Fatalf("%d of %d pushes after %s", len(got), n, waitLong)
		}
	}
	return got
}

// startGate starts a gate of its own, cfg.ID its name on the bus, on the
// embedded NATS of node (started with NATSListen), with node's routes and
// a test logger; it is shut down when the test ends.
func startGate(t testing.TB, node *hearthtest.Node, cfg gate.Config) *gate.Gate {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	bus, err := cluster.Connect(ctx, cluster.Config{URL: node.NATSURL(), Name: cfg.ID})
	require.NoError(t, err)
	t.Cleanup(bus.Close)
	cfg.Routes = node.Routes
	cfg.Logger = hearthtest.Logger(t, slog.LevelWarn)
	g, err := gate.New(bus, cfg)
	require.NoError(t, err)
	require.NoError(t, g.Start())
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), waitLong)
		defer scancel()
		_ = g.Shutdown(sctx)
	})
	return g
}
