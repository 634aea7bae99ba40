//go:build linux

package gate

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hearth-server/hearth/internal/nbio"
	"github.com/hearth-server/hearth/wire"
)

// readPoller lets plain-TCP sessions that talk rarely wait for their next
// frame without a goroutine. A goroutine per idle connection costs its
// stack, and the collector scans every stack on every cycle: at 10,000
// sessions that was a third of a mark's CPU (docs/benchmarks.md § bots,
// session 24), and the goroutines that allocate during a mark pay for it.
//
// A parked session's descriptor is in one epoll set, edge-triggered; the
// poller's goroutine starts a reader goroutine when it becomes readable
// (or is closed, through wake). Sessions whose frames come close together
// never park: their reader blocks on the connection as before.
//
// sessions is under mu; each entry's key is unique for the gate's life, so
// an event for a descriptor that was closed and reused finds nothing.
type readPoller struct {
	epfd int
	ep   *os.File // epfd, registered with the runtime's poller
	stop int      // eventfd: Shutdown
	done chan struct{}
	log  *slog.Logger

	mu       sync.Mutex
	sessions map[uint64]*Session
	next     uint64
	dead     bool // the loop has stopped: nothing is armed any more
}

func newReadPoller(log *slog.Logger) (*readPoller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("gate: poller: %w", os.NewSyscallError("epoll_create1", err))
	}
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("gate: poller: %w", os.NewSyscallError("eventfd", err))
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setKey(&ev, 0)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, stop, &ev); err != nil {
		_ = unix.Close(stop)
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("gate: poller: %w", os.NewSyscallError("epoll_ctl", err))
	}
	// The loop waits for the set on the runtime's poller, as a socket
	// does: a goroutine blocked in epoll_wait held its thread in a system
	// call, and each wake-up handed Ps between threads (futex calls and
	// context switches) before a woken session's reader could run.
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(stop)
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("gate: poller: %w", os.NewSyscallError("fcntl", err))
	}
	ep := os.NewFile(uintptr(epfd), "epoll")
	rc, err := ep.SyscallConn()
	if err != nil {
		_ = unix.Close(stop)
		_ = ep.Close()
		return nil, fmt.Errorf("gate: poller: %w", err)
	}
	p := &readPoller{epfd: epfd, ep: ep, stop: stop, done: make(chan struct{}), log: log, sessions: map[uint64]*Session{}}
	go p.run(rc)
	return p, nil
}

// setKey and key keep a session's key in an event's 64 bits of data.
func setKey(ev *unix.EpollEvent, k uint64) {
	ev.Fd, ev.Pad = int32(uint32(k)), int32(uint32(k>>32))
}

func key(ev *unix.EpollEvent) uint64 { return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32 }

func (p *readPoller) run(rc syscall.RawConn) {
	defer close(p.done)
	events := make([]unix.EpollEvent, 256)
	var woken []*Session
	var failed error
	stopped := false
	// Each call takes what the set holds now; false waits on the runtime's
	// poller, which reports the set readable as a descriptor in it becomes
	// ready (an edge that comes while a call runs makes the wait return at
	// once).
	err := rc.Read(func(uintptr) bool {
		for {
			n, err := nbio.Events(p.epfd, events)
			switch {
			case err == unix.EINTR:
				continue
			case err != nil:
				failed = err
				return true
			case n == 0:
				return false
			}
			p.mu.Lock()
			for i := range events[:n] {
				k := key(&events[i])
				if k == 0 {
					stopped = true
					continue
				}
				if s := p.sessions[k]; s != nil {
					woken = append(woken, s)
				}
			}
			p.mu.Unlock()
			for _, s := range woken {
				s.wake()
			}
			clear(woken)
			woken = woken[:0]
			if stopped {
				return true
			}
			if n < len(events) {
				return false
			}
		}
	})
	if err == nil {
		err = failed
	}
	if stopped && err == nil {
		p.mu.Lock()
		p.dead = true
		p.mu.Unlock()
		return
	}
	// Not expected: the parked sessions' reads go back to blocking
	// goroutines (fail). They keep working, each with a goroutine's cost.
	p.log.Error("gate: the read poller stopped; sessions read on goroutines of their own from now on", "err", err)
	p.fail()
}

// fail wakes every parked session; their readers then block instead,
// since arm refuses them from now on.
func (p *readPoller) fail() {
	p.mu.Lock()
	p.dead = true
	ss := make([]*Session, 0, len(p.sessions))
	for k, s := range p.sessions {
		ss = append(ss, s)
		delete(p.sessions, k)
	}
	p.mu.Unlock()
	for _, s := range ss {
		s.wake()
	}
}

// close stops the poller; the gate's sessions have all ended.
func (p *readPoller) close() {
	var one = [8]byte{1}
	_, _ = unix.Write(p.stop, one[:])
	<-p.done
	_ = unix.Close(p.stop)
	_ = p.ep.Close()
}

// arm makes sure s is in the poller's set, to be woken when fd becomes
// readable; fd is s's descriptor, held open by the caller. False if the
// poller cannot take it (the session keeps reading on a goroutine).
//
// The registration is edge-triggered and kept while the session parks and
// wakes, so parking costs no system call: armed one-shot, every request
// of a session that parks after each re-armed it with an epoll_ctl. An
// edge while the reader runs only marks it woken (wake), and it reads
// again before it parks; the registration's first arming reports bytes
// already there. Only s's reader calls it (s.pollArmed is the reader's).
func (p *readPoller) arm(s *Session, fd int) bool {
	p.mu.Lock()
	switch {
	case p.dead:
		p.mu.Unlock()
		return false
	case s.pollKey == 0:
		p.next++
		s.pollKey = p.next
		p.sessions[s.pollKey] = s
	}
	p.mu.Unlock()
	if s.pollArmed {
		return true
	}
	// A fail from here on finds s in sessions and wakes it, so it reads
	// again instead of staying parked on a loop that has stopped.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET}
	setKey(&ev, s.pollKey)
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.forget(s)
		return false
	}
	s.pollArmed = true
	return true
}

// disarm takes s out of the set while its reader blocks on the connection
// instead (frames come close together): a busy session's every frame
// would wake the poller. Its next park arms it again. Only s's reader
// calls it.
func (p *readPoller) disarm(s *Session, fd int) {
	if s.pollArmed {
		_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil)
		s.pollArmed = false
	}
}

// forget drops s once its connection is done; the kernel drops the
// descriptor from the set when it is closed.
func (p *readPoller) forget(s *Session) {
	if s.pollKey == 0 {
		return
	}
	p.mu.Lock()
	delete(p.sessions, s.pollKey)
	p.mu.Unlock()
	s.pollKey = 0
}

// The read side of a polled session is owned by one goroutine at a time;
// pollState hands it over (the atomic's order publishes the fields below).
const (
	readRunning int32 = iota // a goroutine reads
	readWoken                // a goroutine reads, and a wake came since its last read
	readParked               // no goroutine: the poller or a close starts one
)

// readBufSize is the read buffer a polled session borrows while it reads;
// a larger frame gets one of its own size.
const readBufSize = 4 << 10

// polled reports whether s's reads can park on the poller.
func (s *Session) polled() bool { return s.g.poll != nil && !s.ws && s.raw != nil }

// wake starts a reader for a parked session, or tells the running one to
// read again before it parks.
func (s *Session) wake() {
	for {
		switch st := s.pollState.Load(); st {
		case readParked:
			if s.pollState.CompareAndSwap(readParked, readRunning) {
				s.g.parked.Add(-1)
				s.g.readers.add(s)
				return
			}
		case readRunning:
			if s.pollState.CompareAndSwap(readRunning, readWoken) {
				return
			}
		default:
			return
		}
	}
}

// resumeReads reads a woken parked session on a readQueue runner.
func (s *Session) resumeReads(slot *readSlot) {
	if s.servePolled(slot) {
		s.g.conns.Done()
	}
}

// servePolled reads an established plain-TCP session until its connection
// is gone (then it finishes as serve does and reports true) or until it
// parks (false: a later wake goes on). slot is the readQueue's, when a
// runner of it reads; nil on the connection's first goroutine.
func (s *Session) servePolled(slot *readSlot) (ended bool) {
	err := s.readPolled(slot)
	if err == nil {
		return false
	}
	s.g.poll.forget(s)
	s.dropReadBuf()
	s.fail(err, "read")
	s.g.readers.leave(slot) // wait may take seconds (a KICK's flush)
	s.wait()
	s.afterConn()
	s.releaseIP()
	return true
}

var errWouldBlock = errors.New("gate: nothing to read")

// readPolled reads and handles frames until the connection fails (the
// error) or the session parks (nil). A read that blocks first gives back
// the readQueue's slot, if slot holds one.
func (s *Session) readPolled(slot *readSlot) error {
	g := s.g
	for {
		// Block only when frames have been coming close together: an
		// epoll wake-up and a goroutine cost more than a blocked read for
		// a client that sends many frames a second. The first read after
		// the handshake does not block (lastBatch is 0): a session that
		// stays idle parks at once.
		block := s.noPark || (s.lastBatch != 0 && s.lastGap < int64(g.cfg.ParkGap))
		if block {
			g.readers.leave(slot)
			if s.pollArmed {
				_ = s.raw.Control(func(fd uintptr) { g.poll.disarm(s, int(fd)) })
			}
		}
		fresh := s.rbN == 0
		var err error
		if !block && s.drained {
			err = errWouldBlock
		} else {
			err = s.readSome(block)
		}
		if err == errWouldBlock {
			s.drained = false
			if s.pollState.CompareAndSwap(readWoken, readRunning) {
				continue
			}
			s.dropReadBuf()
			parked, armed := s.park()
			if parked {
				return nil
			}
			if !armed {
				s.noPark = true // block on the connection from now on
			}
			continue
		}
		if err != nil {
			return err
		}
		gap, batch := s.lastGap, s.lastBatch
		if fresh {
			// Only a read that starts a new batch of frames measures a
			// gap: the rest of a frame read in pieces is no sign of a
			// client that talks often.
			now := time.Now().UnixNano()
			s.lastGap, s.lastBatch = now-s.lastBatch, now
		}
		pongs, err := s.handleBuffered(g.cfg.MaxFrame)
		if err != nil {
			return err
		}
		if fresh && pongs {
			// Nor is a PONG: it answers the gate's PING, which follows a
			// push (askAckLocked), often one answering the client's last
			// request; counted, it kept a goroutine blocked on most
			// sessions through their players' thinking.
			s.lastGap, s.lastBatch = gap, batch
		}
	}
}

// park arms the poller and gives up the read side. It reports whether it
// did, and whether the poller took the session at all (false when it is
// gone or the connection is closed: read on, blocking). A wake between the
// arming and the hand-over makes it read again.
func (s *Session) park() (parked, armed bool) {
	if err := s.raw.Control(func(fd uintptr) { armed = s.g.poll.arm(s, int(fd)) }); err != nil || !armed {
		return false, false
	}
	s.g.parked.Add(1) // before the hand-over: a wake right after it takes it back
	if s.pollState.CompareAndSwap(readRunning, readParked) {
		return true, true
	}
	s.g.parked.Add(-1)
	s.pollState.Store(readRunning) // woken meanwhile
	return false, true
}

// readSome reads what the connection has into the read buffer; with block
// it waits for something, otherwise it returns errWouldBlock.
func (s *Session) readSome(block bool) error {
	// A reader that blocks with nothing buffered waits with the session's
	// small header array, not a read buffer: a client that goes quiet
	// after a busy spell holds none either.
	into, intoHdr := s.hdr[:], true
	if s.rbN > 0 || !block {
		intoHdr = false
		if s.rb == nil {
			s.rb = getBuf(readBufSize)[:readBufSize]
		} else if s.rbN == len(s.rb) {
			s.growReadBuf(2 * len(s.rb))
		}
		into = s.rb[s.rbN:]
	}
	rd := &s.rd
	if rd.fn == nil {
		rd.fn = s.readFD
	}
	rd.into, rd.block, rd.n, rd.err = into, block, 0, nil
	err := s.raw.Read(rd.fn)
	n, rerr := rd.n, rd.err
	rd.into, rd.err = nil, nil
	switch {
	case err != nil:
		return err
	case rerr == unix.EAGAIN:
		return errWouldBlock
	case rerr != nil:
		return os.NewSyscallError("read", rerr)
	case n == 0:
		if s.rbN > 0 {
			return io.ErrUnexpectedEOF
		}
		return io.EOF
	}
	if intoHdr {
		if s.rb == nil {
			s.rb = getBuf(readBufSize)[:readBufSize]
		}
		copy(s.rb, into[:n])
	}
	s.rbN += n
	s.drained = n < len(into)
	return nil
}

// readFD is the raw connection's Read callback of readSome (s.rd).
func (s *Session) readFD(fd uintptr) bool {
	rd := &s.rd
	rd.n, rd.err = nbio.Read(int(fd), rd.into)
	if rd.err == unix.EINTR {
		return false
	}
	return !(rd.block && rd.err == unix.EAGAIN)
}

// handleBuffered handles every whole frame in the read buffer and keeps
// the partial one that may follow. pongs: it handled frames, all PONGs.
func (s *Session) handleBuffered(maxFrame int) (pongs bool, err error) {
	off, frames, pong := 0, 0, 0
	defer func() {
		if off > 0 {
			s.rbN = copy(s.rb, s.rb[off:s.rbN])
		}
	}()
	for {
		body, size, err := splitFrame(s.rb[off:s.rbN], maxFrame)
		if err != nil {
			return false, err
		}
		if body == nil {
			if size > len(s.rb) {
				s.rbN = copy(s.rb, s.rb[off:s.rbN])
				off = 0
				s.growReadBuf(size)
			}
			return frames > 0 && pong == frames, nil
		}
		off += size
		frames++
		if len(body) > 1 && wire.Kind(body[1]) == wire.KindPong {
			pong++
		}
		s.lastRecv.Store(time.Now().UnixNano())
		if !s.readAny {
			s.readAny = true
			s.mu.Lock()
			s.hasPrev = false // the client has the new resume token
			s.mu.Unlock()
		}
		if err := s.handleFrame(body); err != nil {
			return false, err
		}
	}
}

func (s *Session) growReadBuf(n int) {
	b := getBuf(max(n, readBufSize))
	b = b[:cap(b)]
	copy(b, s.rb[:s.rbN])
	putBuf(s.rb)
	s.rb = b
}

// dropReadBuf gives back an empty read buffer: a parked session holds
// none unless a frame is partly read.
func (s *Session) dropReadBuf() {
	if s.rb != nil && s.rbN == 0 {
		putBuf(s.rb)
		s.rb = nil
	}
}
