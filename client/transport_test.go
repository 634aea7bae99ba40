package client

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth/wire"
)

// chunkConn is a connection whose reads return data in chunks of random
// size, then io.EOF.
type chunkConn struct {
	net.Conn
	data []byte
	rng  *rand.Rand
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.data[:min(len(c.data), 1+c.rng.IntN(1500))])
	c.data = c.data[n:]
	return n, nil
}

// The TCP reader returns every frame whole and in order however the bytes
// arrive, several frames a read or a frame over many, of any size up to
// the limit.
func TestTCPTransportReadsFrames(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var stream []byte
	var want [][]byte
	for i := range 500 {
		body := make([]byte, wire.HeaderSize+rng.IntN([]int{50, 700, 5000}[i%3]))
		for j := range body {
			body[j] = byte(rng.IntN(256))
		}
		want = append(want, body)
		stream = append(wire.AppendLength(stream, len(body)), body...)
	}
	tr := &tcpTransport{conn: &chunkConn{data: stream, rng: rng}, frameBuf: newFrameBuf(8000)}
	for i, w := range want {
		got, err := tr.read()
		require.NoError(t, err, "frame %d", i)
		require.True(t, bytes.Equal(w, got), "frame %d", i)
		require.Equal(t, len(got), cap(got), "a frame's body cannot be appended into the next")
	}
	_, err := tr.read()
	require.ErrorIs(t, err, io.EOF, "the end between frames")
	require.LessOrEqual(t, len(tr.buf), 2*(5000+wire.HeaderSize+wire.LengthSize), "the buffer grows to about the largest frame")

	for cut := 1; cut < 4+wire.HeaderSize; cut++ {
		frame := wire.AppendLength(nil, wire.HeaderSize)
		frame = append(frame, make([]byte, wire.HeaderSize)...)
		tr := &tcpTransport{conn: &chunkConn{data: frame[:cut], rng: rng}, frameBuf: newFrameBuf(8000)}
		_, err := tr.read()
		require.ErrorIs(t, err, io.ErrUnexpectedEOF, "the end %d bytes into a frame", cut)
	}
	tr = &tcpTransport{conn: &chunkConn{data: wire.AppendLength(nil, 8001), rng: rng}, frameBuf: newFrameBuf(8000)}
	_, err = tr.read()
	require.ErrorIs(t, err, wire.ErrFrameTooLarge)
}

// FuzzFrameBuf: the TCP frame parser (frameBuf.next, which both the
// Poller and a client's own reader use), fed a stream in pieces of any
// size as reads would give it, returns the frames that reading the stream
// whole gives, and fails where that does.
func FuzzFrameBuf(f *testing.F) {
	frame := func(body string) []byte { return append(wire.AppendLength(nil, len(body)), body...) }
	f.Add(append(frame("hello"), frame("")...), uint64(1))
	f.Add([]byte{0, 0, 0}, uint64(7))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1}, uint64(3))
	f.Add(append(append(frame(strings.Repeat("x", 700)), frame("y")...), 0, 0), uint64(99))
	f.Fuzz(func(t *testing.T, stream []byte, seed uint64) {
		const limit = 1024
		var want []string
		var wantErr error
		for rest := stream; len(rest) >= wire.LengthSize; {
			n := binary.BigEndian.Uint32(rest)
			if err := wire.CheckLength(n, limit); err != nil {
				wantErr = err
				break
			}
			size := wire.LengthSize + int(n)
			if len(rest) < size {
				break
			}
			want = append(want, string(rest[wire.LengthSize:size]))
			rest = rest[size:]
		}

		rng := rand.New(rand.NewPCG(seed, 0))
		tr := newFrameBuf(limit)
		var got []string
		var gotErr error
		for rest := stream; ; {
			body, err := tr.next()
			if err != nil {
				gotErr = err
				break
			}
			if body != nil {
				got = append(got, string(body))
				continue
			}
			if len(rest) == 0 {
				break
			}
			room := len(tr.room())
			if room <= 0 {
				t.Fatalf("no room left to read into: r %d, w %d, buffer %d", tr.r, tr.w, len(tr.buf))
			}
			k := min(len(rest), 1+rng.IntN(room))
			tr.w += copy(tr.room(), rest[:k])
			rest = rest[k:]
		}
		require.Equal(t, want, got)
		require.Equal(t, wantErr, gotErr)
	})
}
