package cluster

import (
	"net"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// The embedded server's in-process connection is a net.Pipe: a write
// returns only once the server has read all of it, and nats.go writes
// while holding its connection's lock. Under load every publisher of the
// node then waited for the server to route the previous batch, thousands
// of goroutines queued on that one lock, and the node stalled with idle
// cores (a 20,000-bot run: 1,750 goroutines on nats.Conn's mutex, 13,000
// bots failed). A socket has a kernel buffer between the two; bufferedConn
// gives the pipe one: writes are copied and return, and one goroutine
// feeds the pipe.

// inProcessBuffer bounds the bytes written to the embedded server and not
// yet read by it; past it a write waits (the server is behind).
const inProcessBuffer = 8 << 20

// closeFlush bounds how long Close waits for the server to read what was
// written before it.
const closeFlush = time.Second

// inProcess hands nats.go buffered in-process connections to srv.
type inProcess struct {
	srv   *server.Server
	limit int
}

func (p inProcess) InProcessConn() (net.Conn, error) {
	c, err := p.srv.InProcessConn()
	if err != nil {
		return nil, err
	}
	return newBufferedConn(c, p.limit), nil
}

// bufferedConn is a net.Conn whose writes go to a buffer of up to limit
// bytes that its pump goroutine writes to the underlying connection, in
// order. Reads and read deadlines are the underlying connection's.
type bufferedConn struct {
	net.Conn
	limit int

	mu       sync.Mutex
	pending  []byte        // written, not yet taken by the pump
	err      error         // set once: the pump's write error, or net.ErrClosed after Close
	deadline time.Time     // for writes waiting for room
	space    chan struct{} // closed (and replaced) each time the pump takes pending
	closing  bool          // Close was called: the pump writes what is left and stops

	data   chan struct{} // cap 1: pending has bytes, or closing
	pumped chan struct{} // closed when the pump has stopped and closed the connection
}

func newBufferedConn(c net.Conn, limit int) *bufferedConn {
	b := &bufferedConn{
		Conn: c, limit: limit,
		space: make(chan struct{}), data: make(chan struct{}, 1), pumped: make(chan struct{}),
	}
	go b.pump()
	return b
}

// Write copies p into the buffer. It waits only while the buffer holds
// limit bytes or more, until the pump takes them, the write deadline
// passes or the connection fails.
func (b *bufferedConn) Write(p []byte) (int, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		b.mu.Lock()
		if b.err != nil {
			err := b.err
			b.mu.Unlock()
			return 0, err
		}
		if len(b.pending) == 0 || len(b.pending)+len(p) <= b.limit {
			b.pending = append(b.pending, p...)
			b.mu.Unlock()
			b.wake()
			return len(p), nil
		}
		space, dl := b.space, b.deadline
		b.mu.Unlock()
		var expired <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			expired = timer.C
		}
		select {
		case <-space:
		case <-expired:
			return 0, os.ErrDeadlineExceeded
		}
	}
}

func (b *bufferedConn) wake() {
	select {
	case b.data <- struct{}{}:
	default:
	}
}

// pump owns the buffer it writes (taken from pending under mu).
func (b *bufferedConn) pump() {
	defer close(b.pumped)
	var buf []byte
	for range b.data {
		b.mu.Lock()
		buf, b.pending = b.pending, buf[:0]
		b.freeLocked()
		closing := b.closing
		b.mu.Unlock()
		if len(buf) > 0 {
			if _, err := b.Conn.Write(buf); err != nil {
				b.fail(err)
				_ = b.Conn.Close()
				return
			}
		}
		if closing {
			_ = b.Conn.Close()
			return
		}
		if cap(buf) > 2*b.limit {
			buf = nil // one huge write does not pin its buffer
		}
	}
}

func (b *bufferedConn) fail(err error) {
	b.mu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.freeLocked()
	b.mu.Unlock()
}

// freeLocked wakes every writer waiting for room (to find it, or the
// error); b.mu is held.
func (b *bufferedConn) freeLocked() {
	close(b.space)
	b.space = make(chan struct{})
}

// Close lets the pump write what was written before it (for up to
// closeFlush), then closes the connection, and returns once it has.
func (b *bufferedConn) Close() error {
	b.mu.Lock()
	first := !b.closing
	b.closing = true
	if b.err == nil {
		b.err = net.ErrClosed
	}
	b.freeLocked()
	b.mu.Unlock()
	if first {
		// Also bounds a write the pump is in the middle of.
		_ = b.Conn.SetWriteDeadline(time.Now().Add(closeFlush))
		b.wake()
	}
	<-b.pumped
	return nil
}

// SetDeadline sets the read deadline of the underlying connection and
// the deadline of writes waiting for room.
func (b *bufferedConn) SetDeadline(t time.Time) error {
	_ = b.SetWriteDeadline(t)
	return b.Conn.SetReadDeadline(t)
}

// SetWriteDeadline bounds how long a write waits for room in the buffer.
func (b *bufferedConn) SetWriteDeadline(t time.Time) error {
	b.mu.Lock()
	b.deadline = t
	b.mu.Unlock()
	return nil
}
