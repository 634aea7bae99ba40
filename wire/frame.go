// Package wire is hearth's client protocol, version 1: frame layout, length
// prefix, route names and ids, handshake messages and status codes, exactly as
// PROTOCOL.md fixes them. It does no network I/O of its own; the gate and the
// client move its bytes.
//
// Decoding never allocates for the common kinds: a decoded Frame's Route and
// Payload alias the body they were decoded from, so a caller that keeps them
// past the body's lifetime must copy.
package wire

import (
	"encoding/binary"
	"errors"
)

// Version is the protocol version this package speaks.
const Version = 1

// DefaultMaxFrame is the default limit on a frame body, in bytes.
const DefaultMaxFrame = 65536

// HeaderSize is the size of the fixed body header: version, kind, flags.
const HeaderSize = 3

// Kind is a frame kind.
type Kind uint8

const (
	KindHandshake    Kind = 0x01
	KindHandshakeAck Kind = 0x02
	KindRequest      Kind = 0x03
	KindResponse     Kind = 0x04
	KindNotify       Kind = 0x05
	KindPush         Kind = 0x06
	KindPing         Kind = 0x07
	KindPong         Kind = 0x08
	KindKick         Kind = 0x09
	// KindBye (client → server, no fields) ends the session at once: the
	// client is leaving and will not resume. An extension of version 1; a
	// server that predates it answers KICK 3, which closes too.
	KindBye Kind = 0x0A
)

var kindNames = [...]string{"", "HANDSHAKE", "HANDSHAKE_ACK", "REQUEST", "RESPONSE", "NOTIFY", "PUSH", "PING", "PONG", "KICK", "BYE"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return "UNKNOWN"
}

// FlagRouteID marks a route carried as a u16 id from the handshake-ack
// dictionary instead of a string.
const FlagRouteID uint8 = 1 << 0

// Decoding errors. Each is a *Error whose Code is the KICK code PROTOCOL.md
// assigns; ErrBadRoute on a REQUEST is answered with response 300 instead.
var (
	ErrBadFrame      = &Error{Code: CodeBadFrame, Message: "malformed frame"}
	ErrShortFrame    = &Error{Code: CodeBadFrame, Message: "frame shorter than 3 bytes"}
	ErrBadVersion    = &Error{Code: CodeUnsupported, Message: "unsupported protocol version"}
	ErrUnknownKind   = &Error{Code: CodeUnknownKind, Message: "unknown frame kind"}
	ErrFrameTooLarge = &Error{Code: CodeFrameTooLarge, Message: "frame too large"}
	ErrBadRoute      = &Error{Code: CodeBadRoute, Message: "bad route"}
	ErrBadFlags      = &Error{Code: CodeBadFrame, Message: "reserved flag bits set"}
)

// Frame is one decoded frame body. Which fields are set depends on Kind:
//
//	REQUEST   Seq, Route or RouteID, Payload
//	RESPONSE  Seq, Status, Payload
//	NOTIFY    Route or RouteID, Payload
//	PUSH      PushSeq, Route or RouteID, Payload
//	PING/PONG Clock
//	KICK      Status (the close code), Payload (the reason)
//	HANDSHAKE, HANDSHAKE_ACK  Payload (JSON)
type Frame struct {
	Kind    Kind
	Flags   uint8
	Seq     uint32
	Status  Code
	PushSeq uint64
	Clock   uint64
	RouteID uint16
	Route   []byte
	Payload []byte
}

// HasRouteID reports whether the frame names its route by numeric id.
func (f *Frame) HasRouteID() bool { return f.Flags&FlagRouteID != 0 }

// Decode parses one frame body (without the TCP length prefix). On success
// the returned frame aliases body. A REQUEST whose route is malformed is
// returned with its Seq set and ErrBadRoute, so that it can be answered with
// status 300; every other error is a KICK code.
func Decode(body []byte) (Frame, error) {
	var f Frame
	if len(body) < HeaderSize {
		return f, ErrShortFrame
	}
	if body[0] != Version {
		return f, ErrBadVersion
	}
	f.Kind = Kind(body[1])
	f.Flags = body[2]
	if f.Kind == 0 || f.Kind > KindBye {
		return f, ErrUnknownKind
	}
	// Bit 0 has a meaning only for the kinds that carry a route; every
	// other bit, and bit 0 on the other kinds, is reserved and must be 0.
	allowed := uint8(0)
	if f.Kind == KindRequest || f.Kind == KindNotify || f.Kind == KindPush {
		allowed = FlagRouteID
	}
	if f.Flags&^allowed != 0 {
		return f, ErrBadFlags
	}
	b := body[HeaderSize:]
	switch f.Kind {
	case KindHandshake, KindHandshakeAck:
		f.Payload = b
	case KindRequest:
		if len(b) < 4 {
			return f, ErrBadFrame
		}
		f.Seq = binary.BigEndian.Uint32(b)
		return f, f.decodeRoute(b[4:])
	case KindResponse:
		if len(b) < 6 {
			return f, ErrBadFrame
		}
		f.Seq = binary.BigEndian.Uint32(b)
		f.Status = Code(binary.BigEndian.Uint16(b[4:]))
		f.Payload = b[6:]
	case KindNotify:
		return f, f.decodeRoute(b)
	case KindPush:
		if len(b) < 8 {
			return f, ErrBadFrame
		}
		f.PushSeq = binary.BigEndian.Uint64(b)
		return f, f.decodeRoute(b[8:])
	case KindPing, KindPong:
		if len(b) != 8 {
			return f, ErrBadFrame
		}
		f.Clock = binary.BigEndian.Uint64(b)
	case KindKick:
		if len(b) < 2 {
			return f, ErrBadFrame
		}
		f.Status = Code(binary.BigEndian.Uint16(b))
		f.Payload = b[2:]
	case KindBye:
		if len(b) != 0 {
			return f, ErrBadFrame
		}
	default:
		return f, ErrUnknownKind
	}
	return f, nil
}

// decodeRoute reads a route (string or id, by the flag) and the payload after it.
func (f *Frame) decodeRoute(b []byte) error {
	if f.Flags&FlagRouteID != 0 {
		if len(b) < 2 {
			return ErrBadFrame
		}
		f.RouteID = binary.BigEndian.Uint16(b)
		f.Payload = b[2:]
		return nil
	}
	if len(b) < 1 {
		return ErrBadFrame
	}
	n := int(b[0])
	if len(b) < 1+n {
		return ErrBadFrame
	}
	f.Route = b[1 : 1+n]
	f.Payload = b[1+n:]
	if !ValidRoute(f.Route) {
		return ErrBadRoute
	}
	return nil
}

// ValidRoute reports whether r matches ^[a-z][a-z0-9_]{0,31}\.[a-z][a-z0-9_]{0,31}$.
// Routes become parts of bus subjects, so nothing else may pass.
func ValidRoute[T string | []byte](r T) bool {
	dot := -1
	for i := 0; i < len(r); i++ {
		if r[i] == '.' {
			if dot >= 0 {
				return false
			}
			dot = i
		}
	}
	if dot < 0 {
		return false
	}
	return validName(r[:dot]) && validName(r[dot+1:])
}

// ValidName reports whether s is a valid service or method name: one part of a route.
func ValidName(s string) bool { return validName(s) }

func validName[T string | []byte](s T) bool {
	if len(s) == 0 || len(s) > 32 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// SplitRoute splits a valid route into service and method.
func SplitRoute(route string) (service, method string) {
	for i := 0; i < len(route); i++ {
		if route[i] == '.' {
			return route[:i], route[i+1:]
		}
	}
	return route, ""
}

func header(dst []byte, k Kind, flags uint8) []byte {
	return append(dst, Version, byte(k), flags)
}

func appendRoute(dst []byte, route string) []byte {
	dst = append(dst, byte(len(route)))
	return append(dst, route...)
}

// AppendHandshake appends a HANDSHAKE body carrying the JSON payload.
func AppendHandshake(dst, payload []byte) []byte {
	return append(header(dst, KindHandshake, 0), payload...)
}

// AppendHandshakeAck appends a HANDSHAKE_ACK body carrying the JSON payload.
func AppendHandshakeAck(dst, payload []byte) []byte {
	return append(header(dst, KindHandshakeAck, 0), payload...)
}

// AppendRequest appends a REQUEST body with a string route.
func AppendRequest(dst []byte, seq uint32, route string, payload []byte) []byte {
	dst = header(dst, KindRequest, 0)
	dst = binary.BigEndian.AppendUint32(dst, seq)
	return append(appendRoute(dst, route), payload...)
}

// AppendRequestID appends a REQUEST body with a numeric route id.
func AppendRequestID(dst []byte, seq uint32, routeID uint16, payload []byte) []byte {
	dst = header(dst, KindRequest, FlagRouteID)
	dst = binary.BigEndian.AppendUint32(dst, seq)
	dst = binary.BigEndian.AppendUint16(dst, routeID)
	return append(dst, payload...)
}

// AppendResponse appends a RESPONSE body. For a non-zero status the payload
// is the UTF-8 error message.
func AppendResponse(dst []byte, seq uint32, status Code, payload []byte) []byte {
	dst = header(dst, KindResponse, 0)
	dst = binary.BigEndian.AppendUint32(dst, seq)
	dst = binary.BigEndian.AppendUint16(dst, uint16(status))
	return append(dst, payload...)
}

// AppendNotify appends a NOTIFY body with a string route.
func AppendNotify(dst []byte, route string, payload []byte) []byte {
	return append(appendRoute(header(dst, KindNotify, 0), route), payload...)
}

// AppendNotifyID appends a NOTIFY body with a numeric route id.
func AppendNotifyID(dst []byte, routeID uint16, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint16(header(dst, KindNotify, FlagRouteID), routeID)
	return append(dst, payload...)
}

// AppendPush appends a PUSH body with a string route.
func AppendPush(dst []byte, pushSeq uint64, route string, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint64(header(dst, KindPush, 0), pushSeq)
	return append(appendRoute(dst, route), payload...)
}

// AppendPushID appends a PUSH body with a numeric route id.
func AppendPushID(dst []byte, pushSeq uint64, routeID uint16, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint64(header(dst, KindPush, FlagRouteID), pushSeq)
	dst = binary.BigEndian.AppendUint16(dst, routeID)
	return append(dst, payload...)
}

// AppendPing appends a PING body.
func AppendPing(dst []byte, clock uint64) []byte {
	return binary.BigEndian.AppendUint64(header(dst, KindPing, 0), clock)
}

// AppendBye appends a BYE body: the client ends its session.
func AppendBye(dst []byte) []byte { return header(dst, KindBye, 0) }

// AppendPong appends a PONG body answering a PING with the given clock.
func AppendPong(dst []byte, clock uint64) []byte {
	return binary.BigEndian.AppendUint64(header(dst, KindPong, 0), clock)
}

// AppendKick appends a KICK body.
func AppendKick(dst []byte, code Code, reason string) []byte {
	dst = binary.BigEndian.AppendUint16(header(dst, KindKick, 0), uint16(code))
	return append(dst, reason...)
}

// AsError returns err as a *Error, or CodeInternal wrapping its text.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Message: err.Error()}
}
