package client

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
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
	tr := &tcpTransport{conn: &chunkConn{data: stream, rng: rng}, buf: make([]byte, 512), max: 8000}
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
		tr := &tcpTransport{conn: &chunkConn{data: frame[:cut], rng: rng}, buf: make([]byte, 512), max: 8000}
		_, err := tr.read()
		require.ErrorIs(t, err, io.ErrUnexpectedEOF, "the end %d bytes into a frame", cut)
	}
	tr = &tcpTransport{conn: &chunkConn{data: wire.AppendLength(nil, 8001), rng: rng}, buf: make([]byte, 512), max: 8000}
	_, err = tr.read()
	require.ErrorIs(t, err, wire.ErrFrameTooLarge)
}
