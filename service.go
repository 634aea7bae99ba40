package hearth

import (
	"context"
	"fmt"
	"reflect"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/wire"
)

// Service is a named set of handlers: the routes "<name>.<method>". Build it
// with NewService and Handle, then Register it on a Node before Run.
type Service struct {
	name     string
	handlers map[string]handler
	onStart  []func(ctx context.Context, n *Node) error
	onStop   []func(ctx context.Context)
	onEvent  []func(ctx context.Context, ev SessionEvent)
}

// SessionEvent is a change in a session's life anywhere in the cluster.
type SessionEvent struct {
	// Kind is "opened", "closed", "user" (bound to or unbound from a user),
	// "offline" (its connection dropped; it can still be resumed) or
	// "resumed" (a client took it back, on Gate).
	Kind    string
	Session string
	User    string
	Gate    string
}

// OnSessionEvent registers fn for every session event in the cluster, in
// the order each gate sent them — e.g. a room marks a seat offline and
// back. fn runs on the node's event goroutine: keep it short.
func (svc *Service) OnSessionEvent(fn func(ctx context.Context, ev SessionEvent)) {
	svc.onEvent = append(svc.onEvent, fn)
}

// OnStart registers fn to run when a node starts this service: after the
// bus is connected, before the service takes requests. An error stops the
// node from starting. Use it for what needs the running node (Node.KV,
// Node.Lease, background loops).
func (svc *Service) OnStart(fn func(ctx context.Context, n *Node) error) {
	svc.onStart = append(svc.onStart, fn)
}

// OnStop registers fn to run when the node stops this service, after its
// last request has finished.
func (svc *Service) OnStop(fn func(ctx context.Context)) { svc.onStop = append(svc.onStop, fn) }

type handler struct {
	notify bool
	// pooled: fn's answer is a scratch buffer (answerJSON, answerProto),
	// which the node gives back once the answer is sent.
	pooled bool
	// ownDeadline: fn waits for nothing past the request's deadline but a
	// room (RoomType.request, which times that wait itself from
	// leftDeadline), so the node gives it no deadline context, whose
	// timer and cancellation cost each request ~300 bytes and a lock.
	ownDeadline bool
	fn          func(ctx context.Context, s *Session, codec cluster.Codec, payload []byte) ([]byte, error)
}

// NewService returns an empty service. The name must match
// ^[a-z][a-z0-9_]{0,31}$; NewService panics otherwise, as registering a
// malformed route is a programming error.
func NewService(name string) *Service {
	if !wire.ValidName(name) {
		panic(fmt.Sprintf("hearth: service name %q must match ^[a-z][a-z0-9_]{0,31}$", name))
	}
	return &Service{name: name, handlers: map[string]handler{}}
}

// Name is the service's name.
func (svc *Service) Name() string { return svc.name }

// Routes lists the service's routes, sorted.
func (svc *Service) Routes() []string {
	r := make([]string, 0, len(svc.handlers))
	for m := range svc.handlers {
		r = append(r, svc.name+"."+m)
	}
	sort.Strings(r)
	return r
}

func (svc *Service) add(method string, h handler) {
	if !wire.ValidName(method) {
		panic(fmt.Sprintf("hearth: method name %q must match ^[a-z][a-z0-9_]{0,31}$", method))
	}
	if _, dup := svc.handlers[method]; dup {
		panic(fmt.Sprintf("hearth: route %s.%s registered twice", svc.name, method))
	}
	svc.handlers[method] = h
}

// Handle registers a typed request handler for route "<service>.<method>".
// The request is decoded from the session's codec (protobuf or JSON) into a
// new Req (protojson for JSON sessions, which answers 400 to an unknown
// field or a wrong type: docs/protocol.md, "Codecs"); the response is
// encoded the same way. Return an *Error to send its code; any other error
// is answered with 500. For plain Go types, without protoc, see HandleJSON.
func Handle[Req, Resp proto.Message](svc *Service, method string, fn func(ctx context.Context, s *Session, req Req) (Resp, error)) {
	newReq := newMessage[Req]()
	svc.add(method, handler{pooled: true, fn: func(ctx context.Context, s *Session, codec cluster.Codec, payload []byte) ([]byte, error) {
		req := newReq()
		if err := unmarshal(codec, payload, req); err != nil {
			return nil, &Error{Code: wire.CodeInvalidPayload, Message: "invalid payload: " + err.Error()}
		}
		resp, err := fn(ctx, s, req)
		if err != nil {
			return nil, err
		}
		return answerProto(codec, resp)
	}})
}

// HandleNotify registers a handler for NOTIFY frames on "<service>.<method>":
// no response is sent; a returned error is only logged.
func HandleNotify[Req proto.Message](svc *Service, method string, fn func(ctx context.Context, s *Session, req Req) error) {
	newReq := newMessage[Req]()
	svc.add(method, handler{notify: true, fn: func(ctx context.Context, s *Session, codec cluster.Codec, payload []byte) ([]byte, error) {
		req := newReq()
		if err := unmarshal(codec, payload, req); err != nil {
			return nil, &Error{Code: wire.CodeInvalidPayload, Message: "invalid payload: " + err.Error()}
		}
		return nil, fn(ctx, s, req)
	}})
}

// HandleJSON registers a typed request handler on plain Go types, for a
// service written without protoc: the request is decoded into a new Req
// with encoding/json and the response encoded with it. The route speaks
// JSON in every session, whatever its codec: a protobuf session sends and
// receives the same JSON bytes (docs/protocol.md, "Codecs").
//
// Decoding is strict: an unknown field, a value of the wrong type or a
// payload that is not one JSON value is answered 400 with the reason
// (`invalid payload: field "seat": want an integer, got string`). An empty
// payload decodes as {}. Field names follow the `json` struct tags and, as
// in encoding/json, match case-insensitively.
//
// Req and Resp are plain types, usually structs; a proto.Message belongs
// with Handle, and HandleJSON panics on one.
func HandleJSON[Req, Resp any](svc *Service, method string, fn func(ctx context.Context, s *Session, req Req) (Resp, error)) {
	mustBePlain[Req]()
	mustBePlain[Resp]()
	svc.add(method, handler{pooled: true, fn: func(ctx context.Context, s *Session, _ cluster.Codec, payload []byte) ([]byte, error) {
		var req Req
		if err := decodeJSON(payload, &req); err != nil {
			return nil, &Error{Code: wire.CodeInvalidPayload, Message: "invalid payload: " + err.Error()}
		}
		resp, err := fn(ctx, s, req)
		if err != nil {
			return nil, err
		}
		return answerJSON(resp)
	}})
}

// HandleNotifyJSON is HandleNotify on a plain Go type, decoded as
// HandleJSON decodes requests.
func HandleNotifyJSON[Req any](svc *Service, method string, fn func(ctx context.Context, s *Session, req Req) error) {
	mustBePlain[Req]()
	svc.add(method, handler{notify: true, fn: func(ctx context.Context, s *Session, _ cluster.Codec, payload []byte) ([]byte, error) {
		var req Req
		if err := decodeJSON(payload, &req); err != nil {
			return nil, &Error{Code: wire.CodeInvalidPayload, Message: "invalid payload: " + err.Error()}
		}
		return nil, fn(ctx, s, req)
	}})
}

// mustBePlain panics when T is a protobuf message: encoding/json would
// write it unlike protojson (enums as numbers, no oneofs), so such a route
// would disagree with every other route carrying that message.
func mustBePlain[T any]() {
	if t := reflect.TypeFor[T](); t.Implements(reflect.TypeFor[proto.Message]()) {
		panic(fmt.Sprintf("hearth: %s is a protobuf message: register it with Handle, not HandleJSON", t))
	}
}

// HandleRaw registers a handler that sees the payload bytes as sent, in the
// session's codec (Session.Codec), and answers raw bytes.
func HandleRaw(svc *Service, method string, fn func(ctx context.Context, s *Session, payload []byte) ([]byte, error)) {
	handleRaw(svc, method, handler{}, fn)
}

// handleRaw is HandleRaw with the SDK's own options in h (its pooled and
// ownDeadline; h.fn is set here).
func handleRaw(svc *Service, method string, h handler, fn func(ctx context.Context, s *Session, payload []byte) ([]byte, error)) {
	h.fn = func(ctx context.Context, s *Session, _ cluster.Codec, payload []byte) ([]byte, error) {
		return fn(ctx, s, payload)
	}
	svc.add(method, h)
}

// newMessage returns a constructor for Req, found once from the generated
// type's descriptor rather than by reflection on every call.
func newMessage[Req proto.Message]() func() Req {
	var zero Req
	typ := zero.ProtoReflect().Type()
	return func() Req { return typ.New().Interface().(Req) }
}
