package wire

import (
	"encoding/json"
	"testing"
)

func TestHandshakeJSON(t *testing.T) {
	b, err := json.Marshal(Handshake{Version: 1, Codec: CodecJSON, Client: "demo/1"})
	require.NoError(t, err)
	require.Equal(t, `{"version":1,"codec":"json","client":"demo/1"}`, string(b))

	b, err = json.Marshal(Handshake{Version: 1, Codec: CodecProtobuf, Client: "demo/1", Resume: "tok", LastPush: 18446744073709551615})
	require.NoError(t, err)
	require.Equal(t, `{"version":1,"codec":"protobuf","client":"demo/1","resume":"tok","last_push":18446744073709551615}`, string(b))

	var h Handshake
	require.NoError(t, json.Unmarshal([]byte(`{"version":1,"codec":"json","client":"x/2","resume":"r","last_push":42,"future":true}`), &h))
	require.Equal(t, Handshake{Version: 1, Codec: "json", Client: "x/2", Resume: "r", LastPush: 42}, h)
}

func TestHandshakeAckJSON(t *testing.T) {
	ack := HandshakeAck{
		Session: "s-7f3a", Node: "gate-1", HeartbeatMS: 10000,
		Routes:       map[string]uint16{"sys.time": 4, "sys.ping": 1, "sys.tick": 3, "sys.push": 2},
		Resume:       "r-9c41",
		ServerTimeMS: 1700000000000,
	}
	b, err := json.Marshal(ack)
	require.NoError(t, err)
	require.Equal(t, goldenAckJSON, string(b))

	var back HandshakeAck
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, ack, back)

	// "resumed" is always present, even when false.
	b, err = json.Marshal(HandshakeAck{})
	require.NoError(t, err)
	require.Equal(t, `{"session":"","node":"","heartbeat_ms":0,"routes":null,"resumed":false,"server_time_ms":0}`, string(b))

	// A route id that does not fit a u16 is rejected.
	require.Error(t, json.Unmarshal([]byte(`{"routes":{"a.b":65536}}`), &back))
}

func TestValidCodec(t *testing.T) {
	require.True(t, ValidCodec("json"))
	require.True(t, ValidCodec("protobuf"))
	for _, c := range []string{"", "JSON", "proto", "msgpack", "json "} {
		require.False(t, ValidCodec(c), c)
	}
}
