package gate

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/wire"
)

// State is a session's place in its life:
//
//	handshaking → active → closing → detached → closed
//	                          ╰─────────────────╯
//
// A session whose connection is gone is closing until the connection
// goroutine decides its fate: detached (resumable, on this gate or another,
// until the resume grace passes) or closed. A resumed session is a new
// Session value; an old one never becomes active again.
type State uint32

const (
	StateHandshaking State = iota
	StateActive
	StateDetached
	StateClosing
	StateClosed
)

func (s State) String() string {
	return [...]string{"handshaking", "active", "detached", "closing", "closed"}[s]
}

// kickGrace bounds how long a kicked client has to read its KICK.
const kickGrace = 2 * time.Second

// Session is one client session and, while it has one, its connection.
//
// Ownership of its fields (the package doc gives the whole picture):
//   - fixed: set before the session is shared — added to the gate's table,
//     to a channel, or handed to another goroutine — and never written after.
//   - conn goroutine: only the goroutine reading the connection.
//   - atomic: read anywhere without a lock; state is written only under mu.
//   - mu: everything else; functions named …Locked expect it held.
type Session struct {
	// fixed
	g      *Gate
	conn   net.Conn
	ws     bool
	ip     netip.Addr
	addr   string
	id     string
	codec  cluster.Codec
	routes *routeTable
	maxOut int    // largest frame body the client takes (HANDSHAKE max_frame)
	from   string // for a resumed session, the gate it came from

	// atomic
	state      atomic.Uint32
	upgraded   atomic.Bool  // WebSocket handshake done
	lastRecv   atomic.Int64 // unix nanoseconds
	lastPing   atomic.Int64
	writeSince atomic.Int64 // when the write in progress began; 0: none
	stalled    atomic.Bool  // closed by the sweep for a write stalled past WriteTimeout
	inflight   atomic.Int32

	// conn goroutine
	hdr      [14]byte
	rbuf     *[]byte // a borrowed small-frame buffer, while a frame is read
	tokens   float64
	tokensAt int64
	warnedAt int64

	mu       sync.Mutex
	out      []byte // framed bytes not yet written
	spare    []byte
	flushing bool
	wroteAt  int64           // unix ns of the last write that ended (sendLocked)
	raw      syscall.RawConn // a plain TCP connection's socket, for sendLocked; nil with TLS. Set before the session is shared.

	// rawWrite is s.writeOut, made with raw (a closure per write was
	// garbage), and rawN and rawErr its result; s.mu.
	rawWrite func(fd uintptr) bool
	rawN     int
	rawErr   error

	kicked    bool
	heldMark  bool // output queued by a fan-out batch, flush pending
	user      string
	bindings  []cluster.Binding // copy-on-write: envelopes share it
	channels  map[string]struct{}
	counted   bool // counted in the connected-sessions gauge
	ipHeld    bool // holds a slot of its IP's session limit
	closeOnce sync.Once

	// Resume state (mu).
	pushSeq    uint64
	queuedSeq  uint64   // last push framed onto out
	writtenSeq uint64   // last push written to the connection
	secretHash [32]byte // of the resume token's secret
	// prevHash is the secret hash of the token a resume used: valid until
	// the client shows it got the new one (its first frame after the ACK).
	prevHash [32]byte
	hasPrev  bool
	pushes   pushRing // recent pushes, for replay
	// A PING queued after pushes asks the client to show it has read
	// them: the PONG that echoes ackClock acknowledges every push up to
	// ackSeq (pushRing.acked), and the responses before it.
	pingClock uint64           // the u64 of the last PING sent; each is larger
	ackClock  uint64           // the PING whose PONG is awaited; 0: none
	ackSeq    uint64           // queuedSeq when it was queued
	ackResp   int              // the end of resps' buffer then (respCache.ack)
	unasked   int              // bytes of pushes queued since it was queued
	resps     respCache        // recent responses, by seq
	waiting   map[uint32]int64 // seqs forwarded and not answered → deadline
	// prevWaiting are the waiting seqs that came on an earlier connection.
	prevWaiting map[uint32]struct{}
	kickCode    wire.Code // why the session was kicked; 0 if it was not
	detachedAt  int64
	goodbye     bool   // the client ended the session (BYE, WebSocket close)
	movedTo     string // gate the session was handed to; this is a stub
	// A stub forwards channel messages to the new gate until that gate has
	// its own subscriptions (forwarding, stubChans); the new session holds
	// the channel messages it gets directly until the stub says it is done
	// (holding, held, seen), so the two streams merge in order, once each.
	forwarding   bool
	forwardUntil int64 // unix ns; a new gate that never answers stops it
	stubChans    []string
	holding      bool
	holdUntil    int64
	merged       chan struct{} // closed when holding ends
	replayFrom   uint64        // a resuming session's last_push: older pushes may go
	held         []pushEntry
	seen         map[string]struct{}
	// Pushes from services are delivered in each origin's order: origins
	// holds the last count delivered per origin, early the pushes that
	// arrived ahead of one still on its way (bounded; released with a gap
	// at earlyUntil).
	origins    originCounts
	early      []pushEntry
	earlyUntil int64

	// The read side of a plain-TCP session on the gate's poller
	// (poll_linux.go): owned by its reader goroutine, handed over through
	// pollState.
	pollState atomic.Int32
	pollKey   uint64 // its key in the poller; 0: not registered
	pollArmed bool   // its descriptor is in the poller's epoll set
	rb        []byte // read buffer; nil while parked with no partial frame
	rbN       int    // bytes in rb
	lastBatch int64  // unix ns of the last read that brought bytes
	lastGap   int64  // ns between the last two such reads
	readAny   bool   // a frame has been read since the handshake
	noPark    bool   // the poller could not take it: reads block
	// drained: the last read filled less than the buffer, so it took all
	// the socket had then. The next read that would not block is skipped
	// and the session parks: every arrival after that read is an edge
	// the poller reports (arm), so bytes that came meanwhile wake it. Read
	// to EAGAIN instead, every request cost a second read that found
	// nothing, and system calls are the gate's largest cost on a slow
	// machine (docs/benchmarks.md § bots, session 42).
	drained bool
	// rd is readSome's call of the socket's Read: the callback, made once,
	// and what it reads into and returns. A closure per read escaped to
	// the heap with its results, three allocations a read; in a
	// collection's mark the first allocation of each reader made it help
	// mark (docs/benchmarks.md § bots, session 27).
	rd struct {
		fn    func(fd uintptr) bool
		into  []byte
		block bool
		n     int
		err   error
	}
}

func newSession(g *Gate, conn net.Conn, ws bool) *Session {
	s := &Session{g: g, conn: conn, ws: ws, addr: conn.RemoteAddr().String(), maxOut: g.cfg.MaxFrame}
	if ap, err := netip.ParseAddrPort(s.addr); err == nil {
		s.ip = ap.Addr().Unmap()
	}
	s.tokens = float64(g.cfg.RequestBurst)
	if tc, ok := conn.(*net.TCPConn); ok {
		s.raw, _ = tc.SyscallConn() // never fails on an open connection; nil keeps the flush goroutine
		s.rawWrite = s.writeOut
	}
	return s
}

// ID is the session id.
func (s *Session) ID() string { return s.id }

// State is the session's current state.
func (s *Session) State() State { return State(s.state.Load()) }

// setStateLocked moves the session to st; s.mu is held.
func (s *Session) setStateLocked(st State) { s.state.Store(uint32(st)) }

// User is the user id the session is bound to, or "".
func (s *Session) User() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.user
}

func (s *Session) transport() string {
	if s.ws {
		return "ws"
	}
	return "tcp"
}

// open admits the connection and runs its handshake. It reports whether
// the session is established; serve then reads it. They run on different
// goroutines so that the handshake's deep stack (JSON, TLS, the upgrade) is
// not kept by the goroutine that then waits on an idle connection.
func (s *Session) open() bool {
	g := s.g
	if code, reason := g.admit(s); code != wire.OK {
		g.log.Warn("connection refused", "remote", s.addr, "code", int(code), "reason", reason)
		if s.ws {
			// A WebSocket client can read the KICK only as a message.
			_ = s.conn.SetDeadline(time.Now().Add(g.cfg.HandshakeTimeout))
			if err := s.upgrade(); err != nil {
				s.closeConn()
				return false
			}
		}
		s.mu.Lock()
		s.setStateLocked(StateActive) // lets kick frame it
		s.mu.Unlock()
		s.kick(code, reason, true)
		s.wait()
		return false
	}
	_ = s.conn.SetDeadline(time.Now().Add(g.cfg.HandshakeTimeout))
	if s.ws {
		if err := s.upgrade(); err != nil {
			g.log.Info("websocket upgrade failed", "remote", s.addr, "err", err)
			s.closeConn()
			g.ips.release(s.ip)
			return false
		}
		s.upgraded.Store(true)
	}
	if err := s.handshake(); err != nil {
		s.fail(err, "handshake")
		s.wait()
		if s.State() != StateDetached {
			s.finish()
		}
		s.releaseIP()
		return false
	}
	_ = s.conn.SetDeadline(time.Time{})
	return true
}

// releaseIP gives back the connection's slot of its IP's limit, unless the
// session keeps it while detached (it then goes back in finish).
func (s *Session) releaseIP() {
	s.mu.Lock()
	keep := s.ipHeld && s.State() == StateDetached
	s.mu.Unlock()
	if !keep {
		s.g.ips.release(s.ip)
		s.mu.Lock()
		s.ipHeld = false
		s.mu.Unlock()
	}
}

// serve reads an established session until its connection is gone, then
// leaves it detached (resumable) or closes it, and reports true; false when
// its reads parked on the poller, where a wake goes on with them.
func (s *Session) serve() (ended bool) {
	if s.polled() {
		return s.servePolled(nil)
	}
	err := s.readLoop()
	s.fail(err, "read")
	s.wait()
	s.afterConn()
	s.releaseIP()
	return true
}

// afterConn decides what becomes of the session once its connection is
// gone: nothing, when it was handed over; detached, when the connection
// dropped or the client was told to come back (7, 303); closed otherwise.
func (s *Session) afterConn() {
	s.mu.Lock()
	moved, goodbye, resumable := s.movedTo != "", s.goodbye, s.kickCode == 0 || s.resumableKickLocked()
	s.mu.Unlock()
	switch {
	case moved:
	case goodbye:
		s.finish()
	case s.g.cfg.ResumeGrace > 0 && resumable:
		s.detach()
	default:
		s.finish()
	}
}

// resumableKickLocked reports whether the session was kicked in a way
// that leaves it resumable; s.mu is held.
func (s *Session) resumableKickLocked() bool {
	return s.g.cfg.ResumeGrace > 0 && (s.kickCode == wire.CodeHeartbeatTimeout || s.kickCode == wire.CodeReconnectElsewhere)
}

// detach keeps the session for resume after its connection is gone.
func (s *Session) detach() {
	g := s.g
	s.mu.Lock()
	if s.movedTo != "" || s.State() == StateClosed {
		s.mu.Unlock()
		return
	}
	s.setStateLocked(StateDetached)
	s.detachedAt = time.Now().UnixNano()
	counted, code := s.counted, s.kickCode
	s.counted = false
	s.mu.Unlock()
	if counted {
		g.m.sessionClosed(s.transport())
	}
	g.m.detached.Inc()
	g.publishEvent(s, cluster.EventOffline)
	s.log0().Info("session detached; resumable", "grace", g.cfg.ResumeGrace, "kick", int(code))
}

// expire ends a detached session: its grace passed, or what it must keep
// for the client outgrew the resume buffer.
func (s *Session) expire(why string) {
	s.log0().Info("session lost", "reason", why)
	s.finish()
}

// wait lets a kicked session's flusher write the KICK, then closes.
func (s *Session) wait() {
	s.mu.Lock()
	busy := s.flushing
	s.mu.Unlock()
	if busy {
		// The flusher closes the connection after writing the KICK; the
		// read side notices.
		buf := make([]byte, 64)
		_ = s.conn.SetReadDeadline(time.Now().Add(kickGrace + time.Second))
		for {
			if _, err := s.conn.Read(buf); err != nil {
				break
			}
		}
	}
	s.closeConn()
}

// fail turns a read-side error into the right KICK (or a quiet close when
// the peer went away).
func (s *Session) fail(err error, phase string) {
	if err == nil {
		return
	}
	var we *wire.Error
	switch {
	case errors.As(err, &we):
		s.log0().Info("kick", "code", int(we.Code), "reason", we.Message, "phase", phase)
		s.kick(we.Code, we.Message, true)
	case errors.Is(err, os.ErrDeadlineExceeded) && s.State() == StateHandshaking:
		s.log0().Info("kick", "code", int(wire.CodeHandshakeRequired), "reason", "handshake timeout")
		s.kick(wire.CodeHandshakeRequired, "handshake timeout", true)
	case errors.Is(err, errBye), errors.Is(err, errWSClosed), errors.Is(err, errKickedInHandshake):
		// The client said goodbye, or a KICK is on its way: wait lets the
		// flusher write what is queued, then closes.
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, io.ErrUnexpectedEOF):
		s.closeConn()
	default:
		s.log0().Debug("connection error", "err", err, "phase", phase)
		s.closeConn()
	}
}

func (s *Session) log0() *slog.Logger {
	// Built per call: sessions log rarely, and a logger kept per session
	// would cost every idle session a few hundred bytes.
	if s.id != "" {
		return s.g.log.With("session", s.id, "remote", s.addr)
	}
	return s.g.log.With("remote", s.addr)
}

// handshakeMsg is the HANDSHAKE payload as read: the version is kept raw so
// that a version of the wrong JSON type is "unsupported" (2), not a bad
// frame (1).
type handshakeMsg struct {
	Version  json.RawMessage `json:"version"`
	Codec    string          `json:"codec"`
	Client   string          `json:"client"`
	Resume   string          `json:"resume"`
	LastPush uint64          `json:"last_push"`
	MaxFrame int             `json:"max_frame"`
}

// handshake reads the first frame, which must be a HANDSHAKE, and answers it.
func (s *Session) handshake() error {
	body, err := s.readFrame()
	if err != nil {
		return err
	}
	defer s.releaseFrame(body)
	f, err := wire.Decode(body)
	if err != nil {
		return err
	}
	if f.Kind != wire.KindHandshake {
		return &wire.Error{Code: wire.CodeHandshakeRequired, Message: "first frame must be HANDSHAKE, got " + f.Kind.String()}
	}
	var hs handshakeMsg
	if err := json.Unmarshal(f.Payload, &hs); err != nil {
		return &wire.Error{Code: wire.CodeBadFrame, Message: "handshake payload is not a valid JSON object"}
	}
	if string(hs.Version) != strconv.Itoa(wire.Version) {
		return &wire.Error{Code: wire.CodeUnsupported, Message: "unsupported protocol version " + quoteTrunc(string(hs.Version)) + "; this server speaks 1 (a JSON number)"}
	}
	switch hs.Codec {
	case wire.CodecJSON:
		s.codec = cluster.CodecJSON
	case wire.CodecProtobuf:
		s.codec = cluster.CodecProtobuf
	default:
		return &wire.Error{Code: wire.CodeUnsupported, Message: "unsupported codec " + quoteTrunc(hs.Codec) + "; use json or protobuf"}
	}
	switch {
	case hs.MaxFrame < 0:
		return &wire.Error{Code: wire.CodeBadFrame, Message: "max_frame must be positive"}
	case hs.MaxFrame > 0:
		// Never below what the ACK itself needs.
		s.maxOut = max(hs.MaxFrame, 4096)
	}
	g := s.g
	resumed := hs.Resume != "" && g.cfg.ResumeGrace > 0
	if resumed {
		if werr := s.resume(hs.Resume, hs.LastPush); werr != nil {
			g.m.resumes.WithLabelValues("lost").Inc()
			g.log.Info("resume refused", "remote", s.addr, "reason", werr.Message)
			return werr
		}
		g.m.resumes.WithLabelValues("ok").Inc()
	} else {
		s.id = newSessionID()
	}
	s.routes = g.routes.Load()
	ack := wire.HandshakeAck{
		Session:      s.id,
		Node:         g.cfg.ID,
		HeartbeatMS:  g.cfg.Heartbeat.Milliseconds(),
		Routes:       s.routes.byName,
		Resumed:      resumed,
		ServerTimeMS: time.Now().UnixMilli(),
	}
	var hash [32]byte
	if g.cfg.ResumeGrace > 0 {
		ack.Resume, hash = newResumeToken(g.cfg.ID, s.id)
	}
	payload, err := json.Marshal(&ack)
	if err != nil {
		return err
	}
	now := time.Now().UnixNano()
	s.lastRecv.Store(now)
	s.lastPing.Store(now)
	if !resumed {
		g.sessMap.add(s)
	}
	// The ACK, then the pushes the client missed, then everything else: all
	// written under one lock, so nothing can come between them.
	s.mu.Lock()
	if s.kicked {
		// Shutdown reached this connection while it was handshaking: its
		// KICK is already queued and must stay the last frame.
		s.mu.Unlock()
		if !resumed {
			g.sessMap.remove(s)
		}
		return errKickedInHandshake
	}
	if resumed {
		s.prevHash, s.hasPrev = s.secretHash, true
	}
	s.secretHash = hash
	s.ipHeld = true
	s.startFrameLocked(3 + len(payload))
	s.out = wire.AppendHandshakeAck(s.out, payload)
	g.m.frameOut(wire.KindHandshakeAck)
	replayed := 0
	if resumed {
		missed, err := s.pushes.after(hs.LastPush, s.pushSeq)
		if err != nil {
			// Pushes that came during the hand-over outgrew what it keeps.
			s.mu.Unlock()
			return errSessionLost(err.Error())
		}
		for _, e := range missed {
			s.appendPushLocked(e)
		}
		replayed = len(missed)
	}
	s.setStateLocked(StateActive)
	s.counted = true
	s.startFlushLocked()
	s.mu.Unlock()
	g.m.sessionOpened(s.transport())
	if resumed {
		g.publishEvent(s, cluster.EventResumed)
		if g.cfg.OnResume != nil {
			g.cfg.OnResume(s.id, s.User(), s.Codec())
		}
		s.log0().Info("session resumed", "replayed", replayed, "last_push", hs.LastPush, "transport", s.transport())
	} else {
		g.publishEvent(s, cluster.EventOpened)
		s.log0().Debug("session opened", "codec", hs.Codec, "client", quoteTrunc(hs.Client), "transport", s.transport())
	}
	if g.closing.Load() {
		// Shutdown kicks the sessions it finds; one added after its sweep
		// must go too, or Shutdown waits for it until its context ends.
		s.kick(wire.CodeShuttingDown, "server shutting down", false)
	}
	return nil
}

// Codec is the session's codec name, "json" or "protobuf".
func (s *Session) Codec() string {
	if s.codec == cluster.CodecJSON {
		return wire.CodecJSON
	}
	return wire.CodecProtobuf
}

var (
	errKickedInHandshake = errors.New("gate: kicked during the handshake")
	errBye               = errors.New("gate: the client ended the session")
)

func quoteTrunc(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return s
}

// readLoop reads frames until the connection fails or a frame is fatal.
func (s *Session) readLoop() error {
	for first := true; ; first = false {
		body, err := s.readFrame()
		if err != nil {
			return err
		}
		s.lastRecv.Store(time.Now().UnixNano())
		if first {
			s.mu.Lock()
			s.hasPrev = false // the client has the new resume token
			s.mu.Unlock()
		}
		err = s.handleFrame(body)
		s.releaseFrame(body)
		if err != nil {
			return err
		}
	}
}

// handleFrame acts on one frame from an active session.
func (s *Session) handleFrame(body []byte) error {
	g := s.g
	g.m.frameIn()
	f, err := wire.Decode(body)
	if err != nil {
		if err == wire.ErrBadRoute && f.Kind == wire.KindRequest {
			s.respondError(f.Seq, wire.CodeUnknownRoute, "bad route: must match ^[a-z][a-z0-9_]{0,31}\\.[a-z][a-z0-9_]{0,31}$")
			return nil
		}
		return err
	}
	switch f.Kind {
	case wire.KindRequest, wire.KindNotify:
		return s.handleRequest(&f)
	case wire.KindPing:
		if s.begin(pingBody) { // a PONG's body is a PING's size
			s.out = wire.AppendPong(s.out, f.Clock)
			s.end(wire.KindPong)
		}
	case wire.KindPong:
		s.pong(f.Clock)
	case wire.KindBye:
		s.mu.Lock()
		s.goodbye = true
		s.mu.Unlock()
		if s.ws {
			s.wsControl(opClose, nil)
		}
		s.log0().Debug("session ended by the client")
		return errBye
	case wire.KindHandshake:
		return &wire.Error{Code: wire.CodeBadFrame, Message: "HANDSHAKE after the session started"}
	default:
		return &wire.Error{Code: wire.CodeBadFrame, Message: f.Kind.String() + " is not sent by clients"}
	}
	return nil
}

// closeConn marks a live session closing and closes its connection; the
// reader notices and finishes.
func (s *Session) closeConn() {
	s.mu.Lock()
	if st := s.State(); st == StateHandshaking || st == StateActive {
		s.setStateLocked(StateClosing)
	}
	s.mu.Unlock()
	_ = s.conn.Close()
	s.wake() // a parked reader has no read to fail: start one
}

// finish ends the session and releases everything it holds. It runs once:
// on the connection goroutine when the connection closes for good, or when
// a detached session expires.
func (s *Session) finish() {
	s.closeOnce.Do(func() {
		_ = s.conn.Close()
		g := s.g
		s.mu.Lock()
		wasDetached := s.State() == StateDetached
		s.setStateLocked(StateClosed)
		moved, counted, ipHeld := s.movedTo != "", s.counted, s.ipHeld
		s.counted, s.ipHeld = false, false
		chans := s.channels
		s.channels = nil
		s.resps.clear(&g.respBytes)
		s.pushes.clear(&g.pushBytes)
		s.mu.Unlock()
		if wasDetached {
			g.m.detached.Dec()
			if ipHeld {
				g.ips.release(s.ip)
			}
		}
		if s.id == "" || moved || !g.sessMap.remove(s) {
			return
		}
		if counted {
			g.m.sessionClosed(s.transport())
		}
		for ch := range chans {
			g.chans.leave(ch, s)
		}
		s.mu.Lock()
		user, goodbye := s.user, s.goodbye
		s.mu.Unlock()
		if goodbye {
			// A late resume of it is told why it is gone.
			g.moves.set(s.id, departure{ended: "ended by its client", until: time.Now().Add(g.cfg.ResumeGrace).UnixNano()})
		}
		g.publishEvent(s, cluster.EventClosed)
		if g.cfg.OnClose != nil {
			g.runHook(func() { g.cfg.OnClose(s.id, user) })
		}
		s.log0().Debug("session closed")
	})
}
