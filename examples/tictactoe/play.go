package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-server/hearth/cli"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/pb/authpb"
)

// play is the terminal client: it logs in as a guest, asks the match
// service for a seat, draws the board at every state push and sends the
// cells typed on stdin.
func play(ctx context.Context, args []string, opts cli.Options) int {
	fs := flag.NewFlagSet("play", flag.ContinueOnError)
	fs.SetOutput(opts.Stderr)
	addr := fs.String("addr", "tcp://localhost:7100", "server address")
	guest := fs.String("guest", "", "guest device id (default: a new one)")
	room := fs.String("room", "", "join this room id (a friend's private room) instead of matching")
	private := fs.Bool("private", false, "open a private room and print its id for a friend")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *guest == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		*guest = "tictactoe-" + hex.EncodeToString(b[:])
	}
	if err := playGame(ctx, opts.Stdout, os.Stdin, *addr, *guest, *room, *private); err != nil {
		fmt.Fprintln(opts.Stderr, "play:", err)
		return 1
	}
	return 0
}

func playGame(ctx context.Context, out io.Writer, in io.Reader, addr, guest, room string, private bool) error {
	states := make(chan state, 16)
	c, err := client.Dial(ctx, addr, client.Options{OnPush: func(p client.Push) {
		if p.Route == "tictactoe.state" || p.Route == "tictactoe.snapshot" {
			var st state
			if json.Unmarshal(p.Payload, &st) == nil {
				states <- st
			}
		}
	}})
	if err != nil {
		return err
	}
	defer c.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var login authpb.LoginResp
	if err := c.Request(rctx, "auth.guest", &authpb.GuestReq{DeviceId: guest}, &login); err != nil {
		return fmt.Errorf("log in: %w", err)
	}
	route, req := "match.join", `{"room_type":"tictactoe"}`
	switch {
	case room != "":
		route, req = "match.join_by_id", fmt.Sprintf(`{"room_id":%q}`, room)
	case private:
		route = "match.create"
	}
	res, err := c.RequestRaw(rctx, route, []byte(req))
	if err != nil {
		return fmt.Errorf("%s: %w", route, err)
	}
	var seat struct {
		RoomID string `json:"room_id"`
		Seat   int    `json:"seat"`
	}
	_ = json.Unmarshal(res, &seat)
	fmt.Fprintf(out, "you are %c in room %s — waiting for an opponent\n", "XO"[seat.Seat], seat.RoomID)

	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.Done():
			return c.Err()
		case st := <-states:
			draw(out, st, seat.Seat)
			if st.Over != "" {
				return nil
			}
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			cell, err := strconv.Atoi(strings.TrimSpace(line))
			if err != nil {
				fmt.Fprintln(out, "type a cell number, 0–8")
				continue
			}
			mctx, mcancel := context.WithTimeout(ctx, 10*time.Second)
			_, err = c.RequestRaw(mctx, "tictactoe.move", []byte(fmt.Sprintf(`{"cell":%d}`, cell)))
			mcancel()
			if err != nil {
				fmt.Fprintln(out, err)
			}
		}
	}
}

func draw(out io.Writer, st state, me int) {
	for row := range 3 {
		fmt.Fprintf(out, " %s | %s | %s\n", cell(st, row*3), cell(st, row*3+1), cell(st, row*3+2))
	}
	switch {
	case st.Over != "" && st.Winner == me:
		fmt.Fprintf(out, "you win (%s)\n", st.Over)
	case st.Over != "" && st.Winner < 0:
		fmt.Fprintf(out, "no winner (%s)\n", st.Over)
	case st.Over != "":
		fmt.Fprintf(out, "you lose (%s)\n", st.Over)
	case st.Turn == me:
		fmt.Fprintf(out, "your move (%ds left): ", st.TurnMS/1000)
	case st.Turn >= 0:
		fmt.Fprintln(out, "their move…")
	}
}

func cell(st state, i int) string {
	if st.Board[i] == '.' {
		return strconv.Itoa(i)
	}
	return st.Board[i : i+1]
}
