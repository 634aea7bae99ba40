package main

import (
	"time"

	"github.com/hearth-server/hearth"
)

// tableService is a 4-seat room type for the room tests:
//
//	table.where {}  → {"node":"<id>","room":"<room id>","seat":n}
//
// A draining table plays on for tableDrainHand before it closes, so a
// test sees the node draining with a room still open.
func tableService() *hearth.Service {
	rt := hearth.NewRoomType("table", hearth.RoomConfig{Seats: 4}, func() hearth.RoomHandler { return &table{} })
	hearth.HandleRoomJSON(rt, "where", func(r *hearth.Room, s *hearth.Seat, _ struct{}) (tableWhere, error) {
		return tableWhere{Node: r.Node().ID(), Room: r.ID(), Seat: s.Index}, nil
	})
	return rt.Service()
}

const tableDrainHand = 1500 * time.Millisecond

type tableWhere struct {
	Node string `json:"node"`
	Room string `json:"room"`
	Seat int    `json:"seat"`
}

type table struct{ hearth.BaseRoom }

func (*table) Drain(r *hearth.Room) { r.After(tableDrainHand, "hand over") }

func (*table) Timer(r *hearth.Room, t *hearth.Timer) {
	if t.Name() == "hand over" {
		r.Close("drain")
	}
}

func (*table) Snapshot(r *hearth.Room, s *hearth.Seat) any {
	return tableWhere{Node: r.Node().ID(), Room: r.ID(), Seat: s.Index}
}
