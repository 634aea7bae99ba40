package lobby_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/pb/lobbypb"
	"github.com/hearth-server/hearth/services/lobby"
	"github.com/hearth-server/hearth/services/match"
)

func login() *hearth.Service {
	svc := hearth.NewService("acct")
	hearth.HandleRaw(svc, "login", func(ctx context.Context, s *hearth.Session, payload []byte) ([]byte, error) {
		var user string
		if err := json.Unmarshal(payload, &user); err != nil || user == "" {
			return nil, hearth.NewError(hearth.CodeInvalidPayload, "payload must be a JSON string")
		}
		return []byte(`{}`), s.SetUser(ctx, user)
	})
	return svc
}

func request(t *testing.T, c *client.Client, route, payload string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.RequestRaw(ctx, route, []byte(payload))
}

// TestGamesAndRooms: lobby.games counts rooms and players per type as
// players come and go; lobby.rooms lists the open public rooms only.
func TestGamesAndRooms(t *testing.T) {
	duel := hearth.NewRoomType("duel", hearth.RoomConfig{Seats: 2}, func() hearth.RoomHandler { return &hearth.BaseRoom{} })
	party := hearth.NewRoomType("party", hearth.RoomConfig{Seats: 8}, func() hearth.RoomHandler { return &hearth.BaseRoom{} })
	node := hearthtest.Start(t, hearth.Config{}, login(), lobby.New(hearthtest.Store(t, "sqlite")), match.New(match.Config{}),
		duel.Service(), party.Service())
	var players []*client.Client
	for i := range 4 {
		c := node.Dial(t, "tcp")
		_, err := request(t, c, "acct.login", fmt.Sprintf(`"u%d"`, i))
		require.NoError(t, err)
		players = append(players, c)
	}
	// Three duelists: one full room, one with a free seat; one private party.
	for _, c := range players[:3] {
		_, err := request(t, c, "match.join", `{"room_type":"duel"}`)
		require.NoError(t, err)
	}
	_, err := request(t, players[3], "match.create", `{"room_type":"party"}`)
	require.NoError(t, err)

	games := func() (map[string]*lobbypb.Game, error) {
		out, err := request(t, players[0], "lobby.games", `{}`)
		if err != nil {
			return nil, err
		}
		var g lobbypb.Games
		if err := players[0].Decode(out, &g); err != nil {
			return nil, err
		}
		m := map[string]*lobbypb.Game{}
		for _, x := range g.Games {
			m[x.Type] = x
		}
		return m, nil
	}
	want := func(typ string, rooms, players uint32) func() error {
		return func() error {
			g, err := games()
			if err != nil {
				return err
			}
			if x := g[typ]; x == nil || x.Rooms != rooms || x.Players != players || x.Nodes != 1 {
				return fmt.Errorf("%s: %v, want %d rooms, %d players, 1 node", typ, x, rooms, players)
			}
			return nil
		}
	}
	hearthtest.Eventually(t, 2*time.Second, want("duel", 2, 3))
	hearthtest.Eventually(t, 2*time.Second, want("party", 1, 1))

	out, err := request(t, players[0], "lobby.rooms", `{"type":"duel"}`)
	require.NoError(t, err)
	var rooms lobbypb.Rooms
	require.NoError(t, players[0].Decode(out, &rooms))
	require.Len(t, rooms.Rooms, 1, "only the duel with a free seat is open")
	require.EqualValues(t, 1, rooms.Rooms[0].Players)
	out, err = request(t, players[0], "lobby.rooms", `{"type":"party"}`)
	require.NoError(t, err)
	rooms.Reset()
	require.NoError(t, players[0].Decode(out, &rooms))
	require.Empty(t, rooms.Rooms, "a private room is not listed")
	_, err = request(t, players[0], "lobby.rooms", `{}`)
	var he *hearth.Error
	require.True(t, errors.As(err, &he) && he.Code == hearth.CodeInvalidPayload, "err %v", err)

	// A player leaves: the counts follow within 2 s.
	_, err = request(t, players[3], "match.leave", `{}`)
	require.NoError(t, err)
	hearthtest.Eventually(t, 2*time.Second, want("party", 0, 0))
}

// lobby.rooms lists at most MaxListings rooms, the fullest first: a type
// with thousands of open tables still answers in one frame.
func TestRoomsListingIsBounded(t *testing.T) {
	tables := hearth.NewRoomType("tables", hearth.RoomConfig{Seats: 4, MaxRooms: lobby.MaxListings + 50}, func() hearth.RoomHandler { return &hearth.BaseRoom{} })
	node := hearthtest.Start(t, hearth.Config{}, login(), lobby.New(hearthtest.Store(t, "sqlite")), match.New(match.Config{}), tables.Service())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Empty tables the server sets up, and one with a player.
	for range lobby.MaxListings + 10 {
		_, err := tables.Create(ctx, false, nil)
		require.NoError(t, err)
	}
	c := node.Dial(t, "tcp")
	_, err := request(t, c, "acct.login", `"seated"`)
	require.NoError(t, err)
	_, err = request(t, c, "match.join", `{"room_type":"tables"}`)
	require.NoError(t, err)
	var rooms lobbypb.Rooms
	hearthtest.Eventually(t, 5*time.Second, func() error {
		out, err := request(t, c, "lobby.rooms", `{"type":"tables"}`)
		if err != nil {
			return err
		}
		rooms.Reset()
		if err := c.Decode(out, &rooms); err != nil {
			return err
		}
		if len(rooms.Rooms) != lobby.MaxListings {
			return fmt.Errorf("%d rooms listed, want %d", len(rooms.Rooms), lobby.MaxListings)
		}
		if rooms.Rooms[0].Players != 1 {
			return fmt.Errorf("the first room listed has %d players: the seated one must come first", rooms.Rooms[0].Players)
		}
		return nil
	})
}
