package wire

// Codec names a session's payload encoding.
const (
	CodecJSON     = "json"
	CodecProtobuf = "protobuf"
)

// Handshake is the JSON payload of a HANDSHAKE frame.
type Handshake struct {
	Version  int    `json:"version"`
	Codec    string `json:"codec"`
	Client   string `json:"client,omitempty"`
	Resume   string `json:"resume,omitempty"`
	LastPush uint64 `json:"last_push,omitempty"`
	// MaxFrame is the largest frame body the client accepts (an extension:
	// absent or 0 means the server's own limit). A response that would be
	// larger is replaced by status 501.
	MaxFrame int `json:"max_frame,omitempty"`
}

// HandshakeAck is the JSON payload of a HANDSHAKE_ACK frame.
type HandshakeAck struct {
	Session      string            `json:"session"`
	Node         string            `json:"node"`
	HeartbeatMS  int64             `json:"heartbeat_ms"`
	Routes       map[string]uint16 `json:"routes"`
	Resume       string            `json:"resume,omitempty"`
	Resumed      bool              `json:"resumed"`
	ServerTimeMS int64             `json:"server_time_ms"`
}

// ValidCodec reports whether c is a codec this protocol version knows.
func ValidCodec(c string) bool { return c == CodecJSON || c == CodecProtobuf }
