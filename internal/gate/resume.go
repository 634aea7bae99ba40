package gate

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/wire"
)

// Sessions survive their connection. A session whose connection drops (or
// that is kicked with 7 or 303) is detached: it stays in the gate for the
// resume grace, its pushes kept in order in a bounded buffer and its
// responses in a cache by seq. A client that reconnects — to this gate or
// any other — with the session's resume token gets it back: the gate that
// holds it exports its state over the bus (serialized with everything else
// that gate does for the session, on its bus goroutine), the new gate
// imports it, replays the pushes the client missed, and re-sent requests
// are answered from the cache instead of running twice. The old gate keeps
// a forwarding stub for the grace period, so responses to requests still
// in flight and pushes addressed to it reach the session's new home.

// pushEntry is one push kept for replay. payload is shared with other
// sessions of a fan-out, never copied.
type pushEntry struct {
	Seq     uint64 `json:"seq"`
	Route   string `json:"route"`
	Payload []byte `json:"payload"`
	// ID of a channel message: the new gate of a moved session drops a
	// copy of it that its own subscription delivers late.
	ID string `json:"id,omitempty"`
}

// respEntry is one cached response.
type respEntry struct {
	Seq     uint32    `json:"seq"`
	Status  wire.Code `json:"status"`
	Payload []byte    `json:"payload"`
}

// pushRing keeps the most recent pushes of a session, bounded by count and
// bytes.
type pushRing struct {
	items []pushEntry
	bytes int
}

// add appends e. When full, a connected session drops its oldest entries
// (the client has most likely read them); a detached one reports overflow,
// since dropping would lose a push the client never saw.
func (r *pushRing) add(e pushEntry, maxItems, maxBytes int, detached bool) (overflow bool) {
	size := len(e.Route) + len(e.Payload) + 16
	for len(r.items) > 0 && (len(r.items)+1 > maxItems || r.bytes+size > maxBytes) {
		if detached {
			return true
		}
		r.bytes -= len(r.items[0].Route) + len(r.items[0].Payload) + 16
		r.items[0] = pushEntry{}
		r.items = r.items[1:]
	}
	if size > maxBytes && detached {
		return true
	}
	r.items = append(r.items, e)
	r.bytes += size
	return false
}

// after returns the entries with Seq > last, or false when some of those
// are no longer kept.
func (r *pushRing) after(last, current uint64) ([]pushEntry, bool) {
	if last == current {
		return nil, true
	}
	if last > current || len(r.items) == 0 || r.items[0].Seq > last+1 {
		return nil, false
	}
	i := int(last + 1 - r.items[0].Seq)
	return append([]pushEntry(nil), r.items[i:]...), true
}

// respCache keeps the last responses of a session by seq.
type respCache struct {
	items []respEntry
	next  int
}

func (c *respCache) add(e respEntry, max int) {
	if len(c.items) < max {
		c.items = append(c.items, e)
		return
	}
	c.items[c.next] = e
	c.next = (c.next + 1) % max
}

func (c *respCache) get(seq uint32) (respEntry, bool) {
	for i := range c.items {
		if c.items[i].Seq == seq {
			return c.items[i], true
		}
	}
	return respEntry{}, false
}

// sessionState is what moves from one gate to another on resume.
type sessionState struct {
	Session  string            `json:"session"`
	User     string            `json:"user,omitempty"`
	Codec    cluster.Codec     `json:"codec"`
	Bindings []cluster.Binding `json:"bindings,omitempty"`
	Channels []string          `json:"channels,omitempty"`
	PushSeq  uint64            `json:"push_seq"`
	Pushes   []pushEntry       `json:"pushes,omitempty"`
	Resps    []respEntry       `json:"resps,omitempty"`
	Waiting  []uint32          `json:"waiting,omitempty"`
}

// resumeReq asks the gate holding a session to hand it over.
type resumeReq struct {
	Session  string `json:"session"`
	Secret   string `json:"secret"`
	LastPush uint64 `json:"last_push"`
	Codec    uint8  `json:"codec"`
	To       string `json:"to"`
	Local    string `json:"local,omitempty"` // same-gate: the new connection's key
}

type resumeResp struct {
	State *sessionState `json:"state,omitempty"`
	Code  wire.Code     `json:"code,omitempty"`
	Error string        `json:"error,omitempty"`
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
	if len(parts) != 3 || cluster.ValidateNodeID(parts[0]) != nil || parts[1] == "" || len(parts[2]) != 22 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// channelHandover is how long a session's old gate forwards its channel
// messages after a hand-over, and its new gate drops repeated ones.
const channelHandover = 3 * time.Second

// moves is a gate's forwarding table: sessions that moved to another gate
// (or were replaced on this one), kept for the resume grace.
type moves struct {
	mu sync.Mutex
	m  map[string]movedTo
}

type movedTo struct {
	gate  string
	until int64
}

func (mv *moves) set(id, gate string, until int64) {
	mv.mu.Lock()
	if mv.m == nil {
		mv.m = map[string]movedTo{}
	}
	mv.m[id] = movedTo{gate, until}
	mv.mu.Unlock()
}

func (mv *moves) get(id string) (string, bool) {
	mv.mu.Lock()
	defer mv.mu.Unlock()
	t, ok := mv.m[id]
	return t.gate, ok
}

func (mv *moves) sweep(now int64) {
	mv.mu.Lock()
	defer mv.mu.Unlock()
	for id, t := range mv.m {
		if now > t.until {
			delete(mv.m, id)
		}
	}
}

// onResumeReq answers another gate's (or this gate's own) request to hand
// over a session. It runs on the gate's bus goroutine, so no push, reply or
// control message for the session can interleave with the hand-over.
func (g *Gate) onResumeReq(m *nats.Msg) {
	var req resumeReq
	var resp resumeResp
	if err := json.Unmarshal(m.Data, &req); err != nil {
		resp.Code, resp.Error = wire.CodeSessionLost, "bad resume request"
	} else if st, werr := g.export(&req); werr != nil {
		resp.Code, resp.Error = werr.Code, werr.Message
	} else {
		resp.State = st
	}
	b, _ := json.Marshal(&resp)
	_ = m.Respond(b)
}

// export detaches session req.Session from this gate and returns its state.
func (g *Gate) export(req *resumeReq) (*sessionState, *wire.Error) {
	old := g.sessMap.get(req.Session)
	if old == nil {
		if _, moved := g.moves.get(req.Session); moved {
			return nil, errSessionLost("already resumed on another connection")
		}
		return nil, errSessionLost("unknown or expired session")
	}
	sum := sha256.Sum256([]byte(req.Secret))
	old.mu.Lock()
	if old.State() == StateDetached && time.Duration(time.Now().UnixNano()-old.detachedAt) > g.cfg.ResumeGrace {
		old.mu.Unlock()
		return nil, errSessionLost("not resumed within the grace period")
	}
	if subtle.ConstantTimeCompare(sum[:], old.secretHash[:]) != 1 {
		old.mu.Unlock()
		g.log.Warn("resume refused: bad token", "session", req.Session, "to", req.To)
		return nil, errSessionLost("invalid resume token")
	}
	if cluster.Codec(req.Codec) != old.codec {
		old.mu.Unlock()
		return nil, errSessionLost("resume with the codec the session was opened with")
	}
	pushes, ok := old.pushes.after(req.LastPush, old.pushSeq)
	if !ok {
		old.mu.Unlock()
		g.log.Warn("resume refused: pushes no longer kept", "session", req.Session, "last_push", req.LastPush, "push_seq", old.pushSeq)
		// The session cannot be made whole anywhere: end it.
		go old.expire("pushes missed beyond the resume buffer")
		return nil, errSessionLost("pushes missed beyond what the server kept")
	}
	// The whole ring goes, not only what the client missed: the new gate
	// replays from last_push, and learns every recent channel message id.
	st := &sessionState{
		Session: old.id, User: old.user, Codec: old.codec, Bindings: old.bindings,
		PushSeq: old.pushSeq, Pushes: append([]pushEntry(nil), old.pushes.items...), Resps: append([]respEntry(nil), old.resps.items...),
	}
	for ch := range old.channels {
		st.Channels = append(st.Channels, ch)
	}
	for seq := range old.waiting {
		st.Waiting = append(st.Waiting, seq)
	}
	wasAttached := old.State() == StateActive
	old.movedTo = req.To
	old.channels = nil
	old.state.Store(uint32(StateClosing))
	old.mu.Unlock()

	g.moves.set(old.id, req.To, time.Now().Add(g.cfg.ResumeGrace).UnixNano())
	if req.Local != "" {
		// Same gate: install the new connection's session in the same step,
		// so nothing addressed to the session falls between the two.
		if v, ok := g.importing.LoadAndDelete(req.Local); ok {
			nu := v.(*Session)
			nu.importState(st)
			g.sessMap.add(nu)
			for _, ch := range st.Channels {
				g.chans.replace(ch, old, nu)
			}
		}
	} else {
		g.sessMap.remove(old)
		// The new gate joins the channels once it has the state; until a
		// moment after, the stub stays a member and forwards (pushFrame).
		old.mu.Lock()
		old.forwardUntil = time.Now().Add(channelHandover).UnixNano()
		old.mu.Unlock()
		channels := st.Channels
		time.AfterFunc(channelHandover, func() {
			for _, ch := range channels {
				g.chans.leave(ch, old)
			}
		})
	}
	if wasAttached {
		g.m.sessionClosed(old.transport())
	} else {
		g.m.detached.Dec()
	}
	old.closeConn()
	g.log.Info("session handed over", "session", old.id, "to", req.To, "pushes", len(pushes), "waiting", len(st.Waiting))
	return st, nil
}

// requestExport asks the gate named in the token for the session, over the
// bus. A gate that is gone answers nobody: the session is lost, at once.
func (g *Gate) requestExport(gate string, req *resumeReq) (*sessionState, *wire.Error) {
	b, _ := json.Marshal(req)
	msg, err := g.bus.Conn().Request(g.bus.Subjects().GateResume(gate), b, 5*time.Second)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, errSessionLost("gate " + gate + " holding the session is gone")
	case err != nil:
		return nil, errSessionLost("gate " + gate + " did not answer: " + err.Error())
	}
	var resp resumeResp
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, errSessionLost("bad answer from gate " + gate)
	}
	if resp.State == nil {
		return nil, &wire.Error{Code: wire.CodeSessionLost, Message: resp.Error}
	}
	return resp.State, nil
}

// importState takes over a session's state; s is the new connection's
// session, still handshaking, so nothing is written to it yet.
func (s *Session) importState(st *sessionState) {
	g := s.g
	s.mu.Lock()
	defer s.mu.Unlock()
	s.id, s.user, s.codec, s.bindings = st.Session, st.User, st.Codec, st.Bindings
	early := s.pushes.items // forwarded to this gate before the state arrived: not numbered yet
	s.pushes = pushRing{}
	s.pushSeq = st.PushSeq
	for _, e := range st.Pushes {
		s.pushes.add(e, g.cfg.ResumePushes, g.cfg.ResumeBytes, false)
		if e.ID != "" {
			if s.seen == nil {
				s.seen = map[string]struct{}{}
			}
			s.seen[e.ID] = struct{}{}
		}
	}
	for _, e := range early {
		s.pushSeq++
		e.Seq = s.pushSeq
		s.pushes.add(e, g.cfg.ResumePushes, g.cfg.ResumeBytes, false)
	}
	cached := map[uint32]bool{}
	for _, r := range s.resps.items { // responses forwarded early
		cached[r.Seq] = true
	}
	for _, r := range st.Resps {
		if !cached[r.Seq] {
			s.resps.add(r, g.cfg.ResponseCache)
		}
	}
	for _, r := range s.resps.items {
		cached[r.Seq] = true
	}
	deadline := time.Now().Add(g.cfg.RequestTimeout).UnixNano()
	for _, seq := range st.Waiting {
		if !cached[seq] {
			if s.waiting == nil {
				s.waiting = map[uint32]int64{}
			}
			s.waiting[seq] = deadline
		}
	}
	if len(st.Channels) > 0 {
		s.channels = make(map[string]struct{}, len(st.Channels))
		for _, ch := range st.Channels {
			s.channels[ch] = struct{}{}
		}
	}
	s.imported = true
}

// forwardResponse sends a response for a moved session to its new gate.
func (g *Gate) forwardResponse(to, session string, seq uint32, status wire.Code, payload []byte) {
	if to == g.cfg.ID {
		if s := g.sessMap.get(session); s != nil && s.movedTo == "" {
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

// forwardControl re-sends a control message for a session that moved.
func (g *Gate) forwardControl(session string, data []byte) bool {
	to, ok := g.moves.get(session)
	if !ok || to == g.cfg.ID {
		return false
	}
	if err := g.bus.Conn().Publish(g.bus.Subjects().GateControl(to), data); err != nil {
		g.log.Warn("control message not forwarded", "session", session, "to", to, "err", err)
	}
	return true
}
