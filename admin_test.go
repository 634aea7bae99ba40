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

// An admin listener other machines can reach needs a token (issue 9h): New
// refuses it without one, and says how to set one; loopback needs none.
func TestAdminAddrNeedsToken(t *testing.T) {
	for _, tc := range []struct {
		addr, token string
		refused     bool
	}{
		{addr: "", refused: false}, // the default is loopback
		{addr: "127.0.0.1:7180"},
		{addr: "[::1]:0"},
		{addr: "localhost:0"},
		{addr: hearth.Off},
		{addr: ":7180", refused: true},
		{addr: "0.0.0.0:7180", refused: true},
		{addr: "[::]:7180", refused: true},
		{addr: "10.1.2.3:7180", refused: true},
		{addr: "admin.example:7180", refused: true},
		{addr: ":7180", token: "s3cret"},
	} {
		_, err := hearth.New(hearth.Config{AdminAddr: tc.addr, AdminToken: tc.token, DataDir: t.TempDir()})
		if !tc.refused {
			require.NoError(t, err, "admin %q token %q", tc.addr, tc.token)
			continue
		}
		require.ErrorIs(t, err, hearth.ErrAdminNoToken, "admin %q", tc.addr)
		require.ErrorContains(t, err, "Config.AdminToken")
		require.NotContains(t, err.Error(), "--", "a library error names Config fields, not flags")
	}
}

// Which admin endpoints need the token when one is set: the /v1 API and
// the profiles do, the probes and metrics stay open.
func TestAdminEndpointsToken(t *testing.T) {
	node := hearthtest.Start(t, hearth.Config{AdminToken: "s3cret"})
	get := func(path, token string) int {
		req, err := http.NewRequest(http.MethodGet, node.AdminURL()+path, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	for _, tc := range []struct {
		path string
		open bool
	}{
		{"/healthz", true}, {"/readyz", true}, {"/metrics", true},
		{"/v1/nodes", false}, {"/v1/gates", false},
		{"/debug/pprof/", false}, {"/debug/pprof/heap", false}, {"/debug/pprof/goroutine?debug=1", false},
	} {
		want := http.StatusUnauthorized
		if tc.open {
			want = http.StatusOK
		}
		require.Equal(t, want, get(tc.path, ""), "%s without a token", tc.path)
		require.Equal(t, want, get(tc.path, "wrong"), "%s with a wrong token", tc.path)
		require.Equal(t, http.StatusOK, get(tc.path, "s3cret"), "%s with the token", tc.path)
	}
}
