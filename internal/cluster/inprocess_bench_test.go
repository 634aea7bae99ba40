package cluster

import (
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// BenchmarkInProcessPublish publishes 2 KiB messages from many goroutines
// at once (rooms pushing) on the node's in-process connection to the
// embedded server, with a subscriber on a second one (a gate), over the
// bare net.Pipe nats-server offers and over bufferedConn. It reports the
// publish calls' p99 (how long a room waits to push) beside ns/op.
//
//	go test -run '^$' -bench InProcessPublish -benchtime 200000x ./internal/cluster
func BenchmarkInProcessPublish(b *testing.B) {
	for _, c := range []struct {
		name string
		conn func(srv inProcess) nats.InProcessConnProvider
	}{
		{"pipe", func(p inProcess) nats.InProcessConnProvider { return p.srv }},
		{"buffered", func(p inProcess) nats.InProcessConnProvider { return p }},
	} {
		for _, par := range []int{1, 64} {
			b.Run(c.name+"/goroutines="+strconv.Itoa(2*par), func(b *testing.B) {
				srv, err := startEmbedded(Config{Name: "bench", DataDir: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
				defer srv.Shutdown()
				p := inProcess{srv: srv, limit: inProcessBuffer}
				pub, err := nats.Connect(srv.ClientURL(), nats.InProcessServer(c.conn(p)))
				if err != nil {
					b.Fatal(err)
				}
				defer pub.Close()
				sub, err := nats.Connect(srv.ClientURL(), nats.InProcessServer(c.conn(p)))
				if err != nil {
					b.Fatal(err)
				}
				defer sub.Close()
				var got atomic.Int64
				all := make(chan struct{})
				want := int64(b.N)
				s, err := sub.Subscribe("bench.push", func(*nats.Msg) {
					if got.Add(1) == want {
						close(all)
					}
				})
				if err != nil {
					b.Fatal(err)
				}
				_ = s.SetPendingLimits(-1, -1)
				if err := sub.Flush(); err != nil {
					b.Fatal(err)
				}
				msg := make([]byte, 2048)
				var mu sync.Mutex
				var waits []time.Duration
				b.SetParallelism(par)
				b.SetBytes(int64(len(msg)))
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					var mine []time.Duration
					for pb.Next() {
						t0 := time.Now()
						if err := pub.Publish("bench.push", msg); err != nil {
							b.Error(err)
							return
						}
						mine = append(mine, time.Since(t0))
					}
					mu.Lock()
					waits = append(waits, mine...)
					mu.Unlock()
				})
				select {
				case <-all:
				case <-time.After(time.Minute):
					b.Fatalf("gave up after a minute: the subscriber got %d of %d", got.Load(), want)
				}
				b.StopTimer()
				slices.Sort(waits)
				if len(waits) > 0 {
					b.ReportMetric(float64(waits[len(waits)*99/100].Microseconds()), "p99-publish-µs")
				}
			})
		}
	}
}
