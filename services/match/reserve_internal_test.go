package match

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
)

// A join in flight counts once: as a reservation until the room lists its
// session, then only as the room's player. Counted twice, a 4-seat room
// with two seated and two joining looked full to a fifth join's neighbours
// (TestFourPlayersShareOneRoom failed ~1 run in 80 that way).
func TestReservationCountsOnce(t *testing.T) {
	m := newService(Pack{})
	m.pending["r1"] = []string{"s3", "s4"}
	room := hearth.RoomInfo{ID: "r1", Seats: 4, Players: 2, Users: []hearth.RoomUser{{Session: "s1"}, {Session: "s2"}}}

	require.Equal(t, 2, m.reservedLocked(room), "neither join is listed yet")
	room.Players, room.Users = 3, append(room.Users, hearth.RoomUser{Session: "s3"})
	require.Equal(t, 1, m.reservedLocked(room), "s3 is listed: only s4's reservation is extra")

	m.unreserveLocked("r1", "s3")
	require.Equal(t, []string{"s4"}, m.pending["r1"])
	m.unreserveLocked("r1", "s4")
	_, ok := m.pending["r1"]
	require.False(t, ok, "no reservation left: the room's entry goes")
}

// A join's candidates are the registry's open rooms with this instance's
// newer placements laid over them: a placement's higher player count wins,
// an open room placed here that the registry does not list yet is added,
// and the rooms filled here lately are not copied into the list (no join
// can take them), nor are another type's; old placements are forgotten.
func TestOverlayKeepsOpenRooms(t *testing.T) {
	m := newService(Pack{})
	now := time.Now()
	place := func(id, typ string, players int, at time.Time) {
		m.recent[id] = recentRoom{info: hearth.RoomInfo{ID: id, Type: typ, Seats: 5, Players: players}, at: at}
	}
	for i := range 300 {
		place(fmt.Sprint("full", i), "cards", 5, now)
	}
	place("listed", "cards", 4, now)              // the registry lists it with 2
	place("new", "cards", 1, now)                 // not listed yet
	place("other", "dice", 1, now)                // another type
	place("old", "cards", 1, now.Add(-recentTTL)) // too old to trust
	registry := []hearth.RoomInfo{
		{ID: "listed", Type: "cards", Seats: 5, Players: 2},
		{ID: "quiet", Type: "cards", Seats: 5, Players: 3},
	}

	got := m.overlayLocked(registry, "cards", now)
	players := map[string]int{}
	for _, r := range got {
		players[r.ID] = r.Players
	}
	require.Equal(t, map[string]int{"listed": 4, "quiet": 3, "new": 1}, players)
	_, ok := m.recent["old"]
	require.False(t, ok, "a placement older than recentTTL is forgotten")
	require.Len(t, m.recent, 303, "the full rooms' placements stay, for the registry's rooms they overlay")
}
