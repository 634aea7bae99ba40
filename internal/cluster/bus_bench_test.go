package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkLoopbackBesideRegistryWrites times a message a node sends
// itself through the bus (what a push or an answer crosses) while the node
// writes registry entries flat out and watches the bucket (what a tables
// node does as its rooms change phase): with the KV on the bus's own
// JetStream connection, and on the push connection as before.
func BenchmarkLoopbackBesideRegistryWrites(b *testing.B) {
	for _, shared := range []bool{false, true} {
		name := "kv-own-connection"
		if shared {
			name = "kv-shared-connection"
		}
		b.Run(name, func(b *testing.B) {
			bus, err := Connect(context.Background(), Config{Name: "n1", DataDir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer bus.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			kvConn := bus.jsc
			if shared {
				kvConn = bus.nc
			}
			js, err := jetstream.New(kvConn)
			if err != nil {
				b.Fatal(err)
			}
			kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "bench_rooms", History: 1, Storage: jetstream.FileStorage})
			if err != nil {
				b.Fatal(err)
			}
			w, err := kv.WatchAll(ctx)
			if err != nil {
				b.Fatal(err)
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range w.Updates() {
				}
			}()
			value := make([]byte, 600)
			var puts atomic.Int64
			// putRate puts a second, paced, so that both variants carry
			// the same registry load (flat out, the shared connection's
			// writers ran 50% faster and the comparison measured that).
			const putRate = 8000
			tokens := make(chan struct{}, 64)
			wg.Add(1)
			go func() {
				defer wg.Done()
				tick := time.NewTicker(time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-ctx.Done():
						close(tokens)
						return
					case <-tick.C:
						for range putRate / 1000 {
							select {
							case tokens <- struct{}{}:
							default:
							}
						}
					}
				}
			}()
			for i := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(i), 1))
					for range tokens {
						if _, err := kv.Put(ctx, fmt.Sprintf("r.room%04d", rng.IntN(4000)), value); err == nil {
							puts.Add(1)
						}
					}
				}()
			}
			got := make(chan struct{}, 1)
			sub, err := bus.nc.Subscribe("probe", func(*nats.Msg) { got <- struct{}{} })
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = sub.Unsubscribe() }()
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			began, putsBefore := time.Now(), puts.Load()
			for range b.N {
				start := time.Now()
				if err := bus.nc.Publish("probe", value[:100]); err != nil {
					b.Fatal(err)
				}
				<-got
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			rate := float64(puts.Load()-putsBefore) / time.Since(began).Seconds()
			cancel()
			_ = w.Stop()
			wg.Wait()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
			b.ReportMetric(rate, "puts/s")
		})
	}
}
