package gate

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/wire"
)

// State is a session's place in its life:
//
//	handshaking → active ⇄ detached → closing → closed
//
// A detached session has lost its connection but can be resumed, on this
// gate or another, until the resume grace passes.
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

// Session is one client connection and its protocol state.
type Session struct {
	id    string
	g     *Gate
	conn  net.Conn
	ws    bool
	ip    netip.Addr
	addr  string
	codec cluster.Codec

	state      atomic.Uint32
	upgraded   atomic.Bool  // WebSocket handshake done
	lastRecv   atomic.Int64 // unix nanoseconds
	lastPing   atomic.Int64
	writeSince atomic.Int64 // when the write in progress began; 0: none
	stalled    atomic.Bool  // closed by the sweep for a write stalled past WriteTimeout
	inflight   atomic.Int32
	routes     *routeTable

	// Used only by the reader goroutine.
	hdr      [14]byte
	rbuf     *[]byte // a borrowed small-frame buffer, while a frame is read
	tokens   float64
	tokensAt int64
	warnedAt int64

	mu        sync.Mutex
	out       []byte // framed bytes not yet written
	spare     []byte
	flushing  bool
	kicked    bool
	pushSeq   uint64
	user      string
	bindings  []cluster.Binding // copy-on-write
	channels  map[string]struct{}
	closeOnce sync.Once

	// Resume (under mu).
	secretHash   [32]byte         // of the resume token's secret
	pushes       pushRing         // recent pushes, for replay
	resps        respCache        // recent responses, by seq
	waiting      map[uint32]int64 // seqs forwarded and not answered → deadline
	kickCode     wire.Code        // why the session was kicked; 0 if it was not
	detachedAt   int64
	movedTo      string              // gate the session was handed to; this is a stub
	imported     bool                // took over a resumed session's state
	goodbye      bool                // the client closed the session (a WebSocket close frame)
	heldMark     bool                // output queued by a fan-out batch, flush pending
	forwardUntil int64               // a stub forwards channel messages until then
	dedupUntil   int64               // a resumed session drops repeated channel messages until then
	seen         map[string]struct{} // channel message ids seen before dedupUntil
	counted      bool                // counted in the connected-sessions gauge
}

func newSession(g *Gate, conn net.Conn, ws bool) *Session {
	s := &Session{g: g, conn: conn, ws: ws, addr: conn.RemoteAddr().String()}
	if ap, err := netip.ParseAddrPort(s.addr); err == nil {
		s.ip = ap.Addr().Unmap()
	}
	s.tokens = float64(g.cfg.RequestBurst)
	return s
}

// ID is the session id.
func (s *Session) ID() string { return s.id }

// State is the session's current state.
func (s *Session) State() State { return State(s.state.Load()) }

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
		s.state.Store(uint32(StateActive)) // lets kick frame it
		s.kick(code, reason, true)
		_ = s.wait()
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
		_ = s.wait()
		s.finish()
		g.ips.release(s.ip)
		return false
	}
	_ = s.conn.SetDeadline(time.Time{})
	return true
}

// serve reads an established session until its connection is gone, then
// leaves it detached (resumable) or closes it.
func (s *Session) serve() {
	defer s.g.ips.release(s.ip)
	err := s.readLoop()
	s.fail(err, "read")
	_ = s.wait()
	s.afterConn()
}

// afterConn decides what becomes of the session once its connection is
// gone: nothing, when it was handed over; detached, when the connection
// dropped or the client was told to come back (7, 303); closed otherwise.
func (s *Session) afterConn() {
	s.mu.Lock()
	moved, code, goodbye := s.movedTo != "", s.kickCode, s.goodbye
	s.mu.Unlock()
	switch {
	case moved:
	case goodbye:
		s.finish()
	case s.g.cfg.ResumeGrace > 0 && (code == 0 || code == wire.CodeHeartbeatTimeout || code == wire.CodeReconnectElsewhere):
		s.detach()
	default:
		s.finish()
	}
}

// resumableKick reports whether the session was kicked in a way that
// leaves it resumable; s.mu is held.
func (s *Session) resumableKick() bool {
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
	s.state.Store(uint32(StateDetached))
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
	s.mu.Lock()
	detached := s.State() == StateDetached
	s.mu.Unlock()
	if detached {
		s.g.m.detached.Dec()
	}
	s.log0().Info("session lost", "reason", why)
	s.finish()
}

// wait lets a kicked session's flusher write the KICK, then closes.
func (s *Session) wait() error {
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
	return nil
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
	var hs wire.Handshake
	if err := json.Unmarshal(f.Payload, &hs); err != nil {
		return &wire.Error{Code: wire.CodeBadFrame, Message: "handshake payload is not valid JSON"}
	}
	if hs.Version != wire.Version {
		return &wire.Error{Code: wire.CodeUnsupported, Message: "unsupported protocol version; this server speaks 1"}
	}
	switch hs.Codec {
	case wire.CodecJSON:
		s.codec = cluster.CodecJSON
	case wire.CodecProtobuf:
		s.codec = cluster.CodecProtobuf
	default:
		return &wire.Error{Code: wire.CodeUnsupported, Message: "unsupported codec " + quoteTrunc(hs.Codec) + "; use json or protobuf"}
	}
	g := s.g
	resumed := hs.Resume != "" && g.cfg.ResumeGrace > 0
	if resumed {
		if err := s.resume(&hs); err != nil {
			g.m.resumes.WithLabelValues("lost").Inc()
			g.log.Info("resume refused", "remote", s.addr, "reason", err.Message)
			return err
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
	s.secretHash = hash
	s.out = s.frameHeader(s.out, 3+len(payload))
	s.out = wire.AppendHandshakeAck(s.out, payload)
	g.m.frameOut(wire.KindHandshakeAck)
	replayed := 0
	if resumed {
		missed, _ := s.pushes.after(hs.LastPush, s.pushSeq)
		for _, e := range missed {
			s.out = s.frameHeader(s.out, 12+len(e.Route)+len(e.Payload))
			s.out = wire.AppendPush(s.out, e.Seq, e.Route, e.Payload)
			g.m.frameOut(wire.KindPush)
		}
		replayed = len(missed)
	}
	s.state.Store(uint32(StateActive))
	s.counted = true
	s.startFlushLocked()
	s.mu.Unlock()
	g.m.sessionOpened(s.transport())
	if resumed {
		g.publishEvent(s, cluster.EventResumed)
		if g.cfg.OnResume != nil {
			g.cfg.OnResume(s.id, s.User())
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

var errKickedInHandshake = errors.New("gate: kicked during the handshake")

// resume takes over the session named by the handshake's token, from this
// gate or the one that holds it.
func (s *Session) resume(hs *wire.Handshake) *wire.Error {
	g := s.g
	gate, id, secret, ok := parseResumeToken(hs.Resume)
	if !ok {
		return errSessionLost("malformed resume token")
	}
	req := resumeReq{Session: id, Secret: secret, LastPush: hs.LastPush, Codec: uint8(s.codec), To: g.cfg.ID}
	if gate == g.cfg.ID {
		// The hand-over runs on the gate's bus goroutine, which installs
		// this session in the old one's place in the same step.
		req.Local = newSessionID()
		g.importing.Store(req.Local, s)
		_, werr := g.requestExport(gate, &req)
		g.importing.Delete(req.Local)
		if werr != nil {
			return werr
		}
		if !s.imported {
			return errSessionLost("hand-over did not complete")
		}
		return nil
	}
	// Registered under the session id before the hand-over, so that what
	// the old gate forwards meanwhile finds it.
	s.id = id
	s.mu.Lock()
	s.dedupUntil = time.Now().Add(2 * channelHandover).UnixNano()
	s.mu.Unlock()
	g.sessMap.add(s)
	st, werr := g.requestExport(gate, &req)
	if werr != nil {
		g.sessMap.remove(s)
		s.id = ""
		return werr
	}
	s.importState(st)
	for _, ch := range st.Channels {
		g.chans.join(ch, s)
	}
	return nil
}

func quoteTrunc(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return s
}

// readLoop reads frames until the connection fails or a frame is fatal.
func (s *Session) readLoop() error {
	for {
		body, err := s.readFrame()
		if err != nil {
			return err
		}
		s.lastRecv.Store(time.Now().UnixNano())
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
		if s.begin(11) {
			s.out = wire.AppendPong(s.out, f.Clock)
			s.end(wire.KindPong)
		}
	case wire.KindPong:
	case wire.KindHandshake:
		return &wire.Error{Code: wire.CodeBadFrame, Message: "HANDSHAKE after the session started"}
	default:
		return &wire.Error{Code: wire.CodeBadFrame, Message: f.Kind.String() + " is not sent by clients"}
	}
	return nil
}

// begin reserves room for a frame body of n bytes on the session's output
// and appends the transport's framing. It never blocks: a session whose
// output would exceed the queue limit is kicked with 202, its queued output
// dropped. On true the caller holds s.mu, appends the body to s.out and
// calls end.
func (s *Session) begin(n int) bool {
	s.mu.Lock()
	if s.kicked || s.State() != StateActive {
		s.mu.Unlock()
		return false
	}
	if len(s.out)+n > s.g.cfg.SendQueueBytes {
		queued := len(s.out)
		s.mu.Unlock()
		s.log0().Warn("kick", "code", int(wire.CodeSlowConsumer), "reason", "send queue full", "queued_bytes", queued)
		s.kick(wire.CodeSlowConsumer, "slow consumer: send queue full", true)
		return false
	}
	if s.out == nil {
		s.out = getBuf(n + 16)
	}
	s.out = s.frameHeader(s.out, n)
	return true
}

// end finishes a frame started with begin and releases s.mu.
func (s *Session) end(kind wire.Kind) {
	s.g.m.frameOut(kind)
	s.startFlushLocked()
	s.mu.Unlock()
}

func (s *Session) startFlushLocked() {
	if !s.flushing {
		s.flushing = true
		go s.flush()
	}
}

// frameHeader appends the transport's framing for a body of n bytes.
func (s *Session) frameHeader(dst []byte, n int) []byte {
	if !s.ws {
		return wire.AppendLength(dst, n)
	}
	return appendWSHeader(dst, opBinary, n)
}

// flush writes queued output until none is left. It runs in its own
// goroutine only while there is output, so an idle session has none.
func (s *Session) flush() {
	for {
		s.mu.Lock()
		if len(s.out) == 0 {
			s.flushing = false
			putBuf(s.out)
			putBuf(s.spare)
			s.out, s.spare = nil, nil
			kicked := s.kicked
			s.mu.Unlock()
			if kicked {
				s.closeConn()
			}
			return
		}
		buf := s.out
		s.out = s.spare
		if s.out != nil {
			s.out = s.out[:0]
		}
		s.spare = nil
		kicked := s.kicked
		s.mu.Unlock()

		// A stalled write is caught by the heartbeat sweep (writeSince),
		// not a deadline per write: that would cost a timer update each.
		timeout := s.g.cfg.WriteTimeout
		if kicked {
			timeout = min(timeout, kickGrace)
			_ = s.conn.SetWriteDeadline(time.Now().Add(timeout))
		}
		s.writeSince.Store(time.Now().UnixNano())
		_, err := s.conn.Write(buf)
		s.writeSince.Store(0)

		s.mu.Lock()
		if s.spare == nil {
			s.spare = buf[:0]
		} else {
			putBuf(buf)
		}
		if err != nil {
			s.flushing = false
			wasKicked := s.kicked
			s.kicked = true
			s.out = nil
			s.mu.Unlock()
			if (errors.Is(err, os.ErrDeadlineExceeded) || s.stalled.Load()) && !wasKicked {
				s.log0().Warn("kick", "code", int(wire.CodeSlowConsumer), "reason", "write stalled", "timeout", timeout)
				s.g.m.kicked(wire.CodeSlowConsumer)
			}
			s.closeConn()
			return
		}
		s.mu.Unlock()
	}
}

// kick sends KICK code and closes the session. With drop, output not yet
// written is discarded first (the client is too slow or misbehaving);
// without, it is delivered before the KICK.
func (s *Session) kick(code wire.Code, reason string, drop bool) {
	s.mu.Lock()
	if s.kicked || s.State() == StateDetached {
		s.mu.Unlock()
		return
	}
	s.kicked = true
	s.kickCode = code
	st := s.State()
	if st < StateClosing {
		s.state.Store(uint32(StateClosing))
	}
	if st == StateClosed {
		s.mu.Unlock()
		return
	}
	if drop {
		s.out = s.out[:0]
	}
	if len(reason) > 512 {
		reason = reason[:512]
	}
	n := 5 + len(reason)
	s.out = s.frameHeader(s.out, n)
	s.out = wire.AppendKick(s.out, code, reason)
	if s.ws {
		s.out = appendWSClose(s.out)
	}
	s.g.m.kicked(code)
	s.g.m.frameOut(wire.KindKick)
	s.startFlushLocked()
	s.mu.Unlock()
	// Bound the wait for a client that does not read.
	_ = s.conn.SetWriteDeadline(time.Now().Add(kickGrace))
}

// closeConn closes the connection; the reader notices and finishes.
func (s *Session) closeConn() {
	if s.state.Load() < uint32(StateClosing) {
		s.state.Store(uint32(StateClosing))
	}
	_ = s.conn.Close()
}

// finish ends the session and releases everything it holds. It runs once:
// on the reader goroutine when the connection closes for good, or when a
// detached session expires.
func (s *Session) finish() {
	s.closeOnce.Do(func() {
		s.closeConn()
		g := s.g
		s.mu.Lock()
		s.state.Store(uint32(StateClosed))
		moved, counted := s.movedTo != "", s.counted
		s.counted = false
		s.mu.Unlock()
		if s.id == "" || moved {
			return
		}
		g.sessMap.remove(s)
		if counted {
			g.m.sessionClosed(s.transport())
		}
		s.mu.Lock()
		chans := s.channels
		s.channels = nil
		s.mu.Unlock()
		for ch := range chans {
			g.chans.leave(ch, s)
		}
		g.publishEvent(s, cluster.EventClosed)
		if g.cfg.OnClose != nil {
			g.cfg.OnClose(s.id, s.User())
		}
		s.log0().Debug("session closed")
	})
}

// respondError answers a request with a non-zero status.
func (s *Session) respondError(seq uint32, code wire.Code, msg string) {
	s.g.m.requestError(code)
	s.respond(seq, code, []byte(msg))
}

// respond answers request seq. The response is cached for a re-send after
// a resume; a detached (or still importing) session only caches it, and a
// stub forwards it to where the session went.
func (s *Session) respond(seq uint32, status wire.Code, payload []byte) {
	g := s.g
	s.mu.Lock()
	if to := s.movedTo; to != "" {
		s.mu.Unlock()
		g.forwardResponse(to, s.id, seq, status, payload)
		return
	}
	delete(s.waiting, seq)
	if g.cfg.ResumeGrace > 0 {
		s.resps.add(respEntry{Seq: seq, Status: status, Payload: payload}, g.cfg.ResponseCache)
	}
	s.mu.Unlock()
	s.writeResponse(seq, status, payload)
}

func (s *Session) writeResponse(seq uint32, status wire.Code, payload []byte) {
	if s.begin(9 + len(payload)) {
		s.out = wire.AppendResponse(s.out, seq, status, payload)
		s.end(wire.KindResponse)
	}
}

// push sends a PUSH with the next push_seq, and keeps it for replay. A
// detached session only keeps it; one still taking over a resumed session
// keeps it unnumbered until the state arrives.
func (s *Session) push(route string, payload []byte, msgID string) {
	s.pushFrame(route, payload, msgID, false)
}

// pushFrame queues a push. With hold, it does not start the flush: the
// caller is queuing a batch and calls flushHeld for each session it
// reports (true: output is waiting for a flush), so a session that gets
// several pushes in the batch writes them with one syscall.
//
// msgID is the id of a channel message ("" for a push to this session):
// around a hand-over to another gate a channel message can reach the
// session twice — forwarded by the old gate and directly — and the id
// lets the copy be dropped.
func (s *Session) pushFrame(route string, payload []byte, msgID string, hold bool) (held bool) {
	g := s.g
	n := 3 + 8 + 1 + len(route) + len(payload)
	s.mu.Lock()
	st := s.State()
	if st == StateClosing && s.resumableKick() {
		st = StateDetached // kicked to come back: keep what it will miss
	}
	if to := s.movedTo; to != "" {
		// A stub stays in its channels for a moment after a hand-over to
		// another gate, which joins them only once it has the state:
		// channel messages in between are forwarded, not lost.
		forward := msgID != "" && to != g.cfg.ID && time.Now().UnixNano() < s.forwardUntil
		s.mu.Unlock()
		if forward {
			if err := g.bus.PushID(to, []string{s.id}, route, payload, nil, msgID); err != nil {
				g.log.Warn("channel message not forwarded", "session", s.id, "to", to, "err", err)
			}
		}
		return false
	}
	if st >= StateClosing {
		s.mu.Unlock()
		return false
	}
	if msgID != "" && s.dedupUntil != 0 {
		if time.Now().UnixNano() > s.dedupUntil {
			s.dedupUntil, s.seen = 0, nil
		} else {
			if _, dup := s.seen[msgID]; dup {
				s.mu.Unlock()
				return false
			}
			if s.seen == nil {
				s.seen = map[string]struct{}{}
			}
			s.seen[msgID] = struct{}{}
		}
	}
	var seq uint64
	if st != StateHandshaking || s.imported {
		s.pushSeq++
		seq = s.pushSeq
	}
	if g.cfg.ResumeGrace > 0 {
		if s.pushes.add(pushEntry{Seq: seq, Route: route, Payload: payload, ID: msgID}, g.cfg.ResumePushes, g.cfg.ResumeBytes, st != StateActive) {
			s.mu.Unlock()
			// Not here: a channel fan-out calls this holding the channel's
			// lock, which ending the session (leaving its channels) needs.
			go s.expire("resume buffer overflow while disconnected")
			return false
		}
	}
	if st != StateActive || s.kicked {
		s.mu.Unlock()
		return false
	}
	if len(s.out)+n+10 > g.cfg.SendQueueBytes {
		queued := len(s.out)
		s.mu.Unlock()
		s.log0().Warn("kick", "code", int(wire.CodeSlowConsumer), "reason", "send queue full", "queued_bytes", queued)
		s.kick(wire.CodeSlowConsumer, "slow consumer: send queue full", true)
		return false
	}
	if s.out == nil {
		s.out = getBuf(n + 16)
	}
	s.out = s.frameHeader(s.out, n)
	s.out = wire.AppendPush(s.out, seq, route, payload)
	g.m.frameOut(wire.KindPush)
	if hold {
		held = !s.flushing && !s.heldMark
		s.heldMark = s.heldMark || held
		s.mu.Unlock()
		return held
	}
	s.startFlushLocked()
	s.mu.Unlock()
	return false
}

// flushHeld starts writing what a batch of pushFrame(…, true) queued.
func (s *Session) flushHeld() {
	s.mu.Lock()
	s.heldMark = false
	if len(s.out) > 0 {
		s.startFlushLocked()
	}
	s.mu.Unlock()
}

// ping sends a server PING carrying the server's clock.
func (s *Session) ping(now time.Time) {
	if s.begin(11) {
		s.out = wire.AppendPing(s.out, uint64(now.UnixMilli()))
		s.end(wire.KindPing)
	}
}

// payloadFor picks the encoding of a push this session reads.
func (s *Session) payloadFor(e *cluster.Envelope) []byte {
	if s.codec == cluster.CodecJSON && e.JSON != nil {
		return e.JSON
	}
	return e.Payload
}

// allowRequest applies the per-session token bucket. Only the reader
// goroutine calls it.
func (s *Session) allowRequest(now int64) bool {
	rate := s.g.cfg.RequestRate
	if rate < 0 {
		return true
	}
	burst := float64(s.g.cfg.RequestBurst)
	s.tokens = min(burst, s.tokens+float64(now-s.tokensAt)/1e9*rate)
	s.tokensAt = now
	if s.tokens < 1 {
		return false
	}
	s.tokens--
	return true
}

// warnOnce logs a per-request rejection at most once per 10s per session,
// so a flood cannot flood the log too.
func (s *Session) warnOnce(now int64, msg string, args ...any) {
	if now-s.warnedAt < int64(10*time.Second) {
		return
	}
	s.warnedAt = now
	s.log0().Warn(msg, args...)
}
