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
// (cluster.Bus.SetLocalGate): its own goroutine (localLoop) handles the
// messages as the bus subscription's goroutine handles those that come
// over NATS, each under Gate.busMu, which makes the two one owner of the
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

// localLoop handles the inbox's messages in the order queued, a queue's
// worth at a time under busMu, and writes what they queued to sessions at
// least every maxBusBatch messages and once the queue is empty.
func (g *Gate) localLoop() {
	in := &g.inbox
	defer close(in.done)
	var spare []localMsg
	var recycle []*[]byte // buffers back to the bus once the batch is written
	for range in.wake {
		for {
			in.mu.Lock()
			batch, closed := in.q, in.closed
			if len(batch) == 0 {
				in.mu.Unlock()
				if closed {
					return
				}
				break
			}
			// Two arrays in turn: deliver appends to one while this
			// goroutine handles the other.
			in.q, in.bytes = spare, 0
			in.mu.Unlock()
			g.busMu.Lock()
			for _, lm := range batch {
				if g.gateMsg(lm.m) && lm.buf != nil {
					recycle = append(recycle, lm.buf)
				}
				g.batch.msgs++
				if g.batch.msgs >= maxBusBatch {
					g.batch.release()
				}
			}
			g.batch.release()
			g.busMu.Unlock()
			for _, b := range recycle {
				g.bus.Recycle(b)
			}
			clear(recycle)
			recycle = recycle[:0]
			clear(batch)
			spare = batch[:0]
		}
	}
}
