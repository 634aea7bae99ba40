package main

import (
	"time"

	"github.com/hearth-server/hearth"
)

// Codes the game answers with (hearth keeps 1100–1199 for its rooms).
const (
	codeNotYourTurn hearth.Code = 1001
	codeBadCell     hearth.Code = 1002
	codeNotPlaying  hearth.Code = 1003
)

// newGame returns the tictactoe room type: 2 seats, a move per turn, and
// a turn that is lost (and the game with it) when it runs out.
func newGame(turn time.Duration) *hearth.RoomType {
	rt := hearth.NewRoomType("tictactoe", hearth.RoomConfig{Seats: 2}, func() hearth.RoomHandler {
		return &game{turn: turn}
	})
	hearth.HandleRoomJSON(rt, "move", func(r *hearth.Room, s *hearth.Seat, req moveReq) (state, error) {
		return r.Handler().(*game).move(r, s, req.Cell)
	})
	return rt
}

// moveReq is tictactoe.move: the cell 0–8, row by row.
type moveReq struct {
	Cell int `json:"cell"`
}

// state is what every player sees: the snapshot (tictactoe.snapshot), the
// answer to a move, and the push after every move (tictactoe.state).
type state struct {
	Board   string   `json:"board"`   // 9 cells: "X", "O" or "."
	Players []string `json:"players"` // user ids by seat; X is seat 0
	Turn    int      `json:"turn"`    // seat to move, -1 before start and after the end
	TurnMS  int64    `json:"turn_ms"` // time left to move
	Winner  int      `json:"winner"`  // seat that won, -1 for none (yet)
	Over    string   `json:"over,omitempty"`
}

// game is one room's state; the room's goroutine owns it.
type game struct {
	hearth.BaseRoom
	turn   time.Duration
	board  [9]byte
	next   int // seat to move, -1 when not playing
	winner int
	over   string
	clock  *hearth.Timer
}

func (g *game) Create(r *hearth.Room, _ map[string]string) error {
	g.board = [9]byte{'.', '.', '.', '.', '.', '.', '.', '.', '.'}
	g.next, g.winner = -1, -1
	r.SetState("waiting")
	return nil
}

// Join starts the game once both seats are taken.
func (g *game) Join(r *hearth.Room, s *hearth.Seat) error {
	if g.over != "" {
		return hearth.NewError(codeNotPlaying, "this game is over")
	}
	if r.Players() == 2 {
		g.next = 0
		r.SetState("playing")
		g.startTurn(r)
		_ = r.Broadcast("state", g.state(r))
	}
	return nil
}

// Leave during play forfeits the game.
func (g *game) Leave(r *hearth.Room, s *hearth.Seat, _ hearth.LeaveReason) error {
	if g.next >= 0 {
		g.end(r, 1-s.Index, "forfeit")
	}
	return nil
}

func (g *game) Timer(r *hearth.Room, t *hearth.Timer) {
	if t.Name() == "turn" && g.next >= 0 {
		g.end(r, 1-g.next, "timeout")
	}
}

// Drain: a game in progress ends as a draw when its node shuts down.
func (g *game) Drain(r *hearth.Room) {
	if g.next >= 0 {
		g.end(r, -1, "server shutting down")
	}
	r.Close("drain")
}

func (g *game) Snapshot(r *hearth.Room, _ *hearth.Seat) any { return g.state(r) }

func (g *game) move(r *hearth.Room, s *hearth.Seat, cell int) (state, error) {
	switch {
	case g.next < 0:
		return state{}, hearth.NewError(codeNotPlaying, "the game is not on")
	case s.Index != g.next:
		return state{}, hearth.NewError(codeNotYourTurn, "not your turn")
	case cell < 0 || cell > 8 || g.board[cell] != '.':
		return state{}, hearth.Errorf(codeBadCell, "cell %d is not free (0–8, row by row)", cell)
	}
	g.board[cell] = "XO"[s.Index]
	switch {
	case g.line(g.board[cell]):
		g.end(r, s.Index, "three in a row")
	case !g.hasFree():
		g.end(r, -1, "draw")
	default:
		g.next = 1 - g.next
		g.startTurn(r)
		_ = r.Broadcast("state", g.state(r))
	}
	return g.state(r), nil
}

func (g *game) startTurn(r *hearth.Room) {
	if g.clock != nil {
		g.clock.Cancel()
	}
	g.clock = r.After(g.turn, "turn")
}

// end finishes the game and tells both players; the room closes when
// they leave.
func (g *game) end(r *hearth.Room, winner int, why string) {
	g.next, g.winner, g.over = -1, winner, why
	if g.clock != nil {
		g.clock.Cancel()
	}
	r.SetState("over")
	_ = r.Broadcast("state", g.state(r))
}

var lines = [8][3]int{{0, 1, 2}, {3, 4, 5}, {6, 7, 8}, {0, 3, 6}, {1, 4, 7}, {2, 5, 8}, {0, 4, 8}, {2, 4, 6}}

func (g *game) line(mark byte) bool {
	for _, l := range lines {
		if g.board[l[0]] == mark && g.board[l[1]] == mark && g.board[l[2]] == mark {
			return true
		}
	}
	return false
}

func (g *game) hasFree() bool {
	for _, c := range g.board {
		if c == '.' {
			return true
		}
	}
	return false
}

func (g *game) state(r *hearth.Room) state {
	st := state{Board: string(g.board[:]), Turn: g.next, Winner: g.winner, Over: g.over}
	for _, s := range r.Seats() {
		st.Players = append(st.Players, s.User)
	}
	if g.clock != nil && g.next >= 0 {
		st.TurnMS = g.clock.Remaining().Milliseconds()
	}
	return st
}
