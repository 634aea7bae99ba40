package client

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth/pb/syspb"
	"github.com/hearth-server/hearth/wire"
)

// TestPushOnReader: with Options.PushOnReader every handler runs on the
// reader goroutine, in push order, with a payload valid during the call and
// LastPush already at its push; no push goroutine starts and PushQueue does
// not limit anything.
func TestPushOnReader(t *testing.T) {
	const n = 300
	for _, kind := range transports {
		for _, codec := range []string{"json", "protobuf"} {
			t.Run(kind+"/"+codec, func(t *testing.T) {
				addr := startPeer(t, kind, func(pc *pconn) {
					pc.handshake(testAck())
					pc.expect(wire.KindNotify)
					pc.sendTicks(codec, 1, n)
				})
				var (
					c    *Client
					seen []uint64 // reader goroutine only, read after all is closed
					errs []string // likewise
				)
				all := make(chan struct{})
				handler := func(route string) func(Push) {
					return func(p Push) {
						var tick syspb.Tick
						switch {
						case !c.inHandlerOnReader():
							errs = append(errs, fmt.Sprintf("push %d: not on the reader", p.Seq))
						case p.Route != route && route != "":
							errs = append(errs, fmt.Sprintf("push %d on %q reached the %q handler", p.Seq, p.Route, route))
						case c.LastPush() != p.Seq:
							errs = append(errs, fmt.Sprintf("push %d: LastPush %d", p.Seq, c.LastPush()))
						case cap(p.Payload) != len(p.Payload):
							errs = append(errs, fmt.Sprintf("push %d: payload capacity %d beyond its length %d", p.Seq, cap(p.Payload), len(p.Payload)))
						case c.Decode(p.Payload, &tick) != nil || uint64(tick.N) != p.Seq:
							errs = append(errs, fmt.Sprintf("push %d: payload %q", p.Seq, p.Payload))
						}
						seen = append(seen, p.Seq)
						if p.Seq == n {
							close(all)
						}
					}
				}
				// The handlers are installed after Dial (they use c) and
				// before the Notify that starts the pushes.
				c = dial(t, addr, Options{Codec: codec, PushOnReader: true, PushQueue: 1})
				c.OnPush("", handler(""))
				c.OnPush("sys.tick", handler("sys.tick"))
				require.NoError(t, c.Notify(ctxT(t), "test.go", nil))
				recv(t, all)

				require.Empty(t, errs)
				require.Len(t, seen, n)
				for i, seq := range seen {
					require.Equal(t, uint64(i+1), seq, "pushes handled in order, each once")
				}
				require.True(t, c.pushes.idle(), "no push goroutine ran")
				require.Equal(t, uint64(n), c.LastPush())
				require.NoError(t, c.Err())
			})
		}
	}
}

// TestPushOnReaderRequest: a Request from a handler on the reader fails
// with ErrRequestOnReader instead of deadlocking, a Notify from it is sent,
// and a Request from another goroutine while a handler runs is not refused.
func TestPushOnReaderRequest(t *testing.T) {
	got := make(chan struct{}) // the peer has the other goroutine's request
	addr := startPeer(t, "tcp", func(pc *pconn) {
		pc.handshake(testAck())
		pc.expect(wire.KindNotify)
		pc.push(1)
		if f := pc.expect(wire.KindNotify); route(f) != "test.handler" {
			pc.t.Errorf("peer: notify on %q", route(f))
		}
		pc.push(2)
		f := pc.expect(wire.KindRequest)
		if route(f) != "test.other" {
			pc.t.Errorf("peer: request on %q", route(f))
		}
		close(got)
		pc.send(wire.AppendResponse(nil, f.Seq, 0, []byte("{}")))
	})
	var reqErrs []error // the handler's, read after inHandler is closed
	inHandler := make(chan struct{})
	c := dial(t, addr, Options{PushOnReader: true})
	c.OnPush("", func(p Push) {
		ctx := ctxT(t)
		switch p.Seq {
		case 1:
			reqErrs = append(reqErrs,
				c.Request(ctx, "test.x", nil, nil),
				c.RequestJSON(ctx, "test.x", nil, nil),
			)
			_, err := c.RequestRaw(ctx, "test.x", nil)
			reqErrs = append(reqErrs, err)
			if err := c.Notify(ctx, "test.handler", nil); err != nil {
				t.Errorf("notify from the handler: %v", err)
			}
		case 2:
			close(inHandler)
			select {
			case <-got:
			case <-time.After(hang):
				t.Error("the request made while a handler ran never reached the peer")
			}
		}
	})
	require.NoError(t, c.Notify(ctxT(t), "test.go", nil))
	recv(t, inHandler)
	require.NoError(t, c.Request(ctxT(t), "test.other", nil, nil))
	require.Len(t, reqErrs, 3)
	for _, err := range reqErrs {
		require.ErrorIs(t, err, ErrRequestOnReader)
	}
	require.Equal(t, 0, pendingCount(c), "the refused requests left nothing pending")
}

// TestPushOnReaderClose: Close from a handler on the reader returns at
// once; the reader ends when the handler returns.
func TestPushOnReaderClose(t *testing.T) {
	addr := startPeer(t, "tcp", func(pc *pconn) {
		pc.handshake(testAck())
		pc.expect(wire.KindNotify)
		pc.push(1)
		pc.expect(wire.KindBye)
		pc.push(2) // after the client closed the connection: never read
	})
	closed := make(chan struct{})
	var seen []uint64 // reader only, read after the client is done
	c := dial(t, addr, Options{PushOnReader: true})
	c.OnPush("", func(p Push) {
		seen = append(seen, p.Seq)
		if p.Seq == 1 {
			if err := c.Close(); err != nil {
				t.Errorf("Close from the handler: %v", err)
			}
			close(closed)
		}
	})
	require.NoError(t, c.Notify(ctxT(t), "test.go", nil))
	recv(t, closed)
	waitDone(t, c)
	require.NoError(t, c.Close())
	require.NoError(t, c.Err())
	require.Equal(t, []uint64{1}, seen, "no handler runs after Close")
}

// TestPushOnReaderResume: a reconnecting client with handlers on the reader
// resumes from LastPush and drops the pushes the server replays that it
// had handled: each push_seq is handled once, in order.
func TestPushOnReaderResume(t *testing.T) {
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) {
			hs2 := make(chan wire.Handshake, 1)
			p := newPeer(t, kind, func(pc *pconn) {
				switch pc.n {
				case 1:
					pc.handshake(ackWith("tok-1", false))
					pc.expect(wire.KindNotify)
					for s := uint64(1); s <= 5; s++ {
						pc.push(s)
					}
					pc.c.Close()
				case 2:
					hs := pc.handshake(ackWith("tok-2", true))
					hs2 <- hs
					for s := max(hs.LastPush, 3) - 2; s <= 8; s++ {
						pc.push(s)
					}
				}
			})
			var mu sync.Mutex
			var seen []uint64
			var offReader int
			done := make(chan struct{})
			c := dial(t, p.addr, Options{
				Reconnect:    true,
				Backoff:      Backoff{Min: 2 * time.Millisecond, Max: 20 * time.Millisecond},
				PushOnReader: true,
			})
			c.OnPush("", func(p Push) {
				mu.Lock()
				defer mu.Unlock()
				if !c.inHandlerOnReader() {
					offReader++
				}
				seen = append(seen, p.Seq)
				if p.Seq == 8 {
					close(done)
				}
			})
			require.NoError(t, c.Notify(ctxT(t), "test.go", nil))
			require.Equal(t, uint64(5), recv(t, hs2).LastPush, "everything before the close arrives")
			recv(t, done)
			mu.Lock()
			defer mu.Unlock()
			require.Equal(t, []uint64{1, 2, 3, 4, 5, 6, 7, 8}, seen)
			require.Zero(t, offReader, "without OnEvent every handler runs on the reader")
			require.Equal(t, uint64(8), c.LastPush())
			require.Equal(t, "tok-2", c.ResumeToken())
		})
	}
}

// TestPushOnReaderWaitsBehindEvents: pushes that arrive while OnEvent runs
// wait for it on the push goroutine (copied), so that events and handlers
// keep one order; once that queue is empty, handlers run on the reader
// again.
func TestPushOnReaderWaitsBehindEvents(t *testing.T) {
	release := make(chan struct{})
	p := newPeer(t, "tcp", func(pc *pconn) {
		switch pc.n {
		case 1:
			pc.handshake(ackWith("tok-1", false))
			pc.expect(wire.KindNotify)
			pc.push(1)
			pc.push(2)
			pc.c.Close()
		case 2:
			hs := pc.handshake(ackWith("tok-2", true))
			for s := hs.LastPush; s <= 5; s++ { // push 2 again: dropped
				pc.push(s)
			}
			wait(release)
			pc.expect(wire.KindNotify)
			pc.push(6)
		}
	})
	var mu sync.Mutex
	var log []string
	var kept []Push // payloads handled off the reader must outlive the call
	add := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		log = append(log, s)
	}
	var onResumed sync.Once
	c := dial(t, p.addr, Options{
		Reconnect:    true,
		Backoff:      Backoff{Min: 2 * time.Millisecond, Max: 20 * time.Millisecond},
		PushOnReader: true,
		OnEvent: func(e Event) {
			add(e.Kind.String())
			if e.Kind == Resumed {
				onResumed.Do(func() { wait(release) })
			}
		},
	})
	c.OnPush("", func(p Push) {
		where := "reader"
		if !c.inHandlerOnReader() {
			where = "push goroutine"
			mu.Lock()
			kept = append(kept, p)
			mu.Unlock()
		}
		add(fmt.Sprintf("push %d on the %s", p.Seq, where))
	})
	require.NoError(t, c.Notify(ctxT(t), "test.go", nil))
	// The reader has read the replayed pushes while OnEvent(Resumed) waits.
	require.Eventually(t, func() bool { return c.LastPush() == 5 }, hang, time.Millisecond,
		"the reader never read pushes 3–5 while OnEvent ran")
	close(release)
	require.Eventually(t, func() bool { return c.pushes.idle() }, hang, time.Millisecond,
		"the push goroutine never finished the queued pushes")
	require.NoError(t, c.Notify(ctxT(t), "test.next", nil))
	require.Eventually(t, func() bool { return c.LastPush() == 6 }, hang, time.Millisecond,
		"push 6 never arrived")
	want := []string{
		"push 1 on the reader", "push 2 on the reader", "disconnected", "resumed",
		"push 3 on the push goroutine", "push 4 on the push goroutine", "push 5 on the push goroutine",
		"push 6 on the reader",
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(log) >= len(want)
	}, hang, time.Millisecond, "the handlers and events never all ran")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, want, log, "handlers and events in one order, each where expected")
	for _, p := range kept {
		require.Equal(t, fmt.Sprintf(`{"n":%d}`, p.Seq), string(p.Payload))
	}
}
