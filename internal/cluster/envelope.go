package cluster

import (
	"encoding/binary"
	"errors"
	"slices"
	"sync"
)

// Type says what an envelope carries.
type Type uint8

const (
	// TypeRequest carries a client REQUEST or NOTIFY from a gate to a service.
	TypeRequest Type = 1 + iota
	// TypeResponse carries a service's answer back to the gate's reply subject.
	TypeResponse
	// TypePush carries a push to one or more sessions of one gate.
	TypePush
	// TypePublish carries a push to every local member of a channel, or to
	// every session of every gate (broadcast).
	TypePublish
	// TypeKick closes a session with a code and a reason.
	TypeKick
	// TypeBind sets (or, with an empty Node, removes) a session's binding of
	// Route (a service name) to a node.
	TypeBind
	// TypeJoin adds a session to Channel; TypeLeave removes it.
	TypeJoin
	TypeLeave
	// TypeSetUser binds a session to User (empty: unbinds).
	TypeSetUser
	// TypeEvent is a session life event on the events subject; Status holds the EventKind.
	TypeEvent
	// TypeImport carries a resumed session's state from the gate that held
	// it to the gate that took it over (Payload: the state, Node: the old
	// gate). It travels on the new gate's control subject, so everything
	// the old gate forwards for the session afterwards arrives after it.
	TypeImport
	// TypeHandoverReady tells a session's old gate that the new gate has
	// subscribed to the session's channels; TypeHandoverDone answers that
	// every channel message the old gate will forward has been sent.
	TypeHandoverReady
	TypeHandoverDone
	// TypePushEach carries one push per session of one gate, each with its
	// own payload in that session's codec (a card table's private views):
	// Payload holds the payloads, parallel to Sessions, as written by
	// AppendPayloads. One bus message instead of one per session.
	TypePushEach
	typeEnd
)

// Codec of a request's payload; pushes carry both encodings when they can go
// to sessions of either codec.
type Codec uint8

const (
	CodecProtobuf Codec = 0
	CodecJSON     Codec = 1
)

// Binding routes one service's requests of a session to one node.
type Binding struct {
	Service string
	Node    string
}

// Envelope is what travels on the bus. Which fields are set depends on Type;
// every field is encoded in a fixed order, so an unused field costs one byte.
type Envelope struct {
	Type     Type
	Codec    Codec
	Status   uint16
	Seq      uint32
	Deadline int64 // a request's deadline, unix nanoseconds; 0 = none
	// Sent is when a service sent a push (TypePush, TypePushEach), unix
	// nanoseconds, 0 = not said: the gate measures from it how long the
	// push took to reach the client's socket (hearth_push_delay_seconds).
	// It and Deadline share one slot of the encoding, read as Deadline for
	// a request and as Sent otherwise, so a push's time costs no byte
	// where it is not set, and the envelope's format stays that of
	// version 2: a gate of an earlier version reads it as a deadline,
	// which it ignores on a push.
	Sent    int64
	Gate    string
	Session string
	User    string
	Route   string
	Trace   string
	Addr    string
	Channel string
	Node    string
	Reason  string
	// MsgID identifies one channel publish, so a gate can drop a copy that
	// reaches a session twice around a hand-over.
	MsgID string
	// Origin names the bus connection that sent a push (node id and a
	// per-process nonce); Counts, parallel to Sessions, numbers its pushes
	// to each session from 1. A gate delivers each origin's pushes to a
	// session in that order, once, whatever path they took.
	Origin   string
	Counts   []uint64
	Sessions []string
	Bindings []Binding
	// JSON is the JSON form of a push's payload when Payload holds the
	// protobuf form; empty when the push is for one codec only.
	JSON    []byte
	Payload []byte
}

const envelopeVersion = 2

// Limits that keep a corrupt or hostile envelope from allocating much.
const (
	maxEnvString = 1 << 16
	maxEnvList   = 1 << 20
)

var errEnvelope = errors.New("cluster: malformed envelope")

// Append encodes e onto dst, growing it at most once.
func (e *Envelope) Append(dst []byte) []byte {
	dst = slices.Grow(dst, e.maxSize())
	dst = append(dst, envelopeVersion, byte(e.Type), byte(e.Codec))
	dst = binary.AppendUvarint(dst, uint64(e.Status))
	dst = binary.AppendUvarint(dst, uint64(e.Seq))
	dst = binary.AppendVarint(dst, e.timeSlot())
	for _, s := range [...]string{e.Gate, e.Session, e.User, e.Route, e.Trace, e.Addr, e.Channel, e.Node, e.Reason, e.MsgID, e.Origin} {
		dst = appendString(dst, s)
	}
	dst = binary.AppendUvarint(dst, uint64(len(e.Sessions)))
	for _, s := range e.Sessions {
		dst = appendString(dst, s)
	}
	dst = binary.AppendUvarint(dst, uint64(len(e.Counts)))
	for _, c := range e.Counts {
		dst = binary.AppendUvarint(dst, c)
	}
	dst = binary.AppendUvarint(dst, uint64(len(e.Bindings)))
	for _, b := range e.Bindings {
		dst = appendString(appendString(dst, b.Service), b.Node)
	}
	dst = binary.AppendUvarint(dst, uint64(len(e.JSON)))
	dst = append(dst, e.JSON...)
	return append(dst, e.Payload...)
}

// timeSlot is what the encoding's one time field holds (Envelope.Sent).
func (e *Envelope) timeSlot() int64 {
	if e.Type == TypeRequest {
		return e.Deadline
	}
	return e.Sent
}

// maxSize bounds the length of e's encoding: each number at most a
// varint's 10 bytes. A buffer grown as the encoding went (a push's
// payloads last) was reallocated several times, at 20,000 bots a tenth of
// the tables node's garbage.
func (e *Envelope) maxSize() int {
	const v = binary.MaxVarintLen64
	n := 3 + 3*v + 11*v + len(e.Gate) + len(e.Session) + len(e.User) + len(e.Route) + len(e.Trace) +
		len(e.Addr) + len(e.Channel) + len(e.Node) + len(e.Reason) + len(e.MsgID) + len(e.Origin)
	n += v + len(e.Sessions)*v
	for _, s := range e.Sessions {
		n += len(s)
	}
	n += v + len(e.Counts)*v
	n += v + 2*v*len(e.Bindings)
	for _, b := range e.Bindings {
		n += len(b.Service) + len(b.Node)
	}
	return n + v + len(e.JSON) + len(e.Payload)
}

func appendString[T string | []byte](dst []byte, s T) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// EnvelopePool keeps envelopes for reuse, for a caller whose envelope is
// dead once a call returns (what it was handed to copied what it keeps).
// The zero value is ready.
type EnvelopePool struct{ p sync.Pool }

// Get returns an empty envelope.
func (p *EnvelopePool) Get() *Envelope {
	if e, ok := p.p.Get().(*Envelope); ok {
		return e
	}
	return new(Envelope)
}

// Put empties e and keeps it; nothing may refer to e afterwards.
func (p *EnvelopePool) Put(e *Envelope) {
	*e = Envelope{}
	p.p.Put(e)
}

// DecodeEnvelope parses an envelope. Payload and JSON alias b.
func DecodeEnvelope(b []byte) (*Envelope, error) {
	e := new(Envelope)
	if err := e.Decode(b); err != nil {
		return nil, err
	}
	return e, nil
}

// Decode parses b into e. Payload and JSON alias b.
func (e *Envelope) Decode(b []byte) error {
	d := decoder{b: b}
	if len(b) < 3 || b[0] != envelopeVersion || b[1] == 0 || Type(b[1]) >= typeEnd || b[2] > byte(CodecJSON) {
		return errEnvelope
	}
	e.Type, e.Codec = Type(b[1]), Codec(b[2])
	d.b = b[3:]
	status := d.uvarint()
	if status > 0xffff {
		return errEnvelope
	}
	e.Status = uint16(status)
	seq := d.uvarint()
	if seq > 0xffffffff {
		return errEnvelope
	}
	e.Seq = uint32(seq)
	if t := d.varint(); e.Type == TypeRequest {
		e.Deadline = t
	} else {
		e.Sent = t
	}
	for _, p := range [...]*string{&e.Gate, &e.Session, &e.User, &e.Route, &e.Trace, &e.Addr, &e.Channel, &e.Node, &e.Reason, &e.MsgID, &e.Origin} {
		*p = d.string()
	}
	if n := d.count(); n > 0 {
		e.Sessions = make([]string, n)
		for i := range e.Sessions {
			e.Sessions[i] = d.string()
		}
	}
	if n := d.count(); n > 0 {
		e.Counts = make([]uint64, n)
		for i := range e.Counts {
			e.Counts[i] = d.uvarint()
		}
	}
	if n := d.count(); n > 0 {
		e.Bindings = make([]Binding, n)
		for i := range e.Bindings {
			e.Bindings[i].Service = d.string()
			e.Bindings[i].Node = d.string()
		}
	}
	if n := d.uvarint(); n > 0 {
		e.JSON = d.bytes(n)
	}
	if d.err {
		return errEnvelope
	}
	if len(d.b) > 0 {
		e.Payload = d.b
	}
	return nil
}

type decoder struct {
	b   []byte
	err bool
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = true
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = true
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a list length, refusing one that could not fit in what is left
// (every element takes at least one byte), so a forged length cannot allocate.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > maxEnvList || n > uint64(len(d.b)) {
		d.err = true
		d.b = nil
		return 0
	}
	return int(n)
}

func (d *decoder) bytes(n uint64) []byte {
	if n > uint64(len(d.b)) {
		d.err = true
		d.b = nil
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > maxEnvString {
		d.err = true
		d.b = nil
		return ""
	}
	return string(d.bytes(n))
}

// AppendPayloads appends payloads, each prefixed by its length as a
// uvarint: the Payload of a TypePushEach envelope.
func AppendPayloads(dst []byte, payloads [][]byte) []byte {
	for _, p := range payloads {
		dst = appendString(dst, p)
	}
	return dst
}

// AppendPayload appends one payload as AppendPayloads does.
func AppendPayload(dst, payload []byte) []byte { return appendString(dst, payload) }

// SplitPayloads parses what AppendPayloads wrote, expecting n payloads that
// alias b; anything else in b is an error.
func SplitPayloads(b []byte, n int) ([][]byte, error) {
	if n < 0 || n > len(b) { // every payload takes at least its length byte
		return nil, errEnvelope
	}
	out := make([][]byte, n)
	if err := eachPayload(b, n, func(i int, p []byte) { out[i] = p }); err != nil {
		return nil, err
	}
	return out, nil
}

// eachPayload calls fn (when not nil) with each of the n payloads in b, and
// reports whether b holds exactly n.
func eachPayload(b []byte, n int, fn func(i int, p []byte)) error {
	if n < 0 || n > len(b) {
		return errEnvelope
	}
	d := decoder{b: b}
	for i := range n {
		p := d.bytes(d.uvarint())
		if d.err {
			return errEnvelope
		}
		if fn != nil {
			fn(i, p)
		}
	}
	if len(d.b) > 0 {
		return errEnvelope
	}
	return nil
}

// Binding returns the node a session's envelope binds service to, if any.
func (e *Envelope) Binding(service string) (string, bool) {
	for _, b := range e.Bindings {
		if b.Service == service {
			return b.Node, true
		}
	}
	return "", false
}
