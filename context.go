package hearth

import (
	"context"
	"log/slog"
	"time"
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
