package authtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/hearthtest/authtest"
	"github.com/hearth-server/hearth/wire"
)

type whoami struct {
	User string `json:"user"`
}

func TestLogin(t *testing.T) {
	svc := hearth.NewService("me")
	hearth.HandleJSON(svc, "who", func(ctx context.Context, s *hearth.Session, _ struct{}) (whoami, error) {
		return whoami{s.UserID()}, nil
	})
	node := authtest.Start(t, hearth.Config{}, svc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	anon := node.Dial(t, "tcp")
	require.ErrorIs(t, anon.RequestJSON(ctx, "me.who", nil, nil), &wire.Error{Code: wire.CodeUnauthenticated})

	for _, tr := range hearthtest.Transports {
		alice := node.Login(t, tr)
		bob := node.Login(t, tr)
		require.NotEmpty(t, alice.ID)
		require.NotEmpty(t, alice.Token)
		require.NotEqual(t, alice.ID, bob.ID, "each Login is a new user")
		var got whoami
		require.NoError(t, alice.RequestJSON(ctx, "me.who", nil, &got))
		require.Equal(t, alice.ID, got.User)
	}

	// A named account is the same user each time; the older session is kicked.
	first := node.LoginAs(t, "tcp", "carol")
	again := node.LoginAs(t, "ws", "carol")
	require.Equal(t, first.ID, again.ID)
	select {
	case <-first.Done():
		require.ErrorIs(t, first.Err(), &wire.Error{Code: wire.CodeLoggedInElsewhere})
	case <-time.After(10 * time.Second):
		t.Fatal("the first session of carol was not kicked")
	}

	// So is a device's guest, and pushes by user id reach it.
	pushes := make(chan client.Push, 1)
	dev := node.LoginGuest(t, "tcp", "phone-1")
	dev2 := node.LoginGuest(t, "tcp", "phone-1", client.Options{OnPush: func(p client.Push) { pushes <- p }})
	require.Equal(t, dev.ID, dev2.ID)
	require.NoError(t, node.Push(ctx, dev2.ID, "me.note", whoami{dev2.ID}))
	select {
	case p := <-pushes:
		require.JSONEq(t, `{"user":"`+dev2.ID+`"}`, string(p.Payload))
	case <-time.After(10 * time.Second):
		t.Fatal("no push to the logged-in user")
	}
}
