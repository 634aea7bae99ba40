package gate

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/wire"
)

// pending is a request awaiting its service's answer.
type pending struct {
	s     *Session
	seq   uint32
	bound bool // routed to the node of the session's binding
	route string
	start int64
}

const pendingShards = 32

// pendingTable maps request ids to pending requests. Every request has the
// same timeout, so each shard's FIFO of ids is also in deadline order and
// expiring is a walk from its front.
type pendingTable struct {
	shards [pendingShards]pendingShard
	count  atomic.Int64
}

type pendingShard struct {
	mu   sync.Mutex
	m    map[uint64]pending
	fifo []expiry
	head int
	_    [40]byte // keep shards on separate cache lines
}

type expiry struct {
	id       uint64
	deadline int64
}

func (t *pendingTable) init() {
	for i := range t.shards {
		t.shards[i].m = make(map[uint64]pending)
	}
}

func (t *pendingTable) put(id uint64, p pending, deadline int64) {
	sh := &t.shards[id%pendingShards]
	sh.mu.Lock()
	sh.m[id] = p
	sh.fifo = append(sh.fifo, expiry{id, deadline})
	sh.mu.Unlock()
	t.count.Add(1)
}

func (t *pendingTable) take(id uint64) (pending, bool) {
	sh := &t.shards[id%pendingShards]
	sh.mu.Lock()
	p, ok := sh.m[id]
	if ok {
		delete(sh.m, id)
	}
	sh.mu.Unlock()
	if ok {
		t.count.Add(-1)
	}
	return p, ok
}

// expire removes and returns the requests whose deadline is before now.
func (t *pendingTable) expire(now int64, out []pending) []pending {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for sh.head < len(sh.fifo) && sh.fifo[sh.head].deadline <= now {
			id := sh.fifo[sh.head].id
			sh.head++
			if p, ok := sh.m[id]; ok {
				delete(sh.m, id)
				t.count.Add(-1)
				out = append(out, p)
			}
		}
		// Compact once the consumed front dominates.
		if sh.head > 1024 && sh.head*2 > len(sh.fifo) {
			n := copy(sh.fifo, sh.fifo[sh.head:])
			sh.fifo = sh.fifo[:n]
			sh.head = 0
		}
		sh.mu.Unlock()
	}
	return out
}

// timeoutLoop answers requests their service did not answer in time with 302.
func (g *Gate) timeoutLoop() {
	defer g.wg.Done()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var expired []pending
	for {
		select {
		case <-g.stop:
			return
		case now := <-tick.C:
			expired = g.pending.expire(now.UnixNano(), expired[:0])
			for _, p := range expired {
				p.s.inflight.Add(-1)
				svc, _ := wire.SplitRoute(p.route)
				p.s.respondError(p.seq, wire.CodeTimeout, "service "+svc+" did not answer within "+g.cfg.RequestTimeout.String())
				g.m.observe(p.route, wire.CodeTimeout, time.Duration(now.UnixNano()-p.start))
			}
			if len(expired) > 0 {
				g.log.Warn("requests timed out", "count", len(expired), "first_route", expired[0].route)
			}
			clear(expired)
		}
	}
}

// handleRequest forwards a REQUEST or NOTIFY to its service.
func (s *Session) handleRequest(f *wire.Frame) error {
	g := s.g
	isReq := f.Kind == wire.KindRequest
	var route string
	if f.HasRouteID() {
		name, ok := s.routes.name(f.RouteID)
		if !ok {
			if !isReq {
				return &wire.Error{Code: wire.CodeBadRoute, Message: "unknown route id " + strconv.Itoa(int(f.RouteID))}
			}
			s.respondError(f.Seq, wire.CodeUnknownRoute, "unknown route id "+strconv.Itoa(int(f.RouteID)))
			return nil
		}
		route = name
	} else if id, ok := s.routes.byName[string(f.Route)]; ok {
		route = s.routes.byID[id] // interned: no allocation
	} else {
		route = string(f.Route)
		if !isReq && g.cfg.Routes != nil {
			if _, known := g.routes.Load().byName[route]; !known {
				// Nothing can answer a NOTIFY: an unknown route is fatal.
				return &wire.Error{Code: wire.CodeBadRoute, Message: "unknown route " + quoteTrunc(route)}
			}
		}
	}
	now := time.Now().UnixNano()
	if !s.allowRequest(now) {
		s.warnOnce(now, "request rate limited", "code", int(wire.CodeRateLimited), "route", route)
		if isReq {
			s.respondError(f.Seq, wire.CodeRateLimited, "rate limited: too many requests")
		}
		return nil
	}
	if g.cfg.Public != nil && !g.cfg.Public(route) && s.User() == "" {
		s.warnOnce(now, "unauthenticated call", "code", int(wire.CodeUnauthenticated), "route", route)
		if isReq {
			s.respondError(f.Seq, wire.CodeUnauthenticated, "log in first: "+route+" needs an authenticated session")
		}
		return nil
	}
	svc, _ := wire.SplitRoute(route)
	if isReq && int(s.inflight.Load()) >= g.cfg.MaxInFlight {
		s.warnOnce(now, "too many requests in flight", "code", int(wire.CodeTooManyInFlight), "route", route)
		s.respondError(f.Seq, wire.CodeTooManyInFlight, "too many requests in flight; wait for responses")
		return nil
	}

	s.mu.Lock()
	if isReq && g.cfg.ResumeGrace > 0 {
		// A request re-sent after a resume: answer it from the cache, or
		// let the first execution's answer come — never run it twice.
		r, cached := s.resps.take(f.Seq)
		crossed, reused := false, false
		if cached {
			crossed = r.Prev && r.Sent // its answer is on this connection already
			reused = !r.Prev           // asked and answered on this connection
		}
		_, waiting := s.waiting[f.Seq]
		gone := cached && r.Gone || !cached && !waiting && f.Seq <= s.resps.forgotten
		s.mu.Unlock()
		switch {
		case crossed:
			return nil
		case reused:
			s.warnOnce(now, "request seq reused", "code", int(wire.CodeInvalidPayload), "seq", f.Seq)
			g.m.requestError(wire.CodeInvalidPayload)
			s.writeResponse(f.Seq, wire.CodeInvalidPayload, []byte("seq "+strconv.FormatUint(uint64(f.Seq), 10)+" was already used on this connection; every request needs a new seq"))
			return nil
		case gone:
			msg := "request " + strconv.FormatUint(uint64(f.Seq), 10) + " already ran and its response is no longer kept; use a new seq"
			s.warnOnce(now, "re-sent request: response gone", "code", int(wire.CodeResponseGone), "seq", f.Seq)
			g.m.requestError(wire.CodeResponseGone)
			s.writeResponse(f.Seq, wire.CodeResponseGone, []byte(msg))
			return nil
		case cached:
			s.writeResponse(r.Seq, r.Status, r.Payload)
			return nil
		case waiting:
			return nil
		}
		s.mu.Lock()
	}
	// Reused: Local and the bus copy what they keep of it before they
	// return (it was a tenth of a busy gate's garbage).
	env := g.envs.Get()
	defer g.envs.Put(env)
	*env = cluster.Envelope{
		Type:     cluster.TypeRequest,
		Codec:    s.codec,
		Seq:      f.Seq,
		Deadline: now + int64(g.cfg.RequestTimeout),
		Gate:     g.cfg.ID,
		Session:  s.id,
		User:     s.user,
		Route:    route,
		Addr:     s.addr,
		Bindings: s.bindings,
		Payload:  f.Payload,
	}
	if isReq {
		if s.waiting == nil {
			s.waiting = make(map[uint32]int64)
		}
		s.waiting[f.Seq] = env.Deadline
	}
	s.mu.Unlock()
	var traceBuf [16]byte
	env.Trace = string(g.traceID(traceBuf[:0]))

	if !isReq {
		if g.cfg.Local != nil && g.cfg.Local(svc, 0, env) {
			return nil
		}
		if err := g.bus.Forward(svc, "", env); err != nil {
			s.warnOnce(now, "notify not forwarded", "route", route, "err", err)
		}
		return nil
	}
	if node, bound := env.Binding(svc); bound && g.cfg.NodeAlive != nil && !g.cfg.NodeAlive(node) {
		// The registry says the bound node left: fail now rather than
		// wait for the bus to notice.
		s.bind(svc, "")
		s.log0().Warn("bound node gone; binding dropped", "service", svc, "node", node)
		s.respondError(f.Seq, wire.CodeUnavailable, "node "+node+" serving your "+svc+" is gone; binding dropped")
		return nil
	}
	id := g.nextID()
	var replyBuf [96]byte
	reply := string(cluster.AppendReplyID(append(replyBuf[:0], g.replyPrefix...), id))
	s.inflight.Add(1)
	_, bound := env.Binding(svc)
	g.pending.put(id, pending{s: s, seq: f.Seq, bound: bound, route: route, start: now}, env.Deadline)
	if g.cfg.Local != nil && g.cfg.Local(svc, id, env) {
		return nil
	}
	// Timed from here, not from the frame's arrival: on a busy machine
	// the wait to be scheduled is not the bus's doing.
	sent := time.Now().UnixNano()
	err := g.bus.Forward(svc, reply, env)
	g.forwarded(sent, route)
	if err != nil {
		if p, ok := g.pending.take(id); ok {
			p.s.inflight.Add(-1)
			s.log0().Warn("request not forwarded", "route", route, "err", err)
			s.respondError(f.Seq, wire.CodeUnavailable, "bus unavailable: "+err.Error())
		}
	}
	return nil
}

func (g *Gate) nextID() uint64 { return g.ids.Add(1) }

// slowForward is how long handing a request to the bus may take before the
// gate says so. A publish blocks when the NATS connection's buffer is full
// and the server does not read it (a NATS server starved of CPU, or
// holding this gate back for a slow subscriber): the session's connection
// goroutine then reads nothing more, and its client's next requests wait
// unanswered — not even the 302 comes, since the gate has not read them.
const slowForward = 500 * time.Millisecond

// forwarded logs, at most once a second for the gate, a request whose
// forward to the bus took past slowForward since start (unix ns).
func (g *Gate) forwarded(start int64, route string) {
	now := time.Now().UnixNano()
	took := time.Duration(now - start)
	if took < slowForward {
		return
	}
	g.m.slowForward()
	if last := g.slowBus.Load(); now-last >= int64(time.Second) && g.slowBus.CompareAndSwap(last, now) {
		g.log.Warn("bus publish blocked: the NATS server is not reading this gate's connection fast enough", "route", route, "took", took.Round(time.Millisecond))
	}
}

// onGateMsg handles everything addressed to this gate: replies to its
// requests, hand-overs and control messages for its sessions. It runs on the
// gate's bus goroutine, the owner of the gate's routing state: which
// session holds an id (sessMap), which moved where (moves), and of its
// busBatch.
//
// Responses and pushes are queued without being written while more
// messages wait in the subscription: a move's answer and the push it
// caused, which arrive together, leave in one write.
func (g *Gate) onGateMsg(m *nats.Msg) {
	g.busMu.Lock()
	defer g.busMu.Unlock()
	g.gateMsg(m)
	g.batch.msgs++
	if n, _, err := m.Sub.Pending(); err != nil || n <= 1 || g.batch.msgs >= maxBusBatch {
		g.batch.release()
	}
}

// gateMsg handles one message for this gate (onGateMsg, localLoop). It
// reports whether nothing refers to m.Data any more: a push's payloads
// and an answer's are copied (into the sessions' output, replay and
// response buffers, or encoded anew to forward them), so its buffer may
// be reused; anything else may keep parts of it (a hand-over's import).
func (g *Gate) gateMsg(m *nats.Msg) (done bool) {
	if id, ok := cluster.ParseReplyID(m.Subject, g.replyPrefix); ok {
		g.onReply(id, m)
		return true
	}
	if m.Subject == g.resumeSubject {
		g.onResumeReq(m)
		return false
	}
	var e cluster.Envelope
	if err := e.Decode(m.Data); err != nil {
		g.log.Error("bad envelope on gate subject", "subject", m.Subject, "err", err)
		return true
	}
	switch e.Type {
	case cluster.TypeImport:
		g.onImport(&e)
		return false
	case cluster.TypeHandoverReady:
		g.onHandoverReady(e.Session)
		return false
	case cluster.TypeHandoverDone:
		if s := g.sessMap.get(e.Session); s != nil {
			g.chans.endHolding(s)
		}
		return false
	case cluster.TypePush, cluster.TypePushEach:
		g.onPush(&e, &g.batch)
		return true
	}
	s := g.sessMap.get(e.Session)
	if s == nil {
		if !g.forwardControl(e.Session, m) && m.Reply != "" {
			_ = g.bus.Respond(m, []byte("no session "+e.Session+" on gate "+g.cfg.ID))
		}
		return false
	}
	switch e.Type {
	case cluster.TypeResponse:
		// A response to a request the session made before it moved here.
		s.respond(e.Seq, wire.Code(e.Status), e.Payload)
		return true
	case cluster.TypeKick:
		s.log0().Info("kick", "code", int(e.Status), "reason", e.Reason, "by", "service")
		s.kick(wire.Code(e.Status), e.Reason, false)
	case cluster.TypeBind:
		s.bind(e.Route, e.Node)
	case cluster.TypeJoin:
		err := g.chans.join(e.Channel, s)
		if m.Reply != "" {
			var answer []byte
			if err != nil {
				answer = []byte(err.Error())
			}
			_ = g.bus.Respond(m, answer)
		}
	case cluster.TypeLeave:
		g.chans.leave(e.Channel, s)
	case cluster.TypeSetUser:
		s.mu.Lock()
		s.user = e.User
		s.mu.Unlock()
		g.publishEvent(s, cluster.EventUser)
	default:
		g.log.Error("unexpected envelope on gate subject", "type", int(e.Type))
	}
	return false
}

// onPush delivers a push to the listed sessions, and forwards it for those
// that moved to another gate, keeping each one's origin count: one bus
// message per gate.
//
// With a batch, what it queues is written when the batch is released.
func (g *Gate) onPush(e *cluster.Envelope, b *busBatch) {
	ids := e.Sessions
	if len(ids) == 0 {
		ids = []string{e.Session}
	}
	var each [][]byte // TypePushEach: ids[i]'s own payload
	if e.Type == cluster.TypePushEach {
		var err error
		if each, err = cluster.SplitPayloads(e.Payload, len(e.Sessions)); err != nil {
			g.log.Error("bad push-each envelope", "route", e.Route, "sessions", len(e.Sessions), "err", err)
			return
		}
	}
	counted := len(e.Counts) == len(ids) && e.Origin != ""
	src := fromService
	if e.MsgID != "" {
		src = fromStub // a channel message that a session's old gate forwarded
	}
	var moved map[string]*cluster.Envelope // new gate → what to forward there
	var movedEach map[string][][]byte      // its payloads, for TypePushEach
	kept := g.replayPayloads(len(ids))
	for i, id := range ids {
		p := pushEntry{Route: e.Route, ID: e.MsgID}
		if counted {
			p.Origin, p.Count = e.Origin, e.Counts[i]
		}
		if s := g.sessMap.get(id); s != nil {
			if each != nil {
				p.Payload = each[i] // the ring copies it (pushEntry)
			} else {
				kept.set(&p, s, s.payloadFor(e))
			}
			if w := s.pushFrame(p, src, b != nil); w != nil {
				b.held = append(b.held, w)
			}
			if b != nil && e.Sent != 0 && s.State() == StateActive {
				b.sent = append(b.sent, e.Sent)
			}
		} else if mv, ok := g.moves.get(id); ok && mv.gate != "" && mv.gate != g.cfg.ID {
			if moved == nil {
				moved, movedEach = map[string]*cluster.Envelope{}, map[string][][]byte{}
			}
			f := moved[mv.gate]
			if f == nil {
				f = &cluster.Envelope{Type: e.Type, Route: e.Route, Payload: e.Payload, JSON: e.JSON, MsgID: e.MsgID, Origin: e.Origin, Sent: e.Sent}
				moved[mv.gate] = f
			}
			f.Sessions = append(f.Sessions, id)
			if counted {
				f.Counts = append(f.Counts, p.Count)
			}
			if each != nil {
				movedEach[mv.gate] = append(movedEach[mv.gate], each[i])
			}
		}
	}
	for to, f := range moved {
		if each != nil {
			f.Payload = cluster.AppendPayloads(nil, movedEach[to])
		}
		if err := g.bus.ForwardPush(to, f); err != nil {
			g.log.Warn("push not forwarded", "to", to, "err", err)
		}
	}
}

func (g *Gate) onReply(id uint64, m *nats.Msg) {
	p, ok := g.pending.take(id)
	if !ok {
		return // answered after its timeout; the client already has 302
	}
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		p.s.inflight.Add(-1)
		svc, _ := wire.SplitRoute(p.route)
		if p.bound {
			// The node this session was bound to is gone: drop the binding
			// rather than silently send the session's state elsewhere.
			p.s.mu.Lock()
			node, _ := bindingOf(p.s.bindings, svc)
			p.s.mu.Unlock()
			p.s.bind(svc, "")
			p.s.log0().Warn("bound node gone; binding dropped", "service", svc, "node", node)
			p.s.respondError(p.seq, wire.CodeUnavailable, "node "+node+" serving your "+svc+" is gone; binding dropped")
		} else {
			p.s.respondError(p.seq, wire.CodeUnavailable, "no instance of service "+svc+" is running")
		}
		g.m.observe(p.route, wire.CodeUnavailable, time.Duration(time.Now().UnixNano()-p.start))
		return
	}
	var e cluster.Envelope
	if err := e.Decode(m.Data); err != nil || e.Type != cluster.TypeResponse {
		p.s.inflight.Add(-1)
		g.log.Error("bad response envelope", "route", p.route, "err", err)
		p.s.respondError(p.seq, wire.CodeInternal, "internal error")
		return
	}
	g.complete(p, wire.Code(e.Status), e.Payload, &g.batch)
}

// complete delivers a service's response to the request's session; with a
// batch, written when the batch is released.
func (g *Gate) complete(p pending, status wire.Code, payload []byte, b *busBatch) {
	p.s.inflight.Add(-1)
	now := time.Now().UnixNano()
	if now-p.start >= int64(g.cfg.RequestTimeout) {
		// Past the deadline, before timeoutLoop's next sweep: the service
		// (whose context ended at this same deadline) answered too late.
		svc, _ := wire.SplitRoute(p.route)
		p.s.respondError(p.seq, wire.CodeTimeout, "service "+svc+" did not answer within "+g.cfg.RequestTimeout.String())
		g.m.observe(p.route, wire.CodeTimeout, time.Duration(now-p.start))
		return
	}
	if status != wire.OK {
		g.m.requestError(status)
	}
	if p.s.answer(p.seq, status, payload, b != nil) {
		b.held = append(b.held, p.s)
	}
	g.m.observe(p.route, status, time.Duration(now-p.start))
}

func bindingOf(bs []cluster.Binding, service string) (string, bool) {
	for _, b := range bs {
		if b.Service == service {
			return b.Node, true
		}
	}
	return "", false
}

// bind sets or clears the node serving service for this session.
func (s *Session) bind(service, node string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make([]cluster.Binding, 0, len(s.bindings)+1)
	for _, b := range s.bindings {
		if b.Service != service {
			next = append(next, b)
		}
	}
	if node != "" {
		next = append(next, cluster.Binding{Service: service, Node: node})
	}
	s.bindings = next
}

// publishEvent announces a session life event on the events subject.
func (g *Gate) publishEvent(s *Session, kind cluster.EventKind) {
	s.mu.Lock()
	user := s.user
	s.mu.Unlock()
	// Node: for a resume, the gate the session came from.
	err := g.bus.Send(g.bus.Subjects().Events(), &cluster.Envelope{
		Type: cluster.TypeEvent, Status: uint16(kind), Gate: g.cfg.ID, Session: s.id, User: user, Addr: s.addr, Node: s.from,
	})
	if err != nil && !g.closing.Load() {
		g.log.Warn("session event not published", "session", s.id, "event", kind.String(), "err", err)
	}
}

// onBroadcast pushes a broadcast to every local session.
func (g *Gate) onBroadcast(m *nats.Msg) {
	var e cluster.Envelope
	if err := e.Decode(m.Data); err != nil {
		g.log.Error("bad broadcast envelope", "err", err)
		return
	}
	kept := g.replayPayloads(0)
	g.sessMap.each(func(s *Session) {
		p := pushEntry{Route: e.Route}
		kept.set(&p, s, s.payloadFor(&e))
		s.pushFrame(p, fromService, false)
	})
}
