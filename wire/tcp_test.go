package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// limitedReader serves data and fails the test if anyone reads past limit
// bytes: ReadTCP must not touch a body whose length it rejects.
type limitedReader struct {
	t     testing.TB
	data  []byte
	limit int
	read  int
}

func (r *limitedReader) Read(p []byte) (int, error) {
	if r.read+len(p) > r.limit {
		p = p[:r.limit-r.read]
		if len(p) == 0 {
			r.t.Errorf("read past the length prefix (%d bytes already read)", r.read)
			return 0, errors.New("read past limit")
		}
	}
	n := copy(p, r.data[r.read:])
	r.read += n
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func tcpFrame(body []byte) []byte { return append(AppendLength(nil, len(body)), body...) }

func TestReadTCP(t *testing.T) {
	req := AppendRequest(nil, 1, "sys.ping", []byte(`{"hi":1}`))
	ping := AppendPing(nil, 42)
	stream := append(tcpFrame(req), tcpFrame(ping)...)

	for name, r := range map[string]io.Reader{
		"whole":    bytes.NewReader(stream),
		"one byte": iotest.OneByteReader(bytes.NewReader(stream)),
		"half":     iotest.HalfReader(bytes.NewReader(stream)),
	} {
		t.Run(name, func(t *testing.T) {
			var buf []byte
			body, err := ReadTCP(r, buf, DefaultMaxFrame)
			require.NoError(t, err)
			require.Equal(t, req, body)
			body, err = ReadTCP(r, body, DefaultMaxFrame)
			require.NoError(t, err)
			require.Equal(t, ping, body)
			_, err = ReadTCP(r, body, DefaultMaxFrame)
			require.ErrorIs(t, err, io.EOF) // a clean close between frames
		})
	}
}

func TestReadTCPReusesBuffer(t *testing.T) {
	body := AppendPing(nil, 1)
	buf := make([]byte, 0, 64)
	got, err := ReadTCP(bytes.NewReader(tcpFrame(body)), buf, DefaultMaxFrame)
	require.NoError(t, err)
	require.Equal(t, body, got)
	require.Same(t, &buf[:1][0], &got[0])

	// too small: a new buffer of exactly the frame's length
	small := make([]byte, 0, 4)
	got, err = ReadTCP(bytes.NewReader(tcpFrame(body)), small, DefaultMaxFrame)
	require.NoError(t, err)
	require.Equal(t, body, got)
	require.Len(t, got, len(body))
}

func TestReadTCPLimits(t *testing.T) {
	tests := []struct {
		name   string
		length uint32
		max    int
		err    error
	}{
		{"max+1", DefaultMaxFrame + 1, DefaultMaxFrame, ErrFrameTooLarge},
		{"u32 max", 0xFFFFFFFF, DefaultMaxFrame, ErrFrameTooLarge},
		{"2^31", 1 << 31, DefaultMaxFrame, ErrFrameTooLarge},
		{"small limit", 11, 10, ErrFrameTooLarge},
		{"zero limit", 3, 0, ErrFrameTooLarge},
		{"negative limit", 3, -1, ErrFrameTooLarge},
		{"length 0", 0, DefaultMaxFrame, ErrShortFrame},
		{"length 1", 1, DefaultMaxFrame, ErrShortFrame},
		{"length 2", 2, DefaultMaxFrame, ErrShortFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The body that follows would be valid; it must not be read.
			data := append(AppendLength(nil, int(tt.length)), AppendPing(nil, 0)...)
			r := &limitedReader{t: t, data: data, limit: LengthSize}
			body, err := ReadTCP(r, nil, tt.max)
			require.Same(t, tt.err, err)
			require.Nil(t, body)
			require.Equal(t, LengthSize, r.read)
			require.Same(t, tt.err, CheckLength(tt.length, tt.max))
		})
	}
	require.Equal(t, CodeFrameTooLarge, ErrFrameTooLarge.Code)
	require.Equal(t, CodeBadFrame, ErrShortFrame.Code)
}

func TestReadTCPAtLimits(t *testing.T) {
	body := AppendHandshake(nil, bytes.Repeat([]byte{'x'}, DefaultMaxFrame-HeaderSize))
	require.Len(t, body, DefaultMaxFrame)
	got, err := ReadTCP(bytes.NewReader(tcpFrame(body)), nil, DefaultMaxFrame)
	require.NoError(t, err)
	require.Equal(t, body, got)

	got, err = ReadTCP(bytes.NewReader([]byte{0, 0, 0, 3, 1, 1, 0}), nil, 3)
	require.NoError(t, err)
	require.Equal(t, []byte{1, 1, 0}, got)
	require.NoError(t, CheckLength(3, 3))
	require.NoError(t, CheckLength(DefaultMaxFrame, DefaultMaxFrame))
}

func TestReadTCPTruncated(t *testing.T) {
	full := tcpFrame(AppendRequest(nil, 1, "sys.ping", []byte("payload")))
	tests := []struct {
		name string
		data []byte
		err  error
	}{
		{"nothing", nil, io.EOF},
		{"1 byte of length", full[:1], io.ErrUnexpectedEOF},
		{"3 bytes of length", full[:3], io.ErrUnexpectedEOF},
		{"length only", full[:4], io.ErrUnexpectedEOF},
		{"1 body byte", full[:5], io.ErrUnexpectedEOF},
		{"all but one", full[:len(full)-1], io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadTCP(bytes.NewReader(tt.data), nil, DefaultMaxFrame)
			require.Equal(t, tt.err, err)
			_, err = ReadTCP(iotest.OneByteReader(bytes.NewReader(tt.data)), nil, DefaultMaxFrame)
			require.Equal(t, tt.err, err)
		})
	}
}

func TestReadTCPReaderError(t *testing.T) {
	boom := errors.New("boom")
	_, err := ReadTCP(iotest.ErrReader(boom), nil, DefaultMaxFrame)
	require.Same(t, boom, err)
	r := io.MultiReader(bytes.NewReader([]byte{0, 0, 0, 11, 1}), iotest.ErrReader(boom))
	_, err = ReadTCP(r, nil, DefaultMaxFrame)
	require.Same(t, boom, err)
}

func TestReadTCPAllocs(t *testing.T) {
	frame := tcpFrame(AppendRequest(nil, 1, "sys.ping", []byte(`{"hi":1}`)))
	r := bytes.NewReader(frame)
	buf := make([]byte, 0, 64)
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset(frame)
		body, err := ReadTCP(r, buf, DefaultMaxFrame)
		if err != nil || len(body) != len(frame)-LengthSize {
			t.Fatal(err)
		}
	})
	require.Zero(t, allocs)
}

func TestAppendLength(t *testing.T) {
	require.Equal(t, []byte{0, 0, 0, 0}, AppendLength(nil, 0))
	require.Equal(t, []byte{0, 0, 0, 0x31}, AppendLength(nil, 49))
	require.Equal(t, []byte{0, 1, 0, 0}, AppendLength(nil, DefaultMaxFrame))
	require.Equal(t, []byte{0x12, 0x34, 0x56, 0x78}, AppendLength(nil, 0x12345678))
}
