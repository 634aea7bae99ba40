package gate_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/pb/syspb"
	"github.com/hearth-server/hearth/wire"
)

// floodService floods channel "flood" for TestSlowReader: flood.join
// joins it, flood.hello joins "marks", and flood.batch publishes count
// pushes of about 4 KiB to "flood" and then one mark to "marks". Both
// channels' messages leave the node's one bus connection in that order
// and the gate fans them out on one goroutine, so a session that has the
// mark has had the batch queued for the flood's members.
func floodService(node *atomic.Pointer[hearthtest.Node]) *hearth.Service {
	svc := hearth.NewService("flood")
	join := func(channel string) func(context.Context, *hearth.Session, *syspb.PushReq) (*syspb.PushResp, error) {
		return func(ctx context.Context, s *hearth.Session, _ *syspb.PushReq) (*syspb.PushResp, error) {
			return &syspb.PushResp{}, s.Join(ctx, channel)
		}
	}
	hearth.Handle(svc, "join", join("flood"))
	hearth.Handle(svc, "hello", join("marks"))
	big := &syspb.GateInfo{Id: strings.Repeat("x", 4<<10)}
	var marks atomic.Uint32
	hearth.Handle(svc, "batch", func(ctx context.Context, _ *hearth.Session, req *syspb.PushReq) (*syspb.PushResp, error) {
		n := node.Load()
		for range req.Count {
			if err := n.Publish(ctx, "flood", "flood.data", big); err != nil {
				return nil, err
			}
		}
		mark := marks.Add(1)
		return &syspb.PushResp{Count: mark}, n.Publish(ctx, "marks", "flood.mark", &syspb.Tick{N: mark})
	})
	return svc
}

// TestSlowReader: a client that stops reading while pushes pour in is
// kicked with 202 once the kernel's buffers and then its send queue are
// full, without the gate ever waiting on it: another client's round trips
// stay fast meanwhile. When the slow client reads again it gets what was
// written before the kick, in order, then KICK 202 as the last frame.
//
// The slow client first takes a whole sys.push of 1000 ticks (~35 KB); that
// alone never fills the queue: on loopback the kernel takes megabytes from
// the gate (the socket's send buffer grows to tcp_wmem's maximum) before a
// write blocks. So a service then floods it through a channel, in batches
// smaller than the queue, each waited for: the queue can only overflow
// while the gate's write to the slow client is blocked (a burst larger than
// the queue would get even a fast reader kicked before the gate's writer
// ran).
func TestSlowReader(t *testing.T) {
	t.Parallel()
	const (
		queueBytes   = 64 << 10
		writeTimeout = 10 * time.Second
		batch        = 12 // pushes of ~4 KiB: a batch is well under the queue
		ticks        = 1000
	)
	var nodeRef atomic.Pointer[hearthtest.Node]
	node := hearthtest.Start(t, hearth.Config{Limits: hearth.Limits{
		SendQueueBytes: queueBytes,
		WriteTimeout:   writeTimeout,
		Heartbeat:      time.Minute, // the slow client is silent on purpose
	}}, floodService(&nodeRef))
	nodeRef.Store(node)
	ctx, cancel := context.WithTimeout(context.Background(), 3*waitLong)
	defer cancel()

	normal := node.Dial(t, "tcp")
	normalPushes := logPushes(normal)
	require.NoError(t, normal.Request(ctx, "flood.hello", &syspb.PushReq{}, &syspb.PushResp{}))

	// The slow client keeps its default receive buffer: a tiny one (4 KiB,
	// far below loopback's 64 KiB MSS) never advertises a reopened window,
	// so the kernel falls back to zero-window probes and draining what the
	// gate's socket holds would take minutes. Its size hardly matters here:
	// the gate's own socket buffers megabytes.
	slow := dialRaw(t, node, "tcp")
	// It answers no PING either: a PONG written after the gate closed the
	// socket would have the kernel reset it, unread frames and KICK lost.
	slow.seePings = true
	slow.handshake(wire.CodecJSON)
	slow.send(wire.AppendRequest(nil, 1, "sys.push", []byte(`{"count":1000,"interval_ms":0}`)))
	require.Equal(t, wire.OK, slow.response(1).Status)
	for n := uint64(1); n <= ticks; n++ {
		f := slow.nextNotPing()
		require.Equal(t, wire.KindPush, f.Kind)
		require.Equal(t, n, f.PushSeq)
		require.Equal(t, fmt.Sprintf(`{"n":%d}`, n), string(f.Payload))
	}
	slow.send(wire.AppendRequest(nil, 2, "flood.join", []byte(`{}`)))
	require.Equal(t, wire.OK, slow.response(2).Status)
	// From here on the slow client reads nothing until the gate kicks it.

	var rtts []time.Duration
	timed := func(fn func()) {
		start := time.Now()
		fn()
		rtts = append(rtts, time.Since(start))
	}
	kicked := func() bool { return scrape(t, node)[`hearth_kicks_total{code="202"}`] == 1 }
	deadline := time.Now().Add(3 * waitLong)
	for batches := 0; batches%2 != 0 || !kicked(); batches++ {
		require.True(t, time.Now().Before(deadline), "the slow reader was not kicked with 202 (%d batches)", batches)
		timed(func() {
			var resp syspb.PushResp
			require.NoError(t, normal.Request(ctx, "flood.batch", &syspb.PushReq{Count: batch}, &resp))
			got := normalPushes.until(t, "flood.mark")
			require.Len(t, got, 1, "the normal client is not in the flood")
			var mark syspb.Tick
			require.NoError(t, normal.Decode(got[0].Payload, &mark))
			require.Equal(t, resp.Count, mark.N)
		})
		timed(func() { clientPing(t, normal) })
	}
	// The gate gives the kicked client 2s to take its KICK; the slow socket
	// is still full and unread meanwhile, and the normal client is served,
	// pushes included.
	for range 10 {
		timed(func() { clientPing(t, normal) })
	}
	timed(func() {
		require.NoError(t, normal.Request(ctx, "sys.push", &syspb.PushReq{Count: 5}, &syspb.PushResp{}))
		for _, p := range normalPushes.take(t, 5) {
			require.Equal(t, "sys.tick", p.Route)
		}
	})

	// Now read what the gate left for the slow client: the flood's pushes
	// (push_seq still counting up by one), then KICK 202 and the end.
	pushSeq := uint64(ticks)
	f := slow.nextNotPing()
	for ; f.Kind == wire.KindPush; f = slow.nextNotPing() {
		pushSeq++
		require.Equal(t, pushSeq, f.PushSeq)
		require.Equal(t, "flood.data", string(f.Route))
	}
	require.Equal(t, wire.KindKick, f.Kind, "status %d payload %q", f.Status, f.Payload)
	require.Equal(t, wire.CodeSlowConsumer, f.Status, "reason %q", f.Payload)
	slow.expectClosed()
	// Normally megabytes of the flood got through before the gate's write
	// blocked; not asserted: a gate starved of CPU may not have run the
	// slow session's writer between two batches, and then the second
	// batch overflows the queue at once (a legitimate kick as well).
	t.Logf("the slow reader got %d flood pushes before KICK 202", pushSeq-ticks)

	for i, d := range rtts {
		// Structural, not a benchmark: a gate that waited on the slow
		// reader would hold these for the write timeout.
		require.Less(t, d, writeTimeout/4, "round trip #%d took %s while the slow reader was stuck", i, d)
	}
	require.Equal(t, float64(1), scrape(t, node)[`hearth_kicks_total{code="202"}`])
	select {
	case <-normal.Done():
		t.Fatalf("the normal client's connection ended: %v", normal.Err())
	default:
	}
	clientPing(t, normal)
}

// TestRequestRate: over the per-session rate, requests are answered 200;
// every request still gets exactly one response.
func TestRequestRate(t *testing.T) {
	t.Parallel()
	const burst = 5
	node := hearthtest.Start(t, hearth.Config{Limits: hearth.Limits{RequestRate: 10, RequestBurst: burst}})
	for _, tr := range hearthtest.Transports {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			rc := dialRaw(t, node, tr)
			rc.handshake(wire.CodecJSON)
			const n = 20
			var bodies [][]byte
			for seq := uint32(1); seq <= n; seq++ {
				bodies = append(bodies, wire.AppendRequest(nil, seq, "sys.ping", []byte(strconv.Itoa(int(seq)))))
			}
			rc.sendAll(bodies...)
			status := map[uint32]wire.Code{}
			for range n {
				f := rc.next()
				require.Equal(t, wire.KindResponse, f.Kind)
				require.NotContains(t, status, f.Seq, "a second response to %d", f.Seq)
				require.True(t, f.Seq >= 1 && f.Seq <= n, "response to unknown seq %d", f.Seq)
				status[f.Seq] = f.Status
				switch f.Status {
				case wire.OK:
					require.Equal(t, strconv.Itoa(int(f.Seq)), string(f.Payload))
				case wire.CodeRateLimited:
				default:
					t.Fatalf("request %d: status %d %q", f.Seq, f.Status, f.Payload)
				}
			}
			limited := 0
			for seq := uint32(1); seq <= n; seq++ {
				if seq <= burst {
					require.Equal(t, wire.OK, status[seq], "request %d is within the burst", seq)
				}
				if status[seq] == wire.CodeRateLimited {
					limited++
				}
			}
			require.Positive(t, limited, "20 requests at once with a burst of 5 at 10/s")
			// No late duplicates: the next frame answers the next request.
			rc.send(wire.AppendRequest(nil, n+1, "sys.ping", nil))
			f := rc.response(n + 1)
			require.Contains(t, []wire.Code{wire.OK, wire.CodeRateLimited}, f.Status)
		})
	}
}

// blockService's block.wait answers only once release is closed.
func blockService(release <-chan struct{}) *hearth.Service {
	svc := hearth.NewService("block")
	hearth.HandleRaw(svc, "wait", func(ctx context.Context, _ *hearth.Session, p []byte) ([]byte, error) {
		select {
		case <-release:
			return p, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	return svc
}

// TestMaxInFlight: with two requests unanswered, a third is refused with
// 201 at once; the slots free up when the answers come.
func TestMaxInFlight(t *testing.T) {
	t.Parallel()
	for _, tr := range hearthtest.Transports {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			node := hearthtest.Start(t, hearth.Config{Limits: hearth.Limits{MaxInFlight: 2}}, blockService(release))
			rc := dialRaw(t, node, tr)
			rc.handshake(wire.CodecJSON)
			rc.sendAll(
				wire.AppendRequest(nil, 1, "block.wait", []byte("1")),
				wire.AppendRequest(nil, 2, "block.wait", []byte("2")),
				wire.AppendRequest(nil, 3, "block.wait", []byte("3")),
			)
			f := rc.response(3)
			require.Equal(t, wire.CodeTooManyInFlight, f.Status, "message %q", f.Payload)
			close(release)
			got := map[uint32]bool{}
			for range 2 {
				f := rc.next()
				require.Equal(t, wire.KindResponse, f.Kind)
				require.Equal(t, wire.OK, f.Status, "message %q", f.Payload)
				require.Equal(t, strconv.Itoa(int(f.Seq)), string(f.Payload))
				got[f.Seq] = true
			}
			require.Equal(t, map[uint32]bool{1: true, 2: true}, got)
			// Both slots are free again.
			rc.sendAll(
				wire.AppendRequest(nil, 4, "block.wait", []byte("4")),
				wire.AppendRequest(nil, 5, "block.wait", []byte("5")),
			)
			for range 2 {
				f := rc.next()
				require.Equal(t, wire.KindResponse, f.Kind)
				require.Equal(t, wire.OK, f.Status, "request %d: message %q", f.Seq, f.Payload)
			}
		})
	}
}

// TestPerIPLimits: past the per-IP connection cap or rate, a connection is
// refused with KICK 203 or 200 (readable over either transport), and the
// connections already open are untouched.
func TestPerIPLimits(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		limits hearth.Limits
		code   wire.Code
	}{
		{"max conns", hearth.Limits{MaxConnsPerIP: 2}, wire.CodeOverloaded},
		// A rate so low that no token comes back during the test.
		{"conn rate", hearth.Limits{ConnRatePerIP: 0.01, ConnBurstPerIP: 2}, wire.CodeRateLimited},
	}
	for _, tc := range cases {
		for _, tr := range hearthtest.Transports {
			t.Run(tr+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				node := hearthtest.Start(t, hearth.Config{Limits: tc.limits})
				a := dialRaw(t, node, tr)
				a.handshake(wire.CodecJSON)
				b := dialRaw(t, node, tr)
				b.handshake(wire.CodecJSON)

				refused := dialRaw(t, node, tr)
				refused.expectKick(tc.code)
				ctx, cancel := context.WithTimeout(context.Background(), waitLong)
				defer cancel()
				_, err := client.Dial(ctx, node.URL(tr), client.Options{})
				requireWireError(t, err, tc.code)

				a.ping(1)
				b.ping(1)
				if tc.code != wire.CodeOverloaded {
					return
				}
				// A dropped connection leaves its session detached and
				// resumable: it keeps its slot, so reconnecting in a loop
				// cannot pile up sessions past the limit.
				require.NoError(t, a.conn.Close())
				hearthtest.Eventually(t, waitLong, func() bool {
					return scrape(t, node)["hearth_sessions_detached"] == 1
				}, "the dropped session never detached")
				dialRaw(t, node, tr).expectKick(tc.code)
				// A session its client ends (BYE) frees its slot at once.
				b.send(wire.AppendBye(nil))
				b.expectClosed()
				hearthtest.Eventually(t, waitLong, func() bool {
					c, err := client.Dial(ctx, node.URL(tr), client.Options{})
					if err != nil {
						return false
					}
					_ = c.Close()
					return true
				}, "no connection admitted after a session ended with BYE")
			})
		}
	}
}
