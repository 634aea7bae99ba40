package gate_test

// Hot-path benchmarks of the gate: a real node (the gate, its embedded NATS
// bus, a service) driven by raw protocol clients where the client's own
// cost would blur the figure. `make bench` runs them; end-to-end figures
// come from `hearth bench` (docs/benchmarks.md).

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/wire"
)

// The benchmark service's channel and push route.
const (
	benchChannel = "gbench"
	benchRoute   = "gbench.msg"
)

// benchService is the server side of these benchmarks:
//
//	gbench.join   joins the calling session to the channel "gbench"
//	gbench.push   "N" or "N,SIZE": pushes N frames on gbench.msg to the
//	              caller (each a 27-byte payload, or SIZE bytes), then answers
func benchService() *hearth.Service {
	svc := hearth.NewService("gbench")
	hearth.HandleRaw(svc, "join", func(ctx context.Context, s *hearth.Session, _ []byte) ([]byte, error) {
		return []byte("{}"), s.Join(ctx, benchChannel)
	})
	payload := []byte(`{"tick":12345,"room":"r-1"}`)
	hearth.HandleRaw(svc, "push", func(ctx context.Context, s *hearth.Session, p []byte) ([]byte, error) {
		count, size, sized := strings.Cut(string(p), ",")
		n, err := strconv.Atoi(count)
		if err != nil {
			return nil, hearth.NewError(hearth.CodeInvalidPayload, "want a count")
		}
		out := payload
		if sized {
			size, err := strconv.Atoi(size)
			if err != nil || size < 0 {
				return nil, hearth.NewError(hearth.CodeInvalidPayload, "want a size")
			}
			out = bytes.Repeat([]byte{'x'}, size)
		}
		for range n {
			if err := s.PushRaw(ctx, benchRoute, out); err != nil {
				return nil, err
			}
		}
		return []byte("{}"), nil
	})
	return svc
}

// benchLimits lift the per-session and per-IP limits one benchmarking
// client would hit.
var benchLimits = hearth.Limits{RequestRate: -1, MaxInFlight: 64, MaxConnsPerIP: -1, ConnRatePerIP: -1}

// BenchmarkRequest measures the request path through the gate: decode a
// REQUEST, look up its route, forward it on the bus to sys.ping, frame the
// RESPONSE. One op is one request answered; window requests are kept
// outstanding on one connection.
func BenchmarkRequest(b *testing.B) {
	for _, tr := range hearthtest.Transports {
		for _, window := range []int{1, 16} {
			b.Run(tr+"/window-"+strconv.Itoa(window), func(b *testing.B) {
				node := hearthtest.Start(b, hearth.Config{Limits: benchLimits})
				rc := dialRaw(b, node, tr)
				rc.handshake(wire.CodecJSON)
				payload := []byte(`{"k":"v"}`)
				var (
					buf      []byte
					seq      uint32
					inflight int
					ops      int
				)
				b.ReportAllocs()
				for b.Loop() {
					for ; inflight < window; inflight++ {
						seq++
						buf = wire.AppendRequest(buf[:0], seq, "sys.ping", payload)
						rc.send(buf)
					}
					f := rc.next()
					if f.Kind != wire.KindResponse || f.Status != wire.OK {
						b.Fatalf("want an OK RESPONSE, got %v status %d payload %q", f.Kind, f.Status, f.Payload)
					}
					inflight--
					ops++
				}
				b.ReportMetric(float64(ops)/b.Elapsed().Seconds(), "req/s")
				for ; inflight > 0; inflight-- {
					rc.next()
				}
			})
		}
	}
}

// BenchmarkPush measures pushes from a service to one session: the bus
// message to the gate, the session's sequence number and replay slot, the
// PUSH framing and the write. One op is one request for 64 pushes, read
// with its response (which may come before the last push).
func BenchmarkPush(b *testing.B) {
	for _, tr := range hearthtest.Transports {
		b.Run(tr, func(b *testing.B) { benchPush(b, tr, strconv.Itoa(pushBatch)) })
	}
}

// BenchmarkPushSize is BenchmarkPush over TCP with larger payloads: what
// the gate does per byte of a push (the copy it keeps for replay, the
// framing, the write) next to what it does per push.
func BenchmarkPushSize(b *testing.B) {
	for _, size := range []int{1 << 10, 8 << 10} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			b.SetBytes(int64(pushBatch * size))
			benchPush(b, "tcp", strconv.Itoa(pushBatch)+","+strconv.Itoa(size))
		})
	}
}

// pushBatch is how many pushes one op of BenchmarkPush asks for.
const pushBatch = 64

// benchPush runs BenchmarkPush's loop over transport tr, asking gbench.push
// for arg ("N" or "N,SIZE", N = pushBatch) each op.
func benchPush(b *testing.B, tr, arg string) {
	node := hearthtest.Start(b, hearth.Config{Limits: benchLimits}, benchService())
	rc := dialRaw(b, node, tr)
	rc.handshake(wire.CodecJSON)
	var (
		buf []byte
		seq uint32
	)
	count := []byte(arg)
	b.ReportAllocs()
	for b.Loop() {
		seq++
		buf = wire.AppendRequest(buf[:0], seq, "gbench.push", count)
		rc.send(buf)
		for pushes, replied := 0, false; pushes < pushBatch || !replied; {
			switch f := rc.next(); {
			case f.Kind == wire.KindPush:
				pushes++
			case f.Kind == wire.KindResponse && f.Status == wire.OK:
				replied = true
			default:
				b.Fatalf("unexpected %v frame, status %d payload %q", f.Kind, f.Status, f.Payload)
			}
		}
	}
	b.ReportMetric(float64(b.N*pushBatch)/b.Elapsed().Seconds(), "pushes/s")
}

// BenchmarkChannelFanout measures a channel publish delivered to every
// member on one gate: one bus message, the gate's fan-out to N sessions,
// a PUSH frame written to each. One op is one publish received by all N;
// at most 4 publishes are in flight.
func BenchmarkChannelFanout(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run("sessions-"+strconv.Itoa(n), func(b *testing.B) {
			node := hearthtest.Start(b, hearth.Config{Limits: benchLimits}, benchService())
			var (
				got  atomic.Int64 // pushes received by all sessions
				mu   sync.Mutex   // cond's lock; got itself is atomic
				cond = sync.NewCond(&mu)
			)
			ctx := context.Background()
			for range n {
				c := node.Dial(b, "tcp", client.Options{Codec: wire.CodecProtobuf})
				c.OnPush(benchRoute, func(client.Push) {
					got.Add(1)
					mu.Lock()
					cond.Broadcast()
					mu.Unlock()
				})
				_, err := c.RequestRaw(ctx, "gbench.join", nil)
				require.NoError(b, err)
			}
			waitFor := func(want int64) {
				mu.Lock()
				for got.Load() < want {
					cond.Wait()
				}
				mu.Unlock()
			}
			msg := struct {
				Tick int    `json:"tick"`
				Room string `json:"room"`
			}{12345, "r-1"}
			var published int64
			b.ReportAllocs()
			for b.Loop() {
				if err := node.Publish(ctx, benchChannel, benchRoute, msg); err != nil {
					b.Fatal(err)
				}
				published++
				waitFor((published - 4) * int64(n))
			}
			waitFor(published * int64(n))
			b.ReportMetric(float64(published)*float64(n)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
