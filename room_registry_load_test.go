package hearth

import (
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
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
