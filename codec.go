package hearth

import (
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/hearth-server/hearth/internal/cluster"
)

// JSON sessions get protojson with the .proto field names, so payloads look
// like {"server_time_ms": …} in every language.
var (
	jsonMarshal   = protojson.MarshalOptions{UseProtoNames: true}
	jsonUnmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}
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

// marshalBoth encodes a message for sessions of either codec.
func marshalBoth(m proto.Message) (pb, js []byte, err error) {
	if pb, err = proto.Marshal(m); err != nil {
		return nil, nil, err
	}
	js, err = jsonMarshal.Marshal(m)
	return pb, js, err
}
