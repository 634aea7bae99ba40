package store

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
)

// BenchmarkStoreCalls measures what the server pays the store per Niu Niu
// round (a 5-player settlement, the balances read at the start) and per
// guest login, on each backend. cpu-ns/op is the whole test process's CPU
// (the database's too on SQLite, which runs in it), the figure the
// server's profile cares about; ns/op also counts waiting for fsync and
// for PostgreSQL.
func BenchmarkStoreCalls(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := open(b, be.dsn(b))
			ctx := context.Background()
			ids := make([]string, 5)
			for i := range ids {
				ids[i] = player(b, s, fmt.Sprintf("p%d", i), 1_000_000_000)
			}
			// Keys stay unique across the runs the benchmark framework makes.
			n := 0
			b.Run("ApplyLedgerBatch5", func(b *testing.B) {
				batch := make([]LedgerEntry, len(ids))
				measure(b, func() {
					n++
					for j, id := range ids {
						delta := int64(-1)
						if j == n%len(ids) {
							delta = int64(len(ids) - 1)
						}
						batch[j] = LedgerEntry{AccountID: id, Delta: delta, Reason: "round", Key: fmt.Sprintf("r%d:%s", n, id)}
					}
					if _, applied, err := s.ApplyLedgerBatch(ctx, batch); err != nil || !applied {
						b.Fatal(applied, err)
					}
				})
			})
			b.Run("Balances5", func(b *testing.B) {
				measure(b, func() {
					if got, err := s.Balances(ctx, ids); err != nil || len(got) != len(ids) {
						b.Fatal(got, err)
					}
				})
			})
			b.Run("LedgerApplied", func(b *testing.B) {
				key := "seed:" + ids[0]
				measure(b, func() {
					if ok, err := s.LedgerApplied(ctx, key); err != nil || !ok {
						b.Fatal(ok, err)
					}
				})
			})
			// The store calls of services/auth's guest login for a new
			// device: look it up, create it, its profile and its grant.
			b.Run("GuestLoginNew", func(b *testing.B) {
				measure(b, func() {
					n++
					device := fmt.Sprintf("device-%d", n)
					if _, err := s.FindGuestAccount(ctx, device); err != ErrNotFound {
						b.Fatal(err)
					}
					a, created, err := s.GuestAccount(ctx, device)
					if err != nil || !created {
						b.Fatal(created, err)
					}
					guestLogin(b, s, a.ID, false)
				})
			})
			// A returning device: the lookup, the profile and the grant's
			// check.
			b.Run("GuestLoginReturning", func(b *testing.B) {
				a, created, err := s.GuestAccount(ctx, "returning")
				if err != nil {
					b.Fatal(err)
				}
				guestLogin(b, s, a.ID, !created)
				measure(b, func() {
					if _, err := s.FindGuestAccount(ctx, "returning"); err != nil {
						b.Fatal(err)
					}
					guestLogin(b, s, a.ID, true)
				})
			})
		})
	}
}

// guestLogin is what services/auth does after finding or creating a
// guest's account: make sure of its profile, pay its starting grant once.
func guestLogin(b *testing.B, s *Store, id string, paid bool) {
	ctx := context.Background()
	if _, err := s.EnsureProfile(ctx, id, "player"+id); err != nil {
		b.Fatal(err)
	}
	ok, err := s.LedgerApplied(ctx, "grant/"+id)
	if err != nil || ok != paid {
		b.Fatal(ok, err)
	}
	if !ok {
		if _, applied, err := s.ApplyLedger(ctx, LedgerEntry{AccountID: id, Delta: 1000, Reason: "starting grant", Key: "grant/" + id}); err != nil || !applied {
			b.Fatal(applied, err)
		}
	}
}

// measure runs op in a b.Loop and reports, besides ns/op and allocations,
// the process CPU time per op.
func measure(b *testing.B, op func()) {
	b.ReportAllocs()
	start, ok := processCPU()
	for b.Loop() {
		op()
	}
	if end, _ := processCPU(); ok && b.N > 0 {
		b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkSettlementsConcurrent settles rounds of many tables at once
// (5 entries each, 32 goroutines), the load under which SQLite's one
// writer queues: settlements/s is what the store sustains.
func BenchmarkSettlementsConcurrent(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := open(b, be.dsn(b))
			ctx := context.Background()
			const tables = 32
			var ids [tables][5]string
			for t := range ids {
				for i := range ids[t] {
					ids[t][i] = player(b, s, fmt.Sprintf("t%dp%d", t, i), 1_000_000_000)
				}
			}
			run := 0
			b.Run("tables-32", func(b *testing.B) {
				run++
				var next atomic.Int64
				b.SetParallelism(max(1, tables/runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					t := int(next.Add(1)-1) % tables
					batch := make([]LedgerEntry, 5)
					for n := 0; pb.Next(); n++ {
						for j, id := range ids[t] {
							delta := int64(-1)
							if j == n%5 {
								delta = 4
							}
							batch[j] = LedgerEntry{AccountID: id, Delta: delta, Reason: "round", Key: fmt.Sprintf("c%d.%d.%d/%d", run, t, n, j)}
						}
						if _, applied, err := s.ApplyLedgerBatch(ctx, batch); err != nil || !applied {
							b.Error(applied, err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "settlements/s")
			})
		})
	}
}
