package cluster

import (
	"context"
	"errors"
	"strings"

	"github.com/nats-io/nats.go"
)

// A node's own gate is in its process: what the node sends it — pushes,
// answers, binds, kicks, joins — needs no trip through the NATS server.
// Over the embedded server each such message was encoded into a NATS
// connection's buffer, copied through the in-process pipe, parsed by the
// server, copied to the gate's connection, parsed again and allocated as a
// nats.Msg, across five goroutines; handed over here it is one goroutine
// (the gate's), and what the bus encodes is not even copied: the gate gets
// the encoding buffer and gives it back (Recycle).
//
// Order holds as it did on one connection: once a gate is set local, every
// message this bus sends to it takes that path (Send, Request, Relay and
// Respond all look here first), so a handler's pushes and binds still
// reach the gate before its answer. Messages from other nodes still come
// over NATS; NATS never ordered those against this node's.

// localGate is the gate of this process that takes its messages directly.
type localGate struct {
	prefix  string // "<prefix>.gate.<id>.": the gate's subjects
	deliver func(m *nats.Msg, buf *[]byte) bool
}

// SetLocalGate hands what this bus sends to gate id to deliver, in this
// process, instead of publishing it. deliver gets a message it owns and
// must not block; it returns false once the gate no longer takes
// messages, and the bus then publishes them as before (to a gate that has
// unsubscribed: to no one). When buf is not nil, m.Data is *buf, one of
// the bus's encoding buffers, handed over instead of copied: once nothing
// refers to m.Data, the gate gives it back with Recycle (or drops it).
// Only pushes and answers (TypePush, TypePushEach, TypeResponse), whose
// payloads a gate copies out, come with their buffer; anything else it is
// sent comes as a copy. A
// local message has no Sub: answer it with Respond. Call it before
// anything is sent to the gate; a nil deliver turns the local path off.
func (b *Bus) SetLocalGate(id string, deliver func(m *nats.Msg, buf *[]byte) bool) {
	if deliver == nil {
		b.local.Store(nil)
		return
	}
	b.local.Store(&localGate{prefix: b.gatePre + id + ".", deliver: deliver})
}

// localFor is the local gate when subject is one of its subjects, else nil.
func (b *Bus) localFor(subject string) *localGate {
	if lg := b.local.Load(); lg != nil && strings.HasPrefix(subject, lg.prefix) {
		return lg
	}
	return nil
}

// toLocal hands a message for subject to the local gate, copying data;
// false if subject is not the local gate's or the gate has stopped.
func (b *Bus) toLocal(subject, reply string, data []byte) bool {
	lg := b.localFor(subject)
	return lg != nil && lg.deliver(&nats.Msg{Subject: subject, Reply: reply, Data: append([]byte(nil), data...)}, nil)
}

// Recycle gives back an encoding buffer that a local gate was handed
// (SetLocalGate) and no longer refers to. At 10,000 sessions on a node's
// own gate, copying each message for it was a fifth of the node's garbage.
func (b *Bus) Recycle(buf *[]byte) {
	if cap(*buf) <= maxPooledBuf {
		b.bufs.Put(buf)
	}
}

// Respond answers m, a request that reached this node over the bus or
// from it (a local gate's message, whose Sub is nil).
func (b *Bus) Respond(m *nats.Msg, data []byte) error {
	if m.Reply == "" {
		return nats.ErrMsgNoReply
	}
	if b.toLocal(m.Reply, "", data) {
		return nil
	}
	// On the connection that subscribes: where m.Respond would answer a
	// message that came over it, and where a local request waits.
	return publish(b.nc, m.Reply, "", data)
}

// requestLocal is Request to the local gate: the message is handed over
// directly with a reply inbox that this bus subscribes to first, on the
// connection the gate answers on (Respond), so the subscription is at the
// server before the answer. A gate relaying the request to another gate
// (the session moved) passes the inbox along, and that gate's answer
// comes the same way.
func (b *Bus) requestLocal(ctx context.Context, subject string, data []byte) (*nats.Msg, error) {
	inbox := b.nc.NewRespInbox()
	sub, err := b.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if !b.toLocal(subject, inbox, data) {
		return nil, errNotLocal
	}
	return sub.NextMsgWithContext(ctx)
}

var errNotLocal = errors.New("cluster: local gate stopped")
