package auth_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/pb/authpb"
	"github.com/hearth-server/hearth/pb/lobbypb"
	"github.com/hearth-server/hearth/services/auth"
	"github.com/hearth-server/hearth/wire"
)

// Two logins of one user racing on two auth nodes end with exactly one
// session, every time: with KickOld the other is kicked with 104, with
// RefuseNew the other login is refused with 104.
func TestDuplicateLoginRace(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy auth.DuplicatePolicy
		rounds int
	}{
		{"kick old", auth.KickOld, 200},
		{"refuse new", auth.RefuseNew, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := authCluster(t, auth.Config{Duplicate: tc.policy, NewAccountsPerIP: -1})
			for round := range tc.rounds {
				device := fmt.Sprintf("racer-%d", round)
				pair := [2]*client.Client{node.Dial(t, "tcp"), node.Dial(t, "tcp")}
				errs := [2]chan error{make(chan error, 1), make(chan error, 1)}
				for i, c := range pair {
					go func() { errs[i] <- req(t, c, "auth.guest", &authpb.GuestReq{DeviceId: device}, &authpb.LoginResp{}) }()
				}
				var in []*client.Client // logged in
				for i, c := range pair {
					if err := <-errs[i]; err != nil {
						require.Equal(t, wire.CodeLoggedInElsewhere, code(t, err), "round %d: %v", round, err)
					} else {
						in = append(in, c)
					}
				}
				if tc.policy == auth.RefuseNew {
					require.Len(t, in, 1, "round %d: exactly one login is refused", round)
				} else {
					// The loser is kicked (its answer may come first, or
					// its connection may end before its answer does).
					require.NotEmpty(t, in, "round %d: no login succeeded", round)
					var survivor []*client.Client
					hearthtest.Eventually(t, 10*time.Second, func() error {
						survivor = survivor[:0]
						for _, c := range pair {
							select {
							case <-c.Done():
								var we *wire.Error
								if !errors.As(c.Err(), &we) || we.Code != wire.CodeLoggedInElsewhere {
									return fmt.Errorf("round %d: a session ended with %v, want KICK 104", round, c.Err())
								}
							default:
								survivor = append(survivor, c)
							}
						}
						if len(survivor) != 1 {
							return fmt.Errorf("round %d: %d of 2 sessions still open, want 1", round, len(survivor))
						}
						return nil
					})
					in = survivor
				}
				// The one session left is the user's: it reaches a route that
				// needs a login.
				require.NoError(t, req(t, in[0], "lobby.profile", &lobbypb.ProfileReq{}, &lobbypb.Profile{}), "round %d", round)
				for _, c := range pair {
					_ = c.Close()
				}
			}
		})
	}
}
