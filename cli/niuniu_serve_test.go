package cli

import (
	"bytes"
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
// sit at it, with the seats and countdowns of the flags.
func TestServeNiuniuTable(t *testing.T) {
	urls := startServe(t, nil, "--starting-grant", "500", "--niuniu-seats", "3", "--niuniu-countdowns", "ready=20m,grab=2s")
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
	require.Len(t, v.Seats, 3, "--niuniu-seats")
	require.Zero(t, v.DeadlineMS, "no countdown before two are ready")
}

func TestParseCountdowns(t *testing.T) {
	r, err := parseCountdowns("")
	require.NoError(t, err)
	require.Equal(t, niuniu.Rules{}, r, "none given: the rules' defaults")
	r, err = parseCountdowns("ready=1s, grab=2s,bet=3ms,open=4m,end=5h")
	require.NoError(t, err)
	require.Equal(t, niuniu.Rules{ReadyCountdown: time.Second, GrabCountdown: 2 * time.Second, BetCountdown: 3 * time.Millisecond, OpenCountdown: 4 * time.Minute, EndPause: 5 * time.Hour}, r)
	for _, bad := range []string{"grab", "grab=", "grab=-1s", "grab=0s", "deal=1s", "grab=1s,", "grab=1"} {
		_, err := parseCountdowns(bad)
		require.ErrorContains(t, err, "--niuniu-countdowns", bad)
	}
}

// A bad Niu Niu flag stops serve with an error naming the flag.
func TestServeNiuniuBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--niuniu-seats", "6"}, {"--niuniu-countdowns", "grab=soon"}} {
		var errb bytes.Buffer
		code := Main(context.Background(), append([]string{"serve", "--data", t.TempDir(), "--tcp", "127.0.0.1:0", "--ws", "off", "--admin", "off"}, args...), Options{Stdout: &bytes.Buffer{}, Stderr: &errb})
		require.Equal(t, 1, code, "%v: %s", args, errb.String())
		require.Contains(t, errb.String(), args[0])
	}
}
