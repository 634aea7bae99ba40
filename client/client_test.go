package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/hearth-server/hearth/pb/syspb"
	"github.com/hearth-server/hearth/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(closingPoller{m})
}

// closingPoller closes the "polled" tests' Poller after the tests, before
// goleak looks for goroutines left running.
type closingPoller struct{ m *testing.M }

func (r closingPoller) Run() int {
	code := r.m.Run()
	if testPoller != nil {
		testPoller.Close()
	}
	return code
}

// hang guards every wait: tests assert outcomes, never durations.
const hang = 10 * time.Second

func dial(t *testing.T, addr string, o Options) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel() // also proves the connection outlives Dial's ctx
	c, err := Dial(ctx, addr, withPoller(t, addr, o))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	t.Cleanup(cancel)
	return ctx
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(hang):
		t.Fatal("timed out")
		panic("unreachable")
	}
}

func waitDone(t *testing.T, c *Client) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(hang):
		t.Fatal("client did not end")
	}
}

func TestHandshake(t *testing.T) {
	for _, kind := range allTransports {
		for _, tc := range []struct {
			name string
			opts Options
			want wire.Handshake
		}{
			{"defaults", Options{}, wire.Handshake{Version: 1, Codec: "json", Client: DefaultName, MaxFrame: wire.DefaultMaxFrame}},
			{"protobuf", Options{Codec: "protobuf", Name: "bot/7", MaxFrame: 1 << 20}, wire.Handshake{Version: 1, Codec: "protobuf", Client: "bot/7", MaxFrame: 1 << 20}},
			{"resume", Options{Resume: "tok-9", LastPush: 41}, wire.Handshake{Version: 1, Codec: "json", Client: DefaultName, Resume: "tok-9", LastPush: 41, MaxFrame: wire.DefaultMaxFrame}},
		} {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				ack := testAck()
				ack.Resumed = tc.opts.Resume != ""
				got := make(chan wire.Handshake, 1)
				addr := startPeer(t, kind, func(pc *pconn) { got <- pc.handshake(ack) })
				c := dial(t, addr, clientOpts(t, kind, tc.opts))
				require.Equal(t, tc.want, recv(t, got))
				require.Equal(t, ack, c.Ack())
				require.Equal(t, "sess-1", c.SessionID())
				require.Equal(t, tc.want.Codec, c.Codec())
				require.Equal(t, tc.opts.LastPush, c.LastPush())
				require.NoError(t, c.Err())
			})
		}
	}
}

// Sessions with the same route dictionary share one copy of it; another
// dictionary is the session's own, and route ids follow it.
func TestRouteDictionaryShared(t *testing.T) {
	other := testAck()
	other.Routes = map[string]uint16{"sys.ping": 9, "sys.tick": 8}
	dialAck := func(ack wire.HandshakeAck, seq uint64) (*Client, <-chan Push) {
		addr := startPeer(t, "tcp", func(pc *pconn) {
			pc.handshake(ack)
			pc.send(wire.AppendPushID(nil, seq, 8, []byte("{}")))
			pc.drain()
		})
		got := make(chan Push, 1)
		return dial(t, addr, Options{UseRouteIDs: true, OnPush: func(p Push) { got <- p }}), got
	}
	ptr := func(c *Client) uintptr { return reflect.ValueOf(c.Ack().Routes).Pointer() }
	a, _ := dialAck(testAck(), 1)
	b, _ := dialAck(testAck(), 1)
	require.Equal(t, testRoutes, b.Ack().Routes)
	require.Equal(t, ptr(a), ptr(b), "one dictionary for both sessions")
	c, pushes := dialAck(other, 1)
	require.Equal(t, other.Routes, c.Ack().Routes)
	require.NotEqual(t, ptr(a), ptr(c))
	require.Equal(t, "sys.tick", recv(t, pushes).Route, "route id 8 in the session's own dictionary")
	require.Equal(t, testRoutes, a.Ack().Routes, "the first sessions keep theirs")
}

func TestRequestCodecs(t *testing.T) {
	for _, kind := range allTransports {
		for _, codec := range []string{"json", "protobuf"} {
			for _, ids := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/ids=%v", kind, codec, ids), func(t *testing.T) {
					notified := make(chan string, 1)
					addr := startPeer(t, kind, func(pc *pconn) {
						pc.handshake(testAck())
						pc.serve(func(f wire.Frame) (wire.Code, []byte, bool) {
							r := route(f)
							if f.HasRouteID() != (ids && testRoutes[r] != 0) {
								return 400, []byte("route id flag " + fmt.Sprint(f.HasRouteID())), true
							}
							switch r {
							case "sys.push":
								var req syspb.PushReq
								if err := decodeMsg(codec, f.Payload, &req); err != nil {
									return 400, []byte(err.Error()), true
								}
								if codec == "json" && !bytes.Contains(f.Payload, []byte("interval_ms")) {
									return 400, []byte("want proto field names: " + string(f.Payload)), true
								}
								if req.Count != 3 || req.IntervalMs != 5 {
									return 400, []byte("bad request " + req.String()), true
								}
								if codec == "json" { // an unknown field must be discarded
									return 0, []byte(`{"count": 3, "future_field": true}`), true
								}
								return 0, encodeMsg(codec, &syspb.PushResp{Count: req.Count}), true
							case "sys.ping":
								return 0, append([]byte("echo:"), f.Payload...), true
							case "game.chat":
								notified <- string(f.Payload)
								return 0, nil, false
							}
							return wire.CodeUnknownRoute, []byte(r), true
						})
					})
					c := dial(t, addr, clientOpts(t, kind, Options{Codec: codec, UseRouteIDs: ids}))
					ctx := ctxT(t)

					var resp syspb.PushResp
					require.NoError(t, c.Request(ctx, "sys.push", &syspb.PushReq{Count: 3, IntervalMs: 5}, &resp))
					require.Equal(t, uint32(3), resp.Count)

					// resp nil: result ignored
					require.NoError(t, c.Request(ctx, "sys.push", &syspb.PushReq{Count: 3, IntervalMs: 5}, nil))

					raw, err := c.RequestRaw(ctx, "sys.ping", []byte("hello"))
					require.NoError(t, err)
					require.Equal(t, "echo:hello", string(raw))

					// Encode/Decode use the session codec.
					p, err := c.Encode(&syspb.Tick{N: 12})
					require.NoError(t, err)
					require.NoError(t, c.NotifyRaw(ctx, "game.chat", p))
					var tick syspb.Tick
					require.NoError(t, decodeMsg(codec, []byte(recv(t, notified)), &tick))
					require.Equal(t, uint32(12), tick.N)

					require.NoError(t, c.Notify(ctx, "game.chat", &syspb.Tick{N: 13}))
					require.NoError(t, c.Decode([]byte(recv(t, notified)), &tick))
					require.Equal(t, uint32(13), tick.N)
				})
			}
		}
	}
}

func TestErrorStatus(t *testing.T) {
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) {
			addr := startPeer(t, kind, func(pc *pconn) {
				pc.handshake(testAck())
				pc.serve(func(f wire.Frame) (wire.Code, []byte, bool) {
					switch route(f) {
					case "game.fail":
						return 1234, []byte("no such item"), true
					case "game.busy":
						return wire.CodeRateLimited, nil, true
					}
					return 0, f.Payload, true
				})
			})
			c := dial(t, addr, Options{})
			ctx := ctxT(t)

			err := c.Request(ctx, "game.fail", nil, nil)
			var we *wire.Error
			require.ErrorAs(t, err, &we)
			require.Equal(t, wire.Code(1234), we.Code)
			require.Equal(t, "no such item", we.Message)
			require.ErrorIs(t, err, &wire.Error{Code: 1234})

			_, err = c.RequestRaw(ctx, "game.busy", []byte("{}"))
			require.ErrorAs(t, err, &we)
			require.Equal(t, wire.CodeRateLimited, we.Code)

			// The session is still usable.
			b, err := c.RequestRaw(ctx, "game.echo", []byte(`{"a":1}`))
			require.NoError(t, err)
			require.Equal(t, `{"a":1}`, string(b))
			require.NoError(t, c.Err())
		})
	}
}

func TestInvalidRoute(t *testing.T) {
	addr := startPeer(t, "tcp", func(pc *pconn) {
		pc.handshake(testAck())
		pc.serve(func(f wire.Frame) (wire.Code, []byte, bool) {
			if !wire.ValidRoute(f.Route) {
				pc.t.Errorf("peer: got invalid route %q", f.Route)
			}
			return 0, f.Payload, true
		})
	})
	c := dial(t, addr, Options{})
	ctx := ctxT(t)
	for _, r := range []string{"", "nodot", "Bad.route", "a.b.c", "game." + strings.Repeat("x", 40)} {
		err := c.Request(ctx, r, nil, nil)
		require.ErrorIs(t, err, &wire.Error{Code: wire.CodeBadRoute}, r)
		require.ErrorIs(t, c.Notify(ctx, r, nil), &wire.Error{Code: wire.CodeBadRoute}, r)
	}
	b, err := c.RequestRaw(ctx, "game.ok", []byte("x"))
	require.NoError(t, err)
	require.Equal(t, "x", string(b))
}

func TestConcurrentRequests(t *testing.T) {
	const n = 1000
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) {
			addr := startPeer(t, kind, func(pc *pconn) {
				pc.handshake(testAck())
				// Collect every request, then answer them in reverse order.
				var reqs []wire.Frame
				for len(reqs) < n {
					f := pc.expect(wire.KindRequest)
					f.Payload = bytes.Clone(f.Payload)
					reqs = append(reqs, f)
				}
				for i := len(reqs) - 1; i >= 0; i-- {
					pc.send(wire.AppendResponse(nil, reqs[i].Seq, 0, append([]byte("re:"), reqs[i].Payload...)))
				}
			})
			c := dial(t, addr, Options{})
			ctx := ctxT(t)
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					want := fmt.Sprintf("req-%d", i)
					b, err := c.RequestRaw(ctx, "sys.ping", []byte(want))
					if err == nil && string(b) != "re:"+want {
						err = fmt.Errorf("request %d got %q", i, b)
					}
					errs <- err
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
		})
	}
}

// RequestRawAppend appends each answer to the buffer it is given (reused
// when it has room); RequestRaw's answers are the caller's, untouched by
// later answers; an error leaves the buffer as it was.
func TestRequestRawAppend(t *testing.T) {
	addr := startPeer(t, "tcp", func(pc *pconn) {
		pc.handshake(testAck())
		for range 24 { // the requests below
			f := pc.expect(wire.KindRequest)
			if string(f.Route) == "game.fail" {
				pc.send(wire.AppendResponse(nil, f.Seq, wire.CodeApplication, []byte("no")))
				continue
			}
			pc.send(wire.AppendResponse(nil, f.Seq, 0, append([]byte("re:"), f.Payload...)))
		}
	})
	c := dial(t, addr, Options{})
	ctx := ctxT(t)
	first, err := c.RequestRaw(ctx, "game.echo", []byte("one"))
	require.NoError(t, err)
	buf := make([]byte, 0, 64)
	for i := range 20 {
		want := fmt.Sprintf("re:%d-%s", i, strings.Repeat("x", i))
		got, err := c.RequestRawAppend(ctx, "game.echo", []byte(want[3:]), buf[:0])
		require.NoError(t, err)
		require.Equal(t, want, string(got))
		require.Same(t, unsafe.SliceData(buf), unsafe.SliceData(got), "the buffer is reused")
	}
	got, err := c.RequestRawAppend(ctx, "game.echo", []byte("b"), []byte("a:"))
	require.NoError(t, err)
	require.Equal(t, "a:re:b", string(got), "appended after what dst holds")
	kept, err := c.RequestRawAppend(ctx, "game.fail", nil, []byte("kept"))
	require.ErrorIs(t, err, &wire.Error{Code: wire.CodeApplication})
	require.Equal(t, "kept", string(kept))
	require.Equal(t, "re:one", string(first), "a RequestRaw answer is the caller's")
	empty, err := c.RequestRaw(ctx, "game.echo", nil)
	require.NoError(t, err)
	require.Equal(t, "re:", string(empty))
}

func TestPushes(t *testing.T) {
	const n = 200
	for _, kind := range transports {
		for _, codec := range []string{"json", "protobuf"} {
			t.Run(kind+"/"+codec, func(t *testing.T) {
				addr := startPeer(t, kind, func(pc *pconn) {
					pc.handshake(testAck())
					// Right after the ack, before the client could call OnPush:
					// only Options.OnPush sees these.
					for seq := uint64(1); seq <= 3; seq++ {
						pc.send(wire.AppendPush(nil, seq, "game.hello", encodeMsg(codec, &syspb.Tick{N: uint32(seq)})))
					}
					f := pc.expect(wire.KindNotify)
					if route(f) != "test.go" {
						pc.t.Errorf("peer: notify on %q", route(f))
					}
					pc.sendTicks(codec, 4, n)
				})

				var mu sync.Mutex
				var ticks, other []Push
				all := make(chan struct{})
				count := 0
				record := func(dst *[]Push) func(Push) {
					return func(p Push) {
						mu.Lock()
						defer mu.Unlock()
						*dst = append(*dst, p)
						if count++; count == n {
							close(all)
						}
					}
				}
				c := dial(t, addr, Options{Codec: codec, OnPush: record(&other)})
				c.OnPush("sys.tick", record(&ticks))
				c.OnPush("game.unused", func(Push) { t.Error("handler for unused route called") })
				c.OnPush("game.unused", nil)
				require.NoError(t, c.Notify(ctxT(t), "test.go", nil))
				recv(t, all)

				mu.Lock()
				defer mu.Unlock()
				var lastTick, lastOther uint64
				for _, p := range ticks {
					require.Equal(t, "sys.tick", p.Route)
					require.Greater(t, p.Seq, lastTick)
					lastTick = p.Seq
				}
				for _, p := range other {
					require.Contains(t, []string{"game.hello", "game.chat"}, p.Route)
					require.Greater(t, p.Seq, lastOther)
					lastOther = p.Seq
				}
				require.Len(t, other, 3+(n/10))
				require.Equal(t, uint64(n), max(lastTick, lastOther))
				// Payloads are the handlers' own: decoding them now (after
				// the reader reused its buffer many times) still works.
				for _, p := range append(ticks, other...) {
					var tick syspb.Tick
					require.NoError(t, c.Decode(p.Payload, &tick))
					require.Equal(t, p.Seq, uint64(tick.N))
				}
				require.Equal(t, uint64(n), c.LastPush())
			})
		}
	}
}

func TestPushQueueFull(t *testing.T) {
	addr := startPeer(t, "tcp", func(pc *pconn) {
		pc.handshake(testAck())
		for seq := uint64(1); seq <= 20; seq++ {
			pc.send(wire.AppendPush(nil, seq, "sys.tick", []byte("{}")))
		}
	})
	release := make(chan struct{})
	c := dial(t, addr, Options{PushQueue: 2, OnPush: func(Push) { <-release }})
	waitDone(t, c)
	close(release)
	require.ErrorIs(t, c.Err(), ErrPushQueueFull)
	// Push 1 in the handler, push 2 queued, push 3 overflowed: it is not
	// counted, so resuming from LastPush replays it.
	require.Equal(t, uint64(2), c.LastPush())
}

func TestPushWithoutHandler(t *testing.T) {
	addr := startPeer(t, "tcp", func(pc *pconn) {
		pc.handshake(testAck())
		f := pc.expect(wire.KindRequest)
		for seq := uint64(1); seq <= 5; seq++ {
			pc.send(wire.AppendPush(nil, seq, "sys.tick", []byte("{}")))
		}
		pc.send(wire.AppendResponse(nil, f.Seq, 0, nil))
	})
	c := dial(t, addr, Options{})
	require.NoError(t, c.Request(ctxT(t), "sys.sync", nil, nil))
	require.Equal(t, uint64(5), c.LastPush())
}

// The push goroutine ends once every push is handled, and the next push
// starts another; handlers still run one at a time, in push order.
func TestPushGoroutineEndsWhenIdle(t *testing.T) {
	const bursts, per = 5, 20
	addr := startPeer(t, "tcp", func(pc *pconn) {
		pc.handshake(testAck())
		for b := range bursts {
			pc.expect(wire.KindNotify)
			for i := range per {
				pc.push(uint64(b*per + i + 1))
			}
		}
		pc.drain()
	})
	var running atomic.Int32 // handlers running now
	var seen []uint64        // push goroutine only, then read after handled says so
	handled := make(chan struct{}, bursts)
	c := dial(t, addr, Options{OnPush: func(p Push) {
		if running.Add(1) != 1 {
			t.Error("two handlers at once")
		}
		seen = append(seen, p.Seq)
		if len(seen)%per == 0 {
			handled <- struct{}{}
		}
		running.Add(-1)
	}})
	idle := func() bool {
		c.pushes.mu.Lock()
		defer c.pushes.mu.Unlock()
		return !c.pushes.running
	}
	for range bursts {
		require.NoError(t, c.Notify(ctxT(t), "test.next", nil))
		recv(t, handled)
		require.Eventually(t, idle, hang, time.Millisecond, "the push goroutine ends when the queue is empty")
	}
	for i, seq := range seen {
		require.Equal(t, uint64(i+1), seq)
	}
	require.Len(t, seen, bursts*per)
}

func TestServerPing(t *testing.T) {
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) {
			pong := make(chan uint64, 1)
			addr := startPeer(t, kind, func(pc *pconn) {
				pc.handshake(testAck())
				pc.send(wire.AppendPing(nil, 0xDEADBEEF01))
				pong <- pc.expect(wire.KindPong).Clock
			})
			dial(t, addr, Options{})
			require.Equal(t, uint64(0xDEADBEEF01), recv(t, pong))
		})
	}
}

func TestClientPingWhenIdle(t *testing.T) {
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) {
			clocks := make(chan uint64, 3)
			addr := startPeer(t, kind, func(pc *pconn) {
				ack := testAck()
				ack.HeartbeatMS = 100
				pc.handshake(ack)
				for range 3 {
					f := pc.expect(wire.KindPing)
					pc.send(wire.AppendPong(nil, f.Clock))
					clocks <- f.Clock
				}
			})
			c := dial(t, addr, Options{})
			for range 3 {
				clock := recv(t, clocks)
				// The clock is the client's unix time in ms.
				now := uint64(time.Now().UnixMilli())
				require.Greater(t, clock, now-uint64(time.Hour/time.Millisecond))
				require.LessOrEqual(t, clock, now)
			}
			require.Eventually(t, func() bool { return c.RTT() > 0 }, hang, time.Millisecond)
		})
	}
}

func TestHeartbeatTimeout(t *testing.T) {
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) {
			addr := startPeer(t, kind, func(pc *pconn) {
				ack := testAck()
				ack.HeartbeatMS = 20
				pc.handshake(ack)
				// then silence: drain reads and never answers
			})
			c := dial(t, addr, Options{})
			_, err := c.RequestRaw(ctxT(t), "game.never", nil)
			require.ErrorIs(t, err, ErrHeartbeatTimeout)
			waitDone(t, c)
			require.ErrorIs(t, c.Err(), ErrHeartbeatTimeout)
		})
	}
}

// A server that keeps sending but stops reading cannot hold a writer for
// ever: past 3 heartbeat intervals the write fails the connection with
// ErrWriteTimeout, and the request waiting on it returns. Pushes keep the
// connection from looking silent, so the heartbeat check alone would never
// end it.
func TestWriteTimeout(t *testing.T) {
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) {
			addr := startPeer(t, kind, func(pc *pconn) {
				ack := testAck()
				ack.HeartbeatMS = 100
				pc.handshake(ack)
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for seq := uint64(1); ; seq++ { // ends when the client goes away
					pc.push(seq)
					<-tick.C
				}
			})
			c := dial(t, addr, Options{})
			payload := make([]byte, 60<<10)
			errs := make(chan error, 1)
			go func() {
				// Far more than the sockets buffer: some write blocks.
				for range 100_000 {
					if err := c.NotifyRaw(context.Background(), "game.flood", payload); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
			select {
			case err := <-errs:
				require.ErrorIs(t, err, ErrWriteTimeout)
			case <-time.After(hang):
				t.Fatalf("a write to a server that does not read still blocks after %s", hang)
			}
			waitDone(t, c)
			require.ErrorIs(t, c.Err(), ErrWriteTimeout)
			_, err := c.RequestRaw(ctxT(t), "sys.ping", nil)
			require.ErrorIs(t, err, ErrWriteTimeout, "calls after the end fail with its cause")
		})
	}
}

func TestKick(t *testing.T) {
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) {
			addr := startPeer(t, kind, func(pc *pconn) {
				pc.handshake(testAck())
				pc.expect(wire.KindRequest)
				pc.expect(wire.KindRequest)
				pc.send(wire.AppendKick(nil, wire.CodeShuttingDown, "maintenance"))
				pc.c.Close()
			})
			c := dial(t, addr, Options{})
			ctx := ctxT(t)
			errs := make(chan error, 2)
			for range 2 {
				go func() { errs <- c.Request(ctx, "game.wait", nil, nil) }()
			}
			want := &wire.Error{Code: wire.CodeShuttingDown, Message: "maintenance"}
			for range 2 {
				err := recv(t, errs)
				var we *wire.Error
				require.ErrorAs(t, err, &we)
				require.Equal(t, want, we)
			}
			waitDone(t, c)
			require.Equal(t, want, c.Err())
			// Calls after the end fail at once with the same error.
			require.Equal(t, want, c.Request(ctx, "game.wait", nil, nil))
			require.Equal(t, want, c.Notify(ctx, "game.wait", nil))
			require.NoError(t, c.Close())
			require.Equal(t, want, c.Err())
		})
	}
}

func TestDialKick(t *testing.T) {
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) {
			got := make(chan wire.Handshake, 1)
			addr := startPeer(t, kind, func(pc *pconn) {
				f := pc.expect(wire.KindHandshake)
				var hs wire.Handshake
				if err := json.Unmarshal(f.Payload, &hs); err != nil {
					pc.t.Error(err)
				}
				got <- hs
				pc.send(wire.AppendKick(nil, wire.CodeUnsupported, "codec not supported"))
			})
			c, err := Dial(ctxT(t), addr, withPoller(t, addr, Options{Codec: "protobuf"}))
			require.Nil(t, c)
			var we *wire.Error
			require.ErrorAs(t, err, &we)
			require.Equal(t, &wire.Error{Code: wire.CodeUnsupported, Message: "codec not supported"}, we)
			require.Equal(t, "protobuf", recv(t, got).Codec)
		})
	}
}

func TestDialErrors(t *testing.T) {
	ctx := ctxT(t)
	_, err := Dial(ctx, "tcp://127.0.0.1:1", Options{Codec: "xml"})
	require.ErrorContains(t, err, "unknown codec")
	_, err = Dial(ctx, "udp://127.0.0.1:1", Options{})
	require.ErrorContains(t, err, "scheme")
	_, err = Dial(ctx, "tcp://127.0.0.1:1/path", Options{})
	require.ErrorContains(t, err, "bad address")

	// A closed port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	_, err = Dial(ctx, "tcp://"+addr, Options{})
	require.Error(t, err)

	// A server that answers the handshake with something else.
	addr = startPeer(t, "tcp", func(pc *pconn) {
		pc.expect(wire.KindHandshake)
		pc.send(wire.AppendPing(nil, 1))
	})
	_, err = Dial(ctx, addr, Options{})
	require.ErrorContains(t, err, "PING")
}

func TestHandshakeTimeout(t *testing.T) {
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) {
			addr := startPeer(t, kind, func(pc *pconn) {
				pc.expect(wire.KindHandshake) // and never answer
			})
			c, err := Dial(ctxT(t), addr, withPoller(t, addr, Options{HandshakeTimeout: 50 * time.Millisecond}))
			require.Nil(t, c)
			require.ErrorIs(t, err, context.DeadlineExceeded)

			// The caller's own ctx ending reports that ctx's error.
			ctx, cancel := context.WithCancel(context.Background())
			go func() { time.Sleep(20 * time.Millisecond); cancel() }()
			c, err = Dial(ctx, addr, withPoller(t, addr, Options{HandshakeTimeout: hang}))
			require.Nil(t, c)
			require.ErrorIs(t, err, context.Canceled)
		})
	}
}

func TestRequestContext(t *testing.T) {
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) {
			held := make(chan uint32, 2)
			addr := startPeer(t, kind, func(pc *pconn) {
				pc.handshake(testAck())
				var stale []uint32
				pc.serve(func(f wire.Frame) (wire.Code, []byte, bool) {
					if route(f) == "game.never" {
						stale = append(stale, f.Seq)
						held <- f.Seq
						return 0, nil, false
					}
					// Answer the abandoned requests late, then this one.
					for _, s := range stale {
						pc.send(wire.AppendResponse(nil, s, 0, []byte("late")))
					}
					stale = nil
					return 0, f.Payload, true
				})
			})
			c := dial(t, addr, Options{})

			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- c.Request(ctx, "game.never", nil, nil) }()
			recv(t, held)
			cancel()
			require.ErrorIs(t, recv(t, errc), context.Canceled)

			tctx, tcancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer tcancel()
			_, err := c.RequestRaw(tctx, "game.never", nil)
			require.ErrorIs(t, err, context.DeadlineExceeded)

			// An ended ctx fails before sending.
			require.ErrorIs(t, c.Request(ctx, "game.echo", nil, nil), context.Canceled)

			// The late responses are discarded; the next request gets its own.
			for i := range 5 {
				want := fmt.Sprintf("fresh-%d", i)
				b, err := c.RequestRaw(ctxT(t), "game.echo", []byte(want))
				require.NoError(t, err)
				require.Equal(t, want, string(b))
			}
			require.NoError(t, c.Err())
		})
	}
}

func TestClose(t *testing.T) {
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) {
			held := make(chan struct{}, 1)
			addr := startPeer(t, kind, func(pc *pconn) {
				pc.handshake(testAck())
				pc.expect(wire.KindRequest)
				held <- struct{}{}
			})
			c := dial(t, addr, Options{})
			errc := make(chan error, 1)
			go func() { errc <- c.Request(context.Background(), "game.never", nil, nil) }()
			recv(t, held)
			require.NoError(t, c.Close())
			require.ErrorIs(t, recv(t, errc), ErrClosed)
			waitDone(t, c)
			require.NoError(t, c.Err())
			require.ErrorIs(t, c.Request(context.Background(), "game.x", nil, nil), ErrClosed)
			_, err := c.RequestRaw(context.Background(), "game.x", nil)
			require.ErrorIs(t, err, ErrClosed)
			require.ErrorIs(t, c.NotifyRaw(context.Background(), "game.x", nil), ErrClosed)
			require.NoError(t, c.Close())
		})
	}
}

func TestServerGoesAway(t *testing.T) {
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) {
			addr := startPeer(t, kind, func(pc *pconn) {
				pc.handshake(testAck())
				pc.expect(wire.KindRequest)
				pc.c.Close()
			})
			c := dial(t, addr, Options{})
			err := c.Request(ctxT(t), "game.x", nil, nil)
			require.Error(t, err)
			waitDone(t, c)
			require.Equal(t, err, c.Err())
			var we *wire.Error
			require.False(t, errors.As(err, &we), "a dropped connection is not a kick: %v", err)
		})
	}
}

func TestBadFramesFromServer(t *testing.T) {
	for _, kind := range transports {
		for _, tc := range []struct {
			name string
			body []byte
			want error
		}{
			{"version", []byte{2, byte(wire.KindPush), 0, 0, 0, 0, 0, 0, 0, 0, 1}, wire.ErrBadVersion},
			{"kind", []byte{1, 0x7f, 0}, wire.ErrUnknownKind},
			{"short ping", []byte{1, byte(wire.KindPing), 0, 1}, wire.ErrBadFrame},
			{"too large", wire.AppendPush(nil, 1, "sys.tick", make([]byte, 1000)), wire.ErrFrameTooLarge},
			{"unknown route id", wire.AppendPushID(nil, 1, 999, nil), nil},
			{"request from server", wire.AppendRequest(nil, 1, "sys.ping", nil), nil},
		} {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				addr := startPeer(t, kind, func(pc *pconn) {
					pc.handshake(testAck())
					pc.send(tc.body)
				})
				c := dial(t, addr, Options{MaxFrame: 512, OnPush: func(Push) {}})
				waitDone(t, c)
				err := c.Err()
				require.Error(t, err)
				if tc.want != nil {
					require.ErrorIs(t, err, tc.want)
				}
				_, isKick := err.(*wire.Error)
				require.False(t, isKick, "a bad frame is not a kick: %v", err)
			})
		}
	}
}

func TestWebSocketTextMessage(t *testing.T) {
	addr := startPeer(t, "ws", func(pc *pconn) {
		pc.handshake(testAck())
		pc.mu.Lock()
		_ = wsutil.WriteServerMessage(pc.c, ws.OpText, []byte("hello"))
		pc.mu.Unlock()
	})
	c := dial(t, addr, Options{})
	waitDone(t, c)
	require.ErrorIs(t, c.Err(), &wire.Error{Code: wire.CodeBadFrame})
}

// sendTicks pushes sys.Tick{N: seq} for seq from..to: every tenth on
// game.chat, the other even ones by route id, the rest by name.
func (pc *pconn) sendTicks(codec string, from, to uint64) {
	for seq := from; seq <= to; seq++ {
		p := encodeMsg(codec, &syspb.Tick{N: uint32(seq)})
		switch {
		case seq%10 == 0:
			pc.send(wire.AppendPush(nil, seq, "game.chat", p))
		case seq%2 == 0:
			pc.send(wire.AppendPushID(nil, seq, testRoutes["sys.tick"], p))
		default:
			pc.send(wire.AppendPush(nil, seq, "sys.tick", p))
		}
	}
}
