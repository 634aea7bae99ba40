package client

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth/pb/syspb"
	"github.com/hearth-server/hearth/wire"
)

func TestRequestJSON(t *testing.T) {
	for _, codec := range []string{wire.CodecJSON, wire.CodecProtobuf} {
		t.Run(codec, func(t *testing.T) {
			addr := startPeer(t, "tcp", func(pc *pconn) {
				pc.handshake(testAck())
				pc.serve(func(f wire.Frame) (wire.Code, []byte, bool) {
					if len(f.Payload) == 0 {
						return 0, []byte(`{"seat":0}`), true
					}
					return 0, f.Payload, true // a JSON route: JSON in both codecs
				})
			})
			c := dial(t, addr, Options{Codec: codec})
			type seat struct {
				Seat int `json:"seat"`
			}
			var got seat
			require.NoError(t, c.RequestJSON(ctxT(t), "cards.sit", seat{3}, &got))
			require.Equal(t, seat{3}, got)
			require.NoError(t, c.RequestJSON(ctxT(t), "cards.sit", nil, &got))
			require.Equal(t, seat{0}, got)
			require.NoError(t, c.RequestJSON(ctxT(t), "cards.sit", seat{1}, nil))
		})
	}
}

// TestRequestTypedNil: a nil *T to decode into is an error, never a panic,
// and nothing is sent.
func TestRequestTypedNil(t *testing.T) {
	requests := make(chan string, 4)
	addr := startPeer(t, "tcp", func(pc *pconn) {
		pc.handshake(testAck())
		pc.serve(func(f wire.Frame) (wire.Code, []byte, bool) {
			requests <- route(f)
			return 0, []byte(`{"count":1}`), true
		})
	})
	c := dial(t, addr, Options{})
	var resp *syspb.PushResp
	err := c.Request(ctxT(t), "sys.push", nil, resp)
	require.ErrorIs(t, err, ErrNilMessage)
	require.Contains(t, err.Error(), "*syspb.PushResp")
	require.ErrorIs(t, c.Decode([]byte(`{}`), resp), ErrNilMessage)

	// A typed nil request is the empty message; the next request is the
	// first the server sees.
	var req *syspb.PushReq
	out := &syspb.PushResp{}
	require.NoError(t, c.Request(ctxT(t), "sys.time", req, out))
	require.Equal(t, uint32(1), out.Count)
	require.Equal(t, "sys.time", recv(t, requests))
}
