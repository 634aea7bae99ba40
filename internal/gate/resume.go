package gate

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/wire"
)

// Sessions survive their connection. A session whose connection drops (or
// that is kicked with 7 or 303) is detached: it stays in the gate for the
// resume grace, its pushes kept in order in a bounded buffer and its
// responses in a cache by seq. A client that reconnects — to this gate or
// any other — with the session's resume token gets it back:
//
//  1. The new connection registers itself as waiting (Gate.incoming) and
//     asks the gate named in the token to hand the session over.
//  2. That gate's bus goroutine checks the token and exports the state: on
//     the same gate it installs the waiting session in the old one's place
//     in the same step; to another gate it publishes the state (TypeImport)
//     on the new gate's control subject, and the old session becomes a stub
//     that forwards what still reaches it. The import is published before
//     anything the stub forwards, on the same bus connection (the one
//     pinned to the new gate) and subject, so the new gate receives it
//     first.
//  3. The new gate's bus goroutine — the owner of its routing state —
//     installs the session and joins its channels, then tells the old gate
//     (TypeHandoverReady, on the connection that subscribed, so the
//     subscriptions take effect first). The old gate's fan-out goroutine stops
//     forwarding channel messages after the ones it already queued and says
//     so (TypeHandoverDone); until then the new session holds the channel
//     messages its own subscription delivers, so the two streams merge in
//     order and each message arrives once.
//
// Re-sent requests are answered from the response cache instead of running
// twice; one whose answer is no longer kept gets 306.

// pushEntry is one push on its way to a session, and one kept for replay
// as pushRing hands it out. The ring copies a push to one session into its
// own buffer; a message to several (a channel's, a broadcast, a push to a
// list) is copied once per encoding, and the copy is shared
// (replayPayloads). Kept anywhere else, the entry owns its payload
// (owned): the bus message it came in carries every encoding of the push
// and the list of its sessions.
type pushEntry struct {
	Seq     uint64 `json:"seq"`
	Route   string `json:"route"`
	Payload []byte `json:"payload"`
	// ID of a channel message (Envelope.MsgID), "" for other pushes.
	ID string `json:"id,omitempty"`
	// Origin and Count order a service's pushes (Envelope.Origin/Counts).
	Origin string `json:"origin,omitempty"`
	Count  uint64 `json:"count,omitempty"`
	// shared is set when Payload is a copy that other sessions' entries
	// share; nil when Payload is this entry's own.
	shared *sharedPayload
}

// sharedPayload counts the ring entries, of any session, holding one
// shared copy of a payload, so that the gate's budget counts the copy once,
// while any ring holds it. refs is atomic: the entries are in different
// sessions' rings, each changed under its own session's mu.
type sharedPayload struct{ refs atomic.Int32 }

// hold takes a new ring entry's share of the gate's budget and returns
// it: its slot, and a shared payload that no other ring holds yet (an
// entry's own bytes are counted with its ring's buffer, pushRing.data).
func (e *pushEntry) hold() int {
	n := entryOverhead
	if e.shared != nil && e.shared.refs.Add(1) == 1 {
		n += cap(e.Payload)
	}
	return n
}

// release is hold's reverse, as the entry leaves its ring.
func (e *pushEntry) release() int {
	n := entryOverhead
	if e.shared != nil && e.shared.refs.Add(-1) == 0 {
		n += cap(e.Payload)
	}
	return n
}

// owned returns e with a payload of its own, for a push kept outside the
// ring (held or early): not a slice of the bus message, which would pin
// all of it.
func (e pushEntry) owned() pushEntry {
	if e.shared == nil {
		e.Payload = bytes.Clone(e.Payload)
	}
	return e
}

// replayPayloads hands out the payloads that the sessions of one bus
// message keep for replay (pushEntry): with one session the message's,
// which the ring copies;
// with several, a copy per encoding, made for the first session that
// needs it and shared by the rest. Without replay (ResumeGrace ≤ 0)
// nothing is kept, so nothing is copied. The goroutine delivering the
// message uses it, and no other. (It holds no pointer to the message's
// Envelope, which would then escape to the heap.)
type replayPayloads struct {
	keep bool // the gate keeps pushes for replay
	one  bool // the message is for one session
	// By encoding (protobuf, JSON): the copy and its count of holders.
	kept   [2][]byte
	shared [2]*sharedPayload
}

// replayPayloads starts handing out the payloads of a message for the
// given number of local sessions (0: not known).
func (g *Gate) replayPayloads(sessions int) replayPayloads {
	return replayPayloads{keep: g.cfg.ResumeGrace > 0, one: sessions == 1}
}

// set gives p the payload b, the message in s's encoding (payloadFor).
func (rp *replayPayloads) set(p *pushEntry, s *Session, b []byte) {
	switch {
	case !rp.keep:
		p.Payload = b // written to the output, which copies it, and dropped
	case rp.one:
		p.Payload = b // the ring copies it
	default:
		i := 0
		if s.codec == cluster.CodecJSON {
			i = 1
		}
		if rp.shared[i] == nil {
			rp.kept[i], rp.shared[i] = bytes.Clone(b), new(sharedPayload)
		}
		p.Payload, p.shared = rp.kept[i], rp.shared[i]
	}
}

// respEntry is one cached response. Gone marks a response that was sent
// but not kept (too large, or the cache was over its byte budget): a
// re-send gets 306 rather than a second execution.
type respEntry struct {
	Seq     uint32    `json:"seq"`
	Status  wire.Code `json:"status"`
	Payload []byte    `json:"payload,omitempty"`
	Gone    bool      `json:"gone,omitempty"`
	// Prev: the request came on an earlier connection of the session.
	// Sent: the response was written to the current connection. A re-send
	// of a Prev request whose answer was Sent crossed that answer and gets
	// nothing more: every request is answered once.
	Prev bool `json:"-"`
	Sent bool `json:"-"`
}

// respCache keeps the last responses of a session by seq, bounded by count
// and by bytes, per session and (through gateBytes) per gate. Like
// pushRing, it holds no pointer per response: slots of numbers, and one
// buffer with the payloads, which leave it oldest first (a slot is
// overwritten, or turned into a tombstone for the byte bound, in the order
// the responses came). The session's mu guards it.
type respCache struct {
	slots []respSlot // a circle: slots[next] is the oldest once it is full
	next  int
	// data holds the kept payloads in order; a slot's off is its stream
	// offset there.
	data  wrapBuf
	bytes int // the kept payloads' bytes, against the session's bound
	// forgotten is the highest seq evicted outright: seqs increase, so a
	// re-send at or below it ran once already.
	forgotten uint32
}

// respSlot is a cached response: its payload is data's n bytes at off.
type respSlot struct {
	seq              uint32
	status           wire.Code
	n                uint32
	off              int
	gone, prev, sent bool
}

func (c *respCache) add(e respEntry, l *Limits, gateBytes *atomic.Int64) {
	size := len(e.Payload)
	if e.Gone || size > l.ResponseCacheItem {
		size = 0
		e.Gone = true
	}
	for i := 0; c.bytes+size > l.ResponseCacheBytes && i < len(c.slots); i++ {
		c.drop(&c.slots[(c.next+i)%len(c.slots)])
	}
	if len(c.slots) >= l.ResponseCache && len(c.slots) > 0 {
		old := &c.slots[c.next]
		c.drop(old)
		c.forgotten = max(c.forgotten, old.seq)
	}
	off, ok := c.reserve(size, l.ResponseCacheBytes, l.ResponseCacheGate, gateBytes)
	if !ok {
		size, e.Gone = 0, true // the gate's budget is spent
	}
	x := respSlot{seq: e.Seq, status: e.Status, n: uint32(size), off: off, gone: e.Gone, prev: e.Prev, sent: e.Sent}
	c.data.put(off, e.Payload[:size])
	if len(c.slots) < l.ResponseCache {
		c.slots = append(c.slots, x)
	} else {
		c.slots[c.next] = x
		c.next = (c.next + 1) % len(c.slots)
	}
	c.bytes += size
}

// reserve makes room in data for n more bytes and returns where they go;
// it reports false, changing nothing, when the buffer would have to grow
// past the gate's budget.
func (c *respCache) reserve(n, bound, gateBudget int, gateBytes *atomic.Int64) (int, bool) {
	start := c.data.end // the oldest kept payload, or the end
	for i := range c.slots {
		if x := &c.slots[(c.next+i)%len(c.slots)]; x.n > 0 {
			start = x.off
			break
		}
	}
	off, grow, ok := c.data.reserve(n, start, bound, func(grow int) bool {
		return gateBytes.Load()+int64(grow) <= int64(gateBudget)
	})
	gateBytes.Add(int64(grow)) // refused, it still counts what was released
	return off, ok
}

// drop turns x into a tombstone, releasing its bytes (the next payloads
// may overwrite them).
func (c *respCache) drop(x *respSlot) {
	if x.gone {
		return
	}
	c.bytes -= int(x.n)
	x.n, x.gone = 0, true
}

// ack drops the payloads of the responses the client has shown it read:
// those written on this connection as they came (sent, not prev) whose
// bytes end at or before stream offset end, data's end when the PING that
// asked was queued. The client never asks for those again; their seqs
// stay, so a re-send is still 306, never a second run.
func (c *respCache) ack(end int) {
	for i := range c.slots {
		if x := &c.slots[i]; x.sent && !x.prev && x.off+int(x.n) <= end {
			c.drop(x)
		}
	}
}

// entry returns slot x with a copy of its payload.
func (c *respCache) entry(x *respSlot) respEntry {
	e := respEntry{Seq: x.seq, Status: x.status, Gone: x.gone, Prev: x.prev, Sent: x.sent}
	if x.n > 0 {
		e.Payload = make([]byte, x.n)
		copy(e.Payload, c.data.bytes(x.off, int(x.n)))
	}
	return e
}

func (c *respCache) find(seq uint32) *respSlot {
	for i := range c.slots {
		if c.slots[i].seq == seq {
			return &c.slots[i]
		}
	}
	return nil
}

// take returns the response cached for seq, for a re-sent request, and
// records that the answer is now on the current connection. The entry
// returned is as it was before.
func (c *respCache) take(seq uint32) (respEntry, bool) {
	x := c.find(seq)
	if x == nil {
		return respEntry{}, false
	}
	e := c.entry(x)
	x.sent = true
	return e, true
}

// entries returns the cached responses, oldest first, with their own
// payloads.
func (c *respCache) entries() []respEntry {
	out := make([]respEntry, 0, len(c.slots))
	for i := range c.slots {
		out = append(out, c.entry(&c.slots[(c.next+i)%len(c.slots)]))
	}
	return out
}

// clear releases the cache's buffer from the gate's budget.
func (c *respCache) clear(gateBytes *atomic.Int64) {
	gateBytes.Add(-int64(c.data.size()))
	*c = respCache{}
}

// sessionState is what moves from one gate to another on resume.
type sessionState struct {
	Session    string            `json:"session"`
	User       string            `json:"user,omitempty"`
	Codec      cluster.Codec     `json:"codec"`
	Bindings   []cluster.Binding `json:"bindings,omitempty"`
	Channels   []string          `json:"channels,omitempty"`
	PushSeq    uint64            `json:"push_seq"`
	Pushes     []pushEntry       `json:"pushes,omitempty"`
	LastGap    uint64            `json:"last_gap,omitempty"`
	Resps      []respEntry       `json:"resps,omitempty"`
	Forgotten  uint32            `json:"forgotten,omitempty"`
	Waiting    []uint32          `json:"waiting,omitempty"`
	SecretHash []byte            `json:"secret_hash"`
	Origins    map[string]uint64 `json:"origins,omitempty"`
	Early      []pushEntry       `json:"early,omitempty"`
}

// importMsg is the payload of a TypeImport envelope.
type importMsg struct {
	Key      string        `json:"key"`
	LastPush uint64        `json:"last_push"`
	State    *sessionState `json:"state"`
}

// resumeReq asks the gate holding a session to hand it over.
type resumeReq struct {
	Session  string `json:"session"`
	Secret   string `json:"secret"`
	LastPush uint64 `json:"last_push"`
	Codec    uint8  `json:"codec"`
	To       string `json:"to"`
	Key      string `json:"key"` // the waiting connection on gate To
}

type resumeResp struct {
	Code  wire.Code `json:"code,omitempty"`
	Error string    `json:"error,omitempty"`
	// Redirect names the gate the session moved to, when the resume used a
	// token from before the move (its client missed the new one).
	Redirect string `json:"redirect,omitempty"`
}

// errSessionLost is the answer to every resume that cannot be honoured.
func errSessionLost(why string) *wire.Error {
	return &wire.Error{Code: wire.CodeSessionLost, Message: "session lost: " + why + "; log in again"}
}

// newResumeToken makes a token "<gate>.<session>.<secret>" and returns it
// with the hash of its secret, which is all the gate keeps.
func newResumeToken(gate, session string) (string, [32]byte) {
	var secret [16]byte
	_, _ = rand.Read(secret[:])
	enc := base64.RawURLEncoding.EncodeToString(secret[:])
	return gate + "." + session + "." + enc, sha256.Sum256([]byte(enc))
}

func parseResumeToken(tok string) (gate, session, secret string, ok bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || cluster.ValidateNodeID(parts[0]) != nil || parts[1] == "" || len(parts[1]) > 64 || len(parts[2]) != 22 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// handoverTimeout bounds how long a session waits for something only
// another gate can end: a new session holds the channel messages its own
// subscription delivers at most this long, and pushes ahead of a missing
// one wait at most this long. Both end early in the normal course; the
// bound is for a gate that died, so it is generous — under load a gate's
// bus may lag by seconds, and ending a wait early delivers out of order.
// (A stub forwards channel messages until the new gate says it has its own
// subscriptions, at most for the resume grace: stopping early would lose
// messages.)
const handoverTimeout = 10 * time.Second

// importWait is a connection waiting for the session it resumes.
type importWait struct {
	s    *Session
	done chan struct{} // closed once s is installed
}

// waiters are the connections of this gate waiting for a hand-over, by key.
type waiters struct {
	mu sync.Mutex
	m  map[string]*importWait
}

func (w *waiters) put(key string, iw *importWait) {
	w.mu.Lock()
	if w.m == nil {
		w.m = map[string]*importWait{}
	}
	w.m[key] = iw
	w.mu.Unlock()
}

// take removes and returns the waiter under key: whoever takes it owns the
// outcome (the importer installs it; the connection gives up on it).
func (w *waiters) take(key string) *importWait {
	w.mu.Lock()
	defer w.mu.Unlock()
	iw := w.m[key]
	delete(w.m, key)
	return iw
}

// moves is a gate's table of sessions that left it — handed to another
// gate, replaced on this one, or ended by their client — kept for the
// resume grace so that late messages are forwarded and late resumes get
// the right answer.
type moves struct {
	mu sync.Mutex
	m  map[string]departure
}

type departure struct {
	gate  string   // where it went; "" when it ended
	stub  *Session // the session left behind
	ended string   // why it ended, when it did
	until int64
}

func (mv *moves) set(id string, e departure) {
	mv.mu.Lock()
	if mv.m == nil {
		mv.m = map[string]departure{}
	}
	mv.m[id] = e
	mv.mu.Unlock()
}

func (mv *moves) get(id string) (departure, bool) {
	mv.mu.Lock()
	defer mv.mu.Unlock()
	e, ok := mv.m[id]
	return e, ok
}

func (mv *moves) drop(id string) {
	mv.mu.Lock()
	delete(mv.m, id)
	mv.mu.Unlock()
}

// sweep forgets entries past their time, and returns the stubs still
// forwarding channel messages past theirs.
func (mv *moves) sweep(now int64, late []*Session) []*Session {
	mv.mu.Lock()
	defer mv.mu.Unlock()
	for id, e := range mv.m {
		if now > e.until {
			delete(mv.m, id)
		}
		if e.stub != nil {
			e.stub.mu.Lock()
			if e.stub.forwarding && now > e.stub.forwardUntil {
				late = append(late, e.stub)
			}
			e.stub.mu.Unlock()
		}
	}
	return late
}

// resume takes over the session named by the handshake's resume token,
// from this gate or the one that holds it. On success s is installed in
// this gate's table with the session's state.
func (s *Session) resume(token string, lastPush uint64) *wire.Error {
	g := s.g
	gate, id, secret, ok := parseResumeToken(token)
	if !ok {
		return errSessionLost("malformed resume token")
	}
	s.id = id // s is not shared until the hand-over installs it
	key := newSessionID()
	iw := &importWait{s: s, done: make(chan struct{})}
	g.incoming.put(key, iw)
	werr := g.requestExport(gate, &resumeReq{Session: id, Secret: secret, LastPush: lastPush, Codec: uint8(s.codec), To: g.cfg.ID, Key: key})
	if werr == nil {
		t := time.NewTimer(g.cfg.RequestTimeout)
		defer t.Stop()
		select {
		case <-iw.done:
			// The ACK waits for the channel merge, so the client cannot
			// move the session again in the middle of it.
			// Past the request timeout the ACK goes anyway (the handshake
			// has a deadline too); the merge goes on after it.
			if m := s.mergedChan(); m != nil {
				select {
				case <-m:
				case <-t.C:
				case <-g.stop:
				}
			}
			return nil
		case <-t.C:
		case <-g.stop:
		}
	}
	if g.incoming.take(key) == nil {
		// The importer took it meanwhile: it is being installed.
		<-iw.done
		return nil
	}
	if werr == nil {
		g.log.Error("resume: the hand-over was accepted but its state never came", "session", id, "from", gate)
		werr = errSessionLost("hand-over did not complete")
	}
	return werr
}

// requestExport asks the gate named in the token to hand the session over.
// A gate that is gone answers nobody: the session is lost, at once.
func (g *Gate) requestExport(gate string, req *resumeReq) *wire.Error {
	b, _ := json.Marshal(req)
	for hops := 0; ; hops++ {
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.RequestTimeout)
		msg, err := g.bus.Request(ctx, g.bus.Subjects().GateResume(gate), b)
		cancel()
		switch {
		case errors.Is(err, nats.ErrNoResponders):
			return errSessionLost("gate " + gate + " holding the session is gone")
		case err != nil:
			return errSessionLost("gate " + gate + " did not answer: " + err.Error())
		}
		var resp resumeResp
		if err := json.Unmarshal(msg.Data, &resp); err != nil {
			return errSessionLost("bad answer from gate " + gate)
		}
		switch {
		case resp.Redirect != "" && hops < 2 && cluster.ValidateNodeID(resp.Redirect) == nil:
			gate = resp.Redirect
		case resp.Code != wire.OK:
			return &wire.Error{Code: resp.Code, Message: resp.Error}
		case resp.Redirect != "":
			return errSessionLost("the session moved too often")
		default:
			return nil
		}
	}
}

// onResumeReq answers another gate's (or this gate's own) request to hand
// over a session. It runs on the gate's bus goroutine, so no push, reply or
// control message for the session can interleave with the hand-over.
func (g *Gate) onResumeReq(m *nats.Msg) {
	var req resumeReq
	var resp resumeResp
	if err := json.Unmarshal(m.Data, &req); err != nil || cluster.ValidateNodeID(req.To) != nil {
		resp.Code, resp.Error = wire.CodeSessionLost, "session lost: bad resume request"
	} else if to, werr := g.export(&req); werr != nil {
		resp.Code, resp.Error = werr.Code, werr.Message
	} else {
		resp.Redirect = to
	}
	b, _ := json.Marshal(&resp)
	_ = g.bus.Respond(m, b)
}

// export hands session req.Session over to gate req.To. Nothing changes
// unless every check passes: a forged or stale request leaves the session
// as it was. A session that moved on answers with the gate it went to.
// Bus goroutine only.
func (g *Gate) export(req *resumeReq) (redirect string, _ *wire.Error) {
	old := g.sessMap.get(req.Session)
	if old == nil {
		if e, ok := g.moves.get(req.Session); ok {
			switch {
			case e.ended != "":
				return "", errSessionLost("the session was " + e.ended)
			case e.gate != "" && e.gate != g.cfg.ID:
				return e.gate, nil
			}
			return "", errSessionLost("already resumed on another connection")
		}
		return "", errSessionLost("unknown or expired session")
	}
	return "", g.exportSession(old, req)
}

func (g *Gate) exportSession(old *Session, req *resumeReq) *wire.Error {
	sum := sha256.Sum256([]byte(req.Secret))
	old.mu.Lock()
	if old.holding {
		// Resumed again (with its old token) before its last hand-over's
		// channel merge ended: what it holds is delivered first.
		old.mu.Unlock()
		old.releaseHeld()
		old.mu.Lock()
	}
	st, werr := old.exportableLocked(req, sum)
	if werr != nil {
		old.mu.Unlock()
		if werr.Message == lostBeyondBuffer {
			go old.expire("pushes missed beyond the resume buffer")
		}
		return werr
	}
	var iw *importWait
	same := req.To == g.cfg.ID
	if same {
		if iw = g.incoming.take(req.Key); iw == nil {
			old.mu.Unlock()
			return errSessionLost("the resuming connection went away")
		}
	}
	prev := old.State()
	if prev == StateActive {
		old.kickLocked(wire.CodeResumedElsewhere, "session resumed on another connection; do not resume it", true)
	}
	old.setStateLocked(StateClosing)
	old.movedTo = req.To
	old.channels = nil
	counted, ipHeld := old.counted, old.ipHeld && prev == StateDetached
	old.counted = false
	if ipHeld {
		old.ipHeld = false
	}
	old.resps.clear(&g.respBytes)
	old.pushes.clear(&g.pushBytes) // st holds them now
	if same {
		iw.s.from = g.cfg.ID
		iw.s.importState(st, req.LastPush, false)
		g.sessMap.add(iw.s)
	} else {
		g.sessMap.remove(old)
		if len(st.Channels) > 0 {
			old.forwarding = true
			old.forwardUntil = time.Now().Add(g.cfg.ResumeGrace).UnixNano()
			old.stubChans = st.Channels
		}
		// Under old.mu: anything the stub forwards comes after this.
		b, _ := json.Marshal(&importMsg{Key: req.Key, LastPush: req.LastPush, State: st})
		if err := g.bus.Send(g.bus.Subjects().GateControl(req.To), &cluster.Envelope{Type: cluster.TypeImport, Session: st.Session, Node: g.cfg.ID, Payload: b}); err != nil {
			g.log.Error("hand-over state not sent", "session", st.Session, "to", req.To, "err", err)
		}
	}
	old.mu.Unlock()

	g.moves.set(old.id, departure{gate: req.To, stub: old, until: time.Now().Add(g.cfg.ResumeGrace).UnixNano()})
	if same {
		for _, ch := range st.Channels {
			g.chans.replace(ch, old, iw.s)
		}
		close(iw.done)
	}
	if counted {
		g.m.sessionClosed(old.transport())
	}
	if prev == StateDetached {
		g.m.detached.Dec()
	}
	if ipHeld {
		g.ips.release(old.ip)
	}
	g.log.Info("session handed over", "session", old.id, "to", req.To, "pushes", len(st.Pushes), "waiting", len(st.Waiting))
	return nil
}

const lostBeyondBuffer = "session lost: pushes missed beyond what the server kept while disconnected; log in again"

// exportableLocked checks a hand-over request against the session and
// returns its state; old.mu is held. It changes nothing.
func (s *Session) exportableLocked(req *resumeReq, secretSum [32]byte) (*sessionState, *wire.Error) {
	g := s.g
	switch {
	case s.movedTo != "":
		return nil, errSessionLost("already resumed on another connection")
	case s.State() == StateClosed:
		return nil, errSessionLost("the session has ended")
	case s.goodbye:
		return nil, errSessionLost("the session was ended by its client")
	case s.State() == StateDetached && time.Duration(time.Now().UnixNano()-s.detachedAt) > g.cfg.ResumeGrace:
		return nil, errSessionLost("not resumed within the grace period")
	}
	if subtle.ConstantTimeCompare(secretSum[:], s.secretHash[:]) != 1 && (!s.hasPrev || subtle.ConstantTimeCompare(secretSum[:], s.prevHash[:]) != 1) {
		g.log.Warn("resume refused: bad token", "session", req.Session, "to", req.To)
		return nil, errSessionLost("invalid resume token")
	}
	if cluster.Codec(req.Codec) != s.codec {
		return nil, errSessionLost("resume with the codec the session was opened with")
	}
	if _, err := s.pushes.after(req.LastPush, s.pushSeq); err != nil {
		g.log.Warn("resume refused", "session", req.Session, "last_push", req.LastPush, "push_seq", s.pushSeq, "reason", err)
		if s.pushes.overflowed {
			return nil, &wire.Error{Code: wire.CodeSessionLost, Message: lostBeyondBuffer}
		}
		return nil, errSessionLost(err.Error())
	}
	// The whole ring goes, not only what the client missed: the new gate
	// replays from last_push.
	st := &sessionState{
		Session: s.id, User: s.user, Codec: s.codec, Bindings: s.bindings,
		PushSeq: s.pushSeq, Pushes: s.pushes.entries(), LastGap: s.pushes.lastGap,
		Resps: s.resps.entries(), Forgotten: s.resps.forgotten,
		SecretHash: append([]byte(nil), s.secretHash[:]...),
		Origins:    s.origins.toMap(), Early: s.early,
	}
	for ch := range s.channels {
		st.Channels = append(st.Channels, ch)
	}
	for seq := range s.waiting {
		st.Waiting = append(st.Waiting, seq)
	}
	return st, nil
}

// importState takes over a session's state. s is the resuming connection's
// session, not yet in the table, so nothing else writes to it; hold starts
// the channel merge of a hand-over from another gate.
func (s *Session) importState(st *sessionState, lastPush uint64, hold bool) {
	g := s.g
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replayFrom = lastPush
	s.user, s.bindings = st.User, st.Bindings
	s.pushSeq = st.PushSeq
	s.pushes = pushRing{lastGap: st.LastGap}
	for _, e := range st.Pushes {
		s.pushes.add(e, g.cfg.ResumePushes, g.cfg.ResumeBytes, math.MaxUint64, &g.pushBytes)
	}
	for _, r := range st.Resps {
		r.Prev, r.Sent = true, false
		s.resps.add(r, &g.cfg.Limits, &g.respBytes)
	}
	s.resps.forgotten = st.Forgotten
	deadline := time.Now().Add(g.cfg.RequestTimeout).UnixNano()
	for _, seq := range st.Waiting {
		if s.resps.find(seq) == nil { // not answered yet
			if s.waiting == nil {
				s.waiting = map[uint32]int64{}
				s.prevWaiting = map[uint32]struct{}{}
			}
			s.waiting[seq] = deadline
			s.prevWaiting[seq] = struct{}{}
		}
	}
	if len(st.Channels) > 0 {
		s.channels = make(map[string]struct{}, len(st.Channels))
		for _, ch := range st.Channels {
			s.channels[ch] = struct{}{}
		}
		if hold {
			s.holding = true
			s.holdUntil = time.Now().Add(handoverTimeout).UnixNano()
			s.merged = make(chan struct{})
			// What the old gate delivered may still come through this
			// gate's own subscription: those copies are dropped.
			s.seen = map[string]struct{}{}
			for _, e := range st.Pushes {
				if e.ID != "" {
					s.seen[e.ID] = struct{}{}
				}
			}
		}
	}
	copy(s.secretHash[:], st.SecretHash)
	s.origins, s.early = originsFrom(st.Origins), st.Early
	if len(s.early) > 0 {
		s.earlyUntil = time.Now().Add(handoverTimeout).UnixNano()
	}
}

// onImport installs a session handed over by another gate. Bus goroutine
// only: it owns this gate's routing state, and the old gate's forwarded
// messages for the session queue behind this one.
func (g *Gate) onImport(e *cluster.Envelope) {
	var m importMsg
	if err := json.Unmarshal(e.Payload, &m); err != nil || m.State == nil || m.State.Session != e.Session {
		g.log.Error("bad hand-over state", "session", e.Session, "from", e.Node, "err", err)
		return
	}
	iw := g.incoming.take(m.Key)
	if iw == nil || iw.s.id != m.State.Session {
		// The connection gave up waiting and told its client 304.
		g.log.Warn("hand-over state arrived after its connection gave up: session lost", "session", e.Session, "from", e.Node)
		g.tell(e.Node, cluster.TypeHandoverReady, e.Session)
		return
	}
	if mv, ok := g.moves.get(e.Session); ok && mv.stub != nil {
		// The session left this gate before and comes back: its stub here
		// stops forwarding it elsewhere at once.
		g.chans.endForwarding(mv.stub)
	}
	s := iw.s
	s.from = e.Node // before s is shared; its connection goroutine waits on done
	s.importState(m.State, m.LastPush, true)
	g.sessMap.add(s)
	g.moves.drop(s.id)
	for _, ch := range m.State.Channels {
		if err := g.chans.join(ch, s); err != nil {
			g.log.Error("hand-over: channel not joined", "session", s.id, "channel", ch, "err", err)
		}
	}
	if len(m.State.Channels) > 0 {
		// After the joins' subscriptions, on their connection: once the
		// old gate hears this, every later publish reaches this gate.
		g.tell(e.Node, cluster.TypeHandoverReady, s.id)
	}
	close(iw.done)
}

// tell sends a hand-over signal about session to gate. TypeHandoverReady
// goes behind this gate's channel subscriptions (on their connection), so
// the old gate stops forwarding only once every later publish reaches this
// one; TypeHandoverDone goes behind the messages the old gate forwarded
// (on their connection, the one pinned to the new gate).
func (g *Gate) tell(gate string, typ cluster.Type, session string) {
	send := g.bus.Send
	if typ == cluster.TypeHandoverReady {
		send = g.bus.SendAfterSubscriptions
	}
	if err := send(g.bus.Subjects().GateControl(gate), &cluster.Envelope{Type: typ, Session: session, Node: g.cfg.ID}); err != nil {
		g.log.Warn("hand-over signal not sent", "session", session, "to", gate, "err", err)
	}
}

// onHandoverReady: the new gate has its own channel subscriptions for a
// session that left. The fan-out goroutine stops the stub's forwarding
// after the channel messages it has already queued.
func (g *Gate) onHandoverReady(session string) {
	if e, ok := g.moves.get(session); ok && e.stub != nil {
		g.chans.endForwarding(e.stub)
	}
}

// stopForwarding ends a stub's channel forwarding: it leaves its channels
// and tells the new gate that nothing more will come. Fan-out goroutine
// only, so every channel message queued before it was forwarded first.
func (g *Gate) stopForwarding(stub *Session) {
	stub.mu.Lock()
	if !stub.forwarding {
		stub.mu.Unlock()
		return
	}
	stub.forwarding = false
	chans, to := stub.stubChans, stub.movedTo
	stub.stubChans = nil
	stub.mu.Unlock()
	for _, ch := range chans {
		g.chans.leave(ch, stub)
	}
	g.tell(to, cluster.TypeHandoverDone, stub.id)
}

// releaseHeld ends a session's channel merge: the channel messages its own
// subscription delivered meanwhile follow the forwarded ones, without the
// copies already delivered.
func (s *Session) releaseHeld() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.holding {
		return
	}
	held, seen := s.held, s.seen
	s.holding, s.held, s.seen = false, nil, nil
	close(s.merged)
	queued := false
	for _, e := range held {
		if _, dup := seen[e.ID]; !dup {
			s.numberLocked(e, true)
			queued = true
		}
	}
	if queued && s.State() == StateActive && len(s.out) > 0 {
		s.startFlushLocked()
	}
}

// forwardResponse sends a response for a moved session to its new home.
func (g *Gate) forwardResponse(to, session string, seq uint32, status wire.Code, payload []byte) {
	if to == g.cfg.ID {
		if s := g.sessMap.get(session); s != nil {
			s.respond(seq, status, payload)
		}
		return
	}
	err := g.bus.Send(g.bus.Subjects().GateControl(to), &cluster.Envelope{
		Type: cluster.TypeResponse, Session: session, Seq: seq, Status: uint16(status), Payload: payload,
	})
	if err != nil {
		g.log.Warn("response not forwarded", "session", session, "to", to, "err", err)
	}
}

// forwardControl re-sends a control message for a session that moved to
// another gate, keeping its reply subject.
func (g *Gate) forwardControl(session string, m *nats.Msg) bool {
	e, ok := g.moves.get(session)
	if !ok || e.gate == "" || e.gate == g.cfg.ID {
		return false
	}
	if err := g.bus.Relay(e.gate, m.Reply, m.Data); err != nil {
		g.log.Warn("control message not forwarded", "session", session, "to", e.gate, "err", err)
	}
	return true
}

// mergedChan is closed when the session's channel merge ends; nil when it
// has none.
func (s *Session) mergedChan() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.merged
}
