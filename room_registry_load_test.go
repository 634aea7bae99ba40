package hearth

import (
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// The directory's per-node tallies follow every registry change — a new
// room, a player count that changes, a room that moves to another node, a
// deletion, a malformed entry — and always equal a count over its rooms.
func TestDirectoryLoadFollowsEntries(t *testing.T) {
	d := &roomDirectory{}
	d.init()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rng := rand.New(rand.NewPCG(1, 2))
	nodes := []string{"n1", "n2", "n3"}
	for i := range 5000 {
		id := "room" + strconv.Itoa(rng.IntN(200))
		switch op := rng.IntN(10); {
		case op == 0:
			d.applyEntry(log, "r."+id, nil, uint64(i), true)
		case op == 1:
			d.applyEntry(log, "r."+id, []byte("{not json"), uint64(i), false)
		default:
			info := RoomInfo{ID: id, Type: "cards", Node: nodes[rng.IntN(len(nodes))], Seats: 5, Players: rng.IntN(6)}
			b, err := json.Marshal(info)
			require.NoError(t, err)
			d.applyEntry(log, "r."+id, b, uint64(i), false)
		}
		require.Equal(t, recountLoad(d), d.load, "after change %d", i)
	}
	require.NotEmpty(t, d.load, "the run should end with rooms listed")
}

// recountLoad counts each node's rooms and players over d.rooms.
func recountLoad(d *roomDirectory) map[string]nodeLoad {
	want := map[string]nodeLoad{}
	for _, r := range d.rooms {
		l := want[r.info.Node]
		l.rooms++
		l.players += r.info.Players
		want[r.info.Node] = l
	}
	return want
}

// BenchmarkDirectoryFootprint is what a node's copy of the registry keeps
// for each listed room of five players, after a collection: the objects
// (each one the collector marks on every cycle) and bytes. A room node of
// 20,000 players lists ~4,000 such rooms.
func BenchmarkDirectoryFootprint(b *testing.B) {
	const rooms = 4000
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	entries := make([][]byte, rooms)
	for i := range entries {
		info := RoomInfo{ID: "room" + strconv.Itoa(i), Type: "niuniu_100", Node: "tables", Seats: 5, Players: 5, State: "playing"}
		for k := range 5 {
			p := strconv.Itoa(i*5 + k)
			info.Users = append(info.Users, RoomUser{User: "user-" + p, Session: "session-" + p, Gate: "gate-" + strconv.Itoa(k%2)})
		}
		var err error
		entries[i], err = json.Marshal(info)
		require.NoError(b, err)
	}
	var objects, bytes float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		d := &roomDirectory{}
		d.init()
		for i, e := range entries {
			d.applyEntry(log, "r.room"+strconv.Itoa(i), e, uint64(i+1), false)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		objects += float64(after.HeapObjects - before.HeapObjects)
		bytes += float64(after.HeapAlloc - before.HeapAlloc)
		runtime.KeepAlive(d)
	}
	b.ReportMetric(objects/float64(b.N)/rooms, "objects/room")
	b.ReportMetric(bytes/float64(b.N)/rooms, "B/room")
}
