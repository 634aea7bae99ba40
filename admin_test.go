package hearth_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/wire"
)

func post(t *testing.T, url, token string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(""))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	return res.StatusCode
}

// POST /v1/drain needs the admin token; with it the node drains and stops.
func TestAdminDrain(t *testing.T) {
	open := hearthtest.Start(t, hearth.Config{})
	require.Equal(t, http.StatusForbidden, post(t, open.AdminURL()+"/v1/drain", ""), "no token configured: drain refused")

	node := hearthtest.Start(t, hearth.Config{AdminToken: "s3cret"})
	c := node.Dial(t, "tcp")
	require.Equal(t, http.StatusUnauthorized, post(t, node.AdminURL()+"/v1/drain", "wrong"))
	res, err := http.Get(node.AdminURL() + "/v1/nodes")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusUnauthorized, res.StatusCode, "read endpoints need the token too when one is set")
	_, err = call(t, c, "sys.ping", `{}`)
	require.NoError(t, err)

	require.Equal(t, http.StatusAccepted, post(t, node.AdminURL()+"/v1/drain", "s3cret"))
	select {
	case <-c.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("client still connected after drain")
	}
	// Alone in its cluster, the node has nowhere to send its clients: KICK 8.
	var we *wire.Error
	require.ErrorAs(t, c.Err(), &we)
	require.Equal(t, wire.CodeShuttingDown, we.Code)
}
