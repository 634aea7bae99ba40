package match

import (
	"testing"

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
