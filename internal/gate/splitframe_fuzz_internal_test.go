package gate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth/wire"
)

// splitFrame, which a parked session's reader cuts its buffered bytes with,
// finds the same frames in a stream as wire.ReadTCP reading it whole, and
// fails on the same length: whatever the bytes, and wherever the stream
// ends.
func FuzzSplitFrame(f *testing.F) {
	frame := func(body string) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
	}
	f.Add(frame("\x01\x03\x00\x00\x00\x01"), uint16(64))
	f.Add(append(frame("\x01\x03\x00\x00\x00\x01ab"), frame("\x01\x03\x00\x00")[:6]...), uint16(64))
	f.Add(binary.BigEndian.AppendUint32(nil, 1<<20), uint16(64))
	f.Add([]byte{0, 0, 0, 1, 9}, uint16(64))
	f.Add([]byte{0, 0}, uint16(8))
	f.Fuzz(func(t *testing.T, stream []byte, max uint16) {
		r := bytes.NewReader(stream)
		rest := stream
		for {
			body, size, err := splitFrame(rest, int(max))
			want, werr := wire.ReadTCP(r, nil, int(max))
			switch {
			case err != nil:
				require.ErrorIs(t, werr, err)
				return
			case body == nil:
				// Incomplete: the whole reading runs out of stream too.
				require.True(t, errors.Is(werr, io.EOF) || errors.Is(werr, io.ErrUnexpectedEOF), "split says incomplete, ReadTCP: %v", werr)
				if len(rest) >= wire.LengthSize {
					require.Greater(t, size, len(rest), "an incomplete frame needs more than is there")
				}
				return
			default:
				require.NoError(t, werr)
				require.Equal(t, want, body)
				require.Equal(t, wire.LengthSize+len(body), size)
				rest = rest[size:]
			}
		}
	})
}
