package cli

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/wire"
)

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, url)
	return string(b)
}

func dialJSON(t *testing.T, ctx context.Context, url string) wire.HandshakeAck {
	t.Helper()
	c, err := client.Dial(ctx, url, client.Options{})
	require.NoError(t, err)
	defer c.Close()
	return c.Ack()
}
