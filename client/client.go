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
// goroutine (which also reconnects), a push goroutine while pushes that
// have a handler (or events) wait or are being handled, which ends when
// they are all handled so that an idle client holds no stack for it (with
// Options.PushOnReader the reader runs the push handlers itself), and
// one heartbeat timer; with Options.Poller a Poller's goroutines, shared
// by many clients, are the reader instead (Linux, plain TCP); no
// goroutine is started per request (a resume starts one to send the
// unanswered requests again). Frames are
// encoded outside any lock and written with one write call each, under a
// per-client mutex, so frames from concurrent goroutines never interleave.
//
// Errors that cross the wire are *wire.Error: a RESPONSE with a non-zero
// status, and the KICK that ended a connection (see Client.Err).
//
// With Options.Reconnect the client survives a lost connection: it connects
// again (to the gate a draining server suggested, the Dial address or
// Options.Addrs), resumes the session with its resume token and LastPush,
// re-sends every unanswered request with its original seq, and reports
// Disconnected, Resumed and Lost events (see Options.OnEvent). Without it a
// lost connection ends the client.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"runtime"
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

	// ErrWriteTimeout fails a connection whose server has not taken a
	// frame for three heartbeat intervals: it stopped reading. (Without
	// heartbeats a write waits for as long as the connection lasts.)
	ErrWriteTimeout = errors.New("hearth client: server read nothing for 3 heartbeat intervals")

	// ErrPushQueueFull ends a client whose push handlers fell more than
	// Options.PushQueue pushes behind the connection.
	ErrPushQueueFull = errors.New("hearth client: push queue full (push handlers too slow)")

	// ErrRequestOnReader is returned by Request (and its variants), before
	// anything is sent, when a push handler running on the reader goroutine
	// (Options.PushOnReader) calls it: the response could never be read.
	ErrRequestOnReader = errors.New("hearth client: request from a push handler on the reader goroutine (Options.PushOnReader) would deadlock")

	// ErrNilMessage is returned, before anything is sent, by Request and
	// Decode given a typed nil pointer (a nil *pb.JoinResp) to decode into:
	// pass a new message, or an untyped nil to ignore the result.
	ErrNilMessage = errors.New("hearth client: nil message to decode into")
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
	// HandshakeAck.Resume (see Client.ResumeToken) and the highest push_seq
	// handled (see Client.LastPush). Zero: a new session.
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

	// PushOnReader runs the push handlers on the reader goroutine, as each
	// push is read, instead of handing each push to the push goroutine:
	// that saves a copy of the payload and a goroutine wake-up per push,
	// for clients whose handlers are quick (a load generator's bots). Push
	// order, LastPush and the de-duplication after a resume are as
	// without it; PushQueue and ErrPushQueueFull do not apply (except to
	// pushes that wait behind OnEvent, below).
	//
	// A handler's Push.Payload is then not copied: it is the reader's
	// buffer, valid only until the handler returns; copy what it keeps.
	// While a handler runs the client reads nothing, responses and
	// heartbeats included, so a handler must not block: it must not wait
	// for anything that needs this client's reader, and must not call
	// Request, RequestRaw or RequestJSON on this client (they return
	// ErrRequestOnReader rather than deadlock; a Request it waits for on
	// another goroutine deadlocks undetected). It may call Notify (whose
	// write waits while the connection is full), OnPush, and Close (which
	// then does not wait for the reader).
	//
	// OnEvent still runs on the push goroutine; pushes that arrive while
	// an event waits for it or is being handled wait behind it there, as
	// without PushOnReader (with copied payloads), so that events and push
	// handlers still run one at a time, in order. Zero: every handler runs
	// on the push goroutine.
	PushOnReader bool

	// Poller, if set, reads the connection (a tcp:// one without TLS) on
	// the Poller's goroutines, shared by every client given it, instead of
	// on a reader goroutine of the client's own: for a process that holds
	// many connections (a load generator's bots), which then costs neither a
	// goroutine nor a wake-up per frame read. The Poller's goroutine is
	// then the client's reader: with PushOnReader the push handlers run on
	// it, and one that blocks holds up every client it reads. Other
	// connections (TLS, WebSocket) are read on a goroutine of their own,
	// as without it. Nil: every client reads on its own goroutine.
	Poller *Poller

	// Reconnect makes the client reconnect and resume its session by itself
	// when the connection drops (EOF, reset, a failed write, the server
	// silent for 3 heartbeats) or the server sends KICK 7 (heartbeat
	// timeout) or KICK 303 (reconnect elsewhere). Meanwhile pending requests
	// stay pending and new Request and Notify calls wait (bounded by their
	// ctx); once resumed, every unanswered request is sent again with its
	// original seq (the server answers it from its response cache, never
	// executing it twice), replayed pushes arrive through the push handlers,
	// and pushes already received are dropped, so handlers see each
	// push_seq once, in order. Any other KICK, KICK 304 on resume, or
	// ReconnectTimeout passing ends the client with a Lost event. A NOTIFY
	// whose write fails is not sent again (it has no seq to deduplicate it):
	// Notify returns the write error. Zero: a lost connection ends the
	// client, and OnEvent is never called.
	Reconnect bool

	// Addrs are more gate addresses to reconnect to, after the one a
	// draining server suggested (KICK 303), the address of the connection
	// that dropped, and the Dial address, in that order, round-robin. Used
	// only with Reconnect.
	Addrs []string

	// Backoff is the wait before each round of reconnect attempts (one
	// attempt per address): Min before the first round, doubling each round
	// up to Max, each wait jittered to between half and all of it. Zero
	// fields: DefaultBackoffMin and DefaultBackoffMax.
	Backoff Backoff

	// ReconnectTimeout bounds the time from losing a connection to resuming
	// the session; when it passes the client ends with ErrReconnectTimeout
	// (a Lost event). Zero means DefaultReconnectTimeout, the server's
	// default resume grace.
	ReconnectTimeout time.Duration

	// OnEvent, if set, is called with the client's Disconnected, Resumed and
	// Lost events (only with Reconnect). It runs on the push goroutine, in
	// order with the push handlers: a Disconnected event follows the last
	// push received on the lost connection, a Resumed event precedes the
	// pushes the server replays. Like a push handler it may call Close.
	OnEvent func(Event)
}

// Push is one PUSH from the server.
type Push struct {
	Seq     uint64 // push_seq: 1, 2, … per session
	Route   string // route name (an id route is translated with the ack dictionary)
	Payload []byte // encoded with the session codec; owned by the handler (with Options.PushOnReader: valid only until it returns)
}

// Client is a session with a hearth gate. Create it with Dial.
type Client struct {
	opts     Options
	json     bool
	dialAddr string

	// cur is the current connection. It changes only with Options.Reconnect,
	// under mu, when a session is resumed on a new connection.
	cur atomic.Pointer[conn]

	seq atomic.Uint32

	mu         sync.Mutex
	pending    map[uint32]*waiter // nil once closed
	closed     bool
	up         bool          // cur is usable; false while reconnecting
	upCh       chan struct{} // closed when up again (Reconnect only)
	err        error
	hbTimer    *time.Timer
	done       chan struct{}
	readerDone chan struct{}

	// With Options.Reconnect: ctx ends when the client is closed, and
	// resends counts the goroutines re-sending requests after a resume.
	ctx     context.Context
	cancel  context.CancelFunc
	resends sync.WaitGroup

	lastSend  atomic.Int64 // mono() of the last frame written
	lastRecv  atomic.Int64 // mono() of the last frame read
	lastPush  atomic.Uint64
	pingClock atomic.Uint64 // clock of the last PING we sent
	pingMono  atomic.Int64  // mono() when it was sent
	rtt       atomic.Int64

	hmu      sync.Mutex                            // serialises OnPush
	handlers atomic.Pointer[map[string]func(Push)] // copy on write
	pushes   pushQueue
	intern   map[string]string // route names seen in pushes; reader goroutine only

	// onReader is the reader goroutine's id while it runs a push handler
	// (Options.PushOnReader), else 0; readerID is that id. Both are written
	// by the reader only. A goroutine that finds onReader equal to its own
	// id is that handler's: it set onReader itself before the call, so no
	// other goroutine's Request is refused by mistake.
	onReader atomic.Uint64
	readerID uint64
}

// conn is one connection of a client: the transport and what the
// handshake ack said. Only cause changes after the handshake.
type conn struct {
	tr       transport
	prefix   int  // bytes reserved in front of each frame body: 4 for TCP, 0 for WS
	polled   bool // tr was dialled for Options.Poller, which reads it
	addr     string
	ack      wire.HandshakeAck
	token    string            // the latest resume token
	routeIDs map[string]uint16 // route → id, when Options.UseRouteIDs
	idRoutes map[uint16]string // id → route, for PUSHes with a route id
	hb       time.Duration     // heartbeat interval, 0 = none
	wmu      sync.Mutex        // serialises tr.write
	writing  atomic.Int64      // mono() when the write under way began; 0: none
	stalled  atomic.Bool       // the heartbeat closed it: a write took 3 intervals

	cause error // why the client dropped it (Reconnect only); c.mu
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

	// With Options.Reconnect, the request, for sending it again after a
	// resume: its frame (from bufPool slot bp, the payload at frame[off:])
	// and route. Set under c.mu while the waiter is pending; released by the
	// requester once it is not.
	route string
	frame []byte
	off   int
	bp    *[]byte
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan struct{}, 1)} }}

func getWaiter() *waiter { return waiterPool.Get().(*waiter) }

func putWaiter(w *waiter) {
	w.release()
	w.status, w.err = 0, nil
	if cap(w.buf) > 16<<10 {
		w.buf = nil
	}
	waiterPool.Put(w)
}

// release returns the request frame kept for a resume to the pool.
func (w *waiter) release() {
	if w.bp != nil {
		putBuf(w.bp, w.frame)
		w.bp, w.frame, w.route = nil, nil, ""
	}
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
// Dial itself does not retry: Options.Reconnect applies once the session
// exists.
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
	if opts.Reconnect {
		if err := reconnectDefaults(&opts); err != nil {
			return nil, err
		}
	}
	c := &Client{
		opts:       opts,
		json:       opts.Codec == wire.CodecJSON,
		dialAddr:   addr,
		pending:    make(map[uint32]*waiter),
		up:         true,
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
		intern:     make(map[string]string),
	}
	c.pushes.limit = opts.PushQueue
	c.lastPush.Store(opts.LastPush)
	hm := map[string]func(Push){}
	if opts.OnPush != nil {
		hm[""] = opts.OnPush
	}
	c.handlers.Store(&hm)

	cn, err := c.connect(ctx, addr, opts.Resume, opts.LastPush)
	if err != nil {
		return nil, err
	}
	c.cur.Store(cn)
	now := mono()
	c.lastSend.Store(now)
	c.lastRecv.Store(now)
	if opts.Reconnect {
		c.ctx, c.cancel = context.WithCancel(context.Background())
	}
	// The heartbeat is armed before the reader starts, which may end the
	// client (and stop it) at once.
	c.mu.Lock()
	c.armHeartbeatLocked(cn)
	c.mu.Unlock()
	if !c.startReading(cn) {
		c.shutdown(ErrPollerClosed)
		return nil, ErrPollerClosed
	}
	return c, nil
}

// connect dials addr and completes a handshake (a resume if token is set),
// all within Options.HandshakeTimeout.
func (c *Client) connect(ctx context.Context, addr, token string, lastPush uint64) (*conn, error) {
	opts := &c.opts
	hs, err := json.Marshal(wire.Handshake{
		Version:  wire.Version,
		Codec:    opts.Codec,
		Client:   opts.Name,
		Resume:   token,
		LastPush: lastPush,
		MaxFrame: opts.MaxFrame,
	})
	if err != nil {
		return nil, err
	}

	hctx, cancel := context.WithTimeout(ctx, opts.HandshakeTimeout)
	defer cancel()
	tr, prefix, err := dialTransport(hctx, addr, opts)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	cn := &conn{tr: tr, prefix: prefix, addr: addr, polled: isPolled(tr)}
	frame := cn.finish(wire.AppendHandshake(make([]byte, prefix, prefix+wire.HeaderSize+len(hs)), hs))
	body, err := tr.exchange(hctx, frame)
	switch {
	case err == nil:
		err = c.handleAck(cn, body)
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
	cn.token = cn.ack.Resume
	if cn.token == "" {
		cn.token = token
	}
	if cn.ack.HeartbeatMS > 0 {
		cn.hb = time.Duration(cn.ack.HeartbeatMS) * time.Millisecond
	}
	return cn, nil
}

// handleAck processes the server's answer to HANDSHAKE. A KICK is returned
// as a bare *wire.Error, every other failure wrapped.
func (c *Client) handleAck(cn *conn, body []byte) error {
	f, err := wire.Decode(body)
	if err != nil {
		return fmt.Errorf("hearth client: bad handshake reply: %w", err)
	}
	switch f.Kind {
	case wire.KindHandshakeAck:
		if err := json.Unmarshal(f.Payload, &cn.ack); err != nil {
			return fmt.Errorf("hearth client: bad HANDSHAKE_ACK: %w", err)
		}
	case wire.KindKick:
		return &wire.Error{Code: f.Status, Message: string(f.Payload)}
	default:
		return fmt.Errorf("hearth client: server answered HANDSHAKE with %v", f.Kind)
	}
	d := sharedDict(cn.ack.Routes)
	cn.ack.Routes, cn.idRoutes = d.routes, d.ids
	if c.opts.UseRouteIDs {
		cn.routeIDs = d.routes
	}
	return nil
}

// routeDict is a handshake ack's route dictionary, both ways; it is not
// changed once made. A server gives every session the same dictionary, so
// the connections of a process share the last one seen instead of each
// keeping its own (a few KiB a connection, which adds up in load tests).
type routeDict struct {
	routes map[string]uint16
	ids    map[uint16]string
}

var lastDict atomic.Pointer[routeDict]

// sharedDict returns the dictionary for routes: the last one seen if it is
// the same.
func sharedDict(routes map[string]uint16) *routeDict {
	if d := lastDict.Load(); d != nil && len(routes) > 0 && maps.Equal(d.routes, routes) {
		return d
	}
	d := &routeDict{routes: routes, ids: make(map[uint16]string, len(routes))}
	for r, id := range routes {
		d.ids[id] = r
	}
	if len(routes) > 0 {
		lastDict.Store(d)
	}
	return d
}

// armHeartbeatLocked starts, restarts or stops the heartbeat timer for cn.
// c.mu must be held.
func (c *Client) armHeartbeatLocked(cn *conn) {
	switch {
	case cn.hb > 0 && c.hbTimer == nil:
		c.hbTimer = time.AfterFunc(cn.hb, c.heartbeat)
	case cn.hb > 0:
		c.hbTimer.Reset(cn.hb)
	case c.hbTimer != nil:
		c.hbTimer.Stop()
	}
}

// Ack returns the server's HANDSHAKE_ACK (after a resume, the latest). Its
// Routes map is shared: do not modify it.
func (c *Client) Ack() wire.HandshakeAck { return c.cur.Load().ack }

// SessionID returns the session id from the handshake ack.
func (c *Client) SessionID() string { return c.cur.Load().ack.Session }

// ResumeToken returns the latest resume token the server issued (a new one
// comes with every HANDSHAKE_ACK), or Options.Resume if it issued none.
// Pass it with LastPush in Options.Resume to resume the session by hand.
func (c *Client) ResumeToken() string { return c.cur.Load().token }

// Codec returns the session codec, "json" or "protobuf".
func (c *Client) Codec() string { return c.opts.Codec }

// LastPush returns the highest push_seq received (Options.LastPush before
// the first push). Pass it with ResumeToken to resume the session.
func (c *Client) LastPush() uint64 { return c.lastPush.Load() }

// RTT returns the round-trip time measured by the last heartbeat PING the
// client sent and the server answered, or 0 if none has been answered yet.
func (c *Client) RTT() time.Duration { return time.Duration(c.rtt.Load()) }

// Done returns a channel that is closed when the client ends: when the
// connection ends, or with Options.Reconnect when the session is lost.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the client ended: the *wire.Error of the server's
// KICK (Code: the kick code, Message: the reason; 304 when a resume was
// refused); another error for I/O failures, protocol violations by the
// server (wrapping the wire decode error), ErrHeartbeatTimeout,
// ErrPushQueueFull or ErrReconnectTimeout; nil while the client is up (or
// reconnecting) and after Close.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection (over WebSocket with a close handshake), or
// stops reconnecting, and fails pending requests with ErrClosed. It waits
// for the reader goroutine to end (and so for a handler running on it, with
// Options.PushOnReader), but not for the push goroutine's handlers, which
// still run for pushes received before the end; so Close may be called
// from a push handler or OnEvent (from a handler on the reader it returns
// at once: the reader ends when the handler returns). Closing a closed
// client does nothing.
func (c *Client) Close() error {
	c.shutdown(nil)
	if c.inHandlerOnReader() {
		return nil
	}
	<-c.readerDone
	return nil
}

// inHandlerOnReader reports whether the caller is a push handler running on
// the reader goroutine (Options.PushOnReader). Only while one runs does it
// cost more than an atomic load: reading the caller's goroutine id.
func (c *Client) inHandlerOnReader() bool {
	id := c.onReader.Load()
	return id != 0 && id == goid()
}

// goid returns the calling goroutine's id, from the first line of its
// stack trace ("goroutine 42 [running]:"). The runtime never reuses ids.
func goid() uint64 {
	var buf [32]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	var id uint64
	for _, d := range b {
		if d < '0' || d > '9' {
			break
		}
		id = id*10 + uint64(d-'0')
	}
	return id
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
// pending requests, stops the heartbeat and closes the connection. It
// reports whether it did (false: already ended).
func (c *Client) shutdown(err error) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.closed = true
	c.err = err
	pending := c.pending
	c.pending = nil
	t := c.hbTimer
	up := c.up
	ferr := c.connErrLocked()
	c.mu.Unlock()

	if c.cancel != nil {
		c.cancel()
	}
	if t != nil {
		t.Stop()
	}
	for _, w := range pending {
		w.err = ferr
		w.ch <- struct{}{}
	}
	if up { // else the dropped connection is closed already
		cn := c.cur.Load()
		if err == nil {
			// Close ends the session at once rather than leaving it
			// resumable for the server's grace period.
			var a [16]byte
			_ = c.send(cn, cn.finish(wire.AppendBye(a[:cn.prefix])))
		}
		cn.tr.close(err == nil)
	}
	close(c.done)
	return true
}

// fail handles a failure of connection cn (a write error, the server
// silent): without Options.Reconnect it ends the client, with it it drops
// cn so that the reader reconnects.
func (c *Client) fail(cn *conn, err error) {
	if !c.opts.Reconnect {
		c.shutdown(err)
		return
	}
	c.drop(cn, err)
}

// drop closes cn, recording err as the reason, for the reader to report.
func (c *Client) drop(cn *conn, err error) {
	c.mu.Lock()
	if cn.cause == nil {
		cn.cause = err
	}
	c.mu.Unlock()
	cn.tr.close(false)
}

// dropCause returns the reason drop recorded for cn, if any.
func (c *Client) dropCause(cn *conn) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return cn.cause
}

// send writes one encoded frame on cn.
func (c *Client) send(cn *conn, frame []byte) error {
	cn.wmu.Lock()
	err := cn.write(frame)
	cn.wmu.Unlock()
	if err != nil {
		return err
	}
	c.lastSend.Store(mono())
	return nil
}

// write writes frame on cn, marking the write under way for the heartbeat
// (which fails a connection whose write has not ended in 3 intervals: its
// server stopped reading). cn.wmu must be held.
func (cn *conn) write(frame []byte) error {
	cn.writing.Store(mono())
	err := cn.tr.write(frame)
	cn.writing.Store(0)
	if err != nil && cn.stalled.Load() {
		return fmt.Errorf("%w (%v)", ErrWriteTimeout, err)
	}
	return err
}

// finish fills in the TCP length prefix of a frame built after cn.prefix
// reserved bytes.
func (cn *conn) finish(b []byte) []byte {
	if cn.prefix > 0 {
		wire.AppendLength(b[:0], len(b)-cn.prefix)
	}
	return b
}

// appendFrame appends a REQUEST (seq != 0) or NOTIFY frame for cn, with the
// TCP length prefix, to b (which must be empty). off is where the payload
// starts.
func (c *Client) appendFrame(cn *conn, b []byte, request bool, seq uint32, route string, msg proto.Message, raw []byte, isRaw bool) (_ []byte, off int, _ error) {
	if cap(b) < cn.prefix {
		b = make([]byte, 0, 512)
	}
	b = b[:cn.prefix]
	id, useID := cn.routeIDs[route]
	switch {
	case useID && request:
		b = wire.AppendRequestID(b, seq, id, nil)
	case useID:
		b = wire.AppendNotifyID(b, id, nil)
	case !wire.ValidRoute(route):
		return b, 0, &wire.Error{Code: wire.CodeBadRoute, Message: fmt.Sprintf("invalid route %q", route)}
	case request:
		b = wire.AppendRequest(b, seq, route, nil)
	default:
		b = wire.AppendNotify(b, route, nil)
	}
	off = len(b)
	if isRaw {
		b = append(b, raw...)
	} else {
		var err error
		if b, err = c.appendMessage(b, msg); err != nil {
			return b, 0, err
		}
	}
	return cn.finish(b), off, nil
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
	if err := checkTarget(msg); err != nil {
		return err
	}
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
// nil to ignore it, but not a typed nil pointer: that is ErrNilMessage;
// req may be nil for an empty message). A non-zero
// response status is returned as *wire.Error{Code: status, Message: the
// server's message}. If ctx ends first Request returns ctx.Err() (a late
// response is discarded); if the client ends first, the client's error
// (see Err; ErrClosed after Close). The write itself is not interruptible
// by ctx: it waits until the connection accepts the frame or ends — at most
// 3 heartbeat intervals when the server asked for heartbeats, after which
// the connection fails with ErrWriteTimeout. With
// Options.Reconnect a lost connection does not fail the request: it is sent
// again, with the same seq, once the session is resumed.
func (c *Client) Request(ctx context.Context, route string, req, resp proto.Message) error {
	if resp != nil {
		if err := checkTarget(resp); err != nil {
			return err
		}
	}
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

// checkTarget refuses a typed nil message (a nil *pb.X), which decoding
// would panic on.
func checkTarget(msg proto.Message) error {
	if msg == nil || !msg.ProtoReflect().IsValid() {
		return fmt.Errorf("%w: %T", ErrNilMessage, msg)
	}
	return nil
}

// RequestRaw is Request with payloads already encoded with the session
// codec. The returned result is owned by the caller.
func (c *Client) RequestRaw(ctx context.Context, route string, payload []byte) ([]byte, error) {
	return c.RequestRawAppend(ctx, route, payload, []byte{})
}

// RequestRawAppend is RequestRaw appending the result to dst (which may be
// nil) and returning the extended buffer, or dst unchanged with an error:
// a caller that reuses one buffer allocates nothing for results. The
// reader goroutine copies a result into a pooled buffer, and this call
// copies it out, so that reading one allocates nothing on the reader.
func (c *Client) RequestRawAppend(ctx context.Context, route string, payload, dst []byte) ([]byte, error) {
	w, err := c.roundTrip(ctx, route, nil, payload, true)
	if err != nil {
		return dst, err
	}
	dst = append(dst, w.buf...)
	putWaiter(w)
	return dst, nil
}

// roundTrip sends a REQUEST and waits for its RESPONSE. On success the
// returned waiter holds the result payload in buf; the caller must putWaiter.
func (c *Client) roundTrip(ctx context.Context, route string, msg proto.Message, raw []byte, isRaw bool) (*waiter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if c.inHandlerOnReader() {
		return nil, fmt.Errorf("%w: %s", ErrRequestOnReader, route)
	}
	seq := c.seq.Add(1)
	w := getWaiter()
	for {
		cn := c.cur.Load()
		bp := bufPool.Get().(*[]byte)
		b, off, err := c.appendFrame(cn, *bp, true, seq, route, msg, raw, isRaw)
		if err != nil {
			putBuf(bp, b)
			putWaiter(w)
			return nil, err
		}
		c.mu.Lock()
		if c.closed {
			err := c.connErrLocked()
			c.mu.Unlock()
			putBuf(bp, b)
			putWaiter(w)
			return nil, err
		}
		if c.cur.Load() != cn {
			// Resumed on another connection meanwhile (Reconnect only):
			// encode for that one.
			c.mu.Unlock()
			putBuf(bp, b)
			continue
		}
		c.pending[seq] = w
		up := c.up
		if c.opts.Reconnect {
			w.route, w.frame, w.off, w.bp = route, b, off, bp
		}
		c.mu.Unlock()

		if up { // else it is sent when the session is resumed
			err = c.send(cn, b)
		}
		if !c.opts.Reconnect {
			putBuf(bp, b)
			if err != nil {
				// Failing the connection fails w too (it is pending), with
				// the connection's error.
				c.shutdown(fmt.Errorf("hearth client: write: %w", err))
				<-w.ch
				return c.result(w)
			}
		} else if err != nil {
			// w stays pending: it is sent again after the resume.
			c.drop(cn, fmt.Errorf("hearth client: write: %w", err))
		}
		break
	}
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
	return c.result(w)
}

// result turns a signalled waiter into roundTrip's result.
func (c *Client) result(w *waiter) (*waiter, error) {
	w.release()
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
// ends (at most 3 heartbeat intervals, as for Request). With
// Options.Reconnect, Notify waits (bounded by ctx) while the
// client reconnects, and returns the write error if the connection fails
// under it (the NOTIFY is not sent again).
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
	var cn *conn
	for {
		c.mu.Lock()
		closed, up, upCh := c.closed, c.up, c.upCh
		cn = c.cur.Load()
		c.mu.Unlock()
		if closed {
			return c.connErr()
		}
		if up {
			break
		}
		select {
		case <-upCh:
		case <-c.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	bp := bufPool.Get().(*[]byte)
	b, _, err := c.appendFrame(cn, *bp, false, 0, route, msg, raw, isRaw)
	if err == nil {
		err = c.send(cn, b)
		if err != nil {
			err = fmt.Errorf("hearth client: write: %w", err)
			c.fail(cn, err)
			if !c.opts.Reconnect {
				err = c.connErr()
			}
		}
	}
	putBuf(bp, b)
	return err
}

// OnPush registers fn for pushes on route, replacing any previous handler
// for it; route "" is the catch-all for pushes no specific handler matches,
// and a nil fn removes the handler. Pushes with no handler are dropped
// (LastPush still counts them). Handlers run one at a time, in push order,
// on the push goroutine (on the reader with Options.PushOnReader); a slow
// handler delays the others (see Options.PushQueue).
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

// run is the reader goroutine: it reads cn until it ends, then (with
// Options.Reconnect) resumes the session on a new connection and reads
// that, until the client ends.
func (c *Client) run(cn *conn) {
	defer close(c.readerDone)
	defer c.resends.Wait()
	if c.opts.PushOnReader {
		c.readerID = goid()
	}
	for {
		err, resumable := c.readLoop(cn)
		if cn = c.after(cn, err, resumable); cn == nil {
			return
		}
	}
}

// startReading has the client's Poller read cn, if cn was dialled for it,
// or starts a reader goroutine for cn; false if the Poller has stopped.
func (c *Client) startReading(cn *conn) bool {
	if cn.polled {
		return c.opts.Poller.add(c, cn)
	}
	go c.run(cn)
	return true
}

// after handles the end of reading cn, for which err is why: it ends the
// client, or (Options.Reconnect) resumes the session on a new connection,
// which it returns for reading. Nil: the client has ended.
func (c *Client) after(cn *conn, err error, resumable bool) *conn {
	if !c.opts.Reconnect {
		c.shutdown(err)
		return nil
	}
	cn.tr.close(false)
	if !resumable {
		c.lose(cn.addr, err)
		return nil
	}
	return c.reconnect(cn, err)
}

// polledEnd is the end of a connection a Poller read, on a goroutine of
// its own: it resumes the session on a new connection for the Poller (or
// for a reader goroutine, if the new connection is not plain TCP), or ends
// the reading as run does.
func (c *Client) polledEnd(cn *conn, err error, resumable bool) {
	for {
		next := c.after(cn, err, resumable)
		if next == nil {
			break
		}
		if !next.polled {
			c.run(next)
			return
		}
		if c.opts.Poller.add(c, next) {
			return
		}
		cn, err, resumable = next, ErrPollerClosed, false
	}
	c.resends.Wait()
	close(c.readerDone)
}

// readLoop reads and dispatches frames from cn until it fails, and returns
// why and whether the session may be resumed.
func (c *Client) readLoop(cn *conn) (error, bool) {
	for {
		body, err := cn.tr.read()
		if err != nil {
			return c.readEnd(cn, err)
		}
		c.lastRecv.Store(mono())
		if err := c.dispatch(cn, body); err != nil {
			return c.dispatchEnd(cn, err)
		}
	}
}

// readEnd says why reading cn ended with err, a read error, and whether the
// session may be resumed.
func (c *Client) readEnd(cn *conn, err error) (error, bool) {
	if cause := c.dropCause(cn); cause != nil {
		return cause, true
	}
	var we *wire.Error
	switch {
	case errors.As(err, &we):
		return fmt.Errorf("hearth client: bad frame from server: %w", err), false
	case errors.Is(err, io.EOF):
		return fmt.Errorf("hearth client: connection closed by server: %w", err), true
	default:
		return fmt.Errorf("hearth client: read: %w", err), true
	}
}

// dispatchEnd is readEnd for an error of dispatch (a KICK or a frame it
// could not handle).
func (c *Client) dispatchEnd(cn *conn, err error) (error, bool) {
	if cause := c.dropCause(cn); cause != nil {
		return cause, true
	}
	if we, ok := err.(*wire.Error); ok { // a KICK
		return err, we.Code == wire.CodeReconnectElsewhere || we.Code == wire.CodeHeartbeatTimeout
	}
	return err, false
}

// dispatch handles one frame from the server; an error ends the connection.
func (c *Client) dispatch(cn *conn, body []byte) error {
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
		return c.dispatchPush(cn, &f)
	case wire.KindPing:
		var a [wire.LengthSize + wire.HeaderSize + 8]byte
		if err := c.send(cn, cn.finish(wire.AppendPong(a[:cn.prefix], f.Clock))); err != nil {
			err = fmt.Errorf("hearth client: write: %w", err)
			c.fail(cn, err)
			return err
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

func (c *Client) dispatchPush(cn *conn, f *wire.Frame) error {
	if c.opts.Reconnect && f.PushSeq <= c.lastPush.Load() {
		return nil // received before a resume: handled once already
	}
	var route string
	if f.HasRouteID() {
		r, ok := cn.idRoutes[f.RouteID]
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
	// LastPush moves before the push is queued, so that a handler never
	// runs ahead of it; only this goroutine writes it.
	prev := c.lastPush.Load()
	if f.PushSeq > prev {
		c.lastPush.Store(f.PushSeq)
	}
	if !handled {
		return nil
	}
	if c.opts.PushOnReader && c.pushes.idle() {
		// The payload is not copied: the transport's buffer stays as it
		// is until the next read, after the handler returns. Its capacity
		// is cut so that an append by the handler cannot write into the
		// frames read after it.
		c.onReader.Store(c.readerID)
		c.handle(Push{Seq: f.PushSeq, Route: route, Payload: f.Payload[:len(f.Payload):len(f.Payload)]})
		c.onReader.Store(0)
		return nil
	}
	queued, start := c.pushes.put(Push{Seq: f.PushSeq, Route: route, Payload: bytes.Clone(f.Payload)})
	if !queued {
		c.lastPush.Store(prev)
		return ErrPushQueueFull // not counted in LastPush: it will not be handled
	}
	if start {
		go c.pushLoop()
	}
	return nil
}

// pushLoop is the push goroutine: it runs the push handlers and events
// until none is queued.
func (c *Client) pushLoop() {
	var batch []queued
	for {
		var ok bool
		batch, ok = c.pushes.take(batch)
		if !ok {
			return
		}
		for i := range batch {
			p, ev := batch[i].p, batch[i].ev
			batch[i] = queued{}
			if ev != nil {
				c.opts.OnEvent(*ev)
				continue
			}
			c.handle(p)
			c.pushes.n.Add(-1)
		}
	}
}

// handle runs p's handler, if it still has one.
func (c *Client) handle(p Push) {
	h := *c.handlers.Load()
	if fn, ok := h[p.Route]; ok {
		fn(p)
	} else if fn, ok := h[""]; ok {
		fn(p)
	}
}

// heartbeat runs on the client's one timer: it PINGs an idle connection
// and ends (or, with Options.Reconnect, drops) a connection whose server
// has been silent for 3 heartbeats.
func (c *Client) heartbeat() {
	c.mu.Lock()
	t, closed, up := c.hbTimer, c.closed, c.up
	cn := c.cur.Load()
	c.mu.Unlock()
	if closed || !up || cn.hb == 0 {
		return // a resume re-arms the timer
	}
	hb := int64(cn.hb)
	now := mono()
	if now-c.lastRecv.Load() >= 3*hb {
		c.fail(cn, ErrHeartbeatTimeout)
		return
	}
	if since := cn.writing.Load(); since != 0 {
		// A frame is being written: no PING behind it. A server that has
		// not taken it in 3 intervals stopped reading, though it may still
		// send; closing the connection ends the write.
		if now-since >= 3*hb {
			cn.stalled.Store(true)
			c.fail(cn, ErrWriteTimeout)
			return
		}
		t.Reset(time.Duration(min(since, c.lastRecv.Load()) + 3*hb - now))
		return
	}
	if now-c.lastSend.Load() >= hb {
		clock := uint64(time.Now().UnixMilli())
		c.pingClock.Store(clock)
		c.pingMono.Store(now)
		var a [wire.LengthSize + wire.HeaderSize + 8]byte
		if err := c.send(cn, cn.finish(wire.AppendPing(a[:cn.prefix], clock))); err != nil {
			c.fail(cn, fmt.Errorf("hearth client: write: %w", err))
			return
		}
	}
	next := min(c.lastSend.Load()+hb, c.lastRecv.Load()+3*hb) - mono()
	t.Reset(max(time.Duration(next), time.Millisecond))
}

// pushQueue is the queue between the reader and the push goroutine. The
// push goroutine runs only while there are items: whoever queues the first
// item for a queue that has none running starts one (running says so),
// and it ends once it finds the queue empty.
type pushQueue struct {
	mu      sync.Mutex // guards items, spare and running
	items   []queued
	spare   []queued // the push goroutine's last batch, emptied, for reuse
	running bool     // a push goroutine runs: it handles items before it ends
	limit   int
	n       atomic.Int64 // pushes put and not yet handled
}

// queued is a push, or an event for Options.OnEvent (ev set).
type queued struct {
	p  Push
	ev *Event
}

// put queues p and reports whether it did (not if limit pushes are already
// unhandled) and whether the caller must start a push goroutine. Only the
// reader puts, so the check cannot race with another put.
func (q *pushQueue) put(p Push) (ok, start bool) {
	if q.n.Load() >= int64(q.limit) {
		return false, false
	}
	q.n.Add(1)
	return true, q.add(queued{p: p})
}

// idle reports whether no push goroutine runs, so that nothing is queued
// or being handled. Reader only: only the reader starts one, so it stays
// idle until the reader queues again.
func (q *pushQueue) idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return !q.running
}

// putEvent queues an event (events do not count against the limit) and
// reports whether the caller must start a push goroutine.
func (q *pushQueue) putEvent(ev *Event) (start bool) { return q.add(queued{ev: ev}) }

func (q *pushQueue) add(it queued) (start bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.items = append(q.items, it)
	if q.running {
		return false
	}
	q.running = true
	return true
}

// take returns every queued item, keeping done (the previous batch, all
// handled) for reuse; false when there are none, and then the push
// goroutine, its caller, must end.
func (q *pushQueue) take(done []queued) ([]queued, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if done != nil {
		q.spare = done[:0]
	}
	if len(q.items) == 0 {
		q.running = false
		return nil, false
	}
	out := q.items
	q.items, q.spare = q.spare, nil
	return out, true
}
