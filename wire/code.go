package wire

import (
	"strconv"
	"strings"
)

// Code is a status or close code (PROTOCOL.md, "Status and close codes").
// The ranges are reserved: 1–99 protocol, 100–199 auth, 200–299 flow control,
// 300–399 routing and sessions, 400–499 bad request, 500–599 server;
// 1000 and above belong to the application.
type Code uint16

const (
	OK Code = 0

	CodeBadFrame           Code = 1
	CodeUnsupported        Code = 2
	CodeUnknownKind        Code = 3
	CodeFrameTooLarge      Code = 4
	CodeBadRoute           Code = 5
	CodeHandshakeRequired  Code = 6
	CodeHeartbeatTimeout   Code = 7
	CodeShuttingDown       Code = 8
	CodeUnauthenticated    Code = 100
	CodeBadCredentials     Code = 101
	CodeTokenInvalid       Code = 102
	CodeLockedOut          Code = 103
	CodeLoggedInElsewhere  Code = 104
	CodeAccountExists      Code = 105
	CodeRateLimited        Code = 200
	CodeTooManyInFlight    Code = 201
	CodeSlowConsumer       Code = 202
	CodeOverloaded         Code = 203
	CodeQueued             Code = 204
	CodeUnknownRoute       Code = 300
	CodeUnavailable        Code = 301
	CodeTimeout            Code = 302
	CodeReconnectElsewhere Code = 303
	CodeSessionLost        Code = 304
	// CodeResumedElsewhere (KICK) closes a connection whose session another
	// connection resumed: the client must not try to resume it.
	CodeResumedElsewhere Code = 305
	// CodeResponseGone answers a re-sent request whose first answer is no
	// longer kept: it ran once and will not run again.
	CodeResponseGone   Code = 306
	CodeInvalidPayload Code = 400
	CodeInternal       Code = 500
	// CodeResponseTooLarge replaces a response larger than the client's
	// frame limit (HANDSHAKE max_frame).
	CodeResponseTooLarge Code = 501

	// CodeApplication is the first code an application may use for its own errors.
	CodeApplication Code = 1000
)

var codeNames = map[Code]string{
	OK:                     "ok",
	CodeBadFrame:           "bad frame",
	CodeUnsupported:        "unsupported version or codec",
	CodeUnknownKind:        "unknown kind",
	CodeFrameTooLarge:      "frame too large",
	CodeBadRoute:           "bad route",
	CodeHandshakeRequired:  "handshake required",
	CodeHeartbeatTimeout:   "heartbeat timeout",
	CodeShuttingDown:       "server shutting down",
	CodeUnauthenticated:    "unauthenticated",
	CodeBadCredentials:     "bad credentials",
	CodeTokenInvalid:       "token invalid or expired",
	CodeLockedOut:          "locked out",
	CodeLoggedInElsewhere:  "logged in elsewhere",
	CodeAccountExists:      "account exists",
	CodeRateLimited:        "rate limited",
	CodeTooManyInFlight:    "too many requests in flight",
	CodeSlowConsumer:       "slow consumer",
	CodeOverloaded:         "overloaded",
	CodeQueued:             "queued",
	CodeUnknownRoute:       "unknown route",
	CodeUnavailable:        "unavailable",
	CodeTimeout:            "timeout",
	CodeReconnectElsewhere: "reconnect elsewhere",
	CodeSessionLost:        "session lost",
	CodeResumedElsewhere:   "resumed elsewhere",
	CodeResponseGone:       "response gone",
	CodeInvalidPayload:     "invalid payload",
	CodeInternal:           "internal error",
	CodeResponseTooLarge:   "response too large",
}

// String returns the code's name from PROTOCOL.md, or "code N" for codes it
// does not name (application codes among them).
func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	if c >= CodeApplication {
		return "application error " + strconv.Itoa(int(c))
	}
	return "code " + strconv.Itoa(int(c))
}

// Error is the one error type that crosses the wire: a status code and a
// human-readable message. Servers answer requests with it; clients return it.
type Error struct {
	Code    Code
	Message string
}

// Error reads "hearth: 302 timeout: room did not answer" for a code the
// protocol names and "hearth: error 1001: not your turn" for the others; a
// message that starts with the code's name does not print it twice.
func (e *Error) Error() string {
	name, named := codeNames[e.Code]
	s := "hearth: error " + strconv.Itoa(int(e.Code))
	if named {
		s = "hearth: " + strconv.Itoa(int(e.Code)) + " " + name
	}
	msg := e.Message
	if named && msg == name {
		msg = ""
	} else if named {
		msg = strings.TrimPrefix(msg, name+": ")
	}
	if msg == "" {
		return s
	}
	return s + ": " + msg
}

// Is makes errors.Is match two *Error values by code alone, so callers can
// write errors.Is(err, &wire.Error{Code: wire.CodeTimeout}).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t != nil && t.Code == e.Code
}

// Errorf-style constructor kept small on purpose: messages are plain text.
func NewError(code Code, msg string) *Error { return &Error{Code: code, Message: msg} }
