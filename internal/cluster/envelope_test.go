package cluster

import (
	"bytes"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

func sampleEnvelopes() []*Envelope {
	return []*Envelope{
		{Type: TypeRequest, Codec: CodecJSON, Seq: 42, Deadline: 1_700_000_000_000_000_000, Gate: "gate-1", Session: "s1", User: "u1",
			Route: "room.join", Trace: "00ff00ff00ff00ff", Addr: "127.0.0.1:5555",
			Bindings: []Binding{{Service: "room", Node: "node-7"}, {Service: "chat", Node: "node-2"}}, Payload: []byte(`{"a":1}`)},
		{Type: TypeResponse, Seq: 0xffffffff, Status: 302, Payload: []byte("did not answer")},
		{Type: TypePush, Sessions: []string{"a", "b", "c"}, Route: "chat.msg", Payload: []byte{1, 2, 3}, JSON: []byte(`{"x":1}`), Sent: 1_700_000_000_123_456_789},
		{Type: TypePublish, Channel: "room.niuniu.42", Route: "room.state", JSON: []byte(`{}`)},
		{Type: TypeKick, Session: "s", Status: 104, Reason: "logged in elsewhere"},
		{Type: TypeBind, Session: "s", Route: "room", Node: "node-3"},
		{Type: TypeEvent, Status: uint16(EventClosed), Gate: "g", Session: "s", Sent: -5},
		{Type: TypePushEach, Sessions: []string{"a", "b"}, Route: "cards.state", Origin: "n1/x", Counts: []uint64{7, 1},
			Payload: AppendPayloads(nil, [][]byte{[]byte(`{"you":0}`), {0x08, 0x01}})},
	}
}

func TestPayloadsRoundTrip(t *testing.T) {
	for _, ps := range [][][]byte{nil, {{}}, {[]byte("a"), {}, bytes.Repeat([]byte{7}, 300)}} {
		b := AppendPayloads([]byte("x"), ps)
		got, err := SplitPayloads(b[1:], len(ps))
		require.NoError(t, err)
		require.Len(t, got, len(ps))
		for i := range ps {
			require.Equal(t, string(ps[i]), string(got[i]))
		}
	}
	two := AppendPayloads(nil, [][]byte{[]byte("ab"), []byte("c")})
	for name, c := range map[string]struct {
		b []byte
		n int
	}{
		"fewer than said": {two, 3},
		"more than said":  {two, 1},
		"truncated":       {two[:len(two)-1], 2},
		"length overrun":  {[]byte{0x05, 'a'}, 1},
		"negative count":  {two, -1},
		"count > bytes":   {[]byte{0}, 2},
	} {
		_, err := SplitPayloads(c.b, c.n)
		require.ErrorIs(t, err, errEnvelope, name)
	}
}

func FuzzSplitPayloads(f *testing.F) {
	f.Add(AppendPayloads(nil, [][]byte{[]byte("ab"), []byte("c")}), 2)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, 1)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		ps, err := SplitPayloads(b, n)
		if err != nil {
			return
		}
		// What splits, joined again, splits to the same payloads.
		again, err := SplitPayloads(AppendPayloads(nil, ps), n)
		require.NoError(t, err)
		require.Equal(t, len(ps), len(again))
		for i := range ps {
			require.Equal(t, ps[i], again[i])
		}
	})
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, e := range sampleEnvelopes() {
		b := e.Append(nil)
		got, err := DecodeEnvelope(b)
		require.NoError(t, err)
		require.Equal(t, e, got)
		// Appending to a non-empty buffer leaves the prefix alone.
		b2 := e.Append([]byte("prefix"))
		require.Equal(t, "prefix", string(b2[:6]))
		require.Equal(t, b, b2[6:])
		// Append grows a buffer once, to maxSize, which is room enough:
		// given it, the encoding stays in that buffer.
		require.LessOrEqual(t, len(b), e.maxSize())
		room := make([]byte, 1, 1+e.maxSize())
		require.Same(t, unsafe.SliceData(room), unsafe.SliceData(e.Append(room)), "%v: the encoding outgrew maxSize", e.Type)
	}
}

// A request's deadline and a push's sending time share one slot of the
// encoding: each type reads it as its own field, and the bytes are those a
// version-2 envelope with that deadline had.
func TestEnvelopeTimeSlot(t *testing.T) {
	const at = 1_700_000_000_000_000_000
	req := (&Envelope{Type: TypeRequest, Deadline: at}).Append(nil)
	push := (&Envelope{Type: TypePush, Sent: at}).Append(nil)
	require.Equal(t, req[3:], push[3:], "the same slot")
	got, err := DecodeEnvelope(req)
	require.NoError(t, err)
	require.Equal(t, int64(at), got.Deadline)
	require.Zero(t, got.Sent)
	got, err = DecodeEnvelope(push)
	require.NoError(t, err)
	require.Equal(t, int64(at), got.Sent)
	require.Zero(t, got.Deadline)
	// A request's Sent and a push's Deadline are not encoded.
	got, err = DecodeEnvelope((&Envelope{Type: TypePushEach, Deadline: at}).Append(nil))
	require.NoError(t, err)
	require.Zero(t, got.Deadline)
	require.Zero(t, got.Sent)
}

func TestEnvelopeRejects(t *testing.T) {
	valid := (&Envelope{Type: TypePush, Sessions: []string{"abc"}, Route: "a.b", JSON: []byte("{}")}).Append(nil)
	cases := map[string][]byte{
		"empty":          {},
		"short":          {1, 1},
		"bad version":    append([]byte{9}, valid[1:]...),
		"type zero":      append([]byte{1, 0}, valid[2:]...),
		"type too big":   append([]byte{1, byte(typeEnd)}, valid[2:]...),
		"bad codec":      append([]byte{1, 1, 7}, valid[3:]...),
		"truncated":      valid[:len(valid)-3],
		"huge list":      {1, byte(TypePush), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"huge string":    {1, byte(TypePush), 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"status > u16":   {1, byte(TypeResponse), 0, 0xff, 0xff, 0x7f},
		"varint overrun": {1, byte(TypeResponse), 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeEnvelope(b)
			require.ErrorIs(t, err, errEnvelope)
		})
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	for _, e := range sampleEnvelopes() {
		f.Add(e.Append(nil))
	}
	f.Add([]byte{1, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEnvelope(b)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode to something that decodes to the
		// same envelope (the encoding is canonical up to varint form).
		b2 := e.Append(nil)
		if len(b2) > e.maxSize() {
			t.Fatalf("the encoding (%d bytes) is longer than maxSize %d", len(b2), e.maxSize())
		}
		again, err := DecodeEnvelope(b2)
		if err != nil {
			t.Fatalf("re-encoded envelope does not decode: %v", err)
		}
		if !bytes.Equal(again.Payload, e.Payload) || again.Route != e.Route || len(again.Sessions) != len(e.Sessions) || again.Seq != e.Seq {
			t.Fatalf("round trip changed the envelope: %+v vs %+v", e, again)
		}
	})
}

func BenchmarkEnvelopeRequest(b *testing.B) {
	e := sampleEnvelopes()[0]
	buf := e.Append(nil)
	b.ReportAllocs()
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = e.Append(buf[:0])
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		var d Envelope
		for b.Loop() {
			if err := d.Decode(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// An envelope from the pool is empty, whatever the one put back held.
func TestEnvelopePoolGivesEmptyEnvelopes(t *testing.T) {
	var p EnvelopePool
	for range 100 {
		e := p.Get()
		require.Equal(t, Envelope{}, *e)
		*e = Envelope{Type: TypeRequest, Session: "s1", Sessions: []string{"a"}, Bindings: []Binding{{Service: "x", Node: "n"}}, Payload: []byte("p")}
		p.Put(e)
	}
}
