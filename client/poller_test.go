//go:build linux

package client

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth/wire"
)

// The "polled" kind in transports runs the client suite on a Poller; these
// tests cover what only a Poller has: many clients on few goroutines,
// frames split and joined across reads, and the Poller's own end.

func newTestPoller(t *testing.T, o PollerOptions) *Poller {
	t.Helper()
	p, err := NewPoller(o)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

// TestPollerManyClients: 200 clients on a Poller of 2 goroutines, each with
// pushes and concurrent requests, get every answer and every push, in
// order, and hold no reader goroutine each.
func TestPollerManyClients(t *testing.T) {
	for _, gather := range []time.Duration{0, time.Millisecond} {
		t.Run(fmt.Sprint(gather), func(t *testing.T) {
			const clients, requests, pushes = 200, 20, 15
			addr := startPeer(t, "tcp", func(pc *pconn) {
				pc.handshake(testAck())
				n := 0
				pc.serve(func(f wire.Frame) (wire.Code, []byte, bool) {
					// Each answer follows a push, so a read holds frames of
					// both kinds.
					if n < pushes {
						n++
						pc.push(uint64(n))
					}
					return 0, append([]byte("re:"), f.Payload...), true
				})
			})
			p := newTestPoller(t, PollerOptions{Goroutines: 2, Gather: gather})
			cs := make([]*Client, clients)
			seen := make([][]uint64, clients) // each client's: its handlers run on one Poller goroutine at a time
			for i := range cs {
				c, err := Dial(ctxT(t), addr, Options{Poller: p, PushOnReader: true, OnPush: func(p Push) {
					seen[i] = append(seen[i], p.Seq)
				}})
				require.NoError(t, err)
				cs[i] = c
			}
			// No client has a reader goroutine.
			buf := make([]byte, 1<<24)
			stacks := string(buf[:runtime.Stack(buf, true)])
			require.NotContains(t, stacks, "client.(*Client).run(")
			require.Contains(t, stacks, "client.(*pollLoop).run(")

			var wg sync.WaitGroup
			errs := make(chan error, clients*requests)
			for i, c := range cs {
				for j := range requests {
					wg.Go(func() {
						want := fmt.Sprintf("%d/%d", i, j)
						b, err := c.RequestRaw(ctxT(t), "game.echo", []byte(want))
						if err == nil && string(b) != "re:"+want {
							err = fmt.Errorf("client %d got %q for %q", i, b, want)
						}
						if err != nil {
							errs <- err
						}
					})
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			for i, c := range cs {
				require.Eventually(t, func() bool { return c.LastPush() == pushes }, hang, time.Millisecond, "client %d: LastPush %d", i, c.LastPush())
				require.NoError(t, c.Close())
				require.Len(t, seen[i], pushes)
				for k, seq := range seen[i] {
					require.Equal(t, uint64(k+1), seq)
				}
			}
		})
	}
}

// TestPollerSplitFrames: frames of every size up to 256 KiB, written in
// pieces of random size (a frame across many reads, many frames in one),
// reach the handler whole and in order.
func TestPollerSplitFrames(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{0, 1, 3, 4, 5, 500, 511, 512, 513, 4096, 65535, 256 << 10}
	for range 40 {
		sizes = append(sizes, rng.IntN(20000))
	}
	payload := func(i, n int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, n) }
	var stream []byte
	for i, n := range sizes {
		body := wire.AppendPush(nil, uint64(i+1), "sys.blob", payload(i, n))
		stream = append(append(stream, wire.AppendLength(nil, len(body))...), body...)
	}
	addr := startPeer(t, "tcp", func(pc *pconn) {
		pc.handshake(testAck())
		pc.expect(wire.KindNotify)
		for rest := stream; len(rest) > 0; {
			k := min(len(rest), 1+rng.IntN(3000))
			pc.mu.Lock()
			_, err := pc.c.Write(rest[:k])
			pc.mu.Unlock()
			if err != nil {
				return
			}
			rest = rest[k:]
		}
	})
	p := newTestPoller(t, PollerOptions{Goroutines: 1})
	got := make(chan string, len(sizes))
	c, err := Dial(ctxT(t), addr, Options{Poller: p, PushOnReader: true, MaxFrame: 512 << 10, OnPush: func(p Push) {
		i := int(p.Seq) - 1
		if i >= len(sizes) || !bytes.Equal(p.Payload, payload(i, sizes[i])) {
			got <- fmt.Sprintf("push %d: %d bytes, not the %d sent", p.Seq, len(p.Payload), sizes[i])
			return
		}
		got <- ""
	}})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Notify(ctxT(t), "test.go", nil))
	for range sizes {
		require.Empty(t, recv(t, got))
	}
	require.Equal(t, uint64(len(sizes)), c.LastPush())
}

// TestPollerClosed: closing a Poller ends the clients it reads with
// ErrPollerClosed (also with Reconnect: the Poller is gone, not the
// session's connection), and a Dial on it fails with that error and leaves
// nothing open.
func TestPollerClosed(t *testing.T) {
	pr := newPeer(t, "tcp", func(pc *pconn) {
		pc.handshake(testAck())
		pc.serve(func(wire.Frame) (wire.Code, []byte, bool) { return 0, nil, true })
	})
	p, err := NewPoller(PollerOptions{Goroutines: 2})
	require.NoError(t, err)
	plain, err := Dial(ctxT(t), pr.addr, Options{Poller: p})
	require.NoError(t, err)
	resuming, err := Dial(ctxT(t), pr.addr, Options{Poller: p, Reconnect: true})
	require.NoError(t, err)
	_, err = plain.RequestRaw(ctxT(t), "game.x", nil)
	require.NoError(t, err)

	p.Close()
	for _, c := range []*Client{plain, resuming} {
		waitDone(t, c)
		require.ErrorIs(t, c.Err(), ErrPollerClosed)
		_, err := c.RequestRaw(context.Background(), "game.x", nil)
		require.ErrorIs(t, err, ErrPollerClosed)
		require.NoError(t, c.Close())
	}
	_, err = Dial(ctxT(t), pr.addr, Options{Poller: p})
	require.ErrorIs(t, err, ErrPollerClosed)
	p.Close() // a second Close does nothing
	require.Equal(t, int32(3), pr.conns.Load(), "no connection made again")
}

// TestPollerWithoutLoops: a Poller not made by NewPoller is ignored: the
// client reads on its own goroutine.
func TestPollerWithoutLoops(t *testing.T) {
	addr := startPeer(t, "tcp", func(pc *pconn) {
		pc.handshake(testAck())
		pc.serve(func(f wire.Frame) (wire.Code, []byte, bool) { return 0, []byte("ok"), true })
	})
	c := dial(t, addr, Options{Poller: &Poller{}})
	require.False(t, c.cur.Load().polled)
	b, err := c.RequestRaw(ctxT(t), "game.x", nil)
	require.NoError(t, err)
	require.Equal(t, "ok", string(b))
}
