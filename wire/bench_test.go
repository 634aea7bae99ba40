package wire

import (
	"bytes"
	"testing"
)

var benchPayload = bytes.Repeat([]byte{0x5A}, 64)

var benchSink Frame

func BenchmarkDecodeRequest(b *testing.B) {
	body := AppendRequest(nil, 42, "lobby.get_profile", benchPayload)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		f, err := Decode(body)
		if err != nil {
			b.Fatal(err)
		}
		benchSink = f
	}
}

func BenchmarkDecodeRequestID(b *testing.B) {
	body := AppendRequestID(nil, 42, 17, benchPayload)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		f, err := Decode(body)
		if err != nil {
			b.Fatal(err)
		}
		benchSink = f
	}
}

func BenchmarkAppendRequest(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendRequest(buf[:0], 42, "lobby.get_profile", benchPayload)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkAppendPush(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendPush(buf[:0], 1234567, "room.state", benchPayload)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkAppendResponse(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendResponse(buf[:0], 42, OK, benchPayload)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkReadTCP(b *testing.B) {
	frame := tcp(AppendRequest(nil, 42, "lobby.get_profile", benchPayload))
	r := bytes.NewReader(frame)
	buf := make([]byte, 0, DefaultMaxFrame)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		r.Reset(frame)
		body, err := ReadTCP(r, buf, DefaultMaxFrame)
		if err != nil {
			b.Fatal(err)
		}
		benchSink.Payload = body
	}
}
