package hearth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/hearth-server/hearth/internal/cluster"
)

// A message is encoded one of two ways, chosen by its Go type:
//
//   - a proto.Message is protobuf in protobuf sessions and protojson in JSON
//     sessions, with the .proto field names ({"server_time_ms": …}) so
//     payloads look the same in every language;
//   - any other value (a plain Go struct) is encoding/json in every session:
//     it has no protobuf form; a value that implements JSONAppender writes
//     its own JSON instead (for a message pushed many times a second).
//
// Requests are decoded strictly on both paths: an unknown field or a value
// of the wrong type is 400, so a misspelt field name is an error the client
// sees, never silently dropped. protojson also accepts a field's
// lowerCamelCase JSON name and integers as quoted strings (as every protojson
// implementation writes 64-bit integers); encoding/json matches field names
// case-insensitively and wants numbers as numbers.
var (
	jsonMarshal   = protojson.MarshalOptions{UseProtoNames: true}
	jsonUnmarshal = protojson.UnmarshalOptions{}
)

func marshal(c cluster.Codec, m proto.Message) ([]byte, error) {
	if c == cluster.CodecJSON {
		return jsonMarshal.Marshal(m)
	}
	return proto.Marshal(m)
}

func unmarshal(c cluster.Codec, b []byte, m proto.Message) error {
	if c == cluster.CodecJSON {
		if len(b) == 0 {
			b = []byte("{}")
		}
		return jsonUnmarshal.Unmarshal(b, m)
	}
	return proto.Unmarshal(b, m)
}

// JSONAppender is a plain message that encodes itself: AppendJSON appends
// its JSON encoding — one valid JSON value, which is not checked — to dst
// and returns the extended slice, as append does (never a slice the value
// keeps: the SDK reuses the buffer once the message is sent). Pushes and
// answers use it instead of encoding/json's reflection; a room pushing a
// view per seat on every move spends much of its time there.
type JSONAppender interface {
	AppendJSON(dst []byte) []byte
}

// encode encodes msg for a session of codec c: a proto.Message in the
// session's codec, anything else as JSON.
func encode(c cluster.Codec, msg any) ([]byte, error) {
	switch m := msg.(type) {
	case proto.Message:
		return marshal(c, m)
	}
	return marshalJSON(msg)
}

// appendEncode is encode appending to dst.
func appendEncode(dst []byte, c cluster.Codec, msg any) ([]byte, error) {
	switch m := msg.(type) {
	case proto.Message:
		if c == cluster.CodecJSON {
			return jsonMarshal.MarshalAppend(dst, m)
		}
		return proto.MarshalOptions{}.MarshalAppend(dst, m)
	case JSONAppender:
		return m.AppendJSON(dst), nil
	}
	b, err := json.Marshal(msg)
	return append(dst, b...), err
}

// scratch holds encoding buffers, so that an AppendJSON does not grow its
// result from nothing each time.
var scratch = sync.Pool{New: func() any { return new([]byte) }}

// scratchHeads are the emptied *[]byte scratch handed out, for
// releaseAnswer to put the next buffer in: a new one per answer was
// garbage at every move.
var scratchHeads sync.Pool

// scratchBuf takes an empty buffer from scratch.
func scratchBuf() []byte {
	h := scratch.Get().(*[]byte)
	b := (*h)[:0]
	*h = nil
	scratchHeads.Put(h)
	return b
}

// marshalJSON encodes a plain value into a buffer of its own: by its
// AppendJSON when it has one.
func marshalJSON(v any) ([]byte, error) {
	if _, ok := v.(JSONAppender); !ok {
		return json.Marshal(v)
	}
	b, err := answerJSON(v)
	out := bytes.Clone(b)
	releaseAnswer(b)
	return out, err
}

// A typed handler's answer is encoded into a scratch buffer, not a buffer
// of its own: the node copies it into the answer's envelope at once and
// gives it back (handler.pooled). A 600-byte view answered to every move
// was cloned out of the pool, then copied again.

// answerJSON encodes a plain answer into a scratch buffer.
func answerJSON(v any) ([]byte, error) {
	a, ok := v.(JSONAppender)
	if !ok {
		return json.Marshal(v)
	}
	return a.AppendJSON(scratchBuf()), nil
}

// answerProto encodes a protobuf answer in codec c into a scratch buffer.
func answerProto(c cluster.Codec, m proto.Message) ([]byte, error) {
	b := scratchBuf()
	if c == cluster.CodecJSON {
		return jsonMarshal.MarshalAppend(b, m)
	}
	return proto.MarshalOptions{}.MarshalAppend(b, m)
}

// releaseAnswer gives an answer's buffer to the scratch pool once nothing
// refers to it.
func releaseAnswer(b []byte) {
	if cap(b) == 0 || cap(b) > 64<<10 {
		return
	}
	h, _ := scratchHeads.Get().(*[]byte)
	if h == nil {
		h = new([]byte)
	}
	*h = b[:0]
	scratch.Put(h)
}

// encodeBoth encodes msg for sessions of either codec. A plain value has one
// encoding, shared by both.
func encodeBoth(msg any) (pb, js []byte, err error) {
	m, ok := msg.(proto.Message)
	if !ok {
		js, err = encode(cluster.CodecJSON, msg)
		return js, js, err
	}
	if pb, err = proto.Marshal(m); err != nil {
		return nil, nil, err
	}
	js, err = jsonMarshal.Marshal(m)
	return pb, js, err
}

// decodeJSON decodes a request payload into v (a pointer) with
// encoding/json, strictly: one JSON value, no unknown fields. An empty
// payload is {}, as an empty protobuf payload is the empty message.
func decodeJSON(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 {
		b = []byte("{}")
	}
	sd := strictDecoders.Get().(*strictDecoder)
	start := sd.dec.InputOffset()
	sd.in = b
	err := sd.dec.Decode(v)
	used := sd.dec.InputOffset() - start
	sd.in = nil
	switch {
	case err != nil:
		return jsonError(err) // not reused: the Decoder may keep the error
	case len(bytes.TrimLeft(b[used:], " \t\r\n")) > 0: // JSON's white space only
		return errors.New("data after the JSON value")
	case used == int64(len(b)) && len(b) <= maxPooledDecode:
		// Every byte read and consumed: the Decoder is where a fresh one
		// would be, at the start of the next value of its stream.
		strictDecoders.Put(sd)
	}
	return nil
}

// A strictDecoder is a json.Decoder with DisallowUnknownFields kept for
// reuse (a new one is 1 KiB of garbage a request): each payload is the
// next value of its input stream. It goes back to the pool only after a
// payload it decoded whole with nothing left over, so no error and no
// byte of one request reaches the next.
type strictDecoder struct {
	dec *json.Decoder
	in  []byte // the payload being decoded, as yet unread
}

func (d *strictDecoder) Read(p []byte) (int, error) {
	if len(d.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p, d.in)
	d.in = d.in[n:]
	return n, nil
}

// maxPooledDecode is the largest payload after which a decoder is reused:
// its buffer grows to the payload's size.
const maxPooledDecode = 16 << 10

var strictDecoders = sync.Pool{New: func() any {
	d := new(strictDecoder)
	d.dec = json.NewDecoder(d)
	d.dec.DisallowUnknownFields()
	return d
}}

// jsonError rewrites encoding/json's errors in the client's terms (JSON
// types and field paths, not Go types).
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return fmt.Errorf("want %s, got %s", jsonKind(te.Type), te.Value)
		}
		return fmt.Errorf("field %q: want %s, got %s", te.Field, jsonKind(te.Type), te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("not valid JSON: %w", err)
	}
	// Unknown fields (`json: unknown field "x"`) and the rest.
	return errors.New(strings.TrimPrefix(err.Error(), "json: "))
}

// jsonKind names the JSON type that decodes into t.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a " + t.String()
}
