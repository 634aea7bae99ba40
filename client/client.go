// Package client is hearth's Go client SDK. It speaks the hearth client
// protocol (version 1, see PROTOCOL.md) over TCP or WebSocket, with or
// without TLS, and is what bots, load tests (`hearth bench`) and end-to-end
// tests use.
//
// A Client holds one connection to a gate. Dial connects and completes the
// handshake; Request sends a REQUEST and waits for its RESPONSE; Notify sends
// a NOTIFY; OnPush registers handlers for server PUSHes. Payloads are protobuf
// messages encoded with the session codec: binary protobuf for "protobuf",
// protojson (proto field names, unknown fields discarded on decode) for
// "json". The Raw variants move payload bytes untouched.
//
// All methods are safe for concurrent use. Each client runs one reader
// goroutine, a push goroutine started by the first push that has a handler,
// and one heartbeat timer; no goroutine is started per request. Frames are
// encoded outside any lock and written with one write call each, under a
// per-client mutex, so frames from concurrent goroutines never interleave.
//
// Errors that cross the wire are *wire.Error: a RESPONSE with a non-zero
// status, and the KICK that ended a connection (see Client.Err).
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/hearth-server/hearth/wire"
)

// DefaultName is the handshake's "client" field when Options.Name is empty.
const DefaultName = "hearth-go/1"

// DefaultHandshakeTimeout bounds Dial when Options.HandshakeTimeout is zero.
const DefaultHandshakeTimeout = 5 * time.Second

// DefaultPushQueue is the number of received pushes that may wait for their
// handlers when Options.PushQueue is zero.
const DefaultPushQueue = 65536

var (
	// ErrClosed is returned by calls on a client that Close has closed, and
	// fails the requests pending when Close was called.
	ErrClosed = errors.New("hearth client: closed")

	// ErrHeartbeatTimeout ends a client whose server has sent nothing for
	// three heartbeat intervals.
	ErrHeartbeatTimeout = errors.New("hearth client: server silent for 3 heartbeat intervals")

	// ErrPushQueueFull ends a client whose push handlers fell more than
	// Options.PushQueue pushes behind the connection.
	ErrPushQueueFull = errors.New("hearth client: push queue full (push handlers too slow)")
)

// Options configures Dial. The zero value is a plain JSON session.
type Options struct {
	// Codec is the session codec, wire.CodecJSON ("json") or
	// wire.CodecProtobuf ("protobuf"); zero means "json".
	Codec string

	// TLS is used for tls:// and wss:// addresses, and, when non-nil, for
	// tcp:// and ws:// addresses too (TLS over them). Nil for tls:// and
	// wss:// means a default config verifying the server name from the
	// address.
	TLS *tls.Config

	// Name is the handshake's "client" field; zero means DefaultName.
	Name string

	// MaxFrame is the largest frame body accepted from the server; zero means
	// wire.DefaultMaxFrame. It applies to HANDSHAKE_ACK too; a larger frame
	// fails Dial or ends the client.
	MaxFrame int

	// UseRouteIDs sends numeric route ids from the handshake-ack dictionary
	// for routes it lists, and route strings for the others.
	UseRouteIDs bool

	// HandshakeTimeout bounds all of Dial: connecting, the TLS and WebSocket
	// handshakes, and waiting for HANDSHAKE_ACK; zero means 5s.
	HandshakeTimeout time.Duration

	// Resume and LastPush resume a session: the token from a previous
	// HandshakeAck.Resume and the highest push_seq handled (see
	// Client.LastPush). Zero: a new session.
	Resume   string
	LastPush uint64

	// OnPush, if set, is installed as the catch-all push handler (the ""
	// route of Client.OnPush) before the handshake, so that pushes the
	// server sends right after HANDSHAKE_ACK (a resume replays them there)
	// are not missed.
	OnPush func(Push)

	// PushQueue bounds the pushes received but not yet handled (queued or
	// in a handler); zero means DefaultPushQueue. The reader never waits for push handlers: if they fall
	// further behind, the client ends with ErrPushQueueFull (resume the
	// session to recover the pushes).
	PushQueue int
}

// Push is one PUSH from the server.
type Push struct {
	Seq     uint64 // push_seq: 1, 2, … per session
	Route   string // route name (an id route is translated with the ack dictionary)
	Payload []byte // encoded with the session codec; owned by the handler
}

// Client is one connection to a hearth gate. Create it with Dial.
type Client struct {
	opts     Options
	json     bool
	ack      wire.HandshakeAck
	routeIDs map[string]uint16 // route → id, when Options.UseRouteIDs
	idRoutes map[uint16]string // id → route, for PUSHes with a route id
	hb       time.Duration     // heartbeat interval, 0 = none

	tr     transport
	prefix int // bytes reserved in front of each frame body: 4 for TCP, 0 for WS

	seq atomic.Uint32
	wmu sync.Mutex // serialises tr.write

	mu         sync.Mutex
	pending    map[uint32]*waiter // nil once closed
	closed     bool
	err        error
	hbTimer    *time.Timer
	done       chan struct{}
	readerDone chan struct{}

	lastSend  atomic.Int64 // mono() of the last frame written
	lastRecv  atomic.Int64 // mono() of the last frame read
	lastPush  atomic.Uint64
	pingClock atomic.Uint64 // clock of the last PING we sent
	pingMono  atomic.Int64  // mono() when it was sent
	rtt       atomic.Int64

	hmu      sync.Mutex                            // serialises OnPush
	handlers atomic.Pointer[map[string]func(Push)] // copy on write
	pushes   pushQueue
	pushing  bool              // push goroutine started; reader goroutine only
	intern   map[string]string // route names seen in pushes; reader goroutine only
}

// waiter is one pending request. Waiters are pooled: the reader (or the
// shutdown path) fills status/err/buf after taking the waiter out of the
// pending map, then signals ch (buffered 1), which hands it back to the
// requester.
type waiter struct {
	ch     chan struct{}
	status wire.Code
	err    error
	buf    []byte
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan struct{}, 1)} }}

func getWaiter() *waiter { return waiterPool.Get().(*waiter) }

func putWaiter(w *waiter) {
	w.status, w.err = 0, nil
	if cap(w.buf) > 16<<10 {
		w.buf = nil
	}
	waiterPool.Put(w)
}

// bufPool holds frame encoding buffers.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func putBuf(p *[]byte, b []byte) {
	if cap(b) < 64 || cap(b) > 64<<10 {
		return
	}
	*p = b[:0]
	bufPool.Put(p)
}

var epoch = time.Now()

// mono is a monotonic clock in nanoseconds.
func mono() int64 { return int64(time.Since(epoch)) }

// Dial connects to a gate and completes the handshake. addr is
// "tcp://host:port", "tls://host:port", "ws://host:port/ws" or
// "wss://host:port/ws"; a bare "host:port" means tcp://. A KICK in answer to
// the handshake is returned as *wire.Error with the kick's code and reason.
func Dial(ctx context.Context, addr string, opts Options) (*Client, error) {
	if opts.Codec == "" {
		opts.Codec = wire.CodecJSON
	}
	if !wire.ValidCodec(opts.Codec) {
		return nil, fmt.Errorf("hearth client: unknown codec %q", opts.Codec)
	}
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if opts.MaxFrame <= 0 {
		opts.MaxFrame = wire.DefaultMaxFrame
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if opts.PushQueue <= 0 {
		opts.PushQueue = DefaultPushQueue
	}
	hs, err := json.Marshal(wire.Handshake{
		Version:  wire.Version,
		Codec:    opts.Codec,
		Client:   opts.Name,
		Resume:   opts.Resume,
		LastPush: opts.LastPush,
	})
	if err != nil {
		return nil, err
	}

	hctx, cancel := context.WithTimeout(ctx, opts.HandshakeTimeout)
	defer cancel()
	tr, prefix, err := dialTransport(hctx, addr, &opts)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	c := &Client{
		opts:       opts,
		json:       opts.Codec == wire.CodecJSON,
		tr:         tr,
		prefix:     prefix,
		pending:    make(map[uint32]*waiter),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
		intern:     make(map[string]string),
	}
	c.pushes.limit = opts.PushQueue
	c.pushes.cond.L = &c.pushes.mu
	c.lastPush.Store(opts.LastPush)
	hm := map[string]func(Push){}
	if opts.OnPush != nil {
		hm[""] = opts.OnPush
	}
	c.handlers.Store(&hm)

	frame := c.finish(wire.AppendHandshake(make([]byte, prefix, prefix+wire.HeaderSize+len(hs)), hs))
	body, err := tr.exchange(hctx, frame)
	switch {
	case err == nil:
		err = c.handleAck(body)
	case ctx.Err() != nil:
		err = ctx.Err()
	case hctx.Err() != nil:
		err = fmt.Errorf("hearth client: handshake: %w", hctx.Err())
	default:
		err = fmt.Errorf("hearth client: handshake: %w", err)
	}
	if err != nil {
		tr.close(false)
		return nil, err
	}

	now := mono()
	c.lastSend.Store(now)
	c.lastRecv.Store(now)
	if c.ack.HeartbeatMS > 0 {
		c.hb = time.Duration(c.ack.HeartbeatMS) * time.Millisecond
		c.mu.Lock()
		c.hbTimer = time.AfterFunc(c.hb, c.heartbeat)
		c.mu.Unlock()
	}
	go c.readLoop()
	return c, nil
}

// handleAck processes the server's answer to HANDSHAKE.
func (c *Client) handleAck(body []byte) error {
	f, err := wire.Decode(body)
	if err != nil {
		return fmt.Errorf("hearth client: bad handshake reply: %w", err)
	}
	switch f.Kind {
	case wire.KindHandshakeAck:
		if err := json.Unmarshal(f.Payload, &c.ack); err != nil {
			return fmt.Errorf("hearth client: bad HANDSHAKE_ACK: %w", err)
		}
	case wire.KindKick:
		return &wire.Error{Code: f.Status, Message: string(f.Payload)}
	default:
		return fmt.Errorf("hearth client: server answered HANDSHAKE with %v", f.Kind)
	}
	c.idRoutes = make(map[uint16]string, len(c.ack.Routes))
	for r, id := range c.ack.Routes {
		c.idRoutes[id] = r
	}
	if c.opts.UseRouteIDs {
		c.routeIDs = c.ack.Routes
	}
	return nil
}

// Ack returns the server's HANDSHAKE_ACK. Its Routes map is shared: do not
// modify it.
func (c *Client) Ack() wire.HandshakeAck { return c.ack }

// SessionID returns the session id from the handshake ack.
func (c *Client) SessionID() string { return c.ack.Session }

// Codec returns the session codec, "json" or "protobuf".
func (c *Client) Codec() string { return c.opts.Codec }

// LastPush returns the highest push_seq received (Options.LastPush before
// the first push). Pass it with HandshakeAck.Resume to resume the session.
func (c *Client) LastPush() uint64 { return c.lastPush.Load() }

// RTT returns the round-trip time measured by the last heartbeat PING the
// client sent and the server answered, or 0 if none has been answered yet.
func (c *Client) RTT() time.Duration { return time.Duration(c.rtt.Load()) }

// Done returns a channel that is closed when the connection ends.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended: the *wire.Error of the server's
// KICK (Code: the kick code, Message: the reason); another error for I/O
// failures, protocol violations by the server (wrapping the wire decode
// error), ErrHeartbeatTimeout or ErrPushQueueFull; nil while the
// connection is up and after Close.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection (over WebSocket with a close handshake) and
// fails pending requests with ErrClosed. It waits for the reader goroutine
// to end, but not for push handlers, which still run for pushes received
// before the end; so Close may be called from a push handler. Closing a
// closed client does nothing.
func (c *Client) Close() error {
	c.shutdown(nil)
	<-c.readerDone
	return nil
}

// connErr is the error for calls on an ended client. c.mu must be held.
func (c *Client) connErrLocked() error {
	if c.err != nil {
		return c.err
	}
	return ErrClosed
}

func (c *Client) connErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connErrLocked()
}

// shutdown ends the client once: records err (nil: closed by Close), fails
// pending requests, stops the heartbeat and closes the connection.
func (c *Client) shutdown(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.err = err
	pending := c.pending
	c.pending = nil
	t := c.hbTimer
	ferr := c.connErrLocked()
	c.mu.Unlock()

	if t != nil {
		t.Stop()
	}
	for _, w := range pending {
		w.err = ferr
		w.ch <- struct{}{}
	}
	c.tr.close(err == nil)
	close(c.done)
}

// send writes one encoded frame.
func (c *Client) send(frame []byte) error {
	c.wmu.Lock()
	err := c.tr.write(frame)
	c.wmu.Unlock()
	if err != nil {
		return err
	}
	c.lastSend.Store(mono())
	return nil
}

// finish fills in the TCP length prefix of a frame built after c.prefix
// reserved bytes.
func (c *Client) finish(b []byte) []byte {
	if c.prefix > 0 {
		wire.AppendLength(b[:0], len(b)-c.prefix)
	}
	return b
}

// appendFrame appends a REQUEST (seq != 0) or NOTIFY frame, with the TCP
// length prefix, to b (which must be empty).
func (c *Client) appendFrame(b []byte, request bool, seq uint32, route string, msg proto.Message, raw []byte, isRaw bool) ([]byte, error) {
	if cap(b) < c.prefix {
		b = make([]byte, 0, 512)
	}
	b = b[:c.prefix]
	id, useID := c.routeIDs[route]
	switch {
	case useID && request:
		b = wire.AppendRequestID(b, seq, id, nil)
	case useID:
		b = wire.AppendNotifyID(b, id, nil)
	case !wire.ValidRoute(route):
		return b, &wire.Error{Code: wire.CodeBadRoute, Message: fmt.Sprintf("invalid route %q", route)}
	case request:
		b = wire.AppendRequest(b, seq, route, nil)
	default:
		b = wire.AppendNotify(b, route, nil)
	}
	if isRaw {
		b = append(b, raw...)
	} else {
		var err error
		if b, err = c.appendMessage(b, msg); err != nil {
			return b, err
		}
	}
	return c.finish(b), nil
}

var (
	jsonMarshal   = protojson.MarshalOptions{UseProtoNames: true}
	jsonUnmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}
)

// appendMessage appends msg encoded with the session codec; nil is an empty
// message.
func (c *Client) appendMessage(b []byte, msg proto.Message) ([]byte, error) {
	if c.json {
		if msg == nil {
			return append(b, '{', '}'), nil
		}
		return jsonMarshal.MarshalAppend(b, msg)
	}
	if msg == nil {
		return b, nil
	}
	return proto.MarshalOptions{}.MarshalAppend(b, msg)
}

// Encode returns msg encoded with the session codec (nil is an empty
// message), for use with RequestRaw and NotifyRaw.
func (c *Client) Encode(msg proto.Message) ([]byte, error) { return c.appendMessage(nil, msg) }

// Decode decodes a payload (a response or a Push.Payload) with the session
// codec into msg. An empty payload is an empty message.
func (c *Client) Decode(payload []byte, msg proto.Message) error {
	if c.json {
		if len(payload) == 0 {
			proto.Reset(msg)
			return nil
		}
		return jsonUnmarshal.Unmarshal(payload, msg)
	}
	return proto.Unmarshal(payload, msg)
}

// Request sends req on route and decodes the result into resp (which may be
// nil to ignore it; req may be nil for an empty message). A non-zero
// response status is returned as *wire.Error{Code: status, Message: the
// server's message}. If ctx ends first Request returns ctx.Err() (a late
// response is discarded); if the connection ends first, the connection's
// error (see Err; ErrClosed after Close). The write itself is not
// interruptible by ctx: it waits until the connection accepts the frame or
// ends.
func (c *Client) Request(ctx context.Context, route string, req, resp proto.Message) error {
	w, err := c.roundTrip(ctx, route, req, nil, false)
	if err != nil {
		return err
	}
	if resp != nil {
		err = c.Decode(w.buf, resp)
	}
	putWaiter(w)
	return err
}

// RequestRaw is Request with payloads already encoded with the session
// codec. The returned result is owned by the caller.
func (c *Client) RequestRaw(ctx context.Context, route string, payload []byte) ([]byte, error) {
	w, err := c.roundTrip(ctx, route, nil, payload, true)
	if err != nil {
		return nil, err
	}
	b := w.buf
	w.buf = nil
	putWaiter(w)
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// roundTrip sends a REQUEST and waits for its RESPONSE. On success the
// returned waiter holds the result payload in buf; the caller must putWaiter.
func (c *Client) roundTrip(ctx context.Context, route string, msg proto.Message, raw []byte, isRaw bool) (*waiter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	seq := c.seq.Add(1)
	bp := bufPool.Get().(*[]byte)
	b, err := c.appendFrame(*bp, true, seq, route, msg, raw, isRaw)
	if err != nil {
		putBuf(bp, b)
		return nil, err
	}
	w := getWaiter()
	c.mu.Lock()
	if c.closed {
		err := c.connErrLocked()
		c.mu.Unlock()
		putBuf(bp, b)
		putWaiter(w)
		return nil, err
	}
	c.pending[seq] = w
	c.mu.Unlock()

	err = c.send(b)
	putBuf(bp, b)
	if err != nil {
		// Failing the connection fails w too (it is pending), with the
		// connection's error.
		c.shutdown(fmt.Errorf("hearth client: write: %w", err))
		<-w.ch
	} else {
		select {
		case <-w.ch:
		case <-ctx.Done():
			c.mu.Lock()
			mine := c.pending[seq] == w
			if mine {
				delete(c.pending, seq)
			}
			c.mu.Unlock()
			if mine {
				putWaiter(w)
				return nil, ctx.Err()
			}
			// The reader or shutdown took w first and is signalling it.
			<-w.ch
		}
	}
	if w.err != nil {
		err := w.err
		putWaiter(w)
		return nil, err
	}
	if w.status != wire.OK {
		err := &wire.Error{Code: w.status, Message: string(w.buf)}
		putWaiter(w)
		return nil, err
	}
	return w, nil
}

// Notify sends msg on route as a NOTIFY (no response). ctx is only checked
// before sending: the write waits until the connection accepts the frame or
// ends.
func (c *Client) Notify(ctx context.Context, route string, msg proto.Message) error {
	return c.notify(ctx, route, msg, nil, false)
}

// NotifyRaw is Notify with a payload already encoded with the session codec.
func (c *Client) NotifyRaw(ctx context.Context, route string, payload []byte) error {
	return c.notify(ctx, route, nil, payload, true)
}

func (c *Client) notify(ctx context.Context, route string, msg proto.Message, raw []byte, isRaw bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return c.connErr()
	}
	bp := bufPool.Get().(*[]byte)
	b, err := c.appendFrame(*bp, false, 0, route, msg, raw, isRaw)
	if err == nil {
		err = c.send(b)
		if err != nil {
			c.shutdown(fmt.Errorf("hearth client: write: %w", err))
			err = c.connErr()
		}
	}
	putBuf(bp, b)
	return err
}

// OnPush registers fn for pushes on route, replacing any previous handler
// for it; route "" is the catch-all for pushes no specific handler matches,
// and a nil fn removes the handler. Pushes with no handler are dropped
// (LastPush still counts them). All handlers run on one goroutine, in push
// order; a slow handler delays the others (see Options.PushQueue).
func (c *Client) OnPush(route string, fn func(Push)) {
	c.hmu.Lock()
	defer c.hmu.Unlock()
	old := *c.handlers.Load()
	m := make(map[string]func(Push), len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	if fn == nil {
		delete(m, route)
	} else {
		m[route] = fn
	}
	c.handlers.Store(&m)
}

// readLoop is the reader goroutine.
func (c *Client) readLoop() {
	defer close(c.readerDone)
	defer c.pushes.close()
	for {
		body, err := c.tr.read()
		if err != nil {
			var we *wire.Error
			switch {
			case errors.As(err, &we):
				err = fmt.Errorf("hearth client: bad frame from server: %w", err)
			case errors.Is(err, io.EOF):
				err = fmt.Errorf("hearth client: connection closed by server: %w", err)
			default:
				err = fmt.Errorf("hearth client: read: %w", err)
			}
			c.shutdown(err)
			return
		}
		c.lastRecv.Store(mono())
		if err := c.dispatch(body); err != nil {
			c.shutdown(err)
			return
		}
	}
}

// dispatch handles one frame from the server; an error ends the client.
func (c *Client) dispatch(body []byte) error {
	f, err := wire.Decode(body)
	if err != nil {
		return fmt.Errorf("hearth client: bad frame from server: %w", err)
	}
	switch f.Kind {
	case wire.KindResponse:
		c.mu.Lock()
		w := c.pending[f.Seq]
		if w != nil {
			delete(c.pending, f.Seq)
		}
		c.mu.Unlock()
		if w == nil {
			return nil // its request gave up (ctx ended): discard
		}
		w.status = f.Status
		w.buf = append(w.buf[:0], f.Payload...)
		w.ch <- struct{}{}
	case wire.KindPush:
		return c.dispatchPush(&f)
	case wire.KindPing:
		var a [wire.LengthSize + wire.HeaderSize + 8]byte
		if err := c.send(c.finish(wire.AppendPong(a[:c.prefix], f.Clock))); err != nil {
			return fmt.Errorf("hearth client: write: %w", err)
		}
	case wire.KindPong:
		if f.Clock == c.pingClock.Load() {
			c.rtt.Store(mono() - c.pingMono.Load())
		}
	case wire.KindKick:
		return &wire.Error{Code: f.Status, Message: string(f.Payload)}
	default:
		return fmt.Errorf("hearth client: unexpected %v frame from server", f.Kind)
	}
	return nil
}

func (c *Client) dispatchPush(f *wire.Frame) error {
	var route string
	if f.HasRouteID() {
		r, ok := c.idRoutes[f.RouteID]
		if !ok {
			return fmt.Errorf("hearth client: push with unknown route id %d", f.RouteID)
		}
		route = r
	} else if r, ok := c.intern[string(f.Route)]; ok {
		route = r
	} else {
		route = string(f.Route)
		if len(c.intern) < 256 {
			c.intern[route] = route
		}
	}
	handled := len(*c.handlers.Load()) != 0
	if handled && !c.pushes.put(Push{Seq: f.PushSeq, Route: route, Payload: bytes.Clone(f.Payload)}) {
		return ErrPushQueueFull // not counted in LastPush: it will not be handled
	}
	if f.PushSeq > c.lastPush.Load() {
		c.lastPush.Store(f.PushSeq)
	}
	if handled && !c.pushing {
		c.pushing = true
		go c.pushLoop()
	}
	return nil
}

// pushLoop runs the push handlers until the reader has ended and every
// queued push is handled.
func (c *Client) pushLoop() {
	var batch []Push
	for {
		var ok bool
		batch, ok = c.pushes.take(batch)
		if !ok {
			return
		}
		for i := range batch {
			p := batch[i]
			batch[i] = Push{}
			h := *c.handlers.Load()
			if fn, ok := h[p.Route]; ok {
				fn(p)
			} else if fn, ok := h[""]; ok {
				fn(p)
			}
			c.pushes.n.Add(-1)
		}
	}
}

// heartbeat runs on the client's one timer: it PINGs an idle connection
// and ends a client whose server has been silent for 3 heartbeats.
func (c *Client) heartbeat() {
	c.mu.Lock()
	t, closed := c.hbTimer, c.closed
	c.mu.Unlock()
	if closed {
		return
	}
	hb := int64(c.hb)
	now := mono()
	if now-c.lastRecv.Load() >= 3*hb {
		c.shutdown(ErrHeartbeatTimeout)
		return
	}
	if now-c.lastSend.Load() >= hb {
		clock := uint64(time.Now().UnixMilli())
		c.pingClock.Store(clock)
		c.pingMono.Store(now)
		var a [wire.LengthSize + wire.HeaderSize + 8]byte
		if err := c.send(c.finish(wire.AppendPing(a[:c.prefix], clock))); err != nil {
			c.shutdown(fmt.Errorf("hearth client: write: %w", err))
			return
		}
	}
	next := min(c.lastSend.Load()+hb, c.lastRecv.Load()+3*hb) - mono()
	t.Reset(max(time.Duration(next), time.Millisecond))
}

// pushQueue is the queue between the reader and the push goroutine.
type pushQueue struct {
	mu     sync.Mutex
	cond   sync.Cond
	items  []Push
	limit  int
	closed bool
	n      atomic.Int64 // pushes put and not yet handled
}

// put queues p; false if limit pushes are already unhandled. Only the
// reader puts, so the check cannot race with another put.
func (q *pushQueue) put(p Push) bool {
	if q.n.Load() >= int64(q.limit) {
		return false
	}
	q.n.Add(1)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items = append(q.items, p)
	if len(q.items) == 1 {
		q.cond.Signal()
	}
	return true
}

// take waits for queued pushes and returns them all, reusing spare as the
// next queue; false once the queue is closed and empty.
func (q *pushQueue) take(spare []Push) ([]Push, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if len(q.items) == 0 {
		return nil, false
	}
	out := q.items
	q.items = spare[:0]
	return out, true
}

func (q *pushQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Signal()
	q.mu.Unlock()
}
