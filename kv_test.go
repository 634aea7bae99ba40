package hearth_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/hearthtest"
)

// sharedNATS is the machine's NATS server (2.9, the oldest the KV must
// work on); CI starts it.
const sharedNATS = "nats://127.0.0.1:4222"

// kvNodes starts one node on embedded NATS and one on the shared server,
// the latter under a prefix of its own whose buckets go when the test ends.
func kvNodes(t *testing.T) map[string]*hearthtest.Node {
	var b [4]byte
	_, _ = rand.Read(b[:])
	prefix := "kvt" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		nc, err := nats.Connect(sharedNATS)
		if err != nil {
			return
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for name := range js.KeyValueStoreNames(ctx).Name() {
			if len(name) > len(prefix) && name[:len(prefix)] == prefix {
				_ = js.DeleteKeyValue(ctx, name)
			}
		}
	})
	return map[string]*hearthtest.Node{
		"embedded": hearthtest.Start(t, hearth.Config{}),
		"nats-2.9": hearthtest.Start(t, hearth.Config{NATSURL: sharedNATS, Prefix: prefix}),
	}
}

func TestKV(t *testing.T) {
	for name, node := range kvNodes(t) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			kv, err := node.KV(ctx, "kvtest", 0)
			require.NoError(t, err)

			_, err = kv.Get(ctx, "a")
			require.ErrorIs(t, err, hearth.ErrKeyNotFound)
			keys, err := kv.Keys(ctx)
			require.NoError(t, err)
			require.Empty(t, keys)

			r1, err := kv.Create(ctx, "a", []byte("1"))
			require.NoError(t, err)
			_, err = kv.Create(ctx, "a", []byte("x"))
			require.ErrorIs(t, err, hearth.ErrKeyExists)

			r2, err := kv.Update(ctx, "a", []byte("2"), r1)
			require.NoError(t, err)
			require.Greater(t, r2, r1)
			_, err = kv.Update(ctx, "a", []byte("stale"), r1)
			require.ErrorIs(t, err, hearth.ErrRevisionMismatch, "a writer holding an old revision loses")
			e, err := kv.Get(ctx, "a")
			require.NoError(t, err)
			require.Equal(t, hearth.KVEntry{Key: "a", Value: []byte("2"), Revision: r2}, e)

			require.ErrorIs(t, kv.Delete(ctx, "a", r1), hearth.ErrRevisionMismatch)
			require.NoError(t, kv.Delete(ctx, "a", r2))
			_, err = kv.Get(ctx, "a")
			require.ErrorIs(t, err, hearth.ErrKeyNotFound)
			_, err = kv.Create(ctx, "a", []byte("again"))
			require.NoError(t, err, "a deleted key can be created anew")

			_, err = kv.Put(ctx, "b.x", []byte("bx"))
			require.NoError(t, err)
			keys, err = kv.Keys(ctx)
			require.NoError(t, err)
			require.ElementsMatch(t, []string{"a", "b.x"}, keys)
			_, err = kv.Put(ctx, "c", []byte("c"))
			require.NoError(t, err)
			require.NoError(t, kv.Delete(ctx, "c", 0))
			keys, err = kv.Keys(ctx)
			require.NoError(t, err)
			require.ElementsMatch(t, []string{"a", "b.x"}, keys, "a deleted key (its delete marker in the stream) is not listed")

			_, err = kv.Put(ctx, "bad key", nil)
			require.Error(t, err, "keys are checked")

			// A watch sees the current entries, the end-of-state marker,
			// then changes; deletes are marked.
			wctx, wcancel := context.WithCancel(ctx)
			ch, err := kv.Watch(wctx, "b.>")
			require.NoError(t, err)
			next := func() hearth.KVEntry {
				t.Helper()
				select {
				case e, ok := <-ch:
					require.True(t, ok, "watch closed early")
					return e
				case <-ctx.Done():
					t.Fatal("no watch event before the deadline")
				}
				return hearth.KVEntry{}
			}
			require.Equal(t, "b.x", next().Key)
			require.Equal(t, "", next().Key, "end of the current state")
			_, err = kv.Put(ctx, "a", []byte("not watched"))
			require.NoError(t, err)
			ry, err := kv.Put(ctx, "b.y", []byte("by"))
			require.NoError(t, err)
			require.Equal(t, hearth.KVEntry{Key: "b.y", Value: []byte("by"), Revision: ry}, next())
			require.NoError(t, kv.Delete(ctx, "b.x", 0))
			d := next()
			require.Equal(t, "b.x", d.Key)
			require.True(t, d.Deleted)
			wcancel()
			for range ch { // closed once the watch's ctx ends
			}
		})
	}
}

func TestKVBucketName(t *testing.T) {
	node := hearthtest.Start(t, hearth.Config{})
	for _, name := range []string{"", "a.b", "a b", "x>", string(make([]byte, 65))} {
		_, err := node.KV(context.Background(), name, 0)
		require.Error(t, err, "bucket %q", name)
	}
}

// Two contenders for one lease: exactly one leads and answers Ask; when it
// stops, the other takes over and answers.
func TestLeaseAsk(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := hearthtest.Start(t, hearth.Config{NATSListen: "127.0.0.1:0"})
	b := hearthtest.Start(t, hearth.Config{NATSURL: a.NATSURL()})
	contend := func(n *hearthtest.Node) *hearth.Lease {
		l, err := n.Lease(ctx, "test-lease", time.Second, nil)
		require.NoError(t, err)
		l.Serve(func(context.Context, []byte) []byte { return []byte(n.ID()) })
		return l
	}
	la := contend(a)
	first, err := la.Ask(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, a.ID(), string(first), "the only contender leads")
	lb := contend(b)
	require.False(t, lb.Leading())
	holder, err := lb.Holder(ctx)
	require.NoError(t, err)
	require.Equal(t, a.ID(), holder)

	la.Stop()
	hearthtest.Eventually(t, 10*time.Second, lb.Leading, "b never took the lease over")
	got, err := lb.Ask(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, b.ID(), string(got))
	lb.Stop()
}
