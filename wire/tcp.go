package wire

import (
	"encoding/binary"
	"io"
)

// LengthSize is the size of the TCP length prefix.
const LengthSize = 4

// CheckLength validates a TCP length prefix against max before anything is
// allocated: above max is ErrFrameTooLarge (KICK 4), below 3 is ErrShortFrame (KICK 1).
func CheckLength(n uint32, max int) error {
	if int64(n) > int64(max) {
		return ErrFrameTooLarge
	}
	if n < HeaderSize {
		return ErrShortFrame
	}
	return nil
}

// ReadTCP reads one length-prefixed frame body from r. buf is reused when it
// is large enough; the returned body aliases it, and buf's contents are
// overwritten. The body is never read when the length is out of range.
// With a reused buffer it does not allocate.
func ReadTCP(r io.Reader, buf []byte, max int) ([]byte, error) {
	// The prefix is read into buf: a local array would escape through the
	// io.Reader interface and cost an allocation per frame.
	var hdr []byte
	if cap(buf) >= LengthSize {
		hdr = buf[:LengthSize]
	} else {
		hdr = make([]byte, LengthSize)
	}
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr)
	if err := CheckLength(n, max); err != nil {
		return nil, err
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// AppendLength appends the 4-byte TCP length prefix for a body of n bytes.
func AppendLength(dst []byte, n int) []byte {
	return binary.BigEndian.AppendUint32(dst, uint32(n))
}
