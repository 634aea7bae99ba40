package match_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/pb/matchpb"
	"github.com/hearth-server/hearth/pb/syspb"
	"github.com/hearth-server/hearth/services/match"
	"github.com/hearth-server/hearth/wire"
)

// TestPushEachGivesEverySeatItsOwn seats four players on two gates, in both
// codecs, and has the room push each its own message: every player gets its
// own (and only its own) in its codec, in one bus message for the other
// gate.
func TestPushEachGivesEverySeatItsOwn(t *testing.T) {
	rt := hearth.NewRoomType("deal", hearth.RoomConfig{Seats: 4}, func() hearth.RoomHandler { return &hearth.BaseRoom{} })
	hearth.HandleRoomJSON(rt, "go", func(r *hearth.Room, s *hearth.Seat, _ struct{}) (struct{}, error) {
		return struct{}{}, r.PushEach("hand", func(s *hearth.Seat) any { return &syspb.Tick{N: uint32(100 + s.Index)} })
	})
	hub := hearthtest.Start(t, hearth.Config{NodeID: "hub", NATSListen: "127.0.0.1:0", RegistryInterval: 100 * time.Millisecond},
		login(), match.New(match.Config{}), rt.Service())
	edge := hearthtest.Start(t, hearth.Config{NodeID: "edge", NATSURL: hub.NATSURL(), Roles: []string{"gate"}, RegistryInterval: 100 * time.Millisecond})
	hearthtest.Eventually(t, 10*time.Second, func() error {
		if n := len(edge.Nodes()); n != 2 {
			return fmt.Errorf("edge sees %d nodes", n)
		}
		return nil
	})

	watcher, err := nats.Connect(hub.NATSURL())
	require.NoError(t, err)
	defer watcher.Close()
	var mu sync.Mutex
	each := map[string]int{} // gate subject → TypePushEach messages
	sub, err := watcher.Subscribe("hearth.gate.*.c", func(m *nats.Msg) {
		if e, err := cluster.DecodeEnvelope(m.Data); err == nil && e.Type == cluster.TypePushEach && e.Route == "deal.hand" {
			mu.Lock()
			each[m.Subject] += len(e.Sessions)
			mu.Unlock()
		}
	})
	require.NoError(t, err)
	defer sub.Unsubscribe()
	require.NoError(t, watcher.Flush())

	codecs := []string{wire.CodecJSON, wire.CodecProtobuf, wire.CodecJSON, wire.CodecProtobuf}
	players := make([]*player, 4)
	seats := make([]uint32, 4)
	for i := range players {
		url := hub.URL("tcp")
		if i >= 2 {
			url = edge.URL("ws")
		}
		players[i] = dialPlayer(t, url, fmt.Sprintf("u%d", i), client.Options{Codec: codecs[i]})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var s matchpb.Seat
		require.NoError(t, players[i].c.Request(ctx, "match.join", &matchpb.JoinReq{RoomType: "deal"}, &s))
		cancel()
		seats[i] = s.Seat
	}
	_, err = call[struct{}](t, players[0], "deal.go", struct{}{})
	require.NoError(t, err)

	for i, p := range players {
		hearthtest.Eventually(t, 5*time.Second, func() error {
			b, ok := p.last("deal.hand")
			if !ok {
				return fmt.Errorf("player %d: no deal.hand push", i)
			}
			var got syspb.Tick
			if codecs[i] == wire.CodecJSON {
				if err := protojson.Unmarshal(b, &got); err != nil {
					return fmt.Errorf("player %d: %q: %v", i, b, err)
				}
			} else if err := proto.Unmarshal(b, &got); err != nil {
				return fmt.Errorf("player %d: %v", i, err)
			}
			if got.N != 100+seats[i] {
				return fmt.Errorf("player %d in seat %d got %d", i, seats[i], got.N)
			}
			return nil
		})
	}
	mu.Lock()
	defer mu.Unlock()
	// The hub's own gate gets its two in-process (cluster.Bus.SetLocalGate),
	// never on the bus; the edge's come in one bus message.
	require.Equal(t, map[string]int{"hearth.gate.edge.c": 2}, each, "one bus message for the other gate, carrying its two sessions")
}
