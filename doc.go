// Package hearth is the SDK a game developer imports to run a hearth node:
// a gate that holds players' connections, the services that own the game's
// logic, and the NATS bus between them — in one process or across many.
//
//	svc := hearth.NewService("room")
//	hearth.HandleJSON(svc, "join", func(ctx context.Context, s *hearth.Session, req JoinReq) (JoinResp, error) { … })
//	node, err := hearth.New(hearth.Config{})
//	node.Register(svc)
//	err = node.Run(ctx)
//
// Every request travels as an envelope over NATS subjects, even in one
// process, so a node behaves the same alone and in a cluster.
//
// # Handlers and messages
//
// A route is "<service>.<method>". Handle registers a handler on protobuf
// messages (protobuf sessions get protobuf, JSON sessions protojson);
// HandleJSON one on plain Go types (JSON in every session, no protoc
// needed); HandleRaw sees the bytes; HandleNotify and HandleNotifyJSON serve
// NOTIFY frames. Request payloads are decoded strictly: an unknown field or a
// value of the wrong type is answered 400 before the handler runs.
//
// The handler's *Session says who sent the request: s.UserID() is the
// logged-in user ("" before login; SetUser logs in), s.ID() the session,
// s.Gate() its gate. Services learn of sessions opening, logging in,
// dropping their connection, resuming and closing anywhere in the cluster
// with Service.OnSessionEvent.
//
// A handler returns an *Error to answer with its code (NewError, Errorf;
// application codes start at CodeApplication). Any other error, or a
// panic, is answered 500 with the request's trace id, and logged, never
// sent. Log with Logger(ctx): its lines carry the trace, session and user.
//
// # Sending to clients
//
// One call per kind of recipient. Each takes a proto.Message (encoded in
// each recipient's codec) or a plain Go value (encoding/json for everyone):
//
//	the session of the request       s.Push(ctx, route, msg)
//	a session kept from a request     node.PushSession(ctx, s.Gate(), s.ID(), route, msg)
//	a user, wherever logged in        node.Push(ctx, userID, route, msg)   (ErrOffline if not)
//	many users                        node.PushUsers(ctx, userIDs, route, msg)
//	a channel's members               node.Publish(ctx, channel, route, msg)  (members: s.Join)
//	every session                     node.Broadcast(ctx, route, msg)
//	a seat, or a whole room           room.Push(seat, method, msg), room.Broadcast(method, msg)
//	each seat its own (private view)  room.PushEach(method, func(seat) msg)
//
// A plain value that implements JSONAppender writes its own JSON (no
// reflection): for a message pushed on every move of every table.
//
// Pushes from one node to one session arrive in the order they were sent;
// a channel message and a direct push are not ordered with each other.
// Session.Push and Node.PushSession follow a session that resumed on
// another gate. A push made in a handler reaches the client before the
// handler's response; use Session.AfterReply to push after it.
//
// # Contexts
//
// Every method that takes a ctx honours it: it returns ctx's error without
// acting if ctx has ended, and methods that wait for an answer (Join, the
// presence lookups of Push and SetUser, KV and Lease calls) stop waiting
// when it ends. Sends that need no answer (pushes, Publish, Kick, Bind)
// never block on the network: NATS buffers them.
//
// # Concurrency
//
// Node: every method is safe for concurrent use, except Register, which
// must come before Run. A Service is built (Handle, OnStart, …) before it
// is registered and not changed after.
//
// Session: a *Session is given to one handler and belongs to its
// goroutine. It stays valid after the handler returns: its getters and
// Push, PushRaw, Join, Leave and Kick may then be called from another
// goroutine (a room pushing to its players, a timer), provided nothing
// calls SetUser, ClaimUser, Bind, Unbind or AfterReply on the same value at
// the same time — those change it. Room methods belong to the room's
// goroutine unless they say otherwise.
//
// Handlers run concurrently, each request in its own goroutine (at most
// Config.MaxHandlers at once per node). OnSessionEvent callbacks run one at
// a time on the node's event goroutine, in each gate's order.
package hearth
