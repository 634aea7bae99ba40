package hearth

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The holder's own Ask is answered on the spot, not through the bus: the
// lease's subscription delivers nothing for it.
func TestLeaseHolderAsksItself(t *testing.T) {
	t.Parallel()
	n := startRoomNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := n.Lease(ctx, "self", time.Second, nil)
	require.NoError(t, err)
	defer l.Stop()
	l.Serve(func(_ context.Context, req []byte) []byte { return append([]byte("re: "), req...) })
	waitFor(t, 10*time.Second, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.sub != nil
	}, "the only contender never led")
	l.mu.Lock()
	sub := l.sub
	l.mu.Unlock()
	before, err := sub.Delivered()
	require.NoError(t, err)

	got, err := l.Ask(ctx, []byte("hello"))
	require.NoError(t, err)
	require.Equal(t, "re: hello", string(got))
	after, err := sub.Delivered()
	require.NoError(t, err)
	require.Equal(t, before, after, "the holder's Ask crossed the bus")
}
