package hearth_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/wire"
)

// Past MaxHandlers a request is answered 203 at once and is never run —
// not later either, on another path, where it would run after requests
// its session sent after it.
func TestMaxHandlersRefuses(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var echoes atomic.Int64
	svc := hearth.NewService("busy")
	hearth.HandleJSON(svc, "hold", func(ctx context.Context, s *hearth.Session, _ struct{}) (struct{}, error) {
		close(entered)
		<-release
		return struct{}{}, nil
	})
	hearth.HandleJSON(svc, "echo", func(ctx context.Context, s *hearth.Session, in string) (string, error) {
		echoes.Add(1)
		return in, nil
	})
	node := hearthtest.Start(t, hearth.Config{MaxHandlers: 1}, svc)
	a, b := node.Dial(t, "tcp"), node.Dial(t, "ws")

	held := make(chan error, 1)
	go func() {
		_, err := request(t, a, "busy.hold", "")
		held <- err
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("busy.hold never ran")
	}

	for _, c := range []*client.Client{a, b} { // the holder's session, another
		_, err := request(t, c, "busy.echo", `"x"`)
		requireCode(t, err, wire.CodeOverloaded, "overloaded: too many requests running")
	}
	close(release)
	require.NoError(t, <-held)

	// The slot frees just after the holder's answer is sent.
	hearthtest.Eventually(t, 10*time.Second, func() error {
		_, err := request(t, b, "busy.echo", `"y"`)
		return err
	})
	// Behind a refused request that had gone another way, this would
	// come second.
	out, err := request(t, a, "busy.echo", `"z"`)
	require.NoError(t, err)
	require.Equal(t, `"z"`, out)
	require.Equal(t, int64(2), echoes.Load(), "the two refused echoes never ran")
}
