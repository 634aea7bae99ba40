// Package cluster is hearth's bus: the NATS connection (an in-process
// nats-server by default, an external NATS cluster otherwise), the subject
// layout, the envelope every request, response, push and control message
// travels in, and the APIs services use to reach sessions on any gate.
package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config says how to reach the bus.
type Config struct {
	// URL of an external NATS server or cluster (comma-separated URLs).
	// Empty runs an embedded nats-server in this process.
	URL string
	// DataDir is where the embedded server keeps JetStream data.
	// Empty means a "nats" directory under the OS temp dir.
	DataDir string
	// Listen makes the embedded server accept NATS clients (other nodes) on
	// this host:port. Empty: in-process only.
	Listen string
	// Prefix of every subject. Empty means "hearth".
	Prefix string
	// Name identifies this connection to the NATS server (the node id).
	Name string
	// Options are extra nats.go options for an external connection
	// (credentials, TLS, …).
	Options []nats.Option
	// Logger receives connection events. Nil means slog.Default().
	Logger *slog.Logger
	// Publishers is how many connections the node publishes on: the one
	// that subscribes (and forwards requests), and the others that carry
	// what goes to gates. Zero means 4; 1 publishes all on one.
	Publishers int
}

// defaultPublishers: a node's publishers are its rooms, handlers and gate
// sessions, thousands of goroutines. On one connection they queue on its
// lock, and on a machine with no idle core that queue moves at the
// scheduler's pace (a 20,000-bot run: 235 goroutines waiting for it).
const defaultPublishers = 4

// reconnectBuffer bounds the bytes a node's publishing connections hold
// while disconnected, shared evenly among them (the JetStream connection
// gets a share of the same size).
const reconnectBuffer = 64 << 20

// maxPinnedGates bounds the gates given a publishing connection of their
// own turn; gates past it share by hash.
const maxPinnedGates = 4096

// Bus is one node's connection to the cluster bus.
type Bus struct {
	// nc subscribes, makes requests and publishes what is not pinned to
	// another of pubs.
	nc *nats.Conn
	// pubs are the connections the node publishes on; pubs[0] is nc. What
	// goes to one gate always takes the same one (pinned), so that a
	// handler's pushes, binds and kicks still reach the gate before its
	// response, as on one connection.
	pubs     []*nats.Conn
	gatePre  string       // subject prefix of gates: "<prefix>.gate."
	gatePins sync.Map     // gate id → index in pubs; never changed once set
	pinned   atomic.Int32 // gates in gatePins: maxPinnedGates, or a few more when first sends race
	pinSeed  maphash.Seed
	// local is this process's gate, when it takes its messages directly
	// (SetLocalGate).
	local atomic.Pointer[localGate]
	// jsc carries JetStream (the KV buckets, their watches): a connection
	// of its own, so that the registry's writes, acknowledgements and watch
	// updates never queue ahead of pushes and answers on nc, in this
	// client or in the server's reader of the connection.
	jsc  *nats.Conn
	srv  *server.Server
	subj Subjects
	log  *slog.Logger

	bufs sync.Pool
	slow atomic.Pointer[func(*nats.Subscription)]

	origin string // this connection's push origin (Envelope.Origin)
	// ctl holds the gates' control subjects, copied on write under ctlMu:
	// a subject built per push was an allocation on every room's goroutine,
	// which in a collection's mark made it help mark, and once held a
	// table's push 24 ms (docs/benchmarks.md § bots, session 27).
	ctl   atomic.Pointer[map[string]string]
	ctlMu sync.Mutex
	// counts numbers the pushes sent to each session, in shards by the
	// session id's hash: one map under one lock was taken by every push
	// of the node (every room's), a queue of its own under load.
	counts    [countShards]countShard
	countSeed maphash.Seed
	// swept are the KV buckets opened without a TTL, by name, whose delete
	// markers RunSweeper removes (markers.go); sweepMu guards it.
	sweepMu sync.Mutex
	swept   map[string]jetstream.KeyValue
}

const countShards = 64

// pushCounts is how many sessions' push numbers fit on a push's stack (a
// table's seats, with room); more go to the heap.
const pushCounts = 16

type countShard struct {
	mu sync.Mutex
	m  map[string]*PushCounter // session → pushes sent to it; mu
	_  [48]byte                // a cache line each: shards are locked from many cores
}

// PushCounter numbers the pushes one bus sends to one session (Bus.Counter).
// A room keeps its seats' counters, so that a push to a table finds each
// player's number without a lookup in the bus's map of every session.
type PushCounter struct{ n atomic.Uint64 }

// Counter is session's push counter on this bus, made on first use; it
// stays the session's until ForgetSession, after which a push to the
// session has no gate to reach.
func (b *Bus) Counter(session string) *PushCounter {
	sh := b.countShard(session)
	sh.mu.Lock()
	c := sh.m[session]
	if c == nil {
		if sh.m == nil {
			sh.m = map[string]*PushCounter{}
		}
		c = new(PushCounter)
		sh.m[session] = c
	}
	sh.mu.Unlock()
	return c
}

func (b *Bus) countShard(session string) *countShard {
	return &b.counts[maphash.String(b.countSeed, session)%countShards]
}

// appendCounts numbers one push to each of sessions, appending the numbers
// to dst: a push's caller passes an array on its stack, as the envelope
// they go in is encoded before Send returns.
func (b *Bus) appendCounts(dst []uint64, sessions []string) []uint64 {
	for _, s := range sessions {
		dst = append(dst, b.Counter(s).n.Add(1))
	}
	return dst
}

// appendCountsOf is appendCounts with the sessions' counters at hand.
func appendCountsOf(dst []uint64, counters []*PushCounter) []uint64 {
	for _, c := range counters {
		dst = append(dst, c.n.Add(1))
	}
	return dst
}

// maxControlSubjects bounds the control subjects kept: past it the cache
// starts afresh (gates come and go with their nodes' ids).
const maxControlSubjects = 256

// gateControl is the control subject of gate, built once.
func (b *Bus) gateControl(gate string) string {
	if m := b.ctl.Load(); m != nil {
		if subj, ok := (*m)[gate]; ok {
			return subj
		}
	}
	subj := b.subj.GateControl(gate)
	b.ctlMu.Lock()
	defer b.ctlMu.Unlock()
	old := b.ctl.Load()
	m := make(map[string]string, 8)
	if old != nil && len(*old) < maxControlSubjects {
		for g, s := range *old {
			m[g] = s
		}
	}
	m[gate] = subj
	b.ctl.Store(&m)
	return subj
}

// ForgetSession drops the push count of a session that ended.
func (b *Bus) ForgetSession(session string) {
	sh := b.countShard(session)
	sh.mu.Lock()
	delete(sh.m, session)
	sh.mu.Unlock()
}

// ForwardPush re-sends a push envelope to another gate as it is: a gate
// forwarding pushes for sessions that moved keeps their origin and counts.
func (b *Bus) ForwardPush(gate string, e *Envelope) error {
	return b.Send(b.gateControl(gate), e)
}

// OnSlowConsumer sets fn to be called (on the connection's callback
// goroutine) when the bus drops messages of sub because its consumer fell
// behind.
func (b *Bus) OnSlowConsumer(fn func(*nats.Subscription)) { b.slow.Store(&fn) }

// ErrBusClosed is returned by operations on a closed bus.
var ErrBusClosed = errors.New("cluster: bus closed")

// Connect starts the embedded server when cfg.URL is empty, and connects.
func Connect(ctx context.Context, cfg Config) (*Bus, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = "hearth"
	}
	if ValidateChannel(cfg.Prefix) != nil {
		return nil, errBadPrefix
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	pubs := cfg.Publishers
	if pubs <= 0 {
		pubs = defaultPublishers
	}
	b := &Bus{subj: Subjects{Prefix: cfg.Prefix}, log: log, origin: cfg.Name + "." + messageID(), countSeed: maphash.MakeSeed(), pinSeed: maphash.MakeSeed()}
	b.gatePre = cfg.Prefix + ".gate."
	opts := []nats.Option{
		nats.Name(cfg.Name),
		// What a node publishes while the bus is down waits, up to
		// reconnectBuffer over all its connections, then fails.
		nats.ReconnectBufSize(reconnectBuffer / pubs),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.PingInterval(5 * time.Second),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil { // nil: we closed it
				log.Warn("bus disconnected; reconnecting", "conn", nc.Opts.Name, "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("bus reconnected", "conn", nc.Opts.Name, "server", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if fn := b.slow.Load(); fn != nil && sub != nil && errors.Is(err, nats.ErrSlowConsumer) {
				(*fn)(sub)
			}
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Error("bus error", "subject", subject, "err", err)
		}),
	}
	if cfg.URL == "" {
		srv, err := startEmbedded(cfg)
		if err != nil {
			return nil, err
		}
		b.srv = srv
		opts = append(opts, nats.InProcessServer(inProcess{srv: srv, limit: inProcessBuffer}))
	} else {
		opts = append(opts, nats.Timeout(5*time.Second))
	}
	opts = append(opts, cfg.Options...)
	url := cfg.URL
	if b.srv != nil {
		url = b.srv.ClientURL()
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		b.shutdownServer()
		if cfg.URL != "" {
			return nil, fmt.Errorf("cluster: connect to NATS at %s: %w (is the server running? check --nats)", cfg.URL, err)
		}
		return nil, fmt.Errorf("cluster: connect to embedded NATS: %w", err)
	}
	b.nc = nc
	b.pubs = []*nats.Conn{nc}
	for i := 1; i < pubs; i++ {
		pc, err := nats.Connect(url, append(opts, nats.Name(cfg.Name+"/pub"+strconv.Itoa(i)))...)
		if err != nil {
			b.closeConns()
			b.shutdownServer()
			return nil, fmt.Errorf("cluster: connect to NATS for publishing: %w", err)
		}
		b.pubs = append(b.pubs, pc)
	}
	jsc, err := nats.Connect(url, append(opts, nats.Name(cfg.Name+"/js"))...)
	if err != nil {
		b.closeConns()
		b.shutdownServer()
		return nil, fmt.Errorf("cluster: connect to NATS for JetStream: %w", err)
	}
	b.jsc = jsc
	return b, nil
}

// closeConns closes the connections of a bus that failed to connect.
func (b *Bus) closeConns() {
	for _, c := range b.pubs {
		c.Close()
	}
}

// pub is the connection to publish on subject: a gate's subjects (its
// control subject and its replies) are pinned to one of pubs[1:], given in
// turn to the gates as they are first seen (nc keeps the gates' forwards);
// anything else goes on nc.
func (b *Bus) pub(subject string) *nats.Conn {
	gate, ok := strings.CutPrefix(subject, b.gatePre)
	if !ok || len(b.pubs) == 1 {
		return b.nc
	}
	if i := strings.IndexByte(gate, '.'); i >= 0 {
		gate = gate[:i]
	}
	if i, ok := b.gatePins.Load(gate); ok {
		return b.pubs[i.(int)]
	}
	others := len(b.pubs) - 1
	if b.pinned.Load() >= maxPinnedGates {
		return b.pubs[1+int(maphash.String(b.pinSeed, gate)%uint64(others))]
	}
	// Two first sends to a gate at once may both pick: LoadOrStore keeps
	// one, and both use it.
	i, loaded := b.gatePins.LoadOrStore(gate, 1+int(b.pinned.Add(1)-1)%others)
	if loaded {
		b.pinned.Add(-1)
	}
	return b.pubs[i.(int)]
}

func startEmbedded(cfg Config) (*server.Server, error) {
	dir := cfg.DataDir
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "hearth-nats")
	}
	opts := &server.Options{
		ServerName: cfg.Name,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: 8 << 20,
		DontListen: cfg.Listen == "",
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("cluster: --nats-listen %q: %w", cfg.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("cluster: --nats-listen %q: bad port", cfg.Listen)
		}
		if p == 0 {
			p = server.RANDOM_PORT // nats-server reads 0 as its default, 4222
		}
		opts.Host, opts.Port = host, p
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cluster: embedded NATS: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("cluster: embedded NATS did not start within 10s (is %s writable? is the port free?)", dir)
	}
	return srv, nil
}

// Publishers is how many connections the bus publishes on.
func (b *Bus) Publishers() int { return len(b.pubs) }

// Conn is the bus's first NATS connection: the one that subscribes (a
// reply to a request made on it comes back on it). What the bus sends to
// gates goes on others (see Bus.pubs).
func (b *Bus) Conn() *nats.Conn { return b.nc }

// Subjects is the bus's subject layout.
func (b *Bus) Subjects() Subjects { return b.subj }

// Embedded reports whether this bus runs its own nats-server.
func (b *Bus) Embedded() bool { return b.srv != nil }

// ClientURL is where other processes reach the embedded server when it
// listens; empty otherwise.
func (b *Bus) ClientURL() string {
	if b.srv == nil || b.srv.Addr() == nil {
		return ""
	}
	return b.srv.ClientURL()
}

// Close drains the connections (delivering what is in flight) and stops
// the embedded server.
func (b *Bus) Close() {
	drain(b.jsc)
	var wg sync.WaitGroup
	for _, c := range b.pubs[1:] {
		wg.Go(func() { drain(c) })
	}
	wg.Wait()
	drain(b.nc)
	b.shutdownServer()
}

// drain drains nc (delivering what is in flight) for up to 5 s and closes
// it.
func drain(nc *nats.Conn) {
	if nc == nil {
		return
	}
	done := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(done) })
	if err := nc.Drain(); err == nil {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
	nc.Close()
}

func (b *Bus) shutdownServer() {
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
}

// Send encodes e and publishes it on subject.
func (b *Bus) Send(subject string, e *Envelope) error {
	return b.sendReply(subject, "", e)
}

func (b *Bus) sendReply(subject, reply string, e *Envelope) error {
	return b.sendOn(b.pub(subject), subject, reply, e)
}

func (b *Bus) sendOn(nc *nats.Conn, subject, reply string, e *Envelope) error {
	bp, _ := b.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	buf := e.Append((*bp)[:0])
	*bp = buf
	if lg := b.localFor(subject); lg != nil {
		m := &nats.Msg{Subject: subject, Reply: reply, Data: buf}
		handed := bp
		if !handsOver(e.Type) {
			// The gate may keep parts of the rest: a copy of their size,
			// and the pool keeps the buffer. Handed over and kept, they
			// drained the pool and most pushes grew a new one (at 10,000
			// bots a fifth of the node's garbage).
			m.Data, handed = bytes.Clone(buf), nil
		}
		if lg.deliver(m, handed) {
			if handed == nil {
				b.Recycle(bp)
			}
			return nil // the gate has the buffer, or its copy, now
		}
	}
	err := publish(nc, subject, reply, buf)
	b.Recycle(bp)
	return err
}

// handsOver reports whether a message of type t goes to the local gate in
// its encoding buffer (SetLocalGate): pushes and answers, whose payloads a
// gate copies out and which are most of what it is sent.
func handsOver(t Type) bool {
	return t == TypePush || t == TypePushEach || t == TypeResponse
}

// maxPooledBuf is the largest encoding buffer kept for reuse.
const maxPooledBuf = 64 << 10

// publish sends data on nc, with a reply subject if reply is not empty.
func publish(nc *nats.Conn, subject, reply string, data []byte) error {
	var err error
	if reply == "" {
		err = nc.Publish(subject, data)
	} else {
		err = nc.PublishRequest(subject, reply, data)
	}
	if errors.Is(err, nats.ErrConnectionClosed) {
		return ErrBusClosed
	}
	return err
}

// SendAfterSubscriptions is Send on the connection the bus subscribes on,
// whatever the subject: the server then routes e only after every
// subscription the bus made before it. A gate that subscribed to channels
// and then says so (a hand-over's TypeHandoverReady) must be heard only
// once those channels' publishes reach it; on another connection the
// signal could overtake the subscriptions. To the local gate, which gets
// e without the server, it first waits until the server has them.
func (b *Bus) SendAfterSubscriptions(subject string, e *Envelope) error {
	if b.localFor(subject) != nil {
		if err := b.nc.FlushTimeout(5 * time.Second); err != nil {
			return fmt.Errorf("cluster: flush before %s: %w", subject, err)
		}
	}
	return b.sendOn(b.nc, subject, "", e)
}

// Forward publishes a request envelope to the service's instances: to the
// node the session is bound to for that service, else to the service's
// queue group. The reply goes to reply.
func (b *Bus) Forward(service, reply string, e *Envelope) error {
	subject := ""
	if node, ok := e.Binding(service); ok {
		subject = b.subj.NodeService(node, service)
	} else {
		subject = b.subj.Service(service)
	}
	// On nc, which subscribes to the gate's replies: the server tells a
	// request's publisher, on the publisher's own subscription to the reply
	// subject, that no instance listens (503 → the client's 301). (Never a
	// gate's subject: toLocal does not apply.)
	return b.sendOn(b.nc, subject, reply, e)
}

// Request sends data to subject and returns the first answer, on the
// connection subject is pinned to, so that a request to a gate stays in
// order with what else the node sends it.
func (b *Bus) Request(ctx context.Context, subject string, data []byte) (*nats.Msg, error) {
	if b.localFor(subject) != nil {
		m, err := b.requestLocal(ctx, subject, data)
		if !errors.Is(err, errNotLocal) {
			return m, err
		}
	}
	return b.pub(subject).RequestWithContext(ctx, subject, data)
}

// Relay re-publishes a gate's control message, reply subject and all, to
// another gate, on that gate's connection: a gate handing a session over
// relays what still reaches it for the session.
func (b *Bus) Relay(gate, reply string, data []byte) error {
	subject := b.gateControl(gate)
	if b.toLocal(subject, reply, data) {
		return nil
	}
	return publish(b.pub(subject), subject, reply, data)
}

// Push sends one push to sessions of one gate. payload is the protobuf form
// and json the JSON form; either may be empty when no session needs it.
// Each session's pushes from this bus are numbered (Envelope.Counts), so
// they reach it in the order sent even when it moves between gates.
func (b *Bus) Push(gate string, sessions []string, route string, payload, json []byte) error {
	var counts [pushCounts]uint64
	return b.Send(b.gateControl(gate), &Envelope{Type: TypePush, Sessions: sessions, Route: route, Payload: payload, JSON: json, Origin: b.origin, Counts: b.appendCounts(counts[:0], sessions), Sent: time.Now().UnixNano()})
}

// PushEach sends one push per session of one gate in one bus message
// (TypePushEach): payloads holds one payload per session, in the order of
// sessions, as AppendPayloads writes them. Ordered per session as Push is.
// counters, when not nil, are the sessions' Counter, in the same order.
func (b *Bus) PushEach(gate string, sessions []string, counters []*PushCounter, route string, payloads []byte) error {
	if err := eachPayload(payloads, len(sessions), nil); err != nil {
		return fmt.Errorf("cluster: push each: payloads do not match %d sessions: %w", len(sessions), err)
	}
	var counts [pushCounts]uint64
	var n []uint64
	switch {
	case counters == nil:
		n = b.appendCounts(counts[:0], sessions)
	case len(counters) == len(sessions):
		n = appendCountsOf(counts[:0], counters)
	default:
		return fmt.Errorf("cluster: push each: %d counters for %d sessions", len(counters), len(sessions))
	}
	return b.Send(b.gateControl(gate), &Envelope{Type: TypePushEach, Sessions: sessions, Route: route, Payload: payloads, Origin: b.origin, Counts: n, Sent: time.Now().UnixNano()})
}

// PushID is Push of a channel message that has the id id (Envelope.MsgID
// of a publish): a gate forwarding a publish to a session that moved keeps
// the id, so the session's new gate can drop a copy it got directly.
func (b *Bus) PushID(gate string, sessions []string, route string, payload, json []byte, id string) error {
	return b.Send(b.gateControl(gate), &Envelope{Type: TypePush, Sessions: sessions, Route: route, Payload: payload, JSON: json, MsgID: id})
}

// messageID makes the id of one publish.
func messageID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Publish sends one push to every member of channel, on every gate: one bus
// message, fanned out by each gate that has a member.
func (b *Bus) Publish(channel, route string, payload, json []byte) error {
	if err := ValidateChannel(channel); err != nil {
		return err
	}
	return b.Send(b.subj.Channel(channel), &Envelope{Type: TypePublish, Channel: channel, Route: route, Payload: payload, JSON: json, MsgID: messageID()})
}

// Broadcast sends one push to every session on every gate.
func (b *Bus) Broadcast(route string, payload, json []byte) error {
	return b.Send(b.subj.Broadcast(), &Envelope{Type: TypePublish, Route: route, Payload: payload, JSON: json})
}

// Kick closes a session on its gate with a code and a reason.
func (b *Bus) Kick(gate, session string, code uint16, reason string) error {
	return b.Send(b.gateControl(gate), &Envelope{Type: TypeKick, Session: session, Status: code, Reason: reason})
}

// Bind routes the session's requests for service to node; an empty node unbinds.
func (b *Bus) Bind(gate, session, service, node string) error {
	return b.Send(b.gateControl(gate), &Envelope{Type: TypeBind, Session: session, Route: service, Node: node})
}

// Join adds a session to a channel and returns once its gate has done so
// (and subscribed to the channel when it is the gate's first member), so a
// publish made after Join reaches the session. Leave removes it.
func (b *Bus) Join(ctx context.Context, gate, session, channel string) error {
	if err := ValidateChannel(channel); err != nil {
		return err
	}
	buf := (&Envelope{Type: TypeJoin, Session: session, Channel: channel}).Append(nil)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	m, err := b.Request(ctx, b.gateControl(gate), buf)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("cluster: join %s: gate %s is gone: %w", channel, gate, ErrSessionGone)
	case err != nil:
		return fmt.Errorf("cluster: join %s: %w", channel, err)
	case len(m.Data) > 0:
		return fmt.Errorf("cluster: join %s: %s: %w", channel, m.Data, ErrSessionGone)
	}
	return nil
}

// ErrSessionGone is returned for an operation on a session its gate no
// longer holds.
var ErrSessionGone = errors.New("cluster: session gone")

func (b *Bus) Leave(gate, session, channel string) error {
	if err := ValidateChannel(channel); err != nil {
		return err
	}
	return b.Send(b.gateControl(gate), &Envelope{Type: TypeLeave, Session: session, Channel: channel})
}

// SetUser binds a session to a user id (empty unbinds).
func (b *Bus) SetUser(gate, session, user string) error {
	return b.Send(b.gateControl(gate), &Envelope{Type: TypeSetUser, Session: session, User: user})
}

// Flush waits up to timeout until the server has processed everything
// published so far, on every connection.
func (b *Bus) Flush(timeout time.Duration) error {
	end := time.Now().Add(timeout)
	for _, c := range b.pubs {
		left := time.Until(end)
		if left <= 0 {
			return nats.ErrTimeout
		}
		if err := c.FlushTimeout(left); err != nil {
			return err
		}
	}
	return nil
}
