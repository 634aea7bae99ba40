package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"reflect"
	"regexp"
	"testing"
)

// The route grammar exactly as PROTOCOL.md writes it.
var (
	routeRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}\.[a-z][a-z0-9_]{0,31}$`)
	nameRE  = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)
)

// seedBodies are valid and invalid bodies of every kind, shared by the fuzz
// targets' seed corpora.
func seedBodies() [][]byte {
	return [][]byte{
		AppendHandshake(nil, []byte(`{"version":1,"codec":"json","client":"demo/1"}`)),
		AppendHandshakeAck(nil, []byte(`{"session":"s","routes":{"sys.ping":1}}`)),
		AppendRequest(nil, 1, "sys.ping", []byte(`{"hi":1}`)),
		AppendRequest(nil, 0xFFFFFFFF, "a.b", nil),
		AppendRequest(nil, 2, "Bad.route", []byte("x")),
		AppendRequestID(nil, 3, 1, []byte{0x08, 0x01}),
		AppendResponse(nil, 1, OK, []byte(`{"hi":1}`)),
		AppendResponse(nil, 3, CodeUnknownRoute, []byte("unknown route")),
		AppendNotify(nil, "chat.say", []byte("hello")),
		AppendNotifyID(nil, 7, nil),
		AppendPush(nil, 1, "sys.tick", []byte(`{"n":1}`)),
		AppendPushID(nil, 2, 3, []byte(`{"n":2}`)),
		AppendPing(nil, 1700000000000),
		AppendPong(nil, 0),
		AppendKick(nil, CodeFrameTooLarge, "frame too large"),
		{},
		{1, 3},
		{2, 1, 0},
		{1, 0x0A, 0},
		{1, 7, 1, 0, 0, 0, 0, 0, 0, 0, 0},
		{1, 3, 0x02, 0, 0, 0, 1, 3, 'a', '.', 'b'},
		{1, 3, 0, 0, 0, 0, 1, 200, 'a'},
	}
}

func FuzzDecode(f *testing.F) {
	for _, b := range seedBodies() {
		f.Add(b)
	}
	sentinels := []*Error{ErrBadFrame, ErrShortFrame, ErrBadVersion, ErrUnknownKind, ErrBadRoute, ErrBadFlags}
	f.Fuzz(func(t *testing.T, body []byte) {
		orig := bytes.Clone(body)
		fr, err := Decode(body)
		if !bytes.Equal(orig, body) {
			t.Fatal("Decode modified its input")
		}
		if err != nil {
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("error %T %v is not a *Error", err, err)
			}
			known := false
			for _, s := range sentinels {
				known = known || e == s
			}
			if !known {
				t.Fatalf("error %v is not one of the sentinels", err)
			}
			if e == ErrBadRoute {
				if fr.HasRouteID() || (fr.Kind != KindRequest && fr.Kind != KindNotify && fr.Kind != KindPush) {
					t.Fatalf("ErrBadRoute for kind %v flags %#x", fr.Kind, fr.Flags)
				}
				if ValidRoute(fr.Route) {
					t.Fatalf("ErrBadRoute for valid route %q", fr.Route)
				}
				if fr.Kind == KindRequest && fr.Seq != binary.BigEndian.Uint32(body[3:]) {
					t.Fatalf("bad route REQUEST lost its seq")
				}
			}
			return
		}
		if len(body) < HeaderSize || body[0] != Version {
			t.Fatalf("accepted % x", body)
		}
		if !fr.HasRouteID() && len(fr.Route) > 0 && !routeRE.Match(fr.Route) {
			t.Fatalf("accepted route %q", fr.Route)
		}
		again := reencode(t, fr)
		if !bytes.Equal(again, body) {
			t.Fatalf("round trip differs:\n in  % x\n out % x", body, again)
		}
	})
}

func FuzzReadTCP(f *testing.F) {
	for _, b := range seedBodies() {
		f.Add(tcp(b), uint32(DefaultMaxFrame))
	}
	f.Add([]byte{0, 0, 0, 3, 1, 7}, uint32(DefaultMaxFrame))
	f.Add([]byte{0, 1, 0, 1, 1, 1, 0}, uint32(DefaultMaxFrame))
	f.Add([]byte{0xFF, 0xFF, 0xFF, 0xFF}, uint32(0xFFFFFFFF))
	f.Add([]byte{0, 0, 0, 2, 1, 1}, uint32(DefaultMaxFrame))
	f.Add(tcp(AppendPing(nil, 1)), uint32(10))
	f.Fuzz(func(t *testing.T, data []byte, max32 uint32) {
		max := int(max32 % (4 * DefaultMaxFrame)) // keep allocations small
		r := bytes.NewReader(data)
		body, err := ReadTCP(r, nil, max)
		consumed := len(data) - r.Len()
		if len(data) < LengthSize {
			if err == nil {
				t.Fatal("read a frame without a length")
			}
			return
		}
		n := binary.BigEndian.Uint32(data)
		switch {
		case int64(n) > int64(max):
			if err != ErrFrameTooLarge || consumed != LengthSize {
				t.Fatalf("length %d > %d: err %v, consumed %d", n, max, err, consumed)
			}
		case n < HeaderSize:
			if err != ErrShortFrame || consumed != LengthSize {
				t.Fatalf("length %d: err %v, consumed %d", n, err, consumed)
			}
		case len(data) < LengthSize+int(n):
			if err != io.ErrUnexpectedEOF {
				t.Fatalf("truncated: err %v", err)
			}
		default:
			if err != nil {
				t.Fatalf("err %v", err)
			}
			if consumed != LengthSize+int(n) || !bytes.Equal(body, data[LengthSize:consumed]) {
				t.Fatalf("body % x, consumed %d", body, consumed)
			}
			if fr, err := Decode(body); err == nil && !bytes.Equal(reencode(t, fr), body) {
				t.Fatal("round trip differs")
			}
		}
	})
}

func FuzzValidRoute(f *testing.F) {
	for _, s := range []string{
		"sys.ping", "a.b", "", ".", "a.", ".b", "a..b", "a.b.c", "Sys.ping", "1a.b", "a.1b", "_a.b",
		"a_.b_", "sys.pïng", "sys.ping\n", "abcdefghijklmnopqrstuvwxyz012345.b",
		"abcdefghijklmnopqrstuvwxyz0123456.b", "a.abcdefghijklmnopqrstuvwxyz012345",
		"a.abcdefghijklmnopqrstuvwxyz0123456", "\xff.a", "a.b\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := routeRE.MatchString(s)
		if got := ValidRoute(s); got != want {
			t.Fatalf("ValidRoute(%q) = %v, regexp says %v", s, got, want)
		}
		if got := ValidRoute([]byte(s)); got != want {
			t.Fatalf("ValidRoute([]byte(%q)) = %v, regexp says %v", s, got, want)
		}
		if got, want := ValidName(s), nameRE.MatchString(s); got != want {
			t.Fatalf("ValidName(%q) = %v, regexp says %v", s, got, want)
		}
		if want {
			svc, m := SplitRoute(s)
			if !ValidName(svc) || !ValidName(m) || svc+"."+m != s {
				t.Fatalf("SplitRoute(%q) = %q, %q", s, svc, m)
			}
		}
		if len(s) < 256 {
			_, err := Decode(AppendRequest(nil, 1, s, nil))
			if (err == nil) != want {
				t.Fatalf("Decode of route %q: %v", s, err)
			}
		}
	})
}

func FuzzHandshakeJSON(f *testing.F) {
	f.Add([]byte(`{"version":1,"codec":"json","client":"demo/1"}`))
	f.Add([]byte(`{"version":1,"codec":"protobuf","client":"demo/1","resume":"r-9c41","last_push":18446744073709551615}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"last_push":-1}`))
	f.Add([]byte(`{"session":"s","node":"g","heartbeat_ms":10000,"routes":{"sys.ping":1},"resumed":true,"server_time_ms":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var h Handshake
		if json.Unmarshal(data, &h) == nil {
			b, err := json.Marshal(h)
			if err != nil {
				t.Fatal(err)
			}
			var h2 Handshake
			if err := json.Unmarshal(b, &h2); err != nil || h2 != h {
				t.Fatalf("Handshake round trip: %+v → %s → %+v (%v)", h, b, h2, err)
			}
		}
		var a HandshakeAck
		if json.Unmarshal(data, &a) == nil {
			b, err := json.Marshal(a)
			if err != nil {
				t.Fatal(err)
			}
			var a2 HandshakeAck
			if err := json.Unmarshal(b, &a2); err != nil || !reflect.DeepEqual(a, a2) {
				t.Fatalf("HandshakeAck round trip: %+v → %s → %+v (%v)", a, b, a2, err)
			}
		}
	})
}
