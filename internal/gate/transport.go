package gate

import (
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"sync"

	"github.com/gobwas/ws"

	"github.com/hearth-server/hearth/wire"
)

// readFrame reads one frame body from the transport. The body is valid until
// releaseFrame.
func (s *Session) readFrame() ([]byte, error) {
	if s.ws {
		return s.readWS()
	}
	if _, err := io.ReadFull(s.conn, s.hdr[:wire.LengthSize]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(s.hdr[:])
	if err := wire.CheckLength(n, s.g.cfg.MaxFrame); err != nil {
		return nil, err
	}
	buf := s.frameBuf(int(n))
	if _, err := io.ReadFull(s.conn, buf); err != nil {
		s.releaseFrame(buf)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// splitFrame finds the first length-prefixed frame in b: its body and the
// bytes it takes. An incomplete frame gives a nil body and, once its
// prefix is in, the bytes it will take (0 before). The length is checked
// before anything waits for the body.
func splitFrame(b []byte, maxFrame int) (body []byte, size int, err error) {
	if len(b) < wire.LengthSize {
		return nil, 0, nil
	}
	n := binary.BigEndian.Uint32(b)
	if err := wire.CheckLength(n, maxFrame); err != nil {
		return nil, 0, err
	}
	size = wire.LengthSize + int(n)
	if len(b) < size {
		return nil, size, nil
	}
	return b[wire.LengthSize:size], size, nil
}

// frameBuf returns a buffer for a frame body of n bytes, borrowed until
// releaseFrame: sessions keep no read buffer between frames, so an idle
// one holds none.
func (s *Session) frameBuf(n int) []byte {
	if n <= smallFrame {
		if s.rbuf == nil {
			s.rbuf, _ = smallFrames.Get().(*[]byte)
			if s.rbuf == nil {
				b := make([]byte, smallFrame)
				s.rbuf = &b
			}
		}
		return (*s.rbuf)[:n]
	}
	return getBuf(n)[:n]
}

func (s *Session) releaseFrame(b []byte) {
	if cap(b) > smallFrame {
		putBuf(b)
		return
	}
	if s.rbuf != nil {
		smallFrames.Put(s.rbuf)
		s.rbuf = nil
	}
}

// smallFrames pools the read buffers of frames up to smallFrame bytes.
var smallFrames sync.Pool

const smallFrame = 1024

// WebSocket opcodes.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

var (
	errWSText     = &wire.Error{Code: wire.CodeBadFrame, Message: "text websocket message; frames are binary messages"}
	errWSUnmasked = &wire.Error{Code: wire.CodeBadFrame, Message: "unmasked websocket frame from client"}
	errWSProtocol = &wire.Error{Code: wire.CodeBadFrame, Message: "websocket protocol error"}
	errWSClosed   = errors.New("websocket closed by client")
)

// readWS reads one whole binary message (reassembling fragments), answering
// control frames on the way.
func (s *Session) readWS() ([]byte, error) {
	var msg []byte
	started := false
	for {
		fin, op, n, mask, err := s.readWSHeader()
		if err != nil {
			return nil, err
		}
		switch op {
		case opPing, opPong, opClose:
			if !fin || n > 125 {
				return nil, errWSProtocol
			}
			payload := make([]byte, n)
			if _, err := io.ReadFull(s.conn, payload); err != nil {
				return nil, err
			}
			ws.Cipher(payload, mask, 0)
			switch op {
			case opPing:
				s.wsControl(opPong, payload)
			case opClose:
				// A close frame is the client saying goodbye: the session
				// ends rather than waiting to be resumed.
				s.mu.Lock()
				s.goodbye = true
				s.mu.Unlock()
				s.wsControl(opClose, nil)
				return nil, errWSClosed
			}
			continue
		case opText:
			return nil, errWSText
		case opBinary:
			if started {
				return nil, errWSProtocol
			}
			started = true
		case opContinuation:
			if !started {
				return nil, errWSProtocol
			}
		default:
			return nil, errWSProtocol
		}
		total := uint64(len(msg)) + n
		if total > uint64(s.g.cfg.MaxFrame) {
			if msg != nil {
				s.releaseFrame(msg)
			}
			return nil, wire.ErrFrameTooLarge
		}
		if fin && msg == nil {
			buf := s.frameBuf(int(n))
			if _, err := io.ReadFull(s.conn, buf); err != nil {
				s.releaseFrame(buf)
				return nil, err
			}
			ws.Cipher(buf, mask, 0)
			return s.checkWSLen(buf)
		}
		// A fragmented message: assemble in a pooled buffer.
		if msg == nil {
			msg = getBuf(int(n))[:0]
		}
		off := len(msg)
		msg = append(msg, make([]byte, n)...)
		if _, err := io.ReadFull(s.conn, msg[off:]); err != nil {
			putBuf(msg)
			return nil, err
		}
		ws.Cipher(msg[off:], mask, 0)
		if fin {
			if cap(msg) <= smallFrame {
				// releaseFrame would not return it; keep it out of the pool.
				return s.checkWSLen(append(make([]byte, 0, smallFrame+1), msg...))
			}
			return s.checkWSLen(msg)
		}
	}
}

func (s *Session) checkWSLen(b []byte) ([]byte, error) {
	if len(b) < wire.HeaderSize {
		s.releaseFrame(b)
		return nil, wire.ErrShortFrame
	}
	return b, nil
}

func (s *Session) readWSHeader() (fin bool, op byte, n uint64, mask [4]byte, err error) {
	h := s.hdr[:2]
	if _, err = io.ReadFull(s.conn, h); err != nil {
		return
	}
	fin = h[0]&0x80 != 0
	if h[0]&0x70 != 0 {
		err = errWSProtocol // no extensions are negotiated
		return
	}
	op = h[0] & 0x0f
	if h[1]&0x80 == 0 {
		err = errWSUnmasked
		return
	}
	n = uint64(h[1] & 0x7f)
	switch n {
	case 126:
		if _, err = io.ReadFull(s.conn, s.hdr[:2]); err != nil {
			return
		}
		n = uint64(binary.BigEndian.Uint16(s.hdr[:2]))
	case 127:
		if _, err = io.ReadFull(s.conn, s.hdr[:8]); err != nil {
			return
		}
		n = binary.BigEndian.Uint64(s.hdr[:8])
		if n > 1<<40 {
			err = wire.ErrFrameTooLarge
			return
		}
	}
	if _, err = io.ReadFull(s.conn, mask[:]); err != nil {
		return
	}
	return
}

// wsControl queues a WebSocket control frame (pong or close). A pong counts
// against the output bound like any frame: a client that pings without
// reading is a slow consumer (202), before its handshake as after.
func (s *Session) wsControl(op byte, payload []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kicked {
		return
	}
	if op == opClose {
		s.kicked = true
		s.out = appendWSClose(s.out[:0])
	} else {
		if !s.roomLocked(len(payload)) {
			return
		}
		s.out = append(appendWSHeader(s.out, op, len(payload)), payload...)
	}
	s.startFlushLocked()
}

func appendWSHeader(dst []byte, op byte, n int) []byte {
	dst = append(dst, 0x80|op)
	switch {
	case n < 126:
		return append(dst, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, 127), uint64(n))
	}
}

// appendWSClose appends a close frame with status 1000.
func appendWSClose(dst []byte) []byte {
	return append(dst, 0x80|opClose, 2, 0x03, 0xe8)
}

// upgrade performs the WebSocket opening handshake on path /ws.
func (s *Session) upgrade() error {
	u := ws.Upgrader{
		OnRequest: func(uri []byte) error {
			path := uri
			for i, c := range uri {
				if c == '?' {
					path = uri[:i]
					break
				}
			}
			if string(path) != "/ws" {
				return ws.RejectConnectionError(ws.RejectionStatus(http.StatusNotFound), ws.RejectionReason("hearth: websocket path is /ws"))
			}
			return nil
		},
	}
	_, err := u.Upgrade(s.conn)
	return err
}

// Buffer pool by size class, so sessions hold no output buffer while idle.
var bufClasses = [...]int{512, 4 << 10, 32 << 10, 256 << 10}

var bufPools [len(bufClasses)]sync.Pool

// bufHeads are the emptied *[]byte that bufPools handed out, for putBuf
// to put the next buffer in: a new one per putBuf was garbage at every
// write.
var bufHeads sync.Pool

func getBuf(n int) []byte {
	for i, c := range bufClasses {
		if n <= c {
			if h, ok := bufPools[i].Get().(*[]byte); ok {
				b := (*h)[:0]
				*h = nil
				bufHeads.Put(h)
				return b
			}
			return make([]byte, 0, c)
		}
	}
	return make([]byte, 0, n)
}

func putBuf(b []byte) {
	c := cap(b)
	for i, size := range bufClasses {
		if c == size {
			h, _ := bufHeads.Get().(*[]byte)
			if h == nil {
				h = new([]byte)
			}
			*h = b[:0]
			bufPools[i].Put(h)
			return
		}
	}
}
