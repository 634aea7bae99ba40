package cluster

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Exactly one contender leads; when it stops, another takes over.
func TestLeaseFailover(t *testing.T) {
	hub := connect(t, Config{Name: "hub", Listen: "127.0.0.1:0"})
	const ttl = 300 * time.Millisecond
	var elected [3]atomic.Int32
	var leases [3]*Lease
	for i := range leases {
		b := hub
		if i > 0 {
			b = connect(t, Config{Name: "n", URL: hub.ClientURL()})
		}
		l, err := NewLease(context.Background(), b, "queue", string(rune('a'+i)), ttl, func(ctx context.Context) {
			elected[i].Add(1)
		})
		require.NoError(t, err)
		leases[i] = l
		t.Cleanup(l.Stop)
	}
	leaders := func() (n int, who int) {
		for i, l := range leases {
			if l.Leading() {
				n++
				who = i
			}
		}
		return n, who
	}
	eventually(t, 5*time.Second, func() bool { n, _ := leaders(); return n == 1 }, "no single leader")
	time.Sleep(2 * ttl) // refreshes keep the same leader
	n, first := leaders()
	require.Equal(t, 1, n)
	holder, err := leases[0].Holder(context.Background())
	require.NoError(t, err)
	require.Equal(t, string(rune('a'+first)), holder)

	leases[first].Stop()
	eventually(t, 5*time.Second, func() bool { n, who := leaders(); return n == 1 && who != first }, "no new leader after the first stopped")
	_, second := leaders()
	require.EqualValues(t, 1, elected[second].Load())
}
