package hearth

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hearth-server/hearth/wire"
)

type ctxKey int

const (
	traceKey ctxKey = iota
	loggerKey
)

// TraceID returns the trace id of the request being handled, or "".
// The gate assigns it; it is in every log line of the request, on any node.
func TraceID(ctx context.Context) string {
	v, _ := ctx.Value(traceKey).(string)
	return v
}

// Logger returns the request's logger, carrying its trace, session and user
// ids, or slog.Default() outside a request.
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}

// requestContext carries what TraceID and Logger read, in one value so a
// request costs a single context allocation. It copies the request's ids:
// a handler may keep its context past the request, whose envelope is
// reused.
type requestContext struct {
	context.Context
	base                        *slog.Logger
	trace, session, user, route string
	// deadline is the request's (unix ns) for a handler that times its
	// wait itself (handler.ownDeadline), whose Context has none; 0
	// otherwise.
	deadline int64

	// reply answers the request (nil for a NOTIFY), and pooled says its
	// handler's answer is a pooled buffer (handler.pooled): a room answers
	// a request on its own goroutine with them (claimAnswer).
	reply  replier
	pooled bool
	// answerBy is who answers: answerOpen until the room or the handler's
	// goroutine claims it, so that a request is answered once when the
	// room's answer and the wait's timeout meet.
	answerBy atomic.Int32
}

const (
	answerOpen    int32 = iota
	answerRoom          // the room answered, on its goroutine
	answerHandler       // the handler's goroutine answers (a timeout, or no room)
)

// claimAnswer reports whether the caller, by, is the one to answer the
// request (it claimed it, now or before); false for the other claimant and
// for a NOTIFY.
func (c *requestContext) claimAnswer(by int32) bool {
	return c.reply != nil && (c.answerBy.CompareAndSwap(answerOpen, by) || c.answerBy.Load() == by)
}

// respond answers the request with a handler's result: its payload, or
// the code of an *Error, or 500 for any other error (logged).
func (c *requestContext) respond(payload []byte, err error) {
	if err == nil {
		c.reply(wire.OK, payload)
		return
	}
	var we *Error
	if errors.As(err, &we) {
		c.reply(we.Code, []byte(we.Message))
		return
	}
	c.log().Error("handler failed", "err", err)
	c.reply(wire.CodeInternal, []byte("internal error (trace "+c.trace+")"))
}

// leftDeadline is the deadline the node left a handler to keep itself
// (handler.ownDeadline) in its request context ctx, which then has none;
// ok is false for any other context.
func leftDeadline(ctx context.Context) (time.Time, bool) {
	if rc, ok := ctx.(*requestContext); ok && rc.deadline != 0 {
		return time.Unix(0, rc.deadline), true
	}
	return time.Time{}, false
}

// log is the request's logger, made when it is first needed.
func (c *requestContext) log() *slog.Logger {
	return c.base.With("trace", c.trace, "session", c.session, "user", c.user, "route", c.route)
}

func (c *requestContext) Value(key any) any {
	switch key {
	case traceKey:
		return c.trace
	case loggerKey:
		return c.log()
	}
	return c.Context.Value(key)
}
