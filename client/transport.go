package client

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/hearth-server/hearth/wire"
)

// transport moves frames over one connection. write may be called from
// several goroutines but the client serialises it; read is called by the
// reader goroutine only (after exchange, which Dial calls once).
type transport interface {
	// write sends one frame (with the length prefix on TCP).
	write(frame []byte) error
	// read returns the next frame body; it is valid until the next read.
	read() ([]byte, error)
	// exchange writes the HANDSHAKE frame and reads the reply, bounded by ctx.
	exchange(ctx context.Context, frame []byte) ([]byte, error)
	// close closes the connection; graceful asks for a WebSocket close handshake.
	close(graceful bool)
}

// dialTransport connects to addr and returns the transport and the number of
// bytes each frame reserves for a length prefix.
func dialTransport(ctx context.Context, addr string, opts *Options) (transport, int, error) {
	scheme, err := parseAddr(addr)
	if err != nil {
		return nil, 0, err
	}
	_, rest, ok := strings.Cut(addr, "://")
	if !ok {
		rest = addr
	}
	switch scheme {
	case "tcp", "tls":
		useTLS := scheme == "tls" || opts.TLS != nil
		if !useTLS && opts.Poller.usable() {
			tr, err := dialPolled(ctx, rest, opts)
			if err != nil {
				return nil, 0, fmt.Errorf("hearth client: dial %s: %w", addr, err)
			}
			return tr, wire.LengthSize, nil
		}
		var conn net.Conn
		var err error
		if useTLS {
			d := tls.Dialer{Config: opts.TLS}
			conn, err = d.DialContext(ctx, "tcp", rest)
		} else {
			var d net.Dialer
			conn, err = d.DialContext(ctx, "tcp", rest)
		}
		if err != nil {
			return nil, 0, fmt.Errorf("hearth client: dial %s: %w", addr, err)
		}
		return &tcpTransport{conn: conn, frameBuf: newFrameBuf(opts.MaxFrame)}, wire.LengthSize, nil
	case "ws", "wss":
		if scheme == "ws" && opts.TLS != nil {
			addr = "wss://" + rest
		}
		dopts := &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled}
		if opts.TLS != nil {
			ht := http.DefaultTransport.(*http.Transport).Clone()
			ht.TLSClientConfig = opts.TLS
			dopts.HTTPClient = &http.Client{Transport: ht}
		}
		conn, _, err := websocket.Dial(ctx, addr, dopts)
		if err != nil {
			return nil, 0, fmt.Errorf("hearth client: dial %s: %w", addr, err)
		}
		// The limit must exceed MaxFrame: coder/websocket fails a read that
		// ends exactly at the limit. Bodies above MaxFrame are refused by read.
		conn.SetReadLimit(int64(opts.MaxFrame) + 1024)
		return &wsTransport{conn: conn, max: opts.MaxFrame}, 0, nil
	}
	panic("unreachable")
}

// parseAddr checks a gate address and returns its scheme ("tcp" for a bare
// host:port).
func parseAddr(addr string) (string, error) {
	scheme, rest, ok := strings.Cut(addr, "://")
	if !ok {
		scheme, rest = "tcp", addr
	}
	switch scheme {
	case "tcp", "tls":
		if strings.ContainsAny(rest, "/?#") {
			return "", fmt.Errorf("hearth client: bad address %q: want %s://host:port", addr, scheme)
		}
	case "ws", "wss":
	default:
		return "", fmt.Errorf("hearth client: bad address %q: scheme must be tcp, tls, ws or wss", addr)
	}
	return scheme, nil
}

// frameBuf holds what a TCP connection gave and cuts it into
// length-prefixed frames, returned in place: the buffer grows to the
// largest frame, and there is no bufio.Reader (4 KiB a connection) to copy
// each frame out of. Its reader owns it.
type frameBuf struct {
	buf  []byte // buf[r:w] is read and not yet returned
	r, w int
	max  int // the largest frame body accepted
}

func newFrameBuf(max int) frameBuf { return frameBuf{buf: make([]byte, 512), max: max} }

// next returns the next whole frame's body, or nil if there is none yet;
// room then has space for at least the rest of that frame. A body is
// valid until the next read into room, which may move the bytes not yet
// returned to the front.
func (f *frameBuf) next() ([]byte, error) {
	need := wire.LengthSize
	if f.w-f.r >= wire.LengthSize {
		n := binary.BigEndian.Uint32(f.buf[f.r:])
		if err := wire.CheckLength(n, f.max); err != nil {
			return nil, err
		}
		need += int(n)
		if f.w-f.r >= need {
			body := f.buf[f.r+wire.LengthSize : f.r+need : f.r+need]
			f.r += need
			return body, nil
		}
	}
	if f.r == f.w {
		f.r, f.w = 0, 0
	} else if len(f.buf)-f.r < need || f.w == len(f.buf) {
		f.w = copy(f.buf, f.buf[f.r:f.w])
		f.r = 0
	}
	if need > len(f.buf) {
		f.buf = append(f.buf[:f.w], make([]byte, max(need, 2*len(f.buf))-f.w)...)
	}
	return nil, nil
}

// room is where the next read goes; the caller adds what it read to w.
func (f *frameBuf) room() []byte { return f.buf[f.w:] }

// ended is the error for a connection that ended (io.EOF) with part of a
// frame read: io.ErrUnexpectedEOF, as io.ReadFull says it.
func (f *frameBuf) ended(err error) error {
	if err == io.EOF && f.w > f.r {
		return io.ErrUnexpectedEOF
	}
	return err
}

// tcpTransport is a length-prefixed frame stream over TCP (or TLS), read
// into a frameBuf.
type tcpTransport struct {
	conn net.Conn
	frameBuf
}

func (t *tcpTransport) write(frame []byte) error {
	_, err := t.conn.Write(frame)
	return err
}

func (t *tcpTransport) read() ([]byte, error) {
	for {
		if body, err := t.next(); err != nil || body != nil {
			return body, err
		}
		m, rerr := t.conn.Read(t.room())
		t.w += m
		if rerr != nil {
			// What came with the error is returned first.
			if body, err := t.next(); err != nil || body != nil {
				return body, err
			}
			return nil, t.ended(rerr)
		}
	}
}

func (t *tcpTransport) exchange(ctx context.Context, frame []byte) ([]byte, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = t.conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = t.conn.SetDeadline(time.Unix(1, 0)) })
	_, err := t.conn.Write(frame)
	var body []byte
	if err == nil {
		body, err = t.read()
	}
	if !stop() {
		return nil, ctx.Err() // the deadline may be poisoned: the caller closes
	}
	_ = t.conn.SetDeadline(time.Time{})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The only deadline set is ctx's, which may pass a moment before
		// ctx notices.
		err = context.DeadlineExceeded
	}
	return body, err
}

func (t *tcpTransport) close(bool) { t.conn.Close() }

// wsTransport is one frame body per binary WebSocket message.
type wsTransport struct {
	conn *websocket.Conn
	buf  []byte
	max  int
}

var errTextMessage = &wire.Error{Code: wire.CodeBadFrame, Message: "text WebSocket message"}

func (t *wsTransport) write(frame []byte) error {
	return t.conn.Write(context.Background(), websocket.MessageBinary, frame)
}

func (t *wsTransport) read() ([]byte, error) { return t.readCtx(context.Background()) }

func (t *wsTransport) readCtx(ctx context.Context) ([]byte, error) {
	typ, r, err := t.conn.Reader(ctx)
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageBinary {
		return nil, errTextMessage
	}
	b := t.buf[:0]
	for {
		if len(b) == cap(b) {
			b = slices.Grow(b, max(cap(b), 512))
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if len(b) > t.max {
			return nil, wire.ErrFrameTooLarge
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	t.buf = b
	if len(b) < wire.HeaderSize {
		return nil, wire.ErrShortFrame
	}
	return b, nil
}

func (t *wsTransport) exchange(ctx context.Context, frame []byte) ([]byte, error) {
	if err := t.conn.Write(ctx, websocket.MessageBinary, frame); err != nil {
		return nil, err
	}
	return t.readCtx(ctx)
}

func (t *wsTransport) close(graceful bool) {
	if graceful {
		_ = t.conn.Close(websocket.StatusNormalClosure, "")
	} else {
		_ = t.conn.CloseNow()
	}
}
