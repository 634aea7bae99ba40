package bots

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/pb/authpb"
)

// A login the server is too busy for (203) is asked again after a pause,
// each refusal told to busy; other errors end the login at once.
func TestLoginRetriesWhileTheServerIsBusy(t *testing.T) {
	var calls atomic.Int32
	svc := hearth.NewService("auth")
	hearth.Handle(svc, "guest", func(_ context.Context, _ *hearth.Session, req *authpb.GuestReq) (*authpb.LoginResp, error) {
		switch n := calls.Add(1); {
		case req.DeviceId == "bad":
			return nil, hearth.Errorf(hearth.CodeInvalidPayload, "bad device")
		case n <= 2:
			return nil, hearth.NewError(hearth.CodeOverloaded, "too many new accounts at once; retry in a few seconds")
		}
		return &authpb.LoginResp{UserId: "u-" + req.DeviceId}, nil
	})
	node := hearthtest.Start(t, hearth.Config{}, svc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var refused int
	user, err := login(ctx, node.Dial(t, "tcp"), "d1", func(error) { refused++ })
	require.NoError(t, err)
	require.Equal(t, "u-d1", user)
	require.Equal(t, 2, refused, "each 203 is told")
	require.EqualValues(t, 3, calls.Load())

	refused = 0
	_, err = login(ctx, node.Dial(t, "tcp"), "bad", func(error) { refused++ })
	require.ErrorContains(t, err, "bad device")
	require.Zero(t, refused)
}
