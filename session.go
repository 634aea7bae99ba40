package hearth

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/wire"
)

// Session is the service-side view of a client session for the request
// being handled: who sent it, on which gate, and what it is bound to. Its
// methods act on the real session wherever its gate is, over the bus.
//
// A *Session belongs to the goroutine of the handler it was given to. Kept
// after the handler returns, its getters and Push, PushRaw, Join, Leave
// and Kick may be called from another goroutine, as long as nothing calls
// SetUser, ClaimUser, Bind, Unbind or AfterReply on it at the same time
// (package doc, "Concurrency").
type Session struct {
	node     *Node
	id       string
	gate     string
	user     string
	addr     string
	codec    cluster.Codec
	bindings []cluster.Binding
	after    []func()
}

// AfterReply runs fn once the handler's response has been sent, so that
// pushes it makes reach the client after the response. It is for use
// inside a handler.
func (s *Session) AfterReply(fn func()) { s.after = append(s.after, fn) }

func (s *Session) runAfter() {
	for _, fn := range s.after {
		fn()
	}
}

// Node is the node running the handler, for what reaches beyond this
// session: pushing to other users, publishing, kicking.
func (s *Session) Node() *Node { return s.node }

// ID is the session id (the handshake-ack's "session").
func (s *Session) ID() string { return s.id }

// UserID is the user the session is bound to, or "" before login.
func (s *Session) UserID() string { return s.user }

// Gate is the node id of the gate holding the session's connection.
func (s *Session) Gate() string { return s.where() }

// where is the session's gate now: the one the request came through, unless
// the session has since been resumed on another (a handler that outlives
// its request, like a push stream, follows it there).
func (s *Session) where() string {
	if g, ok := s.node.resumedAt(s.id); ok {
		return g
	}
	return s.gate
}

// RemoteAddr is the client's address as the gate saw it.
func (s *Session) RemoteAddr() string { return s.addr }

// Codec is the session's payload codec: "json" or "protobuf".
func (s *Session) Codec() string {
	if s.codec == cluster.CodecJSON {
		return wire.CodecJSON
	}
	return wire.CodecProtobuf
}

// Binding returns the node the session is bound to for service.
func (s *Session) Binding(service string) (node string, ok bool) {
	for _, b := range s.bindings {
		if b.Service == service {
			return b.Node, true
		}
	}
	return "", false
}

// Bind routes the session's later requests for service to node (a room to
// the node hosting it) instead of any instance.
func (s *Session) Bind(ctx context.Context, service, node string) error {
	if err := cluster.ValidateNodeID(node); err != nil {
		return fmt.Errorf("hearth: bind %s to %q: %w", service, node, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.setBinding(service, node)
	return s.node.bus.Bind(s.where(), s.id, service, node)
}

// Unbind removes the session's binding for service.
func (s *Session) Unbind(ctx context.Context, service string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.setBinding(service, "")
	return s.node.bus.Bind(s.where(), s.id, service, "")
}

func (s *Session) setBinding(service, node string) {
	next := make([]cluster.Binding, 0, len(s.bindings)+1)
	for _, b := range s.bindings {
		if b.Service != service {
			next = append(next, b)
		}
	}
	if node != "" {
		next = append(next, cluster.Binding{Service: service, Node: node})
	}
	s.bindings = next
}

// SetUser binds the session to a user id: later requests carry it, the
// cluster's presence maps the user to this session (Node.Push reaches it),
// and an earlier live session of the same user is kicked with 104. An
// empty user unbinds the session (logout).
func (s *Session) SetUser(ctx context.Context, user string) error {
	if err := s.node.bindUser(ctx, s, user, false); err != nil {
		return err
	}
	s.user = user
	return nil
}

// ClaimUser is SetUser for a policy that keeps the earlier session: when
// another live session holds user, it changes nothing and returns an error
// wrapping ErrUserOnline. The check and the claim are one atomic step.
func (s *Session) ClaimUser(ctx context.Context, user string) error {
	if err := s.node.bindUser(ctx, s, user, true); err != nil {
		return err
	}
	s.user = user
	return nil
}

// Join adds the session to a channel; Node.Publish reaches its members. It
// returns once the session's gate has added it, so a publish made after
// Join returns reaches the session.
//
// A channel name is 1 to 128 characters of a–z, A–Z, 0–9, '-', '_' and
// ':', in non-empty parts separated by '.' ("room.42", "guild:7.chat"). A
// name that breaks the rule is answered with an *Error of code 400 that
// states it, so a handler may pass a client's choice straight through.
// Channels cost nothing until a session joins; a gate stops following a
// channel when its last local member leaves or disconnects.
func (s *Session) Join(ctx context.Context, channel string) error {
	if err := checkChannel(channel); err != nil {
		return err
	}
	return s.node.bus.Join(ctx, s.where(), s.id, channel)
}

// Leave removes the session from a channel. The name is checked as Join
// checks it.
func (s *Session) Leave(ctx context.Context, channel string) error {
	if err := checkChannel(channel); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.node.bus.Leave(s.where(), s.id, channel)
}

// checkChannel returns a 400 *Error stating the rule when channel is not a
// valid channel name.
func checkChannel(channel string) error {
	err := cluster.ValidateChannel(channel)
	if err == nil {
		return nil
	}
	if len(channel) > 64 {
		channel = channel[:64] + "…"
	}
	return Errorf(CodeInvalidPayload, "bad channel %q: %v", channel, err)
}

// Push sends msg on route to the session, on whichever gate holds it now.
// msg is a proto.Message, encoded in the session's codec, or any other
// value, encoded with encoding/json for every session (docs/protocol.md,
// "Codecs"). Pushes from one node to one session arrive in the order they
// were sent.
func (s *Session) Push(ctx context.Context, route string, msg any) error {
	b, err := encode(s.codec, msg)
	if err != nil {
		return err
	}
	return s.PushRaw(ctx, route, b)
}

// PushRaw sends an already encoded payload (in the session's codec).
func (s *Session) PushRaw(ctx context.Context, route string, payload []byte) error {
	if !wire.ValidRoute(route) {
		return errBadRoute(route)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.node.bus.Push(s.where(), []string{s.id}, route, payload, nil)
}

// Kick closes the session with a code and a reason (after its pending output).
func (s *Session) Kick(ctx context.Context, code Code, reason string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.node.bus.Kick(s.where(), s.id, uint16(code), reason)
}

// Logger returns the node's logger with the session's ids attached.
func (s *Session) Logger() *slog.Logger {
	return s.node.log.With("session", s.id, "user", s.user, "gate", s.gate)
}
