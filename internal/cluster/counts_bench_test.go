package cluster

import (
	"hash/maphash"
	"strconv"
	"testing"
)

// BenchmarkPushCounts numbers pushes to a table's 5 seats among 20,000
// sessions (the 20,000-bot run's tables node), from 2 goroutines: the
// cost every push of a node pays before it is sent.
//
//	go test -run '^$' -bench PushCounts -benchmem ./internal/cluster
func BenchmarkPushCounts(b *testing.B) {
	bus := &Bus{countSeed: maphash.MakeSeed()}
	sessions := make([]string, 20_000)
	for i := range sessions {
		sessions[i] = "c2ab7f31-" + strconv.Itoa(100_000+i) // as long as a gate's session ids
	}
	b.SetParallelism(1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var counts [pushCounts]uint64
		batch := make([]string, 5)
		i := 0
		for pb.Next() {
			for k := range batch {
				batch[k] = sessions[(i*5+k)%len(sessions)]
			}
			if n := len(bus.appendCounts(counts[:0], batch)); n != 5 {
				b.Fatalf("%d counts for 5 sessions", n)
			}
			i++
		}
	})
}

// BenchmarkPushCounters is BenchmarkPushCounts with each session's counter
// at hand (Bus.Counter), as a room keeps its seats': no lookup a push.
//
//	go test -run '^$' -bench 'PushCount' -benchmem ./internal/cluster
func BenchmarkPushCounters(b *testing.B) {
	bus := &Bus{countSeed: maphash.MakeSeed()}
	counters := make([]*PushCounter, 20_000)
	for i := range counters {
		counters[i] = bus.Counter("c2ab7f31-" + strconv.Itoa(100_000+i))
	}
	b.SetParallelism(1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var counts [pushCounts]uint64
		batch := make([]*PushCounter, 5)
		i := 0
		for pb.Next() {
			for k := range batch {
				batch[k] = counters[(i*5+k)%len(counters)]
			}
			if n := len(appendCountsOf(counts[:0], batch)); n != 5 {
				b.Fatalf("%d counts for 5 sessions", n)
			}
			i++
		}
	})
}
