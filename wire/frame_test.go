package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// reencode encodes f again with the Append* function that matches its kind
// and flags. It is the inverse of Decode for every frame Decode accepts.
func reencode(t testing.TB, f Frame) []byte {
	t.Helper()
	switch f.Kind {
	case KindHandshake:
		return AppendHandshake(nil, f.Payload)
	case KindHandshakeAck:
		return AppendHandshakeAck(nil, f.Payload)
	case KindRequest:
		if f.HasRouteID() {
			return AppendRequestID(nil, f.Seq, f.RouteID, f.Payload)
		}
		return AppendRequest(nil, f.Seq, string(f.Route), f.Payload)
	case KindResponse:
		return AppendResponse(nil, f.Seq, f.Status, f.Payload)
	case KindNotify:
		if f.HasRouteID() {
			return AppendNotifyID(nil, f.RouteID, f.Payload)
		}
		return AppendNotify(nil, string(f.Route), f.Payload)
	case KindPush:
		if f.HasRouteID() {
			return AppendPushID(nil, f.PushSeq, f.RouteID, f.Payload)
		}
		return AppendPush(nil, f.PushSeq, string(f.Route), f.Payload)
	case KindPing:
		return AppendPing(nil, f.Clock)
	case KindPong:
		return AppendPong(nil, f.Clock)
	case KindKick:
		return AppendKick(nil, f.Status, string(f.Payload))
	case KindBye:
		return AppendBye(nil)
	}
	t.Fatalf("reencode: kind %v", f.Kind)
	return nil
}

// nonEmpty turns a nil slice into an empty one so that require.Equal does
// not tell a nil payload from an empty one.
func nonEmpty(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	long := bytes.Repeat([]byte{0xAB}, 1000)
	maxRoute := strings.Repeat("a", 32) + "." + strings.Repeat("z", 32)
	tests := []struct {
		name string
		body []byte
		want Frame
	}{
		{"handshake", AppendHandshake(nil, []byte(`{"version":1,"codec":"json"}`)),
			Frame{Kind: KindHandshake, Payload: []byte(`{"version":1,"codec":"json"}`)}},
		{"handshake empty", AppendHandshake(nil, nil), Frame{Kind: KindHandshake}},
		{"handshake ack", AppendHandshakeAck(nil, []byte(`{"session":"s"}`)),
			Frame{Kind: KindHandshakeAck, Payload: []byte(`{"session":"s"}`)}},
		{"request", AppendRequest(nil, 7, "sys.ping", []byte("hi")),
			Frame{Kind: KindRequest, Seq: 7, Route: []byte("sys.ping"), Payload: []byte("hi")}},
		{"request empty payload", AppendRequest(nil, 0, "a.b", nil),
			Frame{Kind: KindRequest, Route: []byte("a.b")}},
		{"request max seq, max route", AppendRequest(nil, 0xFFFFFFFF, maxRoute, long),
			Frame{Kind: KindRequest, Seq: 0xFFFFFFFF, Route: []byte(maxRoute), Payload: long}},
		{"request id", AppendRequestID(nil, 9, 1, []byte("x")),
			Frame{Kind: KindRequest, Flags: FlagRouteID, Seq: 9, RouteID: 1, Payload: []byte("x")}},
		{"request id max", AppendRequestID(nil, 0xFFFFFFFF, 0xFFFF, nil),
			Frame{Kind: KindRequest, Flags: FlagRouteID, Seq: 0xFFFFFFFF, RouteID: 0xFFFF}},
		{"request id 0", AppendRequestID(nil, 1, 0, nil),
			Frame{Kind: KindRequest, Flags: FlagRouteID, Seq: 1}},
		{"response ok", AppendResponse(nil, 7, OK, []byte("hi")),
			Frame{Kind: KindResponse, Seq: 7, Payload: []byte("hi")}},
		{"response error", AppendResponse(nil, 8, CodeUnknownRoute, []byte("unknown route")),
			Frame{Kind: KindResponse, Seq: 8, Status: CodeUnknownRoute, Payload: []byte("unknown route")}},
		{"response max status", AppendResponse(nil, 1, 0xFFFF, nil),
			Frame{Kind: KindResponse, Seq: 1, Status: 0xFFFF}},
		{"notify", AppendNotify(nil, "chat.say", []byte("yo")),
			Frame{Kind: KindNotify, Route: []byte("chat.say"), Payload: []byte("yo")}},
		{"notify id", AppendNotifyID(nil, 300, []byte("yo")),
			Frame{Kind: KindNotify, Flags: FlagRouteID, RouteID: 300, Payload: []byte("yo")}},
		{"push", AppendPush(nil, 1, "sys.tick", []byte(`{"n":1}`)),
			Frame{Kind: KindPush, PushSeq: 1, Route: []byte("sys.tick"), Payload: []byte(`{"n":1}`)}},
		{"push max seq", AppendPush(nil, 0xFFFFFFFFFFFFFFFF, "a.b", nil),
			Frame{Kind: KindPush, PushSeq: 0xFFFFFFFFFFFFFFFF, Route: []byte("a.b")}},
		{"push id", AppendPushID(nil, 2, 3, []byte(`{"n":2}`)),
			Frame{Kind: KindPush, Flags: FlagRouteID, PushSeq: 2, RouteID: 3, Payload: []byte(`{"n":2}`)}},
		{"ping", AppendPing(nil, 1700000000000), Frame{Kind: KindPing, Clock: 1700000000000}},
		{"ping zero", AppendPing(nil, 0), Frame{Kind: KindPing}},
		{"pong", AppendPong(nil, 0xFFFFFFFFFFFFFFFF), Frame{Kind: KindPong, Clock: 0xFFFFFFFFFFFFFFFF}},
		{"kick", AppendKick(nil, CodeFrameTooLarge, "frame too large"),
			Frame{Kind: KindKick, Status: CodeFrameTooLarge, Payload: []byte("frame too large")}},
		{"kick no reason", AppendKick(nil, CodeShuttingDown, ""), Frame{Kind: KindKick, Status: CodeShuttingDown}},
		{"kick utf8 reason", AppendKick(nil, 1001, "再见"),
			Frame{Kind: KindKick, Status: 1001, Payload: []byte("再见")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, byte(Version), tt.body[0])
			require.Equal(t, byte(tt.want.Kind), tt.body[1])
			require.Equal(t, tt.want.Flags, tt.body[2])
			f, err := Decode(tt.body)
			require.NoError(t, err)
			got, want := f, tt.want
			got.Payload, want.Payload = nonEmpty(got.Payload), nonEmpty(want.Payload)
			if !got.HasRouteID() && (got.Kind == KindRequest || got.Kind == KindNotify || got.Kind == KindPush) {
				require.Equal(t, want.Route, got.Route)
			}
			got.Route, want.Route = nil, nil
			require.Equal(t, want, got)
			require.Equal(t, tt.body, reencode(t, f))
		})
	}
}

func TestAppendKeepsPrefix(t *testing.T) {
	prefix := []byte{0xDE, 0xAD}
	for name, b := range map[string][]byte{
		"handshake": AppendHandshake(prefix, nil),
		"ack":       AppendHandshakeAck(prefix, nil),
		"request":   AppendRequest(prefix, 1, "a.b", nil),
		"requestid": AppendRequestID(prefix, 1, 1, nil),
		"response":  AppendResponse(prefix, 1, 0, nil),
		"notify":    AppendNotify(prefix, "a.b", nil),
		"notifyid":  AppendNotifyID(prefix, 1, nil),
		"push":      AppendPush(prefix, 1, "a.b", nil),
		"pushid":    AppendPushID(prefix, 1, 1, nil),
		"ping":      AppendPing(prefix, 1),
		"pong":      AppendPong(prefix, 1),
		"kick":      AppendKick(prefix, 1, ""),
		"length":    AppendLength(prefix, 3),
	} {
		require.Equal(t, prefix, b[:2], name)
		if name != "length" {
			_, err := Decode(b[2:])
			require.NoError(t, err, name)
		}
	}
	require.Equal(t, []byte{0xDE, 0xAD}, prefix)
}

func TestDecodeAliasesBody(t *testing.T) {
	body := AppendRequest(nil, 1, "sys.ping", []byte("abc"))
	f, err := Decode(body)
	require.NoError(t, err)
	body[len(body)-1] = 'X'
	require.Equal(t, "abX", string(f.Payload))
}

func hdr(kind Kind, flags uint8, rest ...byte) []byte {
	return append([]byte{Version, byte(kind), flags}, rest...)
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		err  *Error
		code Code
	}{
		{"nil", nil, ErrShortFrame, CodeBadFrame},
		{"empty", []byte{}, ErrShortFrame, CodeBadFrame},
		{"one byte", []byte{1}, ErrShortFrame, CodeBadFrame},
		{"two bytes", []byte{1, 3}, ErrShortFrame, CodeBadFrame},
		{"version 0", []byte{0, 3, 0}, ErrBadVersion, CodeUnsupported},
		{"version 2", []byte{2, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrBadVersion, CodeUnsupported},
		{"version 255", []byte{0xFF, 0xFF, 0xFF}, ErrBadVersion, CodeUnsupported},
		{"kind 0", hdr(0, 0), ErrUnknownKind, CodeUnknownKind},
		{"kind 0x0b", hdr(0x0B, 0), ErrUnknownKind, CodeUnknownKind},
		{"bye with a body", append(hdr(0x0A, 0), 1), ErrBadFrame, CodeBadFrame},
		{"kind 0xff", hdr(0xFF, 0, 1, 2, 3), ErrUnknownKind, CodeUnknownKind},
		{"unknown kind wins over flags", hdr(0x0B, 0xFF), ErrUnknownKind, CodeUnknownKind},

		// reserved flag bits
		{"request flag 0x02", hdr(KindRequest, 0x02, 0, 0, 0, 1, 3, 'a', '.', 'b'), ErrBadFlags, CodeBadFrame},
		{"request flag 0x80", hdr(KindRequest, 0x80, 0, 0, 0, 1, 3, 'a', '.', 'b'), ErrBadFlags, CodeBadFrame},
		{"request flag 0x03", hdr(KindRequest, 0x03, 0, 0, 0, 1, 0, 1), ErrBadFlags, CodeBadFrame},
		{"notify flag 0x04", hdr(KindNotify, 0x04, 3, 'a', '.', 'b'), ErrBadFlags, CodeBadFrame},
		{"push flag 0xfe", hdr(KindPush, 0xFE, 0, 0, 0, 0, 0, 0, 0, 1, 3, 'a', '.', 'b'), ErrBadFlags, CodeBadFrame},
		{"ping flag 0x10", hdr(KindPing, 0x10, 0, 0, 0, 0, 0, 0, 0, 0), ErrBadFlags, CodeBadFrame},
		// bit 0 means "route id"; kinds without a route must leave it clear
		{"handshake route flag", hdr(KindHandshake, FlagRouteID, '{', '}'), ErrBadFlags, CodeBadFrame},
		{"ack route flag", hdr(KindHandshakeAck, FlagRouteID, '{', '}'), ErrBadFlags, CodeBadFrame},
		{"response route flag", hdr(KindResponse, FlagRouteID, 0, 0, 0, 1, 0, 0), ErrBadFlags, CodeBadFrame},
		{"ping route flag", hdr(KindPing, FlagRouteID, 0, 0, 0, 0, 0, 0, 0, 0), ErrBadFlags, CodeBadFrame},
		{"pong route flag", hdr(KindPong, FlagRouteID, 0, 0, 0, 0, 0, 0, 0, 0), ErrBadFlags, CodeBadFrame},
		{"kick route flag", hdr(KindKick, FlagRouteID, 0, 4), ErrBadFlags, CodeBadFrame},

		// truncated bodies of every kind that has fixed fields
		{"request no seq", hdr(KindRequest, 0), ErrBadFrame, CodeBadFrame},
		{"request short seq", hdr(KindRequest, 0, 0, 0, 1), ErrBadFrame, CodeBadFrame},
		{"request no route len", hdr(KindRequest, 0, 0, 0, 0, 1), ErrBadFrame, CodeBadFrame},
		{"request route cut", hdr(KindRequest, 0, 0, 0, 0, 1, 8, 's', 'y', 's', '.'), ErrBadFrame, CodeBadFrame},
		{"request route len 255 cut", hdr(KindRequest, 0, 0, 0, 0, 1, 255, 'a', '.', 'b'), ErrBadFrame, CodeBadFrame},
		{"request id no id", hdr(KindRequest, FlagRouteID, 0, 0, 0, 1), ErrBadFrame, CodeBadFrame},
		{"request id half id", hdr(KindRequest, FlagRouteID, 0, 0, 0, 1, 0), ErrBadFrame, CodeBadFrame},
		{"response no seq", hdr(KindResponse, 0), ErrBadFrame, CodeBadFrame},
		{"response no status", hdr(KindResponse, 0, 0, 0, 0, 1), ErrBadFrame, CodeBadFrame},
		{"response half status", hdr(KindResponse, 0, 0, 0, 0, 1, 0), ErrBadFrame, CodeBadFrame},
		{"notify empty", hdr(KindNotify, 0), ErrBadFrame, CodeBadFrame},
		{"notify route cut", hdr(KindNotify, 0, 3, 'a', '.'), ErrBadFrame, CodeBadFrame},
		{"notify id empty", hdr(KindNotify, FlagRouteID), ErrBadFrame, CodeBadFrame},
		{"notify id half", hdr(KindNotify, FlagRouteID, 1), ErrBadFrame, CodeBadFrame},
		{"push empty", hdr(KindPush, 0), ErrBadFrame, CodeBadFrame},
		{"push short seq", hdr(KindPush, 0, 0, 0, 0, 0, 0, 0, 1), ErrBadFrame, CodeBadFrame},
		{"push no route", hdr(KindPush, 0, 0, 0, 0, 0, 0, 0, 0, 1), ErrBadFrame, CodeBadFrame},
		{"push route cut", hdr(KindPush, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 'a'), ErrBadFrame, CodeBadFrame},
		{"push id no id", hdr(KindPush, FlagRouteID, 0, 0, 0, 0, 0, 0, 0, 1), ErrBadFrame, CodeBadFrame},
		{"push id half id", hdr(KindPush, FlagRouteID, 0, 0, 0, 0, 0, 0, 0, 1, 0), ErrBadFrame, CodeBadFrame},
		{"kick empty", hdr(KindKick, 0), ErrBadFrame, CodeBadFrame},
		{"kick half code", hdr(KindKick, 0, 0), ErrBadFrame, CodeBadFrame},

		// PING and PONG are exactly 8 bytes after the header
		{"ping empty", hdr(KindPing, 0), ErrBadFrame, CodeBadFrame},
		{"ping 7", hdr(KindPing, 0, 0, 0, 0, 0, 0, 0, 0), ErrBadFrame, CodeBadFrame},
		{"ping 9", hdr(KindPing, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), ErrBadFrame, CodeBadFrame},
		{"pong empty", hdr(KindPong, 0), ErrBadFrame, CodeBadFrame},
		{"pong 4", hdr(KindPong, 0, 0, 0, 0, 0), ErrBadFrame, CodeBadFrame},
		{"pong 16", hdr(KindPong, 0, make([]byte, 16)...), ErrBadFrame, CodeBadFrame},

		// bad string routes outside REQUEST cannot be answered: KICK 5
		{"notify bad route", AppendNotify(nil, "Chat.say", nil), ErrBadRoute, CodeBadRoute},
		{"notify empty route", hdr(KindNotify, 0, 0), ErrBadRoute, CodeBadRoute},
		{"push bad route", AppendPush(nil, 1, "sys..tick", nil), ErrBadRoute, CodeBadRoute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.body)
			require.Error(t, err)
			require.Same(t, tt.err, err, "got %v", err)
			require.Equal(t, tt.code, AsError(err).Code)
		})
	}
}

// A REQUEST with a bad route still yields its seq, so the gate can answer it
// with status 300 instead of closing the connection.
func TestDecodeRequestBadRouteKeepsSeq(t *testing.T) {
	for _, route := range []string{"", "sys", "Sys.ping", "sys.ping.x", ".ping", "sys.", "1a.b", "a.b-c", "a b.c"} {
		t.Run(route, func(t *testing.T) {
			body := AppendRequest(nil, 0xCAFEBABE, route, []byte("payload"))
			f, err := Decode(body)
			require.Same(t, ErrBadRoute, err)
			require.Equal(t, CodeBadRoute, AsError(err).Code)
			require.Equal(t, KindRequest, f.Kind)
			require.Equal(t, uint32(0xCAFEBABE), f.Seq)
			require.Equal(t, route, string(f.Route))
			require.Equal(t, "payload", string(f.Payload))
		})
	}
}

func TestValidRoute(t *testing.T) {
	p32 := "a" + strings.Repeat("b", 31)
	p33 := p32 + "c"
	tests := []struct {
		route string
		ok    bool
	}{
		{"sys.ping", true},
		{"a.b", true},
		{"a_.b_", true},
		{"a0.b9", true},
		{"room.seat_2", true},
		{"z_9_z.q__", true},
		{p32 + ".x", true},
		{"x." + p32, true},
		{p32 + "." + p32, true},
		{p33 + ".x", false},
		{"x." + p33, false},
		{p33 + "." + p33, false},
		{"", false},
		{".", false},
		{"a.", false},
		{".b", false},
		{"ab", false},
		{"a..b", false},
		{"a.b.c", false},
		{"a.b.", false},
		{".a.b", false},
		{"Sys.ping", false},
		{"sys.Ping", false},
		{"SYS.PING", false},
		{"1sys.ping", false},
		{"sys.1ping", false},
		{"_sys.ping", false},
		{"sys._ping", false},
		{"sys-x.ping", false},
		{"sys.pi ng", false},
		{" sys.ping", false},
		{"sys.ping ", false},
		{"sys.ping\n", false},
		{"sys.ping\x00", false},
		{"sys/ping", false},
		{"sys.pïng", false},
		{"sÿs.ping", false},
		{"sys.p\xffing", false},
		{"sys.*", false},
		{"sys.>", false},
		{"a.b\u0130", false},
	}
	for _, tt := range tests {
		t.Run(tt.route, func(t *testing.T) {
			require.Equal(t, tt.ok, ValidRoute(tt.route))
			require.Equal(t, tt.ok, ValidRoute([]byte(tt.route)))
			require.Equal(t, tt.ok, routeRE.MatchString(tt.route), "test table disagrees with PROTOCOL.md regexp")
			// and through Decode
			_, err := Decode(AppendRequest(nil, 1, tt.route, nil))
			if tt.ok {
				require.NoError(t, err)
			} else {
				require.Same(t, ErrBadRoute, err)
			}
		})
	}
}

func TestValidName(t *testing.T) {
	for s, ok := range map[string]bool{
		"a": true, "auth": true, "a_1": true, "a" + strings.Repeat("b", 31): true,
		"": false, "a" + strings.Repeat("b", 32): false, "A": false, "1a": false, "_a": false,
		"a.b": false, "a-b": false, "é": false,
	} {
		require.Equal(t, ok, ValidName(s), s)
		require.Equal(t, ok, nameRE.MatchString(s), s)
	}
}

func TestSplitRoute(t *testing.T) {
	s, m := SplitRoute("sys.ping")
	require.Equal(t, "sys", s)
	require.Equal(t, "ping", m)
	s, m = SplitRoute("nodot")
	require.Equal(t, "nodot", s)
	require.Equal(t, "", m)
}

func TestKindString(t *testing.T) {
	names := map[Kind]string{
		KindHandshake: "HANDSHAKE", KindHandshakeAck: "HANDSHAKE_ACK", KindRequest: "REQUEST",
		KindResponse: "RESPONSE", KindNotify: "NOTIFY", KindPush: "PUSH", KindPing: "PING",
		KindPong: "PONG", KindKick: "KICK", KindBye: "BYE", 0: "UNKNOWN", 0x0B: "UNKNOWN", 0xFF: "UNKNOWN",
	}
	for k, s := range names {
		require.Equal(t, s, k.String())
	}
	// The numeric values are fixed by PROTOCOL.md.
	require.Equal(t, []Kind{1, 2, 3, 4, 5, 6, 7, 8, 9}, []Kind{KindHandshake, KindHandshakeAck,
		KindRequest, KindResponse, KindNotify, KindPush, KindPing, KindPong, KindKick})
	require.Equal(t, uint8(1), FlagRouteID)
	require.Equal(t, 1, Version)
	require.Equal(t, 3, HeaderSize)
	require.Equal(t, 65536, DefaultMaxFrame)
}

func TestFrameFieldsBigEndian(t *testing.T) {
	b := AppendRequest(nil, 0x01020304, "a.b", nil)
	require.Equal(t, []byte{1, 3, 0, 1, 2, 3, 4, 3, 'a', '.', 'b'}, b)
	b = AppendPushID(nil, 0x0102030405060708, 0x0A0B, []byte{0xFF})
	require.Equal(t, []byte{1, 6, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0x0A, 0x0B, 0xFF}, b)
	b = AppendResponse(nil, 5, 0x012C, []byte("e"))
	require.Equal(t, []byte{1, 4, 0, 0, 0, 0, 5, 0x01, 0x2C, 'e'}, b)
	require.Equal(t, uint16(300), binary.BigEndian.Uint16(b[7:9]))
}

func TestDecodeRequestAllocs(t *testing.T) {
	bodies := [][]byte{
		AppendRequest(nil, 1, "sys.ping", []byte(`{"hi":1}`)),
		AppendRequestID(nil, 2, 1, []byte(`{"hi":1}`)),
		AppendPush(nil, 1, "sys.tick", []byte(`{"n":1}`)),
		AppendPing(nil, 1),
		AppendRequest(nil, 3, "Bad.route", nil), // errors are preallocated too
		{1, 0xEE, 0},
	}
	var sink Frame
	for _, body := range bodies {
		allocs := testing.AllocsPerRun(100, func() {
			f, _ := Decode(body)
			sink = f
		})
		require.Zero(t, allocs, "Decode(% x)", body)
	}
	_ = sink
}

func TestAsError(t *testing.T) {
	require.Same(t, ErrBadRoute, AsError(ErrBadRoute))
	wrapped := errors.Join(errors.New("ctx"), ErrFrameTooLarge)
	require.Same(t, ErrFrameTooLarge, AsError(wrapped))
	e := AsError(errors.New("boom"))
	require.Equal(t, CodeInternal, e.Code)
	require.Equal(t, "boom", e.Message)
}
