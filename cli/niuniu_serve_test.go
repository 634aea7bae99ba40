package cli

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/games/niuniu"
	"github.com/hearth-server/hearth/pb/authpb"
	"github.com/hearth-server/hearth/pb/lobbypb"
)

// `hearth serve` runs a Niu Niu table type: lobby.games lists it, and a
// fresh guest gets the starting grant at its first login, once, and can
// sit at it.
func TestServeNiuniuTable(t *testing.T) {
	urls := startServe(t, nil, "--starting-grant", "500")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, urls["tcp"], client.Options{})
	require.NoError(t, err)
	defer func() { _ = c.Close() }()
	require.NoError(t, c.Request(ctx, "auth.guest", &authpb.GuestReq{DeviceId: "niuniu-serve-test"}, &authpb.LoginResp{}))
	var p lobbypb.Profile
	require.NoError(t, c.Request(ctx, "lobby.profile", &lobbypb.ProfileReq{}, &p))
	require.Equal(t, int64(500), p.Balance, "the starting grant, paid at the guest's creation")

	var games lobbypb.Games
	require.NoError(t, c.Request(ctx, "lobby.games", &lobbypb.GamesReq{}, &games))
	var types []string
	for _, g := range games.Games {
		types = append(types, g.Type)
	}
	require.Contains(t, types, niuniuTable)

	_, err = c.RequestRaw(ctx, "match.join", []byte(`{"room_type":"`+niuniuTable+`"}`))
	require.NoError(t, err)
	require.NoError(t, c.Request(ctx, "lobby.profile", &lobbypb.ProfileReq{}, &p))
	require.Equal(t, int64(500), p.Balance, "the table's grant shares the key: no second grant")
	b, err := c.RequestRaw(ctx, niuniuTable+".state", []byte(`{}`))
	require.NoError(t, err)
	var v niuniu.View
	require.NoError(t, json.Unmarshal(b, &v))
	require.Equal(t, niuniu.PhaseReady, v.Phase)
	require.Equal(t, int64(100), v.Base)
}
