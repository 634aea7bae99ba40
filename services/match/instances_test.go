package match_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/services/match"
)

// Players joining one after another fill one room at a time while two match
// instances share their joins (a queue group: each join goes to either).
// Each instance's copy of the room registry shows the other's placements a
// moment late; a join that finds no free seat catches its copy up before it
// opens a room, so it never opens a second room beside one the other
// instance just seated a player in.
func TestJoinsOnTwoInstancesFillOneRoomAtATime(t *testing.T) {
	rt, _ := cards()
	hub := hearthtest.Start(t, hearth.Config{NodeID: "hub", NATSListen: "127.0.0.1:0", RegistryInterval: 100 * time.Millisecond},
		login(), match.New(match.Config{}), rt.Service())
	hearthtest.Start(t, hearth.Config{NodeID: "m2", NATSURL: hub.NATSURL(), Roles: []string{"match"}, RegistryInterval: 100 * time.Millisecond},
		match.New(match.Config{}))
	hearthtest.Eventually(t, 10*time.Second, func() error {
		for _, n := range hub.Nodes() {
			if n.ID == "m2" && slices.Contains(n.Routes, "match.join") {
				return nil
			}
		}
		return errors.New("the hub does not see m2's match instance")
	})

	const players = 48 // twelve 4-seat rooms
	rooms := map[string]int{}
	for i := range players {
		p := dialPlayer(t, hub.URL("tcp"), fmt.Sprintf("u%d", i), client.Options{})
		s, err := call[seat](t, p, "match.join", map[string]any{"room_type": "cards"})
		require.NoError(t, err)
		rooms[s.RoomID]++
		require.Len(t, rooms, i/4+1, "join %d opened a room while one had a free seat: %v", i, rooms)
	}
	for id, n := range rooms {
		require.Equal(t, 4, n, "room %s", id)
	}
}
