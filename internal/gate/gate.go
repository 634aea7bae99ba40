// Package gate is hearth's client front door: TCP and WebSocket listeners
// (TLS optional on both), sessions and their state machine, heartbeats, flow
// control and per-IP and per-session limits. It forwards every request over
// the cluster bus to the services and carries responses, pushes and channel
// broadcasts back, fanning each bus message out to its local sessions.
//
// A gate never decodes payloads and runs no game logic.
//
// # Who owns what
//
// Goroutines of a gate:
//   - a connection goroutine per session: reads frames, runs the handshake
//     (including a resume's wait for its state), forwards requests. It
//     serves one session, so it may block on the bus (a resume) or a hook.
//     A parked plain-TCP session has none: the poller's goroutine wakes
//     it, and one of at most Limits.Readers runners reads it (readQueue,
//     whose queue is under its mutex), until it parks or blocks.
//   - a flush goroutine per session, only while it has output to write.
//   - the bus goroutine: replies, pushes, control messages and hand-overs
//     for this gate's sessions. It is whichever goroutine holds
//     Gate.busMu: the bus subscription's (onGateMsg), for what comes over
//     NATS, and for what this node's own services hand the gate in-process
//     (inbox.go), the node task that sent it (HandleInbox, called when a
//     room's turn or a handler ends) or else localLoop. It owns routing
//     state: which session holds an id (sessMap writes after the
//     handshake), which moved where (moves), and installing a session
//     handed over from another gate. Its writes of a large batch are
//     shared with helpers on Config.Go (busBatch.release).
//   - the broadcast goroutine (onBroadcast) and the fan-out goroutine
//     (channels.run), which serves every channel; the heartbeat sweep and
//     the timeout sweep.
//   - hook workers, which run Config.OnClose (it may wait on a store or the
//     bus). No goroutine that serves many sessions — bus, fan-out, sweeps,
//     Shutdown — makes a bus request or store call of its own.
//
// Session fields (see Session): a few are fixed before the session is
// shared and never written after (id, codec, conn, …); the connection
// goroutine alone uses its read state; every other field is guarded by
// Session.mu, and the state atomic is only written under it. Lock order:
// channels.mu → channel.mu → Session.mu; a stub's mu → its successor's mu
// (a same-gate resume). Functions named …Locked expect Session.mu held.
// Tables have their own locks: sessionMap shards, pendingTable shards,
// ipLimiter.mu, moves.mu, waiters.mu; none is held while a Session.mu is
// taken, except moves.mu around the sweep's look at a stub. The route
// dictionary is replaced under routesMu (RefreshRoutes, from the node's
// registry goroutines) and read without a lock; a session keeps the one it
// was given.
package gate

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/wire"
)

// Config tunes a gate. Every zero value means the documented default.
type Config struct {
	// ID is this gate's node id; it names the gate's bus subjects. Required.
	ID string
	// TCPAddr and WSAddr are the listen addresses; empty disables that listener.
	TCPAddr string
	WSAddr  string
	// TLS, when set, wraps both listeners.
	TLS *tls.Config
	// Routes lists the route names of the handshake-ack dictionary; ids are
	// assigned in sorted order from 1. Nil: an empty dictionary.
	Routes func() []string
	// Public reports whether a route may be called by a session not bound to
	// a user. Nil: every route is public.
	Public func(route string) bool

	// Limits are the timeouts and flow-control limits.
	Limits

	// OnResume, when set, is called for every resumed session (on the gate
	// that resumed it), with its user and codec, on the session's
	// connection goroutine.
	OnResume func(session, user, codec string)

	// Local, when set, may run a request on the gate's own node instead of
	// sending it over the bus; it reports whether it took it. The answer
	// still comes to the reply subject of request id (0: a NOTIFY). It must
	// copy what it keeps of env: env is only valid during the call (the
	// gate reuses it).
	Local func(service string, id uint64, env *cluster.Envelope) bool

	// NodeAlive, when set, is asked before a request is routed to the node
	// a session is bound to; false fails it with 301 and drops the binding.
	// Nil: only the bus's no-responders answer drops bindings.
	NodeAlive func(node string) bool

	// OnClose, when set, is called once for every session that closes after
	// its handshake, with the user it was bound to (or ""). It runs on one
	// of the gate's hook workers, never on a goroutine that serves other
	// sessions, so it may make bus or store calls.
	OnClose func(session, user string)

	// Logger receives the gate's logs. Nil: slog.Default().
	Logger *slog.Logger
	// Metrics records the gate's Prometheus metrics. Nil: none are recorded.
	Metrics *Metrics
	// Go runs fn on a goroutine. The gate starts many short ones with it,
	// thousands a second on a busy gate: the reader of a parked session
	// that has a frame (ParkGap), and the flush of a session's output. A
	// fresh goroutine starts on a small stack and grows it again each
	// time; a pool that keeps its goroutines (the node's handler workers)
	// spares that. Nil: the go statement.
	Go func(fn func())
}

// Limits are a gate's timeouts and flow-control limits. Every zero value
// means the default in its comment; a negative rate means unlimited.
type Limits struct {
	// MaxFrame is the largest frame body accepted. Zero: wire.DefaultMaxFrame.
	MaxFrame int
	// HandshakeTimeout bounds the wait for the first frame. Zero: 5s.
	HandshakeTimeout time.Duration
	// Heartbeat is the heartbeat_ms told to clients; a session silent for
	// 3× this is closed with KICK 7. Zero: 10s.
	Heartbeat time.Duration
	// RequestTimeout is how long a service has to answer before the client
	// gets 302. Zero: 5s.
	RequestTimeout time.Duration
	// SendQueueBytes bounds a session's unsent output; past it the session
	// is kicked with 202. Zero: 1 MiB.
	SendQueueBytes int
	// WriteTimeout bounds one write to a client; a client that does not
	// read for this long is kicked with 202. Zero: 10s.
	WriteTimeout time.Duration
	// MaxSessions caps this gate's connections (KICK 203 past it). Zero: 100,000.
	MaxSessions int
	// MaxConnsPerIP caps concurrent connections from one IP (KICK 203).
	// Zero: 1,000. Negative: unlimited.
	MaxConnsPerIP int
	// ConnRatePerIP is new connections per second allowed from one IP, with
	// a burst of ConnBurstPerIP (KICK 200). Zero: 100/s, burst 200. Negative: unlimited.
	ConnRatePerIP  float64
	ConnBurstPerIP int
	// RequestRate is requests (and notifies) per second allowed per session,
	// with a burst of RequestBurst; over it requests get 200. Zero: 1,000/s,
	// burst 1,000. Negative: unlimited.
	RequestRate  float64
	RequestBurst int
	// MaxInFlight caps a session's unanswered requests; over it requests get
	// 201. Zero: 64.
	MaxInFlight int

	// ResumeGrace is how long a session whose connection dropped stays
	// resumable. Zero: 60s. Negative: sessions end with their connection.
	ResumeGrace time.Duration
	// ResumePushes and ResumeBytes bound the pushes a session keeps for
	// replay; a detached session that would need more is lost (304).
	// Zero: 256 pushes, 256 KiB.
	ResumePushes int
	ResumeBytes  int
	// ResumeGateBytes bounds the pushes the whole gate keeps for replay.
	// A connected session keeps at most its share — half of it over the
	// gate's sessions, at least ResumeBytes/8 — and only its newest
	// ResumeBytes/8 while the budget is spent (its client has most likely
	// read the rest), so one whose connection then drops may be unable to
	// resume (304, and the client starts afresh); a detached session's
	// pushes are never dropped for it. Zero: 1 GiB.
	ResumeGateBytes int
	// ResumeAckBytes: once this many bytes of pushes (counted as for
	// ResumeBytes) have been queued to a connected session, the gate
	// follows the next with a PING, unless one is awaited already; the
	// client's PONG shows it has read every push and response before it:
	// those pushes leave the replay buffer after 10s (kept that long for
	// a hand-over's duplicate check), those responses the response cache
	// (their seqs stay: a re-send is 306). A client that keeps up so holds
	// a few KB, not its share of ResumeGateBytes; each PONG costs it a
	// write and the gate a read (4096: one every ~6 Niu Niu pushes). The
	// heartbeat's PINGs acknowledge the same way in any case. Zero or
	// negative: no such PINGs.
	ResumeAckBytes int
	// ResponseCache is how many responses per session are kept, by seq, to
	// answer a request re-sent after a resume. Zero: 128.
	ResponseCache int
	// ResponseCacheBytes bounds the bytes of one session's cached
	// responses, ResponseCacheItem the largest response cached, and
	// ResponseCacheGate the bytes cached by the whole gate. A response not
	// cached is still remembered by seq: its re-send gets 306, never a
	// second execution. Zero: 64 KiB, 16 KiB, 64 MiB.
	ResponseCacheBytes int
	ResponseCacheItem  int
	ResponseCacheGate  int
	// ChannelBuffer is how many channel messages a gate queues for fan-out
	// to its local members. Past it the bus drops messages: the members of
	// that channel see a gap in their push sequence, and
	// hearth_channel_drops_total counts it. Zero: 65,536.
	ChannelBuffer int
	// ParkGap: on Linux, a plain-TCP session whose frames come at least
	// this far apart waits for its next one on the gate's epoll poller,
	// with no goroutine and no read buffer, so the garbage collector has
	// no stack of it to scan; closer together, its goroutine blocks on the
	// connection. WebSocket and TLS sessions always keep a goroutine.
	// Zero: 50ms. Negative: every session keeps a goroutine.
	ParkGap time.Duration
	// Readers bounds the goroutines that read parked sessions woken by the
	// poller at once (ParkGap); the rest wait in a queue, in the order
	// they woke. While others wait, each goes behind every other runnable
	// goroutine between two sessions: in a garbage collection's mark ~100
	// readers were runnable at once, and the rooms' timers and pushes
	// waited behind them. Zero: twice GOMAXPROCS at New. Negative: no
	// bound.
	Readers int
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d == 0 {
			*d = v
		}
	}
	defInt(&c.MaxFrame, wire.DefaultMaxFrame)
	def(&c.HandshakeTimeout, 5*time.Second)
	def(&c.Heartbeat, 10*time.Second)
	def(&c.RequestTimeout, 5*time.Second)
	def(&c.WriteTimeout, 10*time.Second)
	defInt(&c.SendQueueBytes, 1<<20)
	defInt(&c.MaxSessions, 100_000)
	defInt(&c.MaxConnsPerIP, 1000)
	if c.ConnRatePerIP == 0 {
		c.ConnRatePerIP = 100
	}
	defInt(&c.ConnBurstPerIP, 2*int(max(c.ConnRatePerIP, 1)))
	if c.RequestRate == 0 {
		c.RequestRate = 1000
	}
	defInt(&c.RequestBurst, int(max(c.RequestRate, 1)))
	defInt(&c.MaxInFlight, 64)
	if c.ResumeGrace == 0 {
		c.ResumeGrace = 60 * time.Second
	}
	defInt(&c.ResumePushes, 256)
	defInt(&c.ResumeBytes, 256<<10)
	defInt(&c.ResumeGateBytes, 1<<30)
	defInt(&c.ResponseCache, 128)
	defInt(&c.ResponseCacheBytes, 64<<10)
	defInt(&c.ResponseCacheItem, 16<<10)
	defInt(&c.ResponseCacheGate, 64<<20)
	defInt(&c.ChannelBuffer, 65536)
	if c.ParkGap == 0 {
		c.ParkGap = 50 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Go == nil {
		c.Go = func(fn func()) { go fn() }
	}
	if c.Readers == 0 {
		c.Readers = 2 * runtime.GOMAXPROCS(0)
	}
}

// Gate serves clients on one node.
type Gate struct {
	cfg    Config
	bus    *cluster.Bus
	log    *slog.Logger
	m      *Metrics
	routes atomic.Pointer[routeTable] // stored under routesMu; read anywhere
	// routesMu orders RefreshRoutes' callers (the registry's watch and its
	// expiry run on two goroutines): the last to store read the newest routes.
	routesMu sync.Mutex
	sessMap  sessionMap
	pending  pendingTable
	envs     cluster.EnvelopePool // of requests being forwarded (handleRequest)
	ips      ipLimiter
	chans    channels
	// busMu is held while a bus message is handled: by the gate subject's
	// subscription goroutine (onGateMsg, what comes over NATS) and by
	// localLoop (what this node sends, in-process), which together are
	// "the bus goroutine" of the ownership notes above.
	busMu   sync.Mutex
	batch   busBatch // busMu
	inbox   inbox
	started bool // Start subscribed and started localLoop; set before any session exists

	replyPrefix   string
	resumeSubject string
	traceBase     uint64
	nextTrace     atomic.Uint64
	ids           atomic.Uint64

	mu        sync.Mutex
	listeners []net.Listener
	addrs     map[string]net.Addr
	subs      []*nats.Subscription
	closing   atomic.Bool
	stop      chan struct{}
	wg        sync.WaitGroup // accept loops and sweepers
	conns     sync.WaitGroup // session goroutines
	pre       sync.Map       // *Session not yet handshaken
	incoming  waiters        // connections waiting for a resumed session's state
	moves     moves          // sessions that left this gate (forwarding, late resumes)
	draining  atomic.Bool
	respBytes atomic.Int64 // bytes of every session's response cache
	pushBytes atomic.Int64 // bytes of every session's replay buffer
	outPeak   atomic.Int64 // the largest output queue any session reached
	// slowBus is when a connection goroutine last logged a request's
	// forward blocked on the bus (unix ns), so that a stalled bus logs a
	// line a second, not one per session.
	slowBus   atomic.Int64
	poll      *readPoller  // nil: every session reads on its own goroutine
	parked    atomic.Int64 // sessions parked on poll
	readers   readQueue    // the readers of woken parked sessions
	hooks     chan func()  // OnClose calls, for the hook workers
	hooksWG   sync.WaitGroup
	hookMu    sync.RWMutex // guards hooksDone against sends on a closed hooks
	hooksDone bool
}

// hookWorkers run OnClose hooks, which may wait on the bus or a store.
const hookWorkers = 4

// runHook runs fn on a hook worker. It never blocks its caller: past the
// queue's capacity fn gets a goroutine of its own.
func (g *Gate) runHook(fn func()) {
	g.hookMu.RLock()
	defer g.hookMu.RUnlock()
	if g.hooksDone {
		go fn()
		return
	}
	select {
	case g.hooks <- fn:
	default:
		g.hooksWG.Add(1)
		go func() {
			defer g.hooksWG.Done()
			fn()
		}()
	}
}

func (g *Gate) hookWorker() {
	defer g.hooksWG.Done()
	for fn := range g.hooks {
		fn()
	}
}

// New makes a gate on bus. It does not listen until Start.
func New(bus *cluster.Bus, cfg Config) (*Gate, error) {
	if err := cluster.ValidateNodeID(cfg.ID); err != nil {
		return nil, fmt.Errorf("gate: %w", err)
	}
	cfg.setDefaults()
	g := &Gate{
		cfg:   cfg,
		bus:   bus,
		log:   cfg.Logger.With("gate", cfg.ID),
		m:     cfg.Metrics,
		addrs: map[string]net.Addr{},
		stop:  make(chan struct{}),
	}
	if g.m == nil {
		g.m = newMetrics(nil)
	}
	g.batch.delay = g.m.pushDelay
	g.batch.goFn = cfg.Go
	g.readers.goFn, g.readers.max, g.readers.read = cfg.Go, cfg.Readers, (*Session).resumeReads
	if g.m.reg != nil {
		g.m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hearth_sessions_parked", Help: "Connected sessions waiting for their next frame on the gate's poller, with no goroutine (Limits.ParkGap).",
		}, func() float64 { return float64(g.parked.Load()) }))
		g.m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hearth_read_queue", Help: "Parked sessions woken with a frame that wait for one of the gate's readers (Readers).",
		}, func() float64 { return float64(g.readers.waiting()) }))
		g.m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hearth_response_cache_bytes", Help: "Bytes of responses the gate keeps for re-sends after a resume (bounded by Limits.ResponseCacheGate).",
		}, func() float64 { return float64(g.respBytes.Load()) }))
		g.m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hearth_resume_buffer_bytes", Help: "Bytes of pushes the gate keeps for replay after a resume (bounded by Limits.ResumeGateBytes).",
		}, func() float64 { return float64(g.pushBytes.Load()) }))
		g.m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hearth_send_queue_peak_bytes", Help: "The largest unsent output any session of this gate reached (bounded by Limits.SendQueueBytes).",
		}, func() float64 { return float64(g.outPeak.Load()) }))
	}
	g.sessMap.init()
	g.inbox.init(inboxBytes)
	g.pending.init()
	g.ips.init(cfg.ConnRatePerIP, cfg.ConnBurstPerIP, cfg.MaxConnsPerIP)
	g.chans.init(cfg.ChannelBuffer)
	g.hooks = make(chan func(), 4096)
	g.hooksWG.Add(hookWorkers)
	for range hookWorkers {
		go g.hookWorker()
	}
	g.replyPrefix = bus.Subjects().GateReplyPrefix(cfg.ID)
	g.resumeSubject = bus.Subjects().GateResume(cfg.ID)
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	g.traceBase = binary.BigEndian.Uint64(seed[:])
	g.RefreshRoutes()
	return g, nil
}

// RefreshRoutes rebuilds the route dictionary from Config.Routes. Sessions
// keep the dictionary they were given at handshake, so an unchanged one is
// kept too: a node calls this on every peer's registry refresh (twice a
// second each), and a new table each time left every few sessions holding
// their own copy of the map and its names — at 10,000 sessions a node,
// 10,000–20,000 objects for each collection to mark.
func (g *Gate) RefreshRoutes() {
	g.routesMu.Lock()
	defer g.routesMu.Unlock()
	var names []string
	if g.cfg.Routes != nil {
		names = g.cfg.Routes()
	}
	t := newRouteTable(names)
	if old := g.routes.Load(); old != nil && slices.Equal(old.byID, t.byID) {
		return
	}
	g.routes.Store(t)
}

// Start subscribes to the gate's bus subjects and opens the listeners. It
// returns once they accept connections.
func (g *Gate) Start() (err error) {
	nc := g.bus.Conn()
	subj := g.bus.Subjects()
	sub, err := nc.Subscribe(subj.GateAll(g.cfg.ID), g.onGateMsg)
	if err != nil {
		return fmt.Errorf("gate: subscribe: %w", err)
	}
	g.subs = append(g.subs, sub)
	bsub, err := nc.Subscribe(subj.Broadcast(), g.onBroadcast)
	if err != nil {
		return fmt.Errorf("gate: subscribe: %w", err)
	}
	g.subs = append(g.subs, bsub)
	for _, s := range g.subs {
		_ = s.SetPendingLimits(-1, inboxBytes)
	}
	// From here on the node's messages to this gate come in-process; none
	// was sent before it had sessions.
	g.started = true
	go g.localLoop()
	g.bus.SetLocalGate(g.cfg.ID, g.deliver)
	defer func() {
		if err != nil { // no Shutdown follows: take the local path back
			if g.poll != nil {
				g.poll.close()
				g.poll = nil
			}
			g.bus.SetLocalGate(g.cfg.ID, nil)
			g.closeInbox()
			g.started = false
		}
	}()
	if err := g.chans.start(g); err != nil {
		return err
	}
	if g.cfg.TCPAddr != "" && g.cfg.TLS == nil && g.cfg.ParkGap > 0 {
		p, err := newReadPoller(g.log)
		if err != nil {
			g.log.Warn("sessions read on goroutines of their own", "err", err)
		}
		g.poll = p
	}
	if g.cfg.TCPAddr != "" {
		if err := g.listen("tcp", g.cfg.TCPAddr, false); err != nil {
			return err
		}
	}
	if g.cfg.WSAddr != "" {
		if err := g.listen("ws", g.cfg.WSAddr, true); err != nil {
			return err
		}
	}
	g.wg.Add(2)
	go g.heartbeatLoop()
	go g.timeoutLoop()
	return nil
}

func (g *Gate) listen(name, addr string, ws bool) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		g.closeListeners()
		return fmt.Errorf("gate: %s listener on %s: %w (is the port in use? pick another with --%s)", name, addr, err, name)
	}
	g.mu.Lock()
	g.listeners = append(g.listeners, ln)
	g.addrs[name] = ln.Addr()
	g.mu.Unlock()
	g.wg.Add(1)
	go g.acceptLoop(ln, ws)
	return nil
}

// Addr returns the bound address of the "tcp" or "ws" listener, or nil.
func (g *Gate) Addr(name string) net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.addrs[name]
}

// ID is the gate's node id.
func (g *Gate) ID() string { return g.cfg.ID }

// Sessions is the number of open sessions.
func (g *Gate) Sessions() int { return g.sessMap.len() }

// InFlight is the number of requests awaiting a service's answer.
func (g *Gate) InFlight() int { return int(g.pending.count.Load()) }

func (g *Gate) acceptLoop(ln net.Listener, ws bool) {
	defer g.wg.Done()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if g.closing.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, keep serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			g.log.Error("accept failed", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		g.conns.Add(1)
		go g.serveConn(conn, ws)
	}
}

func (g *Gate) serveConn(conn net.Conn, ws bool) {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if g.cfg.TLS != nil {
		conn = tls.Server(conn, g.cfg.TLS)
	}
	s := newSession(g, conn, ws)
	// Until its handshake completes the connection is not in the sessions
	// map; Shutdown closes these directly.
	g.pre.Store(s, struct{}{})
	ok := s.open()
	g.pre.Delete(s)
	if !ok {
		g.conns.Done()
		return
	}
	// A fresh goroutine, with a small stack, waits on the connection.
	go func() {
		if s.serve() {
			g.conns.Done()
		}
	}()
}

func (g *Gate) closeListeners() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, ln := range g.listeners {
		_ = ln.Close()
	}
	g.listeners = nil
}

// Shutdown stops accepting, sends KICK 8 to every session after its pending
// output, and waits until every connection is closed or ctx ends, when the
// rest are closed at once.
func (g *Gate) Shutdown(ctx context.Context) error {
	if !g.closing.CompareAndSwap(false, true) {
		return nil
	}
	g.closeListeners()
	g.sessMap.each(func(s *Session) { s.kick(wire.CodeShuttingDown, "server shutting down", false) })
	g.pre.Range(func(k, _ any) bool {
		s := k.(*Session)
		switch {
		case s.State() != StateHandshaking:
		case s.ws && !s.upgraded.Load():
			s.closeConn() // no WebSocket yet to carry a KICK
		default:
			s.kick(wire.CodeShuttingDown, "server shutting down", true)
		}
		return true
	})
	done := make(chan struct{})
	go func() { g.conns.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		g.sessMap.each(func(s *Session) { s.closeConn() })
		<-done
	}
	if g.poll != nil {
		g.poll.close()
	}
	// Detached sessions cannot be resumed once this gate is gone.
	g.sessMap.each(func(s *Session) {
		if s.State() == StateDetached {
			s.expire("gate shut down")
		}
	})
	close(g.stop)
	g.wg.Wait()
	for _, s := range g.subs {
		_ = s.Unsubscribe()
	}
	if g.started {
		g.bus.SetLocalGate(g.cfg.ID, nil)
		g.closeInbox()
	}
	g.chans.stop()
	// The hooks of the sessions just ended (presence clean-up) run before
	// the bus goes.
	g.hookMu.Lock()
	g.hooksDone = true
	close(g.hooks)
	g.hookMu.Unlock()
	hooksDone := make(chan struct{})
	go func() { g.hooksWG.Wait(); close(hooksDone) }()
	select {
	case <-hooksDone:
	case <-ctx.Done():
		err = ctx.Err()
	}
	return err
}

// Drain empties the gate without losing a session: it stops accepting,
// tells every client KICK 303 with reason (which should name another gate),
// keeps the sessions resumable while their clients resume elsewhere, and
// returns when none is left and no request is in flight, or when ctx ends.
// Call Shutdown after it.
func (g *Gate) Drain(ctx context.Context, reason string) error {
	if !g.draining.CompareAndSwap(false, true) {
		return nil
	}
	g.closeListeners()
	n := g.sessMap.len()
	g.log.Info("draining", "sessions", n, "reason", reason)
	g.sessMap.each(func(s *Session) { s.kick(wire.CodeReconnectElsewhere, reason, false) })
	// Connections still handshaking are closed: their clients retry, and a
	// resume among them is answered by whichever gate they reach next.
	g.pre.Range(func(k, _ any) bool {
		if s := k.(*Session); s.State() == StateHandshaking {
			s.closeConn()
		}
		return true
	})
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for g.sessMap.len() > 0 || g.pending.count.Load() > 0 {
		select {
		case <-ctx.Done():
			g.log.Warn("drain deadline: sessions left", "sessions", g.sessMap.len(), "in_flight", g.pending.count.Load())
			return ctx.Err()
		case <-tick.C:
		}
	}
	// Linger briefly, still forwarding, while the services learn where
	// the sessions went (the resumed events are on their way).
	select {
	case <-ctx.Done():
	case <-time.After(drainLinger):
	}
	g.log.Info("drained", "sessions", n)
	return nil
}

// drainLinger is how long a drained gate keeps forwarding before it stops.
const drainLinger = 500 * time.Millisecond

// Draining reports whether Drain has begun.
func (g *Gate) Draining() bool { return g.draining.Load() }

// newSessionID returns 128 random bits, URL-safe.
func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// traceID returns a cluster-unique id for one request: a random per-gate
// base plus a counter, so it costs no syscall.
func (g *Gate) traceID(dst []byte) []byte {
	v := g.traceBase + g.nextTrace.Add(1)
	const hex = "0123456789abcdef"
	for i := 60; i >= 0; i -= 4 {
		dst = append(dst, hex[v>>uint(i)&0xf])
	}
	return dst
}

// routeTable is a handshake-ack dictionary.
type routeTable struct {
	byName map[string]uint16
	byID   []string // index = id; 0 unused
}

func newRouteTable(names []string) *routeTable {
	names = append([]string(nil), names...)
	sort.Strings(names)
	t := &routeTable{byName: map[string]uint16{}, byID: []string{""}}
	for _, n := range names {
		if _, dup := t.byName[n]; dup || !wire.ValidRoute(n) || len(t.byID) > 0xffff {
			continue
		}
		t.byName[n] = uint16(len(t.byID))
		t.byID = append(t.byID, n)
	}
	return t
}

func (t *routeTable) name(id uint16) (string, bool) {
	if id == 0 || int(id) >= len(t.byID) {
		return "", false
	}
	return t.byID[id], true
}
