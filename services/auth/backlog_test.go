package auth_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/pb/authpb"
	"github.com/hearth-server/hearth/services/auth"
	"github.com/hearth-server/hearth/services/lobby"
	"github.com/hearth-server/hearth/store"
	"github.com/hearth-server/hearth/wire"
)

// A stampede of sign-ups must not stall the games behind it. While the
// store's one writer is behind (here: SQLite's write lock held from
// another connection, so writes queue), a login that would create an
// account gets 203 and creates nothing, while a returning guest logs in;
// once the writer catches up, the refused device's login creates its
// account, and the logins that had queued complete.
func TestNewAccountsWaitWhileTheStoreIsBehind(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hearth.db")
	st, err := store.Open(ctx, "sqlite://"+path, store.WithLogger(slog.New(slog.DiscardHandler)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	_, svc := auth.New(st, auth.Config{LoginRate: -1, NewAccountsPerIP: -1, MaxWriteBacklog: 50 * time.Millisecond})
	node := hearthtest.Start(t, hearth.Config{RequireUser: true}, svc, lobby.New(st))

	guest := func(device string) (*authpb.LoginResp, error) {
		c := node.Dial(t, "tcp")
		var resp authpb.LoginResp
		err := req(t, c, "auth.guest", &authpb.GuestReq{DeviceId: device}, &resp)
		return &resp, err
	}
	old, err := guest("old")
	require.NoError(t, err)
	require.True(t, old.Created)

	// Hold the write lock from outside: the writer waits for it with the
	// first new account's transaction, and the second queues behind.
	db, err := sql.Open("sqlite", path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	_, err = conn.ExecContext(ctx, "BEGIN IMMEDIATE")
	require.NoError(t, err)
	locked := true
	unlock := func() {
		if locked {
			locked = false
			_, err := conn.ExecContext(ctx, "ROLLBACK")
			require.NoError(t, err)
			require.NoError(t, conn.Close())
		}
	}
	t.Cleanup(unlock)

	type result struct {
		resp *authpb.LoginResp
		err  error
	}
	// New accounts are asked for one after another until one waits in the
	// queue: the writer takes whatever queued as one group, so the first
	// few may all be in the group waiting for the lock.
	queued := make(chan result, 8)
	launched := 0
	launch := func() {
		d := fmt.Sprintf("queued-%d", launched)
		launched++
		go func() {
			r, err := guest(d)
			queued <- result{r, err}
		}()
	}
	launch()
	hearthtest.Eventually(t, 5*time.Second, func() error {
		b := st.WriteBacklog()
		if b > 50*time.Millisecond {
			return nil
		}
		if b == 0 && launched < cap(queued) {
			launch()
		}
		return fmt.Errorf("store write backlog %v with %d new accounts behind a held lock, want past 50ms", b, launched)
	})

	_, err = guest("stampede")
	require.Equal(t, wire.CodeOverloaded, code(t, err), "a new account while the store is behind")
	back, err := guest("old")
	require.NoError(t, err, "a returning guest writes nothing and is not held up")
	require.Equal(t, old.UserId, back.UserId)
	require.False(t, back.Created)

	unlock()
	for range launched {
		r := <-queued
		require.NoError(t, r.err, "a login queued behind the lock completes once it is released")
		require.True(t, r.resp.Created)
	}
	require.Zero(t, st.WriteBacklog())
	again, err := guest("stampede")
	require.NoError(t, err)
	require.True(t, again.Created, "the refused login created nothing")
}
