package gate_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/wire"
)

// TestSpacedPushesThroughAFullSocket sends pushes a few milliseconds apart,
// so each is written by the goroutine that queued it (sendLocked), to a
// client that reads nothing until the gate's socket is full and more has
// queued behind it: writes are cut short, then refused (EAGAIN), and the
// flush goroutine takes over mid-frame. Every push must still arrive
// whole, once and in order, and then again while the client reads along.
func TestSpacedPushesThroughAFullSocket(t *testing.T) {
	const (
		size  = 16 << 10
		count = 600 // ~9.6 MiB: more than the two sockets' buffers hold
		gap   = 2 * time.Millisecond
	)
	for _, tr := range hearthtest.Transports {
		t.Run(tr, func(t *testing.T) {
			done := make(chan error, 1)
			svc := hearth.NewService("inl")
			hearth.HandleRaw(svc, "push", func(ctx context.Context, s *hearth.Session, _ []byte) ([]byte, error) {
				go func() { done <- pacedPushes(context.WithoutCancel(ctx), s, count, size, gap) }()
				return []byte("{}"), nil
			})
			node := hearthtest.Start(t, hearth.Config{Limits: hearth.Limits{
				SendQueueBytes: 64 << 20, // the queue holds what the socket cannot
				Heartbeat:      time.Minute,
			}}, svc)

			rc := dialRaw(t, node, tr)
			rc.handshake(wire.CodecJSON)
			var next uint64 = 1
			readPushes := func(n int) {
				t.Helper()
				for range n {
					f := rc.next()
					if f.Kind == wire.KindResponse {
						require.Equal(t, wire.OK, f.Status)
						f = rc.next()
					}
					require.Equal(t, wire.KindPush, f.Kind)
					require.Equal(t, next, f.PushSeq, "pushes out of order or lost")
					require.True(t, bytes.Equal(pushBody(int(next), size), f.Payload), "push %d arrived damaged (%d bytes)", next, len(f.Payload))
					next++
				}
			}

			// Not reading: the gate's writes fill both sockets, then queue.
			rc.send(wire.AppendRequest(nil, 1, "inl.push", nil))
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(waitLong):
				t.Fatal("the service did not finish its pushes")
			}
			readPushes(count)

			// Reading along: the writes are whole again.
			rc.send(wire.AppendRequest(nil, 2, "inl.push", nil))
			// push_seq goes on from count; bodies start again at 1.
			for i := 1; i <= count; i++ {
				f := rc.next()
				if f.Kind == wire.KindResponse {
					require.Equal(t, wire.OK, f.Status)
					f = rc.next()
				}
				require.Equal(t, wire.KindPush, f.Kind)
				require.Equal(t, uint64(count+i), f.PushSeq, "pushes out of order or lost")
				require.True(t, bytes.Equal(pushBody(i, size), f.Payload), "push %d arrived damaged (%d bytes)", i, len(f.Payload))
			}
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(waitLong):
				t.Fatal("the service did not finish its second pushes")
			}
		})
	}
}

// pacedPushes pushes count bodies of size bytes to s, gap apart.
func pacedPushes(ctx context.Context, s *hearth.Session, count, size int, gap time.Duration) error {
	tick := time.NewTicker(gap)
	defer tick.Stop()
	for i := 1; i <= count; i++ {
		<-tick.C
		if err := s.PushRaw(ctx, "inl.data", pushBody(i, size)); err != nil {
			return err
		}
	}
	return nil
}

// pushBody is push i's payload: its number, then a pattern that shifts with
// it, so a frame cut or spliced in the wrong place does not compare equal.
func pushBody(i, size int) []byte {
	b := make([]byte, size)
	binary.BigEndian.PutUint32(b, uint32(i))
	for k := 4; k < size; k++ {
		b[k] = byte(i + k)
	}
	return b
}
