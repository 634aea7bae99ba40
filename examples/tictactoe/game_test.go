package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/hearthtest/authtest"
	"github.com/hearth-server/hearth/services/match"
)

// player is a logged-in client and the newest state pushed to it.
type player struct {
	*hearthtest.User
	mu   sync.Mutex // guards last
	last *state
}

func join(t *testing.T, node *hearthtest.Node) *player {
	t.Helper()
	p := &player{}
	p.User = node.Login(t, "tcp", client.Options{OnPush: func(pu client.Push) {
		if pu.Route != "tictactoe.state" && pu.Route != "tictactoe.snapshot" {
			return
		}
		var st state
		if json.Unmarshal(pu.Payload, &st) == nil {
			p.mu.Lock()
			p.last = &st
			p.mu.Unlock()
		}
	}})
	_, err := p.RequestRaw(context.Background(), "match.join", []byte(`{"room_type":"tictactoe"}`))
	require.NoError(t, err)
	return p
}

// waitState waits until the newest state pushed to p satisfies ok.
func (p *player) waitState(t *testing.T, what string, ok func(st state) bool) state {
	t.Helper()
	var got state
	hearthtest.Eventually(t, 5*time.Second, func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.last == nil || !ok(*p.last) {
			return fmt.Errorf("%s: last state %+v", what, p.last)
		}
		got = *p.last
		return nil
	})
	return got
}

func move(p *player, cell int) error {
	_, err := p.RequestRaw(context.Background(), "tictactoe.move", []byte(fmt.Sprintf(`{"cell":%d}`, cell)))
	return err
}

func codeOf(err error) hearth.Code {
	var he *hearth.Error
	if errors.As(err, &he) {
		return he.Code
	}
	return 0
}

func TestGameToAWin(t *testing.T) {
	node := authtest.Start(t, hearth.Config{}, match.New(match.Config{}), newGame(time.Minute).Service())
	x, o := join(t, node), join(t, node)
	x.waitState(t, "game started", func(st state) bool { return st.Turn == 0 })
	require.Equal(t, codeNotYourTurn, codeOf(move(o, 4)))
	for i, m := range []struct {
		p    *player
		cell int
	}{{x, 0}, {o, 3}, {x, 1}, {o, 4}} {
		require.NoError(t, move(m.p, m.cell), "move %d", i)
	}
	require.Equal(t, codeBadCell, codeOf(move(x, 4)), "a taken cell")
	require.NoError(t, move(x, 2))
	for _, p := range []*player{x, o} {
		st := p.waitState(t, "game over", func(st state) bool { return st.Over != "" })
		require.Equal(t, "XXXOO....", st.Board)
		require.Equal(t, 0, st.Winner)
		require.Equal(t, "three in a row", st.Over)
	}
	require.Equal(t, codeNotPlaying, codeOf(move(o, 8)))
}

func TestTurnTimeoutLoses(t *testing.T) {
	node := authtest.Start(t, hearth.Config{}, match.New(match.Config{}), newGame(50*time.Millisecond).Service())
	x, o := join(t, node), join(t, node)
	for _, p := range []*player{x, o} {
		st := p.waitState(t, "X ran out of time", func(st state) bool { return st.Over != "" })
		require.Equal(t, "timeout", st.Over)
		require.Equal(t, 1, st.Winner)
	}
}
