package hearth

import (
	"fmt"

	"github.com/hearth-server/hearth/wire"
)

// Error is the one error type that reaches clients: a status code and a
// message. A handler that returns an *Error has its code sent to the client;
// any other error becomes 500 "internal error" (and is logged with the
// request's trace id, never sent).
type Error = wire.Error

// Code is a status code. Application codes start at CodeApplication (1000);
// the ranges below it are reserved by the protocol.
type Code = wire.Code

// Codes a service may return. Protocol and flow-control codes are the gate's.
const (
	CodeUnauthenticated   = wire.CodeUnauthenticated
	CodeBadCredentials    = wire.CodeBadCredentials
	CodeTokenInvalid      = wire.CodeTokenInvalid
	CodeLockedOut         = wire.CodeLockedOut
	CodeLoggedInElsewhere = wire.CodeLoggedInElsewhere
	CodeAccountExists     = wire.CodeAccountExists
	CodeRateLimited       = wire.CodeRateLimited
	CodeOverloaded        = wire.CodeOverloaded
	CodeQueued            = wire.CodeQueued
	CodeUnknownRoute      = wire.CodeUnknownRoute
	CodeUnavailable       = wire.CodeUnavailable
	CodeTimeout           = wire.CodeTimeout
	CodeSessionLost       = wire.CodeSessionLost
	CodeInvalidPayload    = wire.CodeInvalidPayload
	CodeInternal          = wire.CodeInternal
	CodeApplication       = wire.CodeApplication
)

// NewError returns an *Error with the code and message.
func NewError(code Code, msg string) *Error { return &Error{Code: code, Message: msg} }

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
