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

// marshalJSON encodes a plain value: by its AppendJSON when it has one.
func marshalJSON(v any) ([]byte, error) {
	a, ok := v.(JSONAppender)
	if !ok {
		return json.Marshal(v)
	}
	bp := scratch.Get().(*[]byte)
	b := a.AppendJSON((*bp)[:0])
	out := bytes.Clone(b)
	if cap(b) <= 64<<10 {
		*bp = b
		scratch.Put(bp)
	}
	return out, nil
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
	bp := scratch.Get().(*[]byte)
	return a.AppendJSON((*bp)[:0]), nil
}

// answerProto encodes a protobuf answer in codec c into a scratch buffer.
func answerProto(c cluster.Codec, m proto.Message) ([]byte, error) {
	bp := scratch.Get().(*[]byte)
	if c == cluster.CodecJSON {
		return jsonMarshal.MarshalAppend((*bp)[:0], m)
	}
	return proto.MarshalOptions{}.MarshalAppend((*bp)[:0], m)
}

// releaseAnswer gives an answer's buffer to the scratch pool once nothing
// refers to it.
func releaseAnswer(b []byte) {
	if cap(b) == 0 || cap(b) > 64<<10 {
		return
	}
	b = b[:0]
	scratch.Put(&b)
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
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	return nil
}

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
