//go:build linux

package client_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/hearthtest"
)

// A Poller's goroutine with nothing to read waits for its set on the
// runtime's poller ("IO wait"), as a socket's reader does, not blocked in
// epoll_wait: a goroutine in a system call holds a thread, and each
// wake-up handed Ps between threads. It still reads what comes next.
func TestPollerWaitsOnTheRuntimesPoller(t *testing.T) {
	node := hearthtest.Start(t, hearth.Config{})
	p, err := client.NewPoller(client.PollerOptions{Goroutines: 1})
	require.NoError(t, err)
	t.Cleanup(p.Close)
	c := node.Dial(t, "tcp", client.Options{Poller: p})
	ping := func(v string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b, err := c.RequestRaw(ctx, "sys.ping", []byte(v))
		require.NoError(t, err)
		require.Equal(t, v, string(b))
	}
	ping(`1`)
	hearthtest.Eventually(t, 10*time.Second, func() error {
		states := hearthtest.GoroutineStates("client.(*pollLoop).run")
		if len(states) == 0 || slices.ContainsFunc(states, func(s string) bool { return s != "IO wait" }) {
			return fmt.Errorf("the Pollers' goroutines are in %q, want each in IO wait", states)
		}
		return nil
	})
	ping(`2`)
}
