package hearth_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/pb/syspb"
)

func TestSmoke(t *testing.T) {
	node := hearthtest.Start(t, hearth.Config{})
	for _, tr := range hearthtest.Transports {
		c := node.Dial(t, tr)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		out, err := c.RequestRaw(ctx, "sys.ping", []byte(`{"a":1}`))
		require.NoError(t, err)
		require.Equal(t, `{"a":1}`, string(out))
		var tr syspb.TimeResp
		require.NoError(t, c.Request(ctx, "sys.time", &syspb.TimeResp{}, &tr))
		require.InDelta(t, time.Now().UnixMilli(), tr.ServerTimeMs, 5000)
	}
}
