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
		return &tcpTransport{conn: conn, buf: make([]byte, 512), max: opts.MaxFrame}, wire.LengthSize, nil
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

// tcpTransport is a length-prefixed frame stream over TCP (or TLS). It
// reads into one buffer, as much as the connection has, and returns frame
// bodies in place: the buffer grows to the largest frame, and there is no
// bufio.Reader (4 KiB a connection) to copy each frame out of.
type tcpTransport struct {
	conn net.Conn
	buf  []byte // buf[r:w] is read and not yet returned; reader only
	r, w int
	max  int
}

func (t *tcpTransport) write(frame []byte) error {
	_, err := t.conn.Write(frame)
	return err
}

func (t *tcpTransport) read() ([]byte, error) {
	if err := t.fill(wire.LengthSize); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(t.buf[t.r:])
	if err := wire.CheckLength(n, t.max); err != nil {
		return nil, err
	}
	size := wire.LengthSize + int(n)
	if err := t.fill(size); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	body := t.buf[t.r+wire.LengthSize : t.r+size : t.r+size]
	t.r += size
	return body, nil
}

// fill reads until buf[r:w] holds n bytes. It moves the unreturned bytes
// to the front first, which ends the frames returned before. A connection
// that ends with none of them read returns io.EOF, as io.ReadFull does,
// and io.ErrUnexpectedEOF part-way.
func (t *tcpTransport) fill(n int) error {
	if t.w-t.r >= n {
		return nil
	}
	if t.r > 0 {
		t.w = copy(t.buf, t.buf[t.r:t.w])
		t.r = 0
	}
	if n > len(t.buf) {
		t.buf = append(t.buf[:t.w], make([]byte, max(n, 2*len(t.buf))-t.w)...)
	}
	for t.w < n {
		m, err := t.conn.Read(t.buf[t.w:])
		t.w += m
		switch {
		case t.w >= n:
		case err == io.EOF && t.w > 0:
			return io.ErrUnexpectedEOF
		case err != nil:
			return err
		}
	}
	return nil
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
