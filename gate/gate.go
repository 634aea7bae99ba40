// Package gate is hearth's client front door: TCP and WebSocket listeners
// (TLS optional on both), sessions and their state machine, heartbeats, flow
// control and per-IP and per-session limits. It forwards every request over
// the cluster bus to the services and carries responses, pushes and channel
// broadcasts back, fanning each bus message out to its local sessions.
//
// A gate never decodes payloads and runs no game logic.
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
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hearth-server/hearth/cluster"
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

	// NodeAlive, when set, is asked before a request is routed to the node
	// a session is bound to; false fails it with 301 and drops the binding.
	// Nil: only the bus's no-responders answer drops bindings.
	NodeAlive func(node string) bool

	// OnClose, when set, is called once for every session that closes after
	// its handshake, with the user it was bound to (or ""). It runs on the
	// session's goroutine and must not block for long.
	OnClose func(session, user string)

	// Logger receives the gate's logs. Nil: slog.Default().
	Logger *slog.Logger
	// Metrics records the gate's Prometheus metrics. Nil: none are recorded.
	Metrics *Metrics
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
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Gate serves clients on one node.
type Gate struct {
	cfg     Config
	bus     *cluster.Bus
	log     *slog.Logger
	m       *Metrics
	routes  atomic.Pointer[routeTable]
	sessMap sessionMap
	pending pendingTable
	ips     ipLimiter
	chans   channels

	replyPrefix string
	traceBase   uint64
	nextTrace   atomic.Uint64
	ids         atomic.Uint64

	mu        sync.Mutex
	listeners []net.Listener
	addrs     map[string]net.Addr
	subs      []*nats.Subscription
	closing   atomic.Bool
	stop      chan struct{}
	wg        sync.WaitGroup // accept loops and sweepers
	conns     sync.WaitGroup // session goroutines
	pre       sync.Map       // *Session not yet handshaken
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
	g.sessMap.init()
	g.pending.init()
	g.ips.init(cfg.ConnRatePerIP, cfg.ConnBurstPerIP, cfg.MaxConnsPerIP)
	g.chans.init()
	g.replyPrefix = bus.Subjects().GateReplyPrefix(cfg.ID)
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	g.traceBase = binary.BigEndian.Uint64(seed[:])
	g.RefreshRoutes()
	return g, nil
}

// RefreshRoutes rebuilds the route dictionary from Config.Routes. Sessions
// keep the dictionary they were given at handshake.
func (g *Gate) RefreshRoutes() {
	var names []string
	if g.cfg.Routes != nil {
		names = g.cfg.Routes()
	}
	g.routes.Store(newRouteTable(names))
}

// Start subscribes to the gate's bus subjects and opens the listeners. It
// returns once they accept connections.
func (g *Gate) Start() error {
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
		_ = s.SetPendingLimits(-1, 256<<20)
	}
	if err := g.chans.start(g); err != nil {
		return err
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
	defer g.conns.Done()
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
	defer g.pre.Delete(s)
	s.run()
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
	close(g.stop)
	g.wg.Wait()
	for _, s := range g.subs {
		_ = s.Unsubscribe()
	}
	g.chans.stop()
	return err
}

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
	json   []byte   // the "routes" object, pre-encoded
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
