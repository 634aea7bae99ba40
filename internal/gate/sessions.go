package gate

import (
	"errors"
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/wire"
)

const sessionShards = 64

// sessionMap holds the gate's active sessions by id, sharded so that
// handshakes and closes on many connections do not contend.
type sessionMap struct {
	seed   maphash.Seed
	n      atomic.Int64 // len, without taking every shard's lock
	shards [sessionShards]struct {
		mu sync.RWMutex
		m  map[string]*Session
	}
}

func (sm *sessionMap) init() {
	sm.seed = maphash.MakeSeed()
	for i := range sm.shards {
		sm.shards[i].m = make(map[string]*Session)
	}
}

func (sm *sessionMap) shard(id string) int {
	return int(maphash.String(sm.seed, id) % sessionShards)
}

func (sm *sessionMap) add(s *Session) {
	sh := &sm.shards[sm.shard(s.id)]
	sh.mu.Lock()
	if _, ok := sh.m[s.id]; !ok {
		sm.n.Add(1)
	}
	sh.m[s.id] = s
	sh.mu.Unlock()
}

func (sm *sessionMap) remove(s *Session) bool {
	sh := &sm.shards[sm.shard(s.id)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m[s.id] != s {
		return false
	}
	delete(sh.m, s.id)
	sm.n.Add(-1)
	return true
}

func (sm *sessionMap) get(id string) *Session {
	sh := &sm.shards[sm.shard(id)]
	sh.mu.RLock()
	s := sh.m[id]
	sh.mu.RUnlock()
	return s
}

func (sm *sessionMap) len() int {
	n := 0
	for i := range sm.shards {
		sh := &sm.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// each calls fn for every session, outside the shard locks.
func (sm *sessionMap) each(fn func(*Session)) {
	var batch []*Session
	for i := range sm.shards {
		sh := &sm.shards[i]
		sh.mu.RLock()
		batch = batch[:0]
		for _, s := range sh.m {
			batch = append(batch, s)
		}
		sh.mu.RUnlock()
		for _, s := range batch {
			fn(s)
		}
	}
}

// Lookup returns the session with the given id on this gate, or nil.
func (g *Gate) Lookup(id string) *Session { return g.sessMap.get(id) }

// heartbeatLoop PINGs sessions the gate has not heard from for a heartbeat
// and kicks those silent for three (KICK 7); it also ends detached
// sessions past their grace and the hand-overs that waited too long. It
// makes no bus or store call itself: what a session's end needs beyond the
// gate (session events, the OnClose hook) runs on the hook workers.
func (g *Gate) heartbeatLoop() {
	defer g.wg.Done()
	hb := g.cfg.Heartbeat
	every := min(hb/4, time.Second)
	if g.cfg.ResumeGrace > 0 {
		every = min(every, g.cfg.ResumeGrace/4)
	}
	tick := time.NewTicker(max(every, 5*time.Millisecond))
	defer tick.Stop()
	var late []*Session
	for {
		select {
		case <-g.stop:
			return
		case now := <-tick.C:
			n := now.UnixNano()
			g.sessMap.each(func(s *Session) { g.check(s, now, n) })
			g.ips.sweep(n)
			late = g.moves.sweep(n, late[:0])
			for i, stub := range late {
				g.chans.endForwarding(stub)
				late[i] = nil
			}
		}
	}
}

// check is one session's share of the heartbeat sweep.
func (g *Gate) check(s *Session, now time.Time, n int64) {
	hb := g.cfg.Heartbeat
	s.mu.Lock()
	holdOver := s.holding && n > s.holdUntil
	if len(s.early) > 0 && n > s.earlyUntil {
		s.log0().Warn("pushes ahead of a missing one waited too long; released")
		s.releaseEarlyLocked()
	}
	lost := ""
	if s.State() == StateDetached {
		switch {
		case time.Duration(n-s.detachedAt) > g.cfg.ResumeGrace:
			lost = "not resumed within the grace period"
		case s.pushes.overflowed:
			lost = "pushes missed beyond the resume buffer while disconnected"
		}
	}
	s.mu.Unlock()
	if holdOver {
		s.log0().Warn("hand-over: the old gate never finished forwarding; channel messages released")
		s.releaseHeld()
	}
	switch s.State() {
	case StateDetached:
		if lost != "" {
			s.expire(lost)
		}
		return
	case StateActive:
		s.expireWaiting(n)
		if ws := s.writeSince.Load(); ws != 0 && time.Duration(n-ws) > g.cfg.WriteTimeout {
			// The client stopped reading: a slow consumer.
			s.stalled.Store(true)
			s.closeConn()
			return
		}
	default:
		return
	}
	silent := time.Duration(n - s.lastRecv.Load())
	switch {
	case silent >= 3*hb:
		s.log0().Info("kick", "code", int(wire.CodeHeartbeatTimeout), "reason", "heartbeat timeout", "silent", silent.Round(time.Millisecond))
		s.kick(wire.CodeHeartbeatTimeout, "heartbeat timeout", true)
	case silent >= hb && time.Duration(n-s.lastPing.Load()) >= hb:
		s.lastPing.Store(n)
		s.ping(now)
	}
}

// expireWaiting answers 302 to requests a resumed session took over whose
// answer never came (their first gate died before forwarding it). Requests
// of this gate's own are answered by the pending table first.
func (s *Session) expireWaiting(now int64) {
	var late []uint32
	s.mu.Lock()
	for seq, deadline := range s.waiting {
		if now > deadline+int64(time.Second) {
			late = append(late, seq)
		}
	}
	s.mu.Unlock()
	for _, seq := range late {
		s.respondError(seq, wire.CodeTimeout, "no answer within the request timeout")
	}
}

// admit applies the gate-wide and per-IP connection limits.
func (g *Gate) admit(s *Session) (wire.Code, string) {
	if g.closing.Load() {
		return wire.CodeShuttingDown, "server shutting down"
	}
	if g.sessMap.len() >= g.cfg.MaxSessions {
		return wire.CodeOverloaded, "server full: too many sessions"
	}
	return g.ips.acquire(s.ip, time.Now().UnixNano())
}

// ipLimiter enforces the per-IP new-connection rate and concurrent
// connection cap.
type ipLimiter struct {
	rate     float64
	burst    float64
	maxConns int
	mu       sync.Mutex
	m        map[netip.Addr]*ipState
}

type ipState struct {
	conns  int
	tokens float64
	at     int64
}

func (l *ipLimiter) init(rate float64, burst, maxConns int) {
	l.rate, l.burst, l.maxConns = rate, float64(burst), maxConns
	l.m = make(map[netip.Addr]*ipState)
}

func (l *ipLimiter) acquire(ip netip.Addr, now int64) (wire.Code, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.m[ip]
	if st == nil {
		st = &ipState{tokens: l.burst, at: now}
		l.m[ip] = st
	}
	if l.maxConns > 0 && st.conns >= l.maxConns {
		return wire.CodeOverloaded, "too many connections from your address"
	}
	if l.rate > 0 {
		st.tokens = min(l.burst, st.tokens+float64(now-st.at)/1e9*l.rate)
		st.at = now
		if st.tokens < 1 {
			return wire.CodeRateLimited, "connecting too fast; retry with backoff"
		}
		st.tokens--
	}
	st.conns++
	return wire.OK, ""
}

func (l *ipLimiter) release(ip netip.Addr) {
	l.mu.Lock()
	if st := l.m[ip]; st != nil {
		st.conns--
	}
	l.mu.Unlock()
}

// sweep forgets addresses with no connection whose bucket has refilled.
func (l *ipLimiter) sweep(now int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ip, st := range l.m {
		if st.conns == 0 && (l.rate <= 0 || st.tokens+float64(now-st.at)/1e9*l.rate >= l.burst) {
			delete(l.m, ip)
		}
	}
}

// channels tracks which local sessions are members of which channels, and
// subscribes to a channel's subject only while it has a local member. One
// goroutine (run) fans every channel message out to the local members, in
// the order the bus delivered them; the channel subscriptions feed it
// through msgs, a buffer of Limits.ChannelBuffer messages. When it is full
// the bus drops messages: every member of that channel then gets a gap in
// its push sequence (Session.gap) and the drop is counted. The gap is
// numbered by run, in the channel's order: before it fans out a message it
// compares the subscription's dropped count (which the bus raises before it
// queues any later message) with what it has numbered. The bus's
// slow-consumer callback comes later, on another goroutine, often after
// later messages were delivered: numbering there put the gap after
// messages the bus sent after the drop. The callback only counts, logs and
// kicks run to number drops that no later message would reveal.
type channels struct {
	mu   sync.Mutex // guards m; changes to a channel's members hold it too
	m    map[string]*channel
	subs map[*nats.Subscription]string // → channel name; mu
	msgs chan *nats.Msg
	kick chan struct{} // cap 1: the bus reported drops; run numbers them
	g    *Gate
	done chan struct{}
	// steps of a hand-over that must follow every channel message already
	// queued, keyed by the marker message that run meets in msgs after them.
	markers sync.Map // *nats.Msg → func()
}

type channel struct {
	mu       sync.Mutex // guards list and idx against fan-out; changes also hold channels.mu
	idx      map[*Session]int
	list     []*Session
	sub      *nats.Subscription
	numbered int // drops of sub given a gap; the fan-out goroutine's
}

func (c *channels) init(buffer int) {
	c.m = make(map[string]*channel)
	c.subs = make(map[*nats.Subscription]string)
	c.msgs = make(chan *nats.Msg, buffer)
	c.kick = make(chan struct{}, 1)
	c.done = make(chan struct{})
}

func (c *channels) start(g *Gate) error {
	c.g = g
	g.bus.OnSlowConsumer(c.dropped)
	go c.run()
	return nil
}

func (c *channels) stop() {
	c.mu.Lock()
	for name, ch := range c.m {
		_ = ch.sub.Unsubscribe()
		delete(c.m, name)
	}
	c.mu.Unlock()
	close(c.done)
}

// dropped runs when the bus dropped messages of sub because the fan-out
// fell behind: it counts and logs the drop and has run number it (the
// members of that channel get a gap they can see).
func (c *channels) dropped(sub *nats.Subscription) {
	c.mu.Lock()
	name, ok := c.subs[sub]
	ch := c.m[name]
	c.mu.Unlock()
	if !ok || ch == nil {
		return
	}
	c.g.m.channelDrops.Inc()
	select {
	case c.kick <- struct{}{}:
	default: // a kick is pending: it numbers this drop too
	}
	ch.mu.Lock()
	members := len(ch.list)
	ch.mu.Unlock()
	c.g.log.Error("channel fan-out fell behind: messages dropped; members see a gap in push_seq", "channel", name, "members", members, "buffer", cap(c.msgs))
}

// numberDrops gives ch's members one gap in push_seq if the bus dropped
// messages of ch since the last time. Fan-out goroutine only.
func (c *channels) numberDrops(ch *channel) {
	n, err := ch.sub.Dropped()
	if err != nil || n <= ch.numbered {
		return
	}
	ch.numbered = n
	ch.mu.Lock()
	for _, s := range ch.list {
		s.gap()
	}
	ch.mu.Unlock()
}

// numberAllDrops is numberDrops for every channel. Fan-out goroutine only.
func (c *channels) numberAllDrops() {
	c.mu.Lock()
	all := make([]*channel, 0, len(c.m))
	for _, ch := range c.m {
		all = append(all, ch)
	}
	c.mu.Unlock()
	for _, ch := range all {
		c.numberDrops(ch)
	}
}

// endForwarding queues the end of a stub's channel forwarding behind the
// channel messages already waiting.
func (c *channels) endForwarding(stub *Session) {
	c.afterQueued(func() { c.g.stopForwarding(stub) })
}

// endHolding queues the end of a session's channel merge behind the
// channel messages already waiting: their copies of what the old gate
// forwarded are dropped, not delivered after the merge.
func (c *channels) endHolding(s *Session) {
	c.afterQueued(s.releaseHeld)
}

// afterQueued runs fn on the fan-out goroutine after the channel messages
// queued so far, without blocking the caller.
func (c *channels) afterQueued(fn func()) {
	m := new(nats.Msg)
	c.markers.Store(m, fn)
	select {
	case c.msgs <- m:
	default:
		go func() {
			select {
			case c.msgs <- m:
			case <-c.done:
			}
		}()
	}
}

// run fans channel messages out to local members; one goroutine serves
// every channel subscription.
func (c *channels) run() {
	var batch []*nats.Msg
	var held []*Session
	for {
		select {
		case <-c.done:
			return
		case <-c.kick:
			c.numberAllDrops()
		case m := <-c.msgs:
			// Take every message already waiting, queue them all, then
			// flush: a member gets the whole batch in one write.
			batch = append(batch[:0], m)
		more:
			for len(batch) < maxFanoutBatch {
				select {
				case m := <-c.msgs:
					batch = append(batch, m)
				default:
					break more
				}
			}
			held = held[:0]
			for _, m := range batch {
				if fn, ok := c.markers.LoadAndDelete(m); ok {
					fn.(func())()
					continue
				}
				held = c.fanout(m, held)
			}
			for i, s := range held {
				s.flushHeld(false)
				held[i] = nil
			}
		}
	}
}

// maxFanoutBatch bounds how many channel messages one batch takes.
const maxFanoutBatch = 64

// fanout queues one channel message to its local members, adding to held
// the sessions whose output waits for a flush.
func (c *channels) fanout(m *nats.Msg, held []*Session) []*Session {
	var e cluster.Envelope
	if err := e.Decode(m.Data); err != nil {
		c.g.log.Error("bad channel envelope", "subject", m.Subject, "err", err)
		return held
	}
	c.mu.Lock()
	ch := c.m[e.Channel]
	c.mu.Unlock()
	if ch == nil {
		return held
	}
	c.numberDrops(ch) // the bus counted every drop before it queued m
	ch.mu.Lock()
	kept := c.g.replayPayloads(len(ch.list))
	for _, s := range ch.list {
		p := pushEntry{Route: e.Route, ID: e.MsgID}
		kept.set(&p, s, s.payloadFor(&e))
		if w := s.pushFrame(p, fromChannel, true); w != nil {
			held = append(held, w)
		}
	}
	ch.mu.Unlock()
	return held
}

// join adds s to channel name, subscribing the gate to it if s is its first
// local member. The subscription is on the wire before join returns, so a
// reply sent after it reaches the bus after it.
func (c *channels) join(name string, s *Session) error {
	if err := cluster.ValidateChannel(name); err != nil {
		return err
	}
	s.mu.Lock()
	if st := s.State(); st == StateClosing || st == StateClosed || s.movedTo != "" {
		s.mu.Unlock()
		return errSessionGone
	}
	if s.channels == nil {
		s.channels = make(map[string]struct{})
	}
	s.channels[name] = struct{}{}
	s.mu.Unlock()

	c.mu.Lock()
	defer c.mu.Unlock()
	ch := c.m[name]
	if ch == nil {
		sub, err := c.g.bus.Conn().ChanSubscribe(c.g.bus.Subjects().Channel(name), c.msgs)
		if err != nil {
			c.g.log.Error("channel subscribe failed", "channel", name, "err", err)
			return err
		}
		ch = &channel{idx: map[*Session]int{}, sub: sub}
		c.m[name] = ch
		c.subs[sub] = name
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if _, ok := ch.idx[s]; ok {
		return nil
	}
	ch.idx[s] = len(ch.list)
	ch.list = append(ch.list, s)
	return nil
}

var errSessionGone = errors.New("session is closing or gone")

func (c *channels) leave(name string, s *Session) {
	s.mu.Lock()
	delete(s.channels, name)
	s.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := c.m[name]
	if ch == nil {
		return
	}
	ch.mu.Lock()
	i, ok := ch.idx[s]
	if ok {
		last := len(ch.list) - 1
		ch.list[i] = ch.list[last]
		ch.idx[ch.list[i]] = i
		ch.list[last] = nil
		ch.list = ch.list[:last]
		delete(ch.idx, s)
	}
	empty := len(ch.list) == 0
	ch.mu.Unlock()
	if empty {
		_ = ch.sub.Unsubscribe()
		delete(c.subs, ch.sub)
		delete(c.m, name)
	}
}

// replace puts nu in old's place in a channel, in one step, so that no
// publish falls between them.
func (c *channels) replace(name string, old, nu *Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := c.m[name]
	if ch == nil {
		return
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if i, ok := ch.idx[old]; ok {
		ch.list[i] = nu
		delete(ch.idx, old)
		ch.idx[nu] = i
	}
}

// Channels is the number of channels with a local member.
func (g *Gate) Channels() int {
	g.chans.mu.Lock()
	defer g.chans.mu.Unlock()
	return len(g.chans.m)
}
