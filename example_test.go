package hearth_test

import (
	"context"
	"log"

	"github.com/hearth-server/hearth"
)

// A service on plain Go types: no .proto, no protoc. Clients of either
// codec send and receive JSON on these routes.
func ExampleHandleJSON() {
	type JoinReq struct {
		Table string `json:"table"`
	}
	type JoinResp struct {
		Seat int `json:"seat"`
	}
	type Joined struct {
		Session string `json:"session"`
		Seat    int    `json:"seat"`
	}

	svc := hearth.NewService("table")
	hearth.HandleJSON(svc, "join", func(ctx context.Context, s *hearth.Session, req JoinReq) (JoinResp, error) {
		channel := "table." + req.Table
		// A bad name from the client is a 400 that states the rule.
		if err := s.Join(ctx, channel); err != nil {
			return JoinResp{}, err
		}
		seat := 1
		// Tell the others once this client has its answer.
		s.AfterReply(func() {
			_ = s.Node().Publish(context.Background(), channel, "table.joined", Joined{Session: s.ID(), Seat: seat})
		})
		return JoinResp{Seat: seat}, nil
	})

	node, err := hearth.New(hearth.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := node.Register(svc); err != nil {
		log.Fatal(err)
	}
	// node.Run(ctx) serves until ctx ends.
}
