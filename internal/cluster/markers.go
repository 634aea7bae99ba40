package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Deleting a KV key writes a marker message to the bucket's stream, and
// with one message kept per key (History 1) the marker is what stays. A
// bucket without a TTL keeps it for good, so presence (a key per user,
// guests included) and the room registry (a key per room) would keep one
// message per user and room ever seen: the NATS server's memory and disk,
// every start's watch and every KVKeys listing (PurgeGate, KVBackfill)
// would grow without bound. The bus sweeps them instead: every bucket it
// opened without a TTL, once a marker is old enough that every watcher has
// long had it (a watch that has not yet delivered a purged marker would
// miss the deletion).

// MarkerSweepLimit bounds the markers one sweep of one bucket purges: each
// is a JetStream request, and a backlog is worked off over several sweeps
// rather than in one burst.
const MarkerSweepLimit = 50_000

// sweepable records kv as a bucket whose markers RunSweeper removes.
func (b *Bus) sweepable(kv jetstream.KeyValue) {
	b.sweepMu.Lock()
	defer b.sweepMu.Unlock()
	if b.swept == nil {
		b.swept = map[string]jetstream.KeyValue{}
	}
	b.swept[kv.Bucket()] = kv
}

// Sweepable lists the buckets RunSweeper sweeps, by name.
func (b *Bus) Sweepable() []string {
	b.sweepMu.Lock()
	defer b.sweepMu.Unlock()
	names := make([]string, 0, len(b.swept))
	for name := range b.swept {
		names = append(names, name)
	}
	return names
}

// SweepMarkers removes from kv's stream the delete and purge markers
// written more than age ago, at most limit of them, and returns how many
// it removed. A key written again after its marker keeps its new value:
// each purge stops at the marker's own sequence.
func (b *Bus) SweepMarkers(ctx context.Context, kv jetstream.KeyValue, age time.Duration, limit int) (int, error) {
	w, err := kv.WatchAll(ctx, jetstream.MetaOnly())
	if err != nil {
		return 0, fmt.Errorf("cluster: sweep KV bucket %s: %w", kv.Bucket(), err)
	}
	type marker struct {
		key string
		rev uint64
	}
	var old []marker
	cutoff := time.Now().Add(-age)
	func() {
		defer func() { _ = w.Stop() }()
		for len(old) < limit {
			select {
			case e, ok := <-w.Updates():
				if !ok || e == nil { // closed, or every current entry seen
					return
				}
				if op := e.Operation(); op != jetstream.KeyValuePut && !e.Created().After(cutoff) {
					old = append(old, marker{e.Key(), e.Revision()})
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if len(old) == 0 {
		return 0, nil
	}
	s, err := b.kvStream(ctx, kv)
	if err != nil {
		return 0, err
	}
	for i, m := range old {
		if err := purgeMarker(ctx, s, kv.Bucket(), m.key, m.rev); err != nil {
			return i, err
		}
	}
	return len(old), nil
}

// purgeMarker purges key's messages up to its marker at rev: below rev+1,
// so never a later write of the key.
func purgeMarker(ctx context.Context, s jetstream.Stream, bucket, key string, rev uint64) error {
	if err := s.Purge(ctx, jetstream.WithPurgeSubject("$KV."+bucket+"."+key), jetstream.WithPurgeSequence(rev+1)); err != nil {
		return fmt.Errorf("cluster: purge the marker of %s in KV bucket %s: %w", key, bucket, err)
	}
	return nil
}

// RunSweeper sweeps the markers older than age from every bucket opened
// without a TTL, every interval (plus up to a fifth more, so that nodes
// started together do not sweep together), until ctx ends. Several nodes
// sweeping the same bucket is harmless: a purged marker is gone for all.
func (b *Bus) RunSweeper(ctx context.Context, every, age time.Duration) {
	for {
		t := time.NewTimer(every + rand.N(every/5+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		b.sweepMu.Lock()
		kvs := make([]jetstream.KeyValue, 0, len(b.swept))
		for _, kv := range b.swept {
			kvs = append(kvs, kv)
		}
		b.sweepMu.Unlock()
		for _, kv := range kvs {
			// Bounded, so that a watch that never reports its end cannot
			// stop the sweeps for good.
			sctx, cancel := context.WithTimeout(ctx, every)
			n, err := b.SweepMarkers(sctx, kv, age, MarkerSweepLimit)
			cancel()
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				b.log.Warn("KV markers not swept; the next sweep tries again", "bucket", kv.Bucket(), "swept", n, "err", err)
			case n > 0:
				b.log.Info("KV markers swept", "bucket", kv.Bucket(), "swept", n)
			}
		}
	}
}
