package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The worked examples of docs/protocol.md. Each is built here with the
// package's own functions, compared with hard-coded bytes, decoded again, and
// compared with the annotated hex block of the same name in the document, so
// the document cannot drift from the code.

const goldenHandshakeJSON = `{"version":1,"codec":"json","client":"demo/1"}`

const goldenAckJSON = `{"session":"s-7f3a","node":"gate-1","heartbeat_ms":10000,` +
	`"routes":{"sys.ping":1,"sys.push":2,"sys.tick":3,"sys.time":4},` +
	`"resume":"r-9c41","resumed":false,"server_time_ms":1700000000000}`

// wsMask is the masking key of the client→server WebSocket example
// (the one RFC 6455 uses in its own examples).
var wsMask = []byte{0x37, 0xfa, 0x21, 0x3d}

// tcp prefixes a body with its TCP length.
func tcp(body []byte) []byte { return append(AppendLength(nil, len(body)), body...) }

// wsBinary wraps a body in one final, unfragmented WebSocket binary frame
// (RFC 6455 §5.2), masked when mask is not nil as a client must.
func wsBinary(body, mask []byte) []byte {
	b := []byte{0x82} // FIN, opcode 2 (binary)
	var m byte
	if mask != nil {
		m = 0x80
	}
	switch n := len(body); {
	case n < 126:
		b = append(b, m|byte(n))
	case n <= 0xFFFF:
		b = binary.BigEndian.AppendUint16(append(b, m|126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, m|127), uint64(n))
	}
	if mask == nil {
		return append(b, body...)
	}
	b = append(b, mask...)
	for i, c := range body {
		b = append(b, c^mask[i%4])
	}
	return b
}

// unwsBinary undoes wsBinary for the short frames of the examples.
func unwsBinary(t *testing.T, b []byte) []byte {
	t.Helper()
	require.Equal(t, byte(0x82), b[0])
	n := int(b[1] & 0x7F)
	require.Less(t, n, 126)
	if b[1]&0x80 == 0 {
		require.Len(t, b, 2+n)
		return b[2:]
	}
	require.Len(t, b, 6+n)
	out := make([]byte, n)
	for i := range out {
		out[i] = b[6+i] ^ b[2+i%4]
	}
	return out
}

type golden struct {
	name  string // the name of the block in docs/protocol.md
	hex   string
	build func() []byte
	ws    bool // a WebSocket frame instead of a TCP length + body
	want  Frame
}

var pingPayload = []byte(`{"hi":1}`)

var goldens = []golden{
	{
		name:  "tcp-handshake",
		hex:   "00000031" + "010100" + hex.EncodeToString([]byte(goldenHandshakeJSON)),
		build: func() []byte { return tcp(AppendHandshake(nil, []byte(goldenHandshakeJSON))) },
		want:  Frame{Kind: KindHandshake, Payload: []byte(goldenHandshakeJSON)},
	},
	{
		name:  "tcp-handshake-ack",
		hex:   "000000bc" + "010200" + hex.EncodeToString([]byte(goldenAckJSON)),
		build: func() []byte { return tcp(AppendHandshakeAck(nil, []byte(goldenAckJSON))) },
		want:  Frame{Kind: KindHandshakeAck, Payload: []byte(goldenAckJSON)},
	},
	{
		name:  "tcp-request",
		hex:   "00000018" + "010300" + "00000001" + "08" + "7379732e70696e67" + "7b226869223a317d",
		build: func() []byte { return tcp(AppendRequest(nil, 1, "sys.ping", pingPayload)) },
		want:  Frame{Kind: KindRequest, Seq: 1, Route: []byte("sys.ping"), Payload: pingPayload},
	},
	{
		name:  "tcp-response",
		hex:   "00000011" + "010400" + "00000001" + "0000" + "7b226869223a317d",
		build: func() []byte { return tcp(AppendResponse(nil, 1, OK, pingPayload)) },
		want:  Frame{Kind: KindResponse, Seq: 1, Payload: pingPayload},
	},
	{
		name:  "tcp-request-id",
		hex:   "00000011" + "010301" + "00000002" + "0001" + "7b226869223a317d",
		build: func() []byte { return tcp(AppendRequestID(nil, 2, 1, pingPayload)) },
		want:  Frame{Kind: KindRequest, Flags: FlagRouteID, Seq: 2, RouteID: 1, Payload: pingPayload},
	},
	{
		name:  "tcp-response-error",
		hex:   "00000016" + "010400" + "00000003" + "012c" + hex.EncodeToString([]byte("unknown route")),
		build: func() []byte { return tcp(AppendResponse(nil, 3, CodeUnknownRoute, []byte("unknown route"))) },
		want:  Frame{Kind: KindResponse, Seq: 3, Status: CodeUnknownRoute, Payload: []byte("unknown route")},
	},
	{
		name:  "tcp-push",
		hex:   "0000001b" + "010600" + "0000000000000001" + "08" + "7379732e7469636b" + "7b226e223a317d",
		build: func() []byte { return tcp(AppendPush(nil, 1, "sys.tick", []byte(`{"n":1}`))) },
		want:  Frame{Kind: KindPush, PushSeq: 1, Route: []byte("sys.tick"), Payload: []byte(`{"n":1}`)},
	},
	{
		name:  "tcp-push-id",
		hex:   "00000014" + "010601" + "0000000000000002" + "0003" + "7b226e223a327d",
		build: func() []byte { return tcp(AppendPushID(nil, 2, 3, []byte(`{"n":2}`))) },
		want:  Frame{Kind: KindPush, Flags: FlagRouteID, PushSeq: 2, RouteID: 3, Payload: []byte(`{"n":2}`)},
	},
	{
		name:  "tcp-ping",
		hex:   "0000000b" + "010700" + "0000018bcfe56800",
		build: func() []byte { return tcp(AppendPing(nil, 1700000000000)) },
		want:  Frame{Kind: KindPing, Clock: 1700000000000},
	},
	{
		name:  "tcp-pong",
		hex:   "0000000b" + "010800" + "0000018bcfe56800",
		build: func() []byte { return tcp(AppendPong(nil, 1700000000000)) },
		want:  Frame{Kind: KindPong, Clock: 1700000000000},
	},
	{
		name:  "tcp-kick",
		hex:   "00000014" + "010900" + "0004" + hex.EncodeToString([]byte("frame too large")),
		build: func() []byte { return tcp(AppendKick(nil, CodeFrameTooLarge, "frame too large")) },
		want:  Frame{Kind: KindKick, Status: CodeFrameTooLarge, Payload: []byte("frame too large")},
	},
	{
		name:  "pb-time-request",
		hex:   "00000010" + "010300" + "00000004" + "08" + "7379732e74696d65",
		build: func() []byte { return tcp(AppendRequest(nil, 4, "sys.time", nil)) },
		want:  Frame{Kind: KindRequest, Seq: 4, Route: []byte("sys.time")},
	},
	{
		// TimeResp{server_time_ms: 1700000000000}: field 1, wire type 0 (tag 0x08), varint.
		name: "pb-time-response",
		hex:  "00000010" + "010400" + "00000004" + "0000" + "08" + "80d095ffbc31",
		build: func() []byte {
			return tcp(AppendResponse(nil, 4, OK, binary.AppendUvarint([]byte{0x08}, 1700000000000)))
		},
		want: Frame{Kind: KindResponse, Seq: 4, Payload: []byte{0x08, 0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31}},
	},
	{
		name: "ws-request",
		hex: "82" + "98" + "37fa213d" +
			"36f921" + "3d37fa20" + "35" + "44835213" + "47934f5a" + "4cd84954" + "15c01040",
		build: func() []byte { return wsBinary(AppendRequest(nil, 1, "sys.ping", pingPayload), wsMask) },
		ws:    true,
		want:  Frame{Kind: KindRequest, Seq: 1, Route: []byte("sys.ping"), Payload: pingPayload},
	},
	{
		name:  "ws-response",
		hex:   "82" + "11" + "010400" + "00000001" + "0000" + "7b226869223a317d",
		build: func() []byte { return wsBinary(AppendResponse(nil, 1, OK, pingPayload), nil) },
		ws:    true,
		want:  Frame{Kind: KindResponse, Seq: 1, Payload: pingPayload},
	},
}

func TestGolden(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.name, func(t *testing.T) {
			want, err := hex.DecodeString(g.hex)
			require.NoError(t, err)
			got := g.build()
			require.Equal(t, g.hex, hex.EncodeToString(got))

			var body []byte
			if g.ws {
				body = unwsBinary(t, want)
			} else {
				body, err = ReadTCP(bytes.NewReader(want), nil, DefaultMaxFrame)
				require.NoError(t, err)
			}
			f, err := Decode(body)
			require.NoError(t, err)
			require.Equal(t, g.want.Kind, f.Kind)
			require.Equal(t, g.want.Flags, f.Flags)
			require.Equal(t, g.want.Seq, f.Seq)
			require.Equal(t, g.want.Status, f.Status)
			require.Equal(t, g.want.PushSeq, f.PushSeq)
			require.Equal(t, g.want.Clock, f.Clock)
			require.Equal(t, g.want.RouteID, f.RouteID)
			require.Equal(t, string(g.want.Route), string(f.Route))
			require.Equal(t, nonEmpty(g.want.Payload), nonEmpty(f.Payload))
		})
	}
}

func TestGoldenJSONPayloads(t *testing.T) {
	var h Handshake
	require.NoError(t, json.Unmarshal([]byte(goldenHandshakeJSON), &h))
	require.Equal(t, Handshake{Version: 1, Codec: CodecJSON, Client: "demo/1"}, h)
	var ack HandshakeAck
	require.NoError(t, json.Unmarshal([]byte(goldenAckJSON), &ack))
	require.Equal(t, uint16(1), ack.Routes["sys.ping"])
	require.Equal(t, uint16(3), ack.Routes["sys.tick"])
}

const docPath = "../docs/protocol.md"

var (
	goldenMarker = regexp.MustCompile(`^<!-- golden: ([a-z0-9-]+) -->$`)
	hexByte      = regexp.MustCompile(`^[0-9a-f]{2}$`)
)

// docBlocks returns the bytes of every "<!-- golden: name -->" code block in
// the document. In a block, each line is hex bytes separated by spaces,
// optionally followed by "#" and an annotation.
func docBlocks(t *testing.T, doc []byte) map[string][]byte {
	t.Helper()
	blocks := map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(doc))
	lineNo := 0
	next := func() (string, bool) {
		if !sc.Scan() {
			return "", false
		}
		lineNo++
		return sc.Text(), true
	}
	for {
		line, ok := next()
		if !ok {
			break
		}
		m := goldenMarker.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		name := m[1]
		_, dup := blocks[name]
		require.False(t, dup, "block %q twice", name)
		fence, ok := next()
		require.True(t, ok)
		require.True(t, strings.HasPrefix(fence, "```"), "line %d: block %q must start with a fence", lineNo, name)
		var b []byte
		for {
			line, ok := next()
			require.True(t, ok, "block %q is not closed", name)
			if strings.HasPrefix(line, "```") {
				break
			}
			if i := strings.IndexByte(line, '#'); i >= 0 {
				line = line[:i]
			}
			for _, tok := range strings.Fields(line) {
				require.Regexp(t, hexByte, tok, "line %d: block %q", lineNo, name)
				v, err := hex.DecodeString(tok)
				require.NoError(t, err)
				b = append(b, v...)
			}
		}
		blocks[name] = b
	}
	require.NoError(t, sc.Err())
	return blocks
}

func TestDocExamples(t *testing.T) {
	doc, err := os.ReadFile(docPath)
	require.NoError(t, err)
	blocks := docBlocks(t, doc)

	var names []string
	for _, g := range goldens {
		names = append(names, g.name)
		b, ok := blocks[g.name]
		if !ok {
			t.Errorf("%s has no example %q", docPath, g.name)
			continue
		}
		require.Equal(t, g.hex, hex.EncodeToString(b), "example %q in %s", g.name, docPath)
	}
	for name := range blocks {
		require.True(t, slices.Contains(names, name), "%s: example %q is not checked by TestGolden", docPath, name)
	}
}
