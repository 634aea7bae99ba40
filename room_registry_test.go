package hearth

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// Listings another node wrote before SyncRooms are in this node's copy of
// the registry when it returns: a burst of them, which the copy's watch
// delivers well after the last write was acknowledged.
func TestSyncRoomsSeesEarlierWrites(t *testing.T) {
	n := startRoomNodeIn(t, Config{DataDir: t.TempDir(), NATSListen: "127.0.0.1:0"}, NewRoomType("cards", RoomConfig{Seats: 5}, func() RoomHandler { return BaseRoom{} }))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, n.SyncRooms(ctx), "a registry with nothing new")

	// Another node, on its own connection.
	require.NotEmpty(t, n.NATSURL())
	nc, err := nats.Connect(n.NATSURL())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	subject := "$KV." + n.rooms.kv.Bucket() + "."
	for round := range 3 {
		const burst = 2000
		acks := make([]jetstream.PubAckFuture, 0, burst)
		for i := range burst {
			id := fmt.Sprintf("burst%d-%04d", round, i)
			b, err := json.Marshal(RoomInfo{ID: id, Type: "burst", Node: "elsewhere", Seats: 5, Players: 1})
			require.NoError(t, err)
			f, err := js.PublishAsync(subject+roomKey(id), b)
			require.NoError(t, err)
			acks = append(acks, f)
		}
		for _, f := range acks {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				t.Fatalf("listing not written: %v", err)
			case <-ctx.Done():
				t.Fatal("listings not acknowledged")
			}
		}
		require.NoError(t, n.SyncRooms(ctx))
		rooms, err := n.OpenRooms(ctx, "burst")
		require.NoError(t, err)
		require.Len(t, rooms, burst*(round+1), "round %d: listings written before the sync are missing after it", round)
	}

	// A canceled wait says so and leaves no waiter behind.
	d := &n.rooms.dir
	d.mu.Lock()
	d.rev-- // as if the watch were one change behind
	d.mu.Unlock()
	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	require.ErrorIs(t, n.SyncRooms(short), context.DeadlineExceeded)
	d.mu.Lock()
	require.Empty(t, d.synced, "a canceled sync is still waiting")
	d.mu.Unlock()
}

// backfill finds the listings a watch left out — here all of them, as if
// its end-of-initial-values marker had come first — but not a deleted one,
// and fetches nothing already known.
func TestRoomDirectoryBackfill(t *testing.T) {
	n := startRoomNodeIn(t, Config{DataDir: t.TempDir(), NATSListen: "127.0.0.1:0"}, NewRoomType("cards", RoomConfig{Seats: 5}, func() RoomHandler { return BaseRoom{} }))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv := n.rooms.kv
	for _, id := range []string{"bf-1", "bf-2", "bf-3", "bf-gone"} {
		b, err := json.Marshal(RoomInfo{ID: id, Type: "backfill", Node: "elsewhere", Seats: 5, Players: 1})
		require.NoError(t, err)
		_, err = kv.Put(ctx, roomKey(id), b)
		require.NoError(t, err)
	}
	require.NoError(t, kv.Delete(ctx, roomKey("bf-gone")))

	var d roomDirectory
	d.init()
	applied := d.backfill(ctx, n, kv)
	for _, id := range []string{"bf-1", "bf-2", "bf-3"} {
		require.Contains(t, d.rooms, id, "listing %s backfilled", id)
		require.Contains(t, applied, roomKey(id))
	}
	require.NotContains(t, d.rooms, "bf-gone", "a deleted listing is not backfilled")
	require.Empty(t, d.backfill(ctx, n, kv), "known listings are not fetched again")
}

// A closed room's listing leaves a marker in the registry's bucket; the
// node sweeps the buckets it opened without a TTL (the registry, presence,
// a service's KV), and a swept marker changes nothing any node sees.
func TestRegistryMarkersSwept(t *testing.T) {
	n := startRoomNodeIn(t, Config{DataDir: t.TempDir()}, NewRoomType("cards", RoomConfig{Seats: 5}, func() RoomHandler { return BaseRoom{} }))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	scores, err := n.KV(ctx, "scores", 0)
	require.NoError(t, err)
	temp, err := n.KV(ctx, "temp", time.Minute)
	require.NoError(t, err)
	swept := n.bus.Sweepable()
	require.Contains(t, swept, n.rooms.kv.Bucket())
	require.Contains(t, swept, scores.(*natsKV).kv.Bucket())
	require.NotContains(t, swept, temp.(*natsKV).kv.Bucket(), "a TTL expires a bucket's markers")
	require.True(t, slices.ContainsFunc(swept, func(b string) bool { return strings.HasSuffix(b, "_presence") }), "presence is swept: %v", swept)

	kv := n.rooms.kv
	for _, id := range []string{"kept1", "closed", "kept2"} {
		b, err := json.Marshal(RoomInfo{ID: id, Type: "listed", Node: "elsewhere", Seats: 5, Players: 1})
		require.NoError(t, err)
		_, err = kv.Put(ctx, roomKey(id), b)
		require.NoError(t, err)
	}
	require.NoError(t, kv.Delete(ctx, roomKey("closed")))
	ids := func() []string {
		require.NoError(t, n.SyncRooms(ctx))
		rooms, err := n.Rooms(ctx, "listed")
		require.NoError(t, err)
		var ids []string
		for _, r := range rooms {
			ids = append(ids, r.ID)
		}
		slices.Sort(ids)
		return ids
	}
	require.Equal(t, []string{"kept1", "kept2"}, ids())

	swept1, err := n.bus.SweepMarkers(ctx, kv, 0, 100)
	require.NoError(t, err)
	require.Equal(t, 1, swept1, "the closed room's marker")
	keys, err := n.bus.KVKeys(ctx, kv)
	require.NoError(t, err)
	require.NotContains(t, keys, roomKey("closed"))
	require.Contains(t, keys, roomKey("kept1"))
	require.Equal(t, []string{"kept1", "kept2"}, ids(), "the sweep changed the listing")
}

// A user's rooms by type: the first without an allocation, more beside it,
// and a room dropped only if it is still the one of its type.
func TestUserSeats(t *testing.T) {
	var u userSeats
	require.Empty(t, u.all())
	u.set("cards", "r1")
	u.set("chess", "r2")
	u.set("go", "r3")
	u.set("chess", "r4") // moved
	for typ, want := range map[string]string{"cards": "r1", "chess": "r4", "go": "r3"} {
		got, ok := u.room(typ)
		require.True(t, ok, typ)
		require.Equal(t, want, got, typ)
	}
	_, ok := u.room("dice")
	require.False(t, ok)
	require.ElementsMatch(t, []seatRef{{"cards", "r1"}, {"chess", "r4"}, {"go", "r3"}}, u.all())

	require.False(t, u.drop("chess", "r2"), "not its room of the type any more")
	_, ok = u.room("chess")
	require.True(t, ok, "a stale drop removed the room the user moved to")
	require.False(t, u.drop("cards", "r1"))
	require.False(t, u.drop("chess", "r4"))
	require.ElementsMatch(t, []seatRef{{"go", "r3"}}, u.all())
	require.True(t, u.drop("go", "r3"))
	require.Empty(t, u.all())
	u.set("dice", "r5")
	require.Equal(t, []seatRef{{"dice", "r5"}}, u.all())
}
