package wire

import (
	"errors"
	"fmt"
	"testing"
)

// The numeric values are fixed by PROTOCOL.md, "Status and close codes".
func TestCodeValuesAndNames(t *testing.T) {
	tests := []struct {
		code Code
		num  uint16
		name string
	}{
		{OK, 0, "ok"},
		{CodeBadFrame, 1, "bad frame"},
		{CodeUnsupported, 2, "unsupported version or codec"},
		{CodeUnknownKind, 3, "unknown kind"},
		{CodeFrameTooLarge, 4, "frame too large"},
		{CodeBadRoute, 5, "bad route"},
		{CodeHandshakeRequired, 6, "handshake required"},
		{CodeHeartbeatTimeout, 7, "heartbeat timeout"},
		{CodeShuttingDown, 8, "server shutting down"},
		{CodeUnauthenticated, 100, "unauthenticated"},
		{CodeBadCredentials, 101, "bad credentials"},
		{CodeTokenInvalid, 102, "token invalid or expired"},
		{CodeLockedOut, 103, "locked out"},
		{CodeLoggedInElsewhere, 104, "logged in elsewhere"},
		{CodeAccountExists, 105, "account exists"},
		{CodeRateLimited, 200, "rate limited"},
		{CodeTooManyInFlight, 201, "too many requests in flight"},
		{CodeSlowConsumer, 202, "slow consumer"},
		{CodeOverloaded, 203, "overloaded"},
		{CodeQueued, 204, "queued"},
		{CodeUnknownRoute, 300, "unknown route"},
		{CodeUnavailable, 301, "unavailable"},
		{CodeTimeout, 302, "timeout"},
		{CodeReconnectElsewhere, 303, "reconnect elsewhere"},
		{CodeSessionLost, 304, "session lost"},
		{CodeInvalidPayload, 400, "invalid payload"},
		{CodeInternal, 500, "internal error"},
		{CodeApplication, 1000, "application error 1000"},
		{Code(1234), 1234, "application error 1234"},
		{Code(65535), 65535, "application error 65535"},
		{Code(9), 9, "code 9"},
		{Code(199), 199, "code 199"},
		{Code(999), 999, "code 999"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.num, uint16(tt.code))
			require.Equal(t, tt.name, tt.code.String())
			require.Equal(t, tt.name, fmt.Sprint(tt.code))
		})
	}
}

func TestErrorError(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{Code: CodeTimeout}, "hearth: 302 timeout"},
		{&Error{Code: CodeTimeout, Message: "room did not answer"}, "hearth: 302 timeout: room did not answer"},
		{NewError(1001, "not your turn"), "hearth: error 1001: not your turn"},
		{NewError(1001, ""), "hearth: error 1001"},
		{NewError(42, ""), "hearth: error 42"},
		{ErrFrameTooLarge, "hearth: 4 frame too large"},
		{ErrBadRoute, "hearth: 5 bad route"},
		{NewError(CodeInvalidPayload, "invalid payload: field \"seat\""), "hearth: 400 invalid payload: field \"seat\""},
		{NewError(CodeInvalidPayload, "invalid payloads"), "hearth: 400 invalid payload: invalid payloads"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, tt.err.Error())
	}
}

func TestErrorIs(t *testing.T) {
	err := fmt.Errorf("calling room: %w", NewError(CodeTimeout, "deadline"))
	require.ErrorIs(t, err, &Error{Code: CodeTimeout})
	require.NotErrorIs(t, err, &Error{Code: CodeUnavailable})
	require.NotErrorIs(t, err, errors.New("hearth: 302 timeout"))
	require.NotErrorIs(t, err, (*Error)(nil)) // a typed nil target must not panic

	// Matching is by code alone: the sentinels that share KICK code 1 match each other.
	require.ErrorIs(t, ErrShortFrame, ErrBadFrame)
	require.ErrorIs(t, ErrBadFlags, ErrBadFrame)
	require.NotErrorIs(t, ErrBadRoute, ErrBadFrame)

	var e *Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, CodeTimeout, e.Code)
	require.Equal(t, "deadline", e.Message)
}

func TestSentinelCodes(t *testing.T) {
	for err, code := range map[*Error]Code{
		ErrBadFrame:      1,
		ErrShortFrame:    1,
		ErrBadFlags:      1,
		ErrBadVersion:    2,
		ErrUnknownKind:   3,
		ErrFrameTooLarge: 4,
		ErrBadRoute:      5,
	} {
		require.Equal(t, code, err.Code, err.Message)
	}
}
