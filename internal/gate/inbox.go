package gate

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// inboxBytes bounds the bytes of the messages the node's own services have
// handed the gate and it has not yet handled: the same bound its bus
// subscription has (Start), past which NATS drops too.
const inboxBytes = 256 << 20

// inbox takes what this node sends its own gate in-process
// (cluster.Bus.SetLocalGate): the goroutine of the node's task that sent
// them (HandleInbox), or else the gate's own (localLoop), handles the
// messages as the bus subscription's goroutine handles those that come
// over NATS, each under Gate.busMu, which makes them all one owner of the
// routing state.
type inbox struct {
	limit int

	mu      sync.Mutex
	q       []localMsg // mu
	bytes   int        // of q's Data; mu
	closed  bool       // mu: deliver refuses, localLoop ends once q is empty
	dropped int        // since the last log line; mu
	logged  time.Time  // the last drop log line; mu

	wake chan struct{} // cap 1: q has messages, or closed
	done chan struct{} // closed when localLoop has returned

	// The handler's scratch (drainLocked), under Gate.busMu: the emptied
	// array q takes next, and the bus buffers to give back.
	spare   []localMsg
	recycle []*[]byte
	// emptied, if set (tests), runs when a drain finds the inbox empty,
	// busMu still held.
	emptied func()
}

// localMsg is a message in the inbox, and the bus's encoding buffer its
// Data is, if it was handed over (cluster.Bus.SetLocalGate).
type localMsg struct {
	m   *nats.Msg
	buf *[]byte
}

func (in *inbox) init(limit int) {
	in.limit = limit
	in.wake = make(chan struct{}, 1)
	in.done = make(chan struct{})
}

// deliver queues m; false once the inbox is closed. Past the byte bound
// it drops m and counts it, as NATS drops for a slow consumer: a sender
// (a room's goroutine) never waits for the gate.
func (g *Gate) deliver(m *nats.Msg, buf *[]byte) bool {
	in := &g.inbox
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		return false
	}
	if in.bytes+len(m.Data) > in.limit {
		in.dropped++
		now := time.Now()
		var n int
		if now.Sub(in.logged) >= time.Second {
			n, in.dropped, in.logged = in.dropped, 0, now
		}
		in.mu.Unlock()
		g.m.inboxDrop()
		if n > 0 {
			g.log.Error("gate fell behind its node's messages: dropped", "count", n, "limit_bytes", in.limit)
		}
		return true
	}
	in.q = append(in.q, localMsg{m, buf})
	in.bytes += len(m.Data)
	in.mu.Unlock()
	select {
	case in.wake <- struct{}{}:
	default:
	}
	return true
}

// closeInbox stops taking messages and waits until those queued are
// handled.
func (g *Gate) closeInbox() {
	in := &g.inbox
	in.mu.Lock()
	in.closed = true
	in.mu.Unlock()
	select {
	case in.wake <- struct{}{}:
	default:
	}
	<-in.done
}

// localLoop handles the inbox's messages whenever deliver wakes it and no
// HandleInbox has handled them first.
func (g *Gate) localLoop() {
	in := &g.inbox
	defer close(in.done)
	for range in.wake {
		g.busMu.Lock()
		closed := g.drainLocked()
		g.busMu.Unlock()
		if closed {
			return
		}
		// What came after the drain found the inbox empty: handled here
		// unless a task has taken busMu meanwhile.
		g.HandleInbox()
	}
}

// HandleInbox handles the inbox's messages on the calling goroutine, unless
// another goroutine is handling the gate's messages (it then handles
// these too, or localLoop does). The node's rooms and handlers call it
// once a task has sent what it made: its pushes and answers then reach
// the sockets in that task's turn for a core. Left to localLoop, they
// waited for its turn as well, and at 15,000 Niu Niu bots, in a
// collection's mark, ~100 goroutines were runnable on two cores: the one
// goroutine every push went through was runnable 40% of the mark
// (docs/benchmarks.md § bots, session 32). The order is the inbox's
// either way, under busMu.
//
// A message queued after the holder of busMu found the inbox empty, but
// before it let go, would wait for localLoop's turn for a core: so each
// holder looks again once it has let go, and handles what came meanwhile
// unless another holder has taken over.
func (g *Gate) HandleInbox() {
	for g.busMu.TryLock() {
		g.drainLocked()
		g.busMu.Unlock()
		if !g.inbox.waiting() {
			return
		}
	}
}

// waiting reports whether the inbox has messages no holder of busMu has
// taken yet.
func (in *inbox) waiting() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.q) > 0
}

// drainLocked handles the inbox's messages in the order queued, a queue's
// worth at a time, and writes what they queued to sessions at least every
// maxBusBatch messages and once the queue is empty. It reports whether the
// inbox is closed (and empty). busMu is held.
func (g *Gate) drainLocked() (closed bool) {
	in := &g.inbox
	for {
		in.mu.Lock()
		batch, closed := in.q, in.closed
		if len(batch) == 0 {
			in.mu.Unlock()
			if in.emptied != nil {
				in.emptied()
			}
			return closed
		}
		// Two arrays in turn: deliver appends to one while this
		// goroutine handles the other.
		in.q, in.bytes = in.spare, 0
		in.mu.Unlock()
		for _, lm := range batch {
			if g.gateMsg(lm.m) && lm.buf != nil {
				in.recycle = append(in.recycle, lm.buf)
			}
			g.batch.msgs++
			if g.batch.msgs >= maxBusBatch {
				g.batch.release()
			}
		}
		g.batch.release()
		for _, b := range in.recycle {
			g.bus.Recycle(b)
		}
		clear(in.recycle)
		in.recycle = in.recycle[:0]
		clear(batch)
		in.spare = batch[:0]
	}
}
