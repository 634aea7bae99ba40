package gate

import (
	"cmp"
	"errors"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/internal/nbio"
	"github.com/hearth-server/hearth/wire"
)

// A session's output is one byte queue (out, under mu) bounded by
// Limits.SendQueueBytes: every frame — responses, pushes, pongs, WebSocket
// control replies, the KICK — is framed into it and counts against the
// bound. A flush goroutine exists only while there is output, so an idle
// session has none.

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
	if !s.roomLocked(n) {
		s.mu.Unlock()
		return false
	}
	s.startFrameLocked(n)
	return true
}

// roomLocked reports whether a frame body of n bytes fits in the output
// queue; when it does not, the session is kicked with 202. s.mu is held.
func (s *Session) roomLocked(n int) bool {
	if q := int64(len(s.out) + n + 14); q <= int64(s.g.cfg.SendQueueBytes) {
		for peak := s.g.outPeak.Load(); q > peak && !s.g.outPeak.CompareAndSwap(peak, q); peak = s.g.outPeak.Load() {
		}
		return true
	}
	queued := len(s.out)
	s.log0().Warn("kick", "code", int(wire.CodeSlowConsumer), "reason", "send queue full", "queued_bytes", queued)
	s.kickLocked(wire.CodeSlowConsumer, "slow consumer: send queue full", true)
	return false
}

// end finishes a frame started with begin and releases s.mu.
func (s *Session) end(kind wire.Kind) {
	s.g.m.frameOut(kind)
	s.sendLocked()
	s.mu.Unlock()
}

// inlineGap is how long after its last write a session's next frame is
// written by the goroutine that queued it. Sooner than that, more frames
// are likely on their way (a burst), and the flush goroutine's hand-off is
// what lets them pile up into one write.
const inlineGap = time.Millisecond

// sendLocked writes the output now, from this goroutine, when the session
// has been quiet (no flush running, none in the last inlineGap) and the
// socket takes it all at once; otherwise it starts the flush goroutine.
//
// A game's traffic is mostly a frame now and then to each of many
// sessions: a goroutine per frame cost a wake-up on another thread, and
// its scheduling, for every write. The write here never blocks: one
// non-blocking attempt, and whatever the socket did not take goes to the
// flush goroutine. s.mu is held (for the write too: it does not wait).
func (s *Session) sendLocked() {
	if s.flushing || s.kicked || s.raw == nil || len(s.out) == 0 {
		s.startFlushLocked()
		return
	}
	now := time.Now().UnixNano()
	if now-s.wroteAt < int64(inlineGap) {
		s.startFlushLocked()
		return
	}
	s.rawN, s.rawErr = 0, nil
	err := s.raw.Write(s.rawWrite)
	n, werr := s.rawN, s.rawErr
	s.rawErr = nil
	if err != nil || werr != nil || n <= 0 {
		s.startFlushLocked() // EAGAIN, or an error the flush reports
		return
	}
	s.wroteAt = now
	s.g.m.wrote()
	if n < len(s.out) {
		s.out = s.out[:copy(s.out, s.out[n:])]
		s.startFlushLocked()
		return
	}
	s.writtenSeq = s.queuedSeq
	putBuf(s.out)
	s.out = nil
}

// writeOut is sendLocked's one attempt to write s.out to the socket fd;
// s.mu is held.
func (s *Session) writeOut(fd uintptr) bool {
	for {
		s.rawN, s.rawErr = nbio.Write(int(fd), s.out)
		if s.rawErr != syscall.EINTR {
			return true // done: never wait for the socket here
		}
	}
}

// startFlushLocked starts the flush goroutine if none runs; s.mu is held.
func (s *Session) startFlushLocked() {
	if !s.flushing {
		s.flushing = true
		s.g.cfg.Go(s.flush)
	}
}

// startFrameLocked appends the transport's framing for a body of n bytes
// to s.out, which it takes from the pool when there is none: appended to
// nil, a frame was a buffer made twice (header, then body) and never
// pooled. s.mu is held.
func (s *Session) startFrameLocked(n int) {
	if s.out == nil {
		s.out = getBuf(n + 16)
	}
	if !s.ws {
		s.out = wire.AppendLength(s.out, n)
		return
	}
	s.out = appendWSHeader(s.out, opBinary, n)
}

// flush writes queued output until none is left.
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
		upTo := s.queuedSeq
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
		if err == nil {
			s.g.m.wrote()
			s.writtenSeq = upTo
			s.wroteAt = time.Now().UnixNano()
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
	s.kickLocked(code, reason, drop)
	s.mu.Unlock()
}

// kickLocked is kick with s.mu held.
func (s *Session) kickLocked(code wire.Code, reason string, drop bool) {
	st := s.State()
	if s.kicked || st == StateDetached || st == StateClosed {
		return
	}
	s.kicked = true
	s.kickCode = code
	if st < StateClosing {
		s.setStateLocked(StateClosing)
	}
	if drop {
		s.out = s.out[:0]
	}
	if len(reason) > 512 {
		reason = reason[:512]
	}
	s.startFrameLocked(5 + len(reason))
	s.out = wire.AppendKick(s.out, code, reason)
	if s.ws {
		s.out = appendWSClose(s.out)
	}
	s.g.m.kicked(code)
	s.g.m.frameOut(wire.KindKick)
	s.startFlushLocked()
	// Bound the wait for a client that does not read.
	_ = s.conn.SetWriteDeadline(time.Now().Add(kickGrace))
}

// respondError answers a request with a non-zero status.
func (s *Session) respondError(seq uint32, code wire.Code, msg string) {
	s.g.m.requestError(code)
	s.respond(seq, code, []byte(msg))
}

// respond answers request seq. The response is cached for a re-send after
// a resume; a detached session only caches it, and a stub forwards it to
// where the session went.
func (s *Session) respond(seq uint32, status wire.Code, payload []byte) {
	s.answer(seq, status, payload, false)
}

// answer is respond; with hold it does not write, as pushFrame's hold, and
// reports whether the caller must call flushHeld.
func (s *Session) answer(seq uint32, status wire.Code, payload []byte, hold bool) (held bool) {
	g := s.g
	if len(payload)+9 > s.maxOut {
		s.log0().Warn("response too large for the client", "seq", seq, "bytes", len(payload), "client_max_frame", s.maxOut)
		g.m.requestError(wire.CodeResponseTooLarge)
		status = wire.CodeResponseTooLarge
		payload = []byte("response of " + strconv.Itoa(len(payload)) + " bytes exceeds the client's frame limit of " + strconv.Itoa(s.maxOut) + " bytes")
	}
	s.mu.Lock()
	if to := s.movedTo; to != "" {
		s.mu.Unlock()
		g.forwardResponse(to, s.id, seq, status, payload)
		return false
	}
	delete(s.waiting, seq)
	_, prev := s.prevWaiting[seq]
	delete(s.prevWaiting, seq)
	sent := s.State() == StateActive && !s.kicked
	if g.cfg.ResumeGrace > 0 {
		s.resps.add(respEntry{Seq: seq, Status: status, Payload: payload, Prev: prev, Sent: sent}, &g.cfg.Limits, &g.respBytes)
	}
	if !sent || !s.roomLocked(9+len(payload)) {
		s.mu.Unlock()
		return false
	}
	s.startFrameLocked(9 + len(payload))
	s.out = wire.AppendResponse(s.out, seq, status, payload)
	if hold {
		s.g.m.frameOut(wire.KindResponse)
		held = s.holdLocked()
		s.mu.Unlock()
		return held
	}
	s.end(wire.KindResponse)
	return false
}

// writeResponse writes a response again, from the cache.
func (s *Session) writeResponse(seq uint32, status wire.Code, payload []byte) {
	if s.begin(9 + len(payload)) {
		s.out = wire.AppendResponse(s.out, seq, status, payload)
		s.end(wire.KindResponse)
	}
}

// pushSource says where a push came from, which decides how a session in
// the middle of a hand-over treats a channel message.
type pushSource uint8

const (
	fromService pushSource = iota // to this session (or a list of sessions)
	fromChannel                   // this gate's own channel subscription
	fromStub                      // a channel message the session's old gate forwarded
)

// pushFrame gives e the session's next push_seq and a slot in its replay
// buffer, whatever the connection's state, and queues it when the session
// is connected. A stub forwards it to the session's new home instead.
//
// With hold, it does not start the flush: the caller is queuing a batch and
// calls flushHeld on the session it returns (not nil: output
// is waiting for a write; the session replacing s on this gate, if the push
// went there), so a session that gets several frames in the batch writes
// them with one syscall.
func (s *Session) pushFrame(e pushEntry, src pushSource, hold bool) (held *Session) {
	g := s.g
	s.mu.Lock()
	if to := s.movedTo; to != "" {
		forward := src == fromChannel && s.forwarding
		s.mu.Unlock()
		switch {
		case to == g.cfg.ID:
			// Replaced on this gate: the new session is in the table.
			if nu := g.sessMap.get(s.id); nu != nil && nu != s {
				return nu.pushFrame(e, src, hold)
			}
		case forward:
			if err := g.bus.PushID(to, []string{s.id}, e.Route, e.Payload, nil, e.ID); err != nil {
				g.log.Warn("channel message not forwarded", "session", s.id, "to", to, "err", err)
			}
		}
		return nil
	}
	if s.State() == StateClosed {
		s.mu.Unlock()
		return nil
	}
	if src == fromStub && s.pushes.has(e.ID) {
		// A late copy from a stub further back: already delivered.
		s.mu.Unlock()
		return nil
	}
	if s.holding && e.ID != "" {
		// Mid hand-over: the old gate's forwarded copies come first; what
		// this gate's subscription delivers waits for the end of them.
		if _, dup := s.seen[e.ID]; dup {
			s.mu.Unlock()
			return nil
		}
		if src == fromChannel {
			s.held = append(s.held, e.owned())
			s.mu.Unlock()
			return nil
		}
		s.seen[e.ID] = struct{}{}
	}
	var write bool
	if e.Origin != "" {
		write = s.orderedLocked(e, hold)
	} else {
		write = s.numberLocked(e, hold)
	}
	s.mu.Unlock()
	if write {
		return s
	}
	return nil
}

// maxEarly bounds the pushes a session holds for an origin's gap.
const maxEarly = 256

// originCounts holds the last push count delivered to a session from each
// origin (a node's bus). A session hears from a node or two, so a short
// list scanned in order costs less than a map, which hashed the origin on
// every push. It keeps maxOrigins at most: past that the one set longest
// ago goes (a node restarted long since); a push from it would wait as
// early and be released with a gap. Guarded by the session's mu.
type originCounts struct {
	list []originCount
	tick uint64 // stamps each set, for the eviction
}

type originCount struct {
	origin string
	count  uint64
	used   uint64 // tick of its last set
}

const maxOrigins = 64

func (o *originCounts) last(origin string) uint64 {
	for i := range o.list {
		if o.list[i].origin == origin {
			return o.list[i].count
		}
	}
	return 0
}

func (o *originCounts) set(origin string, count uint64) {
	o.tick++
	for i := range o.list {
		if x := &o.list[i]; x.origin == origin {
			x.count, x.used = count, o.tick
			return
		}
	}
	if len(o.list) >= maxOrigins {
		old := 0
		for i := range o.list {
			if o.list[i].used < o.list[old].used {
				old = i
			}
		}
		o.list = slices.Delete(o.list, old, old+1)
	}
	o.list = append(o.list, originCount{origin: origin, count: count, used: o.tick})
}

// toMap and originsFrom convert to and from the hand-over's form, a map
// (sessionState.Origins) as older gates send and expect it.
func (o *originCounts) toMap() map[string]uint64 {
	if len(o.list) == 0 {
		return nil
	}
	m := make(map[string]uint64, len(o.list))
	for _, x := range o.list {
		m[x.origin] = x.count
	}
	return m
}

func originsFrom(m map[string]uint64) originCounts {
	var o originCounts
	for origin, n := range m {
		o.set(origin, n)
	}
	return o
}

// orderedLocked delivers a push of a service in its origin's order: a
// repeat is dropped, one ahead of a missing one waits in early until the
// gap fills, or until earlyUntil, when the sweep releases it (with a gap
// the client can see). s.mu is held.
func (s *Session) orderedLocked(e pushEntry, hold bool) (held bool) {
	last := s.origins.last(e.Origin)
	switch {
	case e.Count <= last:
		return false
	case e.Count > last+1:
		if len(s.early) == 0 {
			s.earlyUntil = time.Now().Add(handoverTimeout).UnixNano()
		}
		s.early = append(s.early, e.owned())
		if len(s.early) > maxEarly {
			s.releaseEarlyLocked()
		}
		return false
	}
	s.origins.set(e.Origin, e.Count)
	held = s.numberLocked(e, hold)
	// Whatever waited for this one follows it.
	for i := 0; i < len(s.early); {
		x := s.early[i]
		if x.Origin == e.Origin && x.Count == s.origins.last(x.Origin)+1 {
			s.origins.set(x.Origin, x.Count)
			held = s.numberLocked(x, hold) || held
			s.early = append(s.early[:i], s.early[i+1:]...)
			i = 0
			continue
		}
		if x.Origin == e.Origin && x.Count <= s.origins.last(x.Origin) {
			s.early = append(s.early[:i], s.early[i+1:]...)
			continue
		}
		i++
	}
	return held
}

// releaseEarlyLocked gives up waiting for missing pushes: what waits is
// delivered in order, after a gap in push_seq for each push that never came.
// s.mu is held.
func (s *Session) releaseEarlyLocked() {
	early := s.early
	s.early, s.earlyUntil = nil, 0
	slices.SortFunc(early, func(a, b pushEntry) int {
		if c := strings.Compare(a.Origin, b.Origin); c != 0 {
			return c
		}
		return cmp.Compare(a.Count, b.Count)
	})
	for _, e := range early {
		last := s.origins.last(e.Origin)
		if e.Count <= last {
			continue
		}
		if e.Count > last+1 {
			s.log0().Warn("pushes lost on their way to the session: delivered the rest after a gap", "origin", e.Origin, "missing", e.Count-last-1)
			s.pushSeq += e.Count - last - 1
			s.pushes.gapAt(s.pushSeq)
		}
		s.origins.set(e.Origin, e.Count)
		s.numberLocked(e, false)
	}
}

// connectedPushBytes is what a connected session keeps of its pushes: its
// share of the gate's budget — half of it over the sessions, leaving room
// for the buffers' spare capacity and for detached sessions, which keep
// all they have not been sent — between ResumeBytes/8 and ResumeBytes; and
// only ResumeBytes/8 while the budget is spent. The share moves smoothly
// with the number of sessions: a bound that flipped at the budget's edge
// had every buffer shrink and grow again, copying, push after push.
func (g *Gate) connectedPushBytes() int {
	b := g.cfg.ResumeBytes
	least := max(1, b/8)
	if g.pushBytes.Load() > int64(g.cfg.ResumeGateBytes) {
		return least
	}
	if n := g.sessMap.n.Load(); n > 0 {
		b = min(b, max(least, int(int64(g.cfg.ResumeGateBytes)/2/n)))
	}
	return b
}

// numberLocked gives e the next push_seq, keeps it for replay and queues it
// for a connected session; s.mu is held.
func (s *Session) numberLocked(e pushEntry, hold bool) (held bool) {
	g := s.g
	s.pushSeq++
	e.Seq = s.pushSeq
	st := s.State()
	if g.cfg.ResumeGrace > 0 {
		// Without a connection, the oldest pushes may go only as far as
		// what was written to it: those after must be replayed.
		floor := s.writtenSeq
		switch {
		case st == StateActive && !s.kicked:
			floor = math.MaxUint64
		case st == StateHandshaking:
			floor = s.replayFrom
		}
		maxBytes := g.cfg.ResumeBytes
		if floor == math.MaxUint64 {
			maxBytes = g.connectedPushBytes()
		}
		if s.pushes.add(e, g.cfg.ResumePushes, maxBytes, floor, &g.pushBytes) {
			// A session that cannot be made whole is lost, not left with a
			// gap: resume answers 304 once its pushes outgrow the buffer.
			s.pushes.overflowed = true
		}
	}
	if st != StateActive || s.kicked {
		return false
	}
	if !s.appendPushLocked(e) {
		return false
	}
	if g.cfg.ResumeGrace > 0 {
		s.askAckLocked(entrySize(&e))
	}
	if hold {
		return s.holdLocked()
	}
	s.sendLocked()
	return false
}

// holdLocked leaves queued output for the caller's batch to write, and
// reports whether the caller must write it (flushHeld): not
// when a flush is running, which will, or another batch holds the session,
// which will. s.mu is held.
func (s *Session) holdLocked() (held bool) {
	held = !s.flushing && !s.heldMark
	s.heldMark = s.heldMark || held
	return held
}

// appendPushLocked frames a numbered push onto the output. A push larger
// than the client's frame limit is replaced by an empty push on route
// sys.dropped, so the client still sees its number. s.mu is held.
func (s *Session) appendPushLocked(e pushEntry) bool {
	route, payload := e.Route, e.Payload
	if 12+len(route)+len(payload) > s.maxOut {
		s.log0().Warn("push too large for the client: sent as sys.dropped", "route", route, "bytes", len(payload), "client_max_frame", s.maxOut)
		route, payload = "sys.dropped", nil
	}
	n := 12 + len(route) + len(payload)
	if !s.roomLocked(n) {
		return false
	}
	s.startFrameLocked(n)
	s.out = wire.AppendPush(s.out, e.Seq, route, payload)
	s.queuedSeq = e.Seq
	s.g.m.frameOut(wire.KindPush)
	return true
}

// flushHeld writes what a batch (pushFrame or answer with hold) queued:
// with inPlace, from this goroutine when the session is quiet (sendLocked),
// as the bus batch does; else by the flush goroutine, so that the channel
// fan-out's writes to many members run beside it.
func (s *Session) flushHeld(inPlace bool) {
	s.mu.Lock()
	s.heldMark = false
	switch {
	case len(s.out) == 0:
	case inPlace:
		s.sendLocked()
	default:
		s.startFlushLocked()
	}
	s.mu.Unlock()
}

// busBatch is the sessions the gate subject's subscription goroutine has
// queued output for without writing it, while more bus messages waited:
// release writes each once. Its one user is that goroutine, under the
// gate's busMu.
type busBatch struct {
	held []*Session
	msgs int // messages since the last release
	// goFn starts a helper of release (Config.Go); nil: release writes
	// alone.
	goFn func(func())
	// sent holds, for each push of the batch to a connected session, when
	// its service sent it (Envelope.Sent); release observes each one's
	// delay on delay once it has written the batch. A session whose flush
	// was already running is written by that flush, a little later than
	// measured.
	sent  []int64
	delay prometheus.Observer // nil: not measured
}

// maxBusBatch bounds how many bus messages a batch spans, so a busy
// subscription still writes every so often.
const maxBusBatch = 64

// releaseShare is the fewest held sessions per helper release starts: a
// helper costs a worker's wake-up, a few writes' worth.
const releaseShare = 16

// release writes each held session once. With many of them it shares the
// writes with helpers, up to one per further P: a write is a system call,
// and with one goroutine making them all, a third of a busy node's CPU in
// one queue, every push waited behind the whole batch and behind that
// goroutine's turn for a core (docs/benchmarks.md § bots, session 32).
func (b *busBatch) release() {
	if helpers := min(runtime.GOMAXPROCS(0)-1, len(b.held)/releaseShare); helpers > 0 && b.goFn != nil {
		w := &releaseWork{held: b.held}
		for range helpers {
			b.goFn(w.help)
		}
		w.write()
		w.wait()
	} else {
		for _, s := range b.held {
			s.flushHeld(true)
		}
	}
	clear(b.held)
	b.held, b.msgs = b.held[:0], 0
	if len(b.sent) == 0 {
		return
	}
	if b.delay != nil {
		now := time.Now().UnixNano()
		for _, t := range b.sent {
			b.delay.Observe(float64(max(now-t, 0)) / 1e9)
		}
	}
	b.sent = b.sent[:0]
}

// releaseWork is one release's held sessions, written by whichever of
// release and its helpers takes each next. A helper that starts after
// they are all taken touches nothing: held is read only at an index that
// next handed out, and release returns (and its busBatch reuses held)
// only once every goroutine that took one is done (active).
type releaseWork struct {
	held   []*Session
	next   atomic.Int64
	active atomic.Int64
}

func (w *releaseWork) help() {
	w.active.Add(1)
	w.write()
	w.active.Add(-1)
}

func (w *releaseWork) write() {
	for {
		i := int(w.next.Add(1)) - 1
		if i >= len(w.held) {
			return
		}
		w.held[i].flushHeld(true)
	}
}

// wait returns once no helper is writing: at most one session's write
// each, since every session has been taken.
func (w *releaseWork) wait() {
	for w.active.Load() > 0 {
		runtime.Gosched()
	}
}

// gap records that a channel message for this session was lost (the gate
// could not keep up with the channel): push_seq skips a number, which a
// connected client can see, and replay across the gap is refused with 304.
func (s *Session) gap() {
	s.mu.Lock()
	if s.movedTo == "" && s.State() != StateClosed {
		s.pushSeq++
		s.pushes.gapAt(s.pushSeq)
	}
	s.mu.Unlock()
}

// ping sends a server PING carrying the server's clock.
func (s *Session) ping(now time.Time) {
	if s.begin(pingBody) {
		s.out = s.appendPingLocked(s.out, now)
		s.end(wire.KindPing)
	}
}

// pingBody is the size of a PING's body.
const pingBody = wire.HeaderSize + 8

// appendPingLocked appends a PING body carrying the server's clock in ms,
// made larger than the session's last one so that its PONG is told apart.
// Unless one is awaited already, it asks for an acknowledgement of every
// push queued before it. s.mu is held.
func (s *Session) appendPingLocked(b []byte, now time.Time) []byte {
	c := max(uint64(now.UnixMilli()), s.pingClock+1)
	s.pingClock = c
	if s.ackClock == 0 {
		s.ackClock, s.ackSeq, s.ackResp, s.unasked = c, s.queuedSeq, s.resps.data.end, 0
	}
	return wire.AppendPing(b, c)
}

// askAckLocked follows a push just queued (n bytes of it counted in the
// replay buffer) with a PING once ResumeAckBytes of pushes have been
// queued since the last acknowledgement asked for, unless that one is
// still awaited: its PONG lets the replay buffer forget what the client
// has read (pushRing.ack). It rides in the same write as the push. s.mu is
// held.
func (s *Session) askAckLocked(n int) {
	ab := s.g.cfg.ResumeAckBytes
	if ab <= 0 {
		return
	}
	s.unasked += n
	if s.unasked < ab || s.ackClock != 0 || !s.roomLocked(pingBody) {
		return
	}
	s.startFrameLocked(pingBody)
	s.out = s.appendPingLocked(s.out, time.Now())
	s.g.m.frameOut(wire.KindPing)
}

// pong takes a PONG: the answer to the PING awaited acknowledges the
// pushes and responses queued before it.
func (s *Session) pong(clock uint64) {
	s.mu.Lock()
	if s.ackClock != 0 && clock == s.ackClock {
		s.ackClock = 0
		s.pushes.ack(s.ackSeq, &s.g.pushBytes)
		s.resps.ack(s.ackResp)
	}
	s.mu.Unlock()
}

// payloadFor picks the encoding of a push this session reads.
func (s *Session) payloadFor(e *cluster.Envelope) []byte {
	if s.codec == cluster.CodecJSON && e.JSON != nil {
		return e.JSON
	}
	return e.Payload
}

// allowRequest applies the per-session token bucket. Only the connection
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
// so a flood cannot flood the log too. Connection goroutine only.
func (s *Session) warnOnce(now int64, msg string, args ...any) {
	if now-s.warnedAt < int64(10*time.Second) {
		return
	}
	s.warnedAt = now
	s.log0().Warn(msg, args...)
}
