package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/hearth-server/hearth/wire"
)

// Reconnect defaults (see Options.Backoff and Options.ReconnectTimeout).
const (
	DefaultBackoffMin       = 100 * time.Millisecond
	DefaultBackoffMax       = 5 * time.Second
	DefaultReconnectTimeout = 60 * time.Second
)

// ErrReconnectTimeout ends a client (with Options.Reconnect) that could not
// resume its session within Options.ReconnectTimeout. The error wraps it
// with the last attempt's failure.
var ErrReconnectTimeout = errors.New("hearth client: session not resumed within the reconnect timeout")

// Backoff bounds the waits between rounds of reconnect attempts.
type Backoff struct {
	Min, Max time.Duration
}

// EventKind is what happened to a client with Options.Reconnect.
type EventKind int

const (
	// Disconnected: the connection was lost in a way that leaves the
	// session resumable (Err says how: an I/O error, ErrHeartbeatTimeout,
	// or the *wire.Error of KICK 7 or 303); Addr is the lost connection's
	// address. The client is reconnecting: pending requests stay pending.
	Disconnected EventKind = iota + 1

	// Resumed: the session was resumed on a new connection to Addr (Err is
	// nil). Pushes the server replays, and the responses to the requests
	// sent again, follow.
	Resumed

	// Lost: the client has ended without Close: the session is gone (KICK
	// 304, or a resume answered as a new session: *wire.Error code 304),
	// the server ended it (another KICK), ReconnectTimeout passed
	// (ErrReconnectTimeout), or the connection failed in a way a resume
	// cannot fix (a bad frame, ErrPushQueueFull). Err is the error, also
	// returned by Client.Err and by every request that was pending; Addr
	// is the address last connected or tried. Done is closed. To go on,
	// log in anew with a new Dial.
	Lost
)

func (k EventKind) String() string {
	switch k {
	case Disconnected:
		return "disconnected"
	case Resumed:
		return "resumed"
	case Lost:
		return "lost"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is a change in a reconnecting client's session (see Options.OnEvent).
type Event struct {
	Kind EventKind
	Err  error
	Addr string
}

// reconnectDefaults fills in and checks the reconnect options.
func reconnectDefaults(o *Options) error {
	if o.Backoff.Min <= 0 {
		o.Backoff.Min = DefaultBackoffMin
	}
	if o.Backoff.Max <= 0 {
		o.Backoff.Max = DefaultBackoffMax
	}
	o.Backoff.Max = max(o.Backoff.Max, o.Backoff.Min)
	if o.ReconnectTimeout <= 0 {
		o.ReconnectTimeout = DefaultReconnectTimeout
	}
	o.Addrs = slices.Clone(o.Addrs)
	for _, a := range o.Addrs {
		if _, err := parseAddr(a); err != nil {
			return err
		}
	}
	return nil
}

// event queues ev for Options.OnEvent. Reader goroutine only.
func (c *Client) event(ev Event) {
	if c.opts.OnEvent == nil {
		return
	}
	if c.pushes.putEvent(&ev) {
		go c.pushLoop()
	}
}

// lose ends the client with err and reports it as Lost, unless Close ended
// it first.
func (c *Client) lose(addr string, err error) {
	if c.shutdown(err) {
		c.event(Event{Kind: Lost, Err: err, Addr: addr})
	}
}

// reconnect resumes the session of the lost connection old on a new
// connection, which it returns; nil if the client ended meanwhile (closed,
// or the session lost).
func (c *Client) reconnect(old *conn, cause error) *conn {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.up = false
	c.upCh = make(chan struct{})
	if c.hbTimer != nil {
		c.hbTimer.Stop()
	}
	c.mu.Unlock()
	c.event(Event{Kind: Disconnected, Err: cause, Addr: old.addr})

	if old.token == "" {
		c.lose(old.addr, &wire.Error{Code: wire.CodeSessionLost, Message: "no resume token"})
		return nil
	}
	addrs := c.reconnectAddrs(old, cause)
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.ReconnectTimeout)
	defer cancel()
	lastErr, lastAddr := cause, old.addr
	for round := 0; ctx.Err() == nil; round++ {
		if !sleepCtx(ctx, c.backoff(round)) {
			break
		}
		redirected := false
		for i := 0; i < len(addrs) && ctx.Err() == nil; i++ {
			addr := addrs[i]
			lastAddr = addr
			cn, err := c.connect(ctx, addr, old.token, c.lastPush.Load())
			if err == nil {
				if err = checkResumed(old, cn); err == nil {
					return c.install(cn)
				}
				cn.tr.close(false)
			}
			if ctx.Err() != nil {
				break
			}
			lastErr = err
			we, kick := err.(*wire.Error)
			if !kick {
				continue // could not connect: try the next address
			}
			if !retryKick(we.Code) {
				c.lose(addr, err)
				return nil
			}
			if we.Code == wire.CodeReconnectElsewhere && !redirected {
				// This gate is draining too: go where it says, at once.
				if s := c.suggested(we.Message, addr); s != "" {
					redirected = true
					addrs = dedup(append([]string{s}, addrs...))
					i = -1
				}
			}
		}
	}
	if c.ctx.Err() != nil {
		return nil // closed
	}
	c.lose(lastAddr, fmt.Errorf("%w; last attempt: %w", ErrReconnectTimeout, lastErr))
	return nil
}

// checkResumed fails a handshake that did not resume old's session.
func checkResumed(old, cn *conn) error {
	switch {
	case !cn.ack.Resumed:
		return &wire.Error{Code: wire.CodeSessionLost, Message: "server did not resume the session"}
	case cn.ack.Session != old.ack.Session:
		return &wire.Error{Code: wire.CodeSessionLost, Message: fmt.Sprintf("server resumed session %q, not %q", cn.ack.Session, old.ack.Session)}
	}
	return nil
}

// retryKick reports whether a KICK answering a resume HANDSHAKE leaves the
// session resumable elsewhere: this gate is draining, shutting down, busy
// or timed out. Anything else (304 first of all) ends the client.
func retryKick(code wire.Code) bool {
	switch {
	case code == wire.CodeHandshakeRequired, code == wire.CodeHeartbeatTimeout, code == wire.CodeShuttingDown,
		code == wire.CodeReconnectElsewhere, code == wire.CodeUnavailable, code == wire.CodeTimeout,
		code == wire.CodeInternal:
		return true
	case code >= wire.CodeRateLimited && code < wire.CodeUnknownRoute:
		return true
	}
	return false
}

// install makes cn, a resumed connection, the client's connection: it
// sends every pending request again, in seq order and before any new one,
// and restarts the heartbeat. It returns nil (closing cn) if the client was
// closed meanwhile.
func (c *Client) install(cn *conn) *conn {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		cn.tr.close(false)
		return nil
	}
	seqs := make([]uint32, 0, len(c.pending))
	for seq := range c.pending {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	frames := make([][]byte, 0, len(seqs))
	for _, seq := range seqs {
		w := c.pending[seq]
		b, _, err := c.appendFrame(cn, nil, true, seq, w.route, nil, w.frame[w.off:], true)
		if err != nil { // cannot happen: it was encoded before
			delete(c.pending, seq)
			w.err = err
			w.ch <- struct{}{}
			continue
		}
		frames = append(frames, b)
	}
	// New requests queue behind the re-sent ones: cn is not published
	// before its write lock is held.
	cn.wmu.Lock()
	c.cur.Store(cn)
	c.up = true
	close(c.upCh)
	now := mono()
	c.lastSend.Store(now)
	c.lastRecv.Store(now)
	c.armHeartbeatLocked(cn)
	c.mu.Unlock()
	c.event(Event{Kind: Resumed, Addr: cn.addr})

	if len(frames) == 0 {
		cn.wmu.Unlock()
		return cn
	}
	// Written on their own goroutine, so that the reader reads (replayed
	// pushes, responses) meanwhile.
	c.resends.Add(1)
	go func() {
		defer c.resends.Done()
		for _, f := range frames {
			if err := cn.write(f); err != nil {
				cn.wmu.Unlock()
				c.drop(cn, fmt.Errorf("hearth client: write: %w", err))
				return
			}
		}
		c.lastSend.Store(mono())
		cn.wmu.Unlock()
	}()
	return cn
}

// reconnectAddrs lists the addresses to resume at, in order: the one a
// KICK 303 suggested (else the lost connection's own), the Dial address,
// then Options.Addrs.
func (c *Client) reconnectAddrs(old *conn, cause error) []string {
	var list []string
	if we, ok := cause.(*wire.Error); ok && we.Code == wire.CodeReconnectElsewhere {
		if s := c.suggested(we.Message, old.addr); s != "" {
			list = append(list, s)
		}
	} else {
		list = append(list, old.addr)
	}
	list = append(list, c.dialAddr)
	list = append(list, c.opts.Addrs...)
	return dedup(list)
}

// suggested picks the address to reconnect to from a KICK 303 reason: of
// the tcp://, tls://, ws:// and wss:// URLs in it, one with cur's scheme,
// else one of the same transport (TCP or WebSocket), else any. If cur is
// encrypted, plain-text URLs are skipped (unless Options.TLS encrypts
// them). "" if none fits.
func (c *Client) suggested(reason, cur string) string {
	curScheme, _ := parseAddr(cur)
	secure := c.opts.TLS == nil && (curScheme == "tls" || curScheme == "wss")
	best, bestRank := "", 3
	for _, f := range strings.Fields(reason) {
		f = strings.TrimRight(strings.TrimLeft(f, "(<\"'"), ",;.)>\"'")
		if !strings.Contains(f, "://") {
			continue
		}
		scheme, err := parseAddr(f)
		if err != nil || (secure && (scheme == "tcp" || scheme == "ws")) {
			continue
		}
		rank := 2
		if scheme == curScheme {
			rank = 0
		} else if isWS(scheme) == isWS(curScheme) {
			rank = 1
		}
		if rank < bestRank {
			best, bestRank = f, rank
		}
	}
	return best
}

func isWS(scheme string) bool { return scheme == "ws" || scheme == "wss" }

func dedup(list []string) []string {
	out := list[:0:0]
	for _, a := range list {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// backoff returns the jittered wait before reconnect round n (0-based).
func (c *Client) backoff(n int) time.Duration {
	d := c.opts.Backoff.Max
	if n < 32 {
		d = min(d, c.opts.Backoff.Min<<n)
	}
	if d <= 0 { // overflowed
		d = c.opts.Backoff.Max
	}
	return d/2 + rand.N(d/2+1)
}

// sleepCtx waits for d; false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
