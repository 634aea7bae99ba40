package hearthtest

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/pb/authpb"
	"github.com/hearth-server/hearth/wire"
)

// Password is the password of the accounts LoginAs creates.
const Password = "hearthtest-password"

// User is a client logged in as a user through the auth service.
type User struct {
	*client.Client
	// ID is the user id: what Session.UserID says on the server and what
	// Node.Push takes.
	ID string
	// Token is the session token of the login, for auth.token.
	Token string
}

// guests numbers the device ids of Login, so each call is a new user.
var guests atomic.Uint64

// Login dials a client over transport ("tcp" or "ws") and logs it in as a
// new guest user. The node must run the built-in auth service, as
// authtest.Start's does:
//
//	node := authtest.Start(t, hearth.Config{}, mySvc)
//	alice := node.Login(t, "tcp")
func (n *Node) Login(t testing.TB, transport string, opts ...client.Options) *User {
	t.Helper()
	return n.LoginGuest(t, transport, "hearthtest-device-"+strconv.FormatUint(guests.Add(1), 10), opts...)
}

// LoginGuest is Login as the guest of device: the same device is the same
// user every time, so a second LoginGuest logs the same user in again (and
// the first session is kicked with 104).
func (n *Node) LoginGuest(t testing.TB, transport, device string, opts ...client.Options) *User {
	t.Helper()
	return n.login(t, transport, opts, func(ctx context.Context, c *client.Client, resp *authpb.LoginResp) error {
		return c.Request(ctx, "auth.guest", &authpb.GuestReq{DeviceId: device}, resp)
	})
}

// LoginAs is Login as the password account named account (3–32 of A–Z a–z
// 0–9 _ - .), registered with Password on first use.
func (n *Node) LoginAs(t testing.TB, transport, account string, opts ...client.Options) *User {
	t.Helper()
	return n.login(t, transport, opts, func(ctx context.Context, c *client.Client, resp *authpb.LoginResp) error {
		req := &authpb.PasswordReq{Account: account, Password: Password}
		err := c.Request(ctx, "auth.register", req, resp)
		if errors.Is(err, &wire.Error{Code: wire.CodeAccountExists}) {
			err = c.Request(ctx, "auth.login", req, resp)
		}
		return err
	})
}

func (n *Node) login(t testing.TB, transport string, opts []client.Options, do func(context.Context, *client.Client, *authpb.LoginResp) error) *User {
	t.Helper()
	c := n.Dial(t, transport, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var resp authpb.LoginResp
	if err := do(ctx, c, &resp); err != nil {
		t.Fatalf("hearthtest: log in over %s: %v", transport, err)
	}
	return &User{Client: c, ID: resp.UserId, Token: resp.Token}
}
