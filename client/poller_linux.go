//go:build linux

package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hearth-server/hearth/internal/nbio"
)

// pollLoop is one of a Poller's goroutines: it waits on an epoll instance
// holding its connections, level-triggered, and on each wake-up reads
// every ready connection once and dispatches the whole frames read.
//
// conns and stopped are under mu; the loop goroutine looks connections up
// under it, which is also what hands it everything add set before
// registering one.
type pollLoop struct {
	epfd   int
	wake   int           // eventfd: stop, or connections in kicked to serve
	gid    uint64        // the loop goroutine's id, the clients' reader id
	gather time.Duration // PollerOptions.Gather
	done   chan struct{} // closed when the loop has stopped

	mu      sync.Mutex
	conns   map[int32]*polledTransport // registered, by descriptor
	kicked  []*polledTransport         // registered with frames already buffered
	stopped bool
}

func newPollLoop(gather time.Duration) (*pollLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("hearth client: poller: %w", os.NewSyscallError("epoll_create1", err))
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("hearth client: poller: %w", os.NewSyscallError("eventfd", err))
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		_ = unix.Close(wake)
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("hearth client: poller: %w", os.NewSyscallError("epoll_ctl", err))
	}
	l := &pollLoop{epfd: epfd, wake: wake, gather: gather, done: make(chan struct{}), conns: make(map[int32]*polledTransport)}
	ready := make(chan uint64)
	go l.run(ready)
	l.gid = <-ready
	return l, nil
}

// signal wakes the loop.
func (l *pollLoop) signal() {
	var one = [8]byte{1}
	_, _ = unix.Write(l.wake, one[:]) // EAGAIN: the counter is set already
}

// stop ends the loop and waits for it.
func (l *pollLoop) stop() {
	// Signalled under mu: once the loop has seen stopped it closes wake.
	l.mu.Lock()
	if !l.stopped {
		l.stopped = true
		l.signal()
	}
	l.mu.Unlock()
	<-l.done
}

// add registers cn, whose transport must be a polledTransport that has
// completed its handshake, for the loop to read; false if the loop has
// stopped.
func (l *pollLoop) add(c *Client, cn *conn) bool {
	t, ok := cn.tr.(*polledTransport)
	if !ok {
		return false
	}
	t.mu.Lock()
	t.held = true
	closed := t.shut
	t.mu.Unlock()
	if closed {
		t.let()
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		t.let()
		return false
	}
	t.c, t.cn = c, cn
	c.readerID = l.gid
	l.conns[int32(t.fd)] = t
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(t.fd)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, t.fd, &ev); err != nil {
		delete(l.conns, int32(t.fd))
		t.let()
		return false
	}
	if t.w > t.r { // frames read with the handshake's answer: serve them now
		l.kicked = append(l.kicked, t)
		l.signal()
	}
	return true
}

// run waits blocked in epoll_wait, holding a thread, unlike the gate's
// poller, which waits on the runtime's poller: a loop here serves its
// connections itself, and gathers, so it sleeps rarely; on the runtime's
// poller a bot process made ~40% more system calls a round and twice the
// context switches (docs/benchmarks.md § bots, session 43).
func (l *pollLoop) run(ready chan<- uint64) {
	defer close(l.done)
	ready <- goid()
	events := make([]unix.EpollEvent, 128)
	var batch []*polledTransport
	for {
		n, err := unix.EpollWait(l.epfd, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			l.end(fmt.Errorf("%w: %w", ErrPollerClosed, os.NewSyscallError("epoll_wait", err)))
			return
		}
		l.mu.Lock()
		stopped := l.stopped
		for _, ev := range events[:n] {
			if ev.Fd == int32(l.wake) {
				var b [8]byte
				_, _ = unix.Read(l.wake, b[:])
				batch = append(batch, l.kicked...)
				clear(l.kicked)
				l.kicked = l.kicked[:0]
				continue
			}
			if t := l.conns[ev.Fd]; t != nil {
				batch = append(batch, t)
			}
		}
		l.mu.Unlock()
		for _, t := range batch {
			l.serve(t)
		}
		clear(batch)
		batch = batch[:0]
		if stopped {
			l.end(ErrPollerClosed)
			return
		}
		if l.gather > 0 {
			time.Sleep(l.gather)
		}
	}
}

// serve reads t once (it may hold frames already, from a kick) and
// dispatches every whole frame it holds. A failed read or dispatch ends
// the connection.
func (l *pollLoop) serve(t *polledTransport) {
	if t.c == nil {
		return // let go of earlier in this batch
	}
	// The frames before an end are dispatched first: a KICK, or a bad
	// frame, is often the last thing read before the server closes.
	var end error
	n, err := nbio.Read(t.fd, t.room())
	switch {
	case n > 0:
		t.w += n
	case err == unix.EAGAIN || err == unix.EINTR:
	case err == nil:
		end = io.EOF
	default:
		end = os.NewSyscallError("read", err)
	}
	c, cn := t.c, t.cn
	for {
		body, err := t.next()
		if err != nil {
			l.release(t, err, true)
			return
		}
		if body == nil {
			break
		}
		c.lastRecv.Store(mono())
		if err := c.dispatch(cn, body); err != nil {
			l.release(t, err, false)
			return
		}
	}
	if end != nil {
		l.release(t, t.ended(end), true)
	}
}

// release takes t out of the loop and ends its reading with err, a read
// error (read) or a dispatch error, on a goroutine of its own: the client
// may reconnect.
func (l *pollLoop) release(t *polledTransport, err error, read bool) {
	c, cn := t.c, t.cn
	l.forget(t)
	var resumable bool
	if read {
		err, resumable = c.readEnd(cn, err)
	} else {
		err, resumable = c.dispatchEnd(cn, err)
	}
	go c.polledEnd(cn, err, resumable)
}

// forget takes t out of the loop, and lets go of its descriptor.
func (l *pollLoop) forget(t *polledTransport) {
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, t.fd, nil)
	l.mu.Lock()
	delete(l.conns, int32(t.fd))
	l.mu.Unlock()
	t.c, t.cn = nil, nil
	t.let()
}

// end stops the loop: every connection it reads ends with err.
func (l *pollLoop) end(err error) {
	l.mu.Lock()
	l.stopped = true
	ts := make([]*polledTransport, 0, len(l.conns))
	for _, t := range l.conns {
		ts = append(ts, t)
	}
	l.mu.Unlock()
	for _, t := range ts {
		c, cn := t.c, t.cn
		l.forget(t)
		go c.polledEnd(cn, err, false)
	}
	_ = unix.Close(l.wake)
	_ = unix.Close(l.epfd)
}

func isPolled(tr transport) bool {
	_, ok := tr.(*polledTransport)
	return ok
}

// polledTransport is a TCP connection read by a Poller. Its descriptor is
// a duplicate of the dialled connection's, which is closed at once, so the
// Go runtime's poller never waits on it.
//
// Before a loop holds it the dialling goroutine uses it alone (exchange,
// waiting with poll). While a loop holds it (held), only the loop reads,
// and close shuts the socket down instead of closing the descriptor, so
// that the number cannot be reused under the loop: the loop then sees the
// end and lets go (let), which closes it. Writes may come from any
// goroutine, one at a time (the client's write lock), each system call
// under mu, which close takes too.
type polledTransport struct {
	fd int

	mu     sync.Mutex
	held   bool // a loop reads fd
	shut   bool // close was called
	closed bool // fd is closed

	// The reader's: the dialling goroutine's, then the loop's.
	frameBuf
	c  *Client
	cn *conn
}

var errPolledRead = errors.New("hearth client: a polled connection is read by its poller")

// dialPolled connects to addr over TCP and returns the connection as a
// polledTransport.
func dialPolled(ctx context.Context, addr string, opts *Options) (transport, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	rc, err := nc.(*net.TCPConn).SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, os.NewSyscallError("fcntl", derr)
	}
	// The duplicate shares the socket's file status, non-blocking included.
	return &polledTransport{fd: fd, frameBuf: newFrameBuf(opts.MaxFrame)}, nil
}

// wait waits up to d for fd to be ready for events (unix.POLLIN or
// POLLOUT).
func (t *polledTransport) wait(events int16, d time.Duration) {
	fds := []unix.PollFd{{Fd: int32(t.fd), Events: events}}
	_, _ = unix.Poll(fds, int(max(d.Milliseconds(), 1)))
}

// waitStep bounds each wait for room to write, or (in exchange) for the
// answer, so that a close or the end of ctx is noticed.
const waitStep = 50 * time.Millisecond

func (t *polledTransport) write(frame []byte) error {
	return t.send(frame, func() error {
		if t.shut || t.closed {
			return net.ErrClosed
		}
		return nil
	})
}

// send writes frame, each system call under mu, waiting for room when the
// socket is full; stop, called under mu before each write, ends it with
// its error.
func (t *polledTransport) send(frame []byte, stop func() error) error {
	for len(frame) > 0 {
		t.mu.Lock()
		if err := stop(); err != nil {
			t.mu.Unlock()
			return err
		}
		n, err := nbio.Write(t.fd, frame)
		t.mu.Unlock()
		if n > 0 {
			frame = frame[n:]
		}
		switch {
		case err == nil, err == unix.EINTR:
		case err == unix.EAGAIN:
			t.wait(unix.POLLOUT, waitStep)
		default:
			return os.NewSyscallError("write", err)
		}
	}
	return nil
}

func (t *polledTransport) read() ([]byte, error) { return nil, errPolledRead }

// exchange writes the handshake and reads its answer on the dialling
// goroutine, before a loop holds the connection; frames read after the
// answer stay in buf for the loop.
func (t *polledTransport) exchange(ctx context.Context, frame []byte) ([]byte, error) {
	if err := t.send(frame, ctx.Err); err != nil {
		return nil, err
	}
	for {
		body, err := t.next()
		if err != nil || body != nil {
			return body, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := nbio.Read(t.fd, t.room())
		switch {
		case n > 0:
			t.w += n
		case err == unix.EAGAIN:
			t.wait(unix.POLLIN, waitStep)
		case err == unix.EINTR:
		case err == nil:
			return nil, t.ended(io.EOF)
		default:
			return nil, os.NewSyscallError("read", err)
		}
	}
}

// close closes the connection: at once if no loop holds it, else by
// shutting the socket down for the loop to see the end and let go.
func (t *polledTransport) close(bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.shut = true
	if t.held {
		_ = unix.Shutdown(t.fd, unix.SHUT_RDWR)
		return
	}
	t.closed = true
	_ = unix.Close(t.fd)
}

// let is the loop letting go of the descriptor: closed now if close was
// called while the loop held it.
func (t *polledTransport) let() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.held = false
	if t.shut && !t.closed {
		t.closed = true
		_ = unix.Close(t.fd)
	}
}
