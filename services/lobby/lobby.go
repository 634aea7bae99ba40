// Package lobby is hearth's built-in lobby service (the seeds' hall): the
// player's profile — nickname, avatar and currency balance — and what there
// is to play.
//
//	lobby.profile {"nickname"?, "avatar"?} → Profile
//	lobby.games {}                         → Games   room types, live counts
//	lobby.rooms {"type"}                   → Rooms   open rooms of a type
//
// Without fields it reads the profile; with them it updates those fields.
// The balance is read-only here: currency moves only through the store's
// idempotent ledger, which game services settle into.
package lobby

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/pb/lobbypb"
	"github.com/hearth-server/hearth/store"
)

const (
	maxNickname = 24
	maxAvatar   = 256
)

// MaxListings is the most rooms lobby.rooms lists, the fullest first.
const MaxListings = 100

// New returns the lobby service over st.
func New(st *store.Store) *hearth.Service {
	svc := hearth.NewService("lobby")
	hearth.Handle(svc, "profile", func(ctx context.Context, s *hearth.Session, req *lobbypb.ProfileReq) (*lobbypb.Profile, error) {
		user := s.UserID()
		if user == "" {
			return nil, hearth.NewError(hearth.CodeUnauthenticated, "log in first")
		}
		var p store.Profile
		var err error
		if req.Nickname == nil && req.Avatar == nil {
			p, err = st.Profile(ctx, user)
		} else {
			cur, gerr := st.Profile(ctx, user)
			if gerr != nil {
				return nil, profileErr(gerr)
			}
			nick, avatar := cur.Nickname, cur.Avatar
			if req.Nickname != nil {
				if nick, err = validNickname(*req.Nickname); err != nil {
					return nil, err
				}
			}
			if req.Avatar != nil {
				if avatar, err = validAvatar(*req.Avatar); err != nil {
					return nil, err
				}
			}
			p, err = st.UpdateProfile(ctx, user, nick, avatar)
		}
		if err != nil {
			return nil, profileErr(err)
		}
		return &lobbypb.Profile{UserId: p.AccountID, Nickname: p.Nickname, Avatar: p.Avatar, Balance: p.Balance}, nil
	})
	var node *hearth.Node // set before the first request
	svc.OnStart(func(ctx context.Context, n *hearth.Node) error {
		node = n
		_, err := n.RoomNodes(ctx) // load the room registry now
		return err
	})
	hearth.Handle(svc, "games", func(ctx context.Context, _ *hearth.Session, _ *lobbypb.GamesReq) (*lobbypb.Games, error) {
		return games(ctx, node)
	})
	hearth.Handle(svc, "rooms", func(ctx context.Context, _ *hearth.Session, req *lobbypb.RoomsReq) (*lobbypb.Rooms, error) {
		if req.Type == "" {
			return nil, hearth.NewError(hearth.CodeInvalidPayload, "type is required")
		}
		rooms, err := node.OpenRooms(ctx, req.Type)
		if err != nil {
			return nil, err
		}
		nodes, err := node.RoomNodes(ctx)
		if err != nil {
			return nil, err
		}
		serving := map[string]bool{}
		for _, n := range nodes {
			serving[n.ID] = !n.Draining
		}
		rooms = slices.DeleteFunc(rooms, func(r hearth.RoomInfo) bool { return !r.Open() || !serving[r.Node] })
		// The fullest first (where a player is likeliest to start playing
		// soon), and at most MaxListings: thousands of open tables would
		// not fit one frame, nor help anyone choose.
		slices.SortFunc(rooms, func(a, b hearth.RoomInfo) int {
			return cmp.Or(cmp.Compare(b.Players, a.Players), a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
		})
		resp := &lobbypb.Rooms{}
		for _, r := range rooms[:min(len(rooms), MaxListings)] {
			resp.Rooms = append(resp.Rooms, &lobbypb.RoomListing{
				Id: r.ID, Type: r.Type, Seats: uint32(r.Seats), Players: uint32(r.Players), State: r.State, Meta: r.Meta, Params: r.Params,
			})
		}
		return resp, nil
	})
	return svc
}

// games counts rooms and players per room type, over every type a live
// room node serves or a room still has.
func games(ctx context.Context, node *hearth.Node) (*lobbypb.Games, error) {
	nodes, err := node.RoomNodes(ctx)
	if err != nil {
		return nil, err
	}
	rooms, err := node.Rooms(ctx, "")
	if err != nil {
		return nil, err
	}
	byType := map[string]*lobbypb.Game{}
	game := func(t string) *lobbypb.Game {
		g := byType[t]
		if g == nil {
			g = &lobbypb.Game{Type: t}
			byType[t] = g
		}
		return g
	}
	for _, n := range nodes {
		for _, t := range n.Types {
			g := game(t)
			if !n.Draining {
				g.Nodes++
			}
		}
	}
	for _, r := range rooms {
		g := game(r.Type)
		g.Rooms++
		g.Players += uint32(r.Players)
	}
	resp := &lobbypb.Games{}
	for _, g := range byType {
		resp.Games = append(resp.Games, g)
	}
	slices.SortFunc(resp.Games, func(a, b *lobbypb.Game) int { return strings.Compare(a.Type, b.Type) })
	return resp, nil
}

func profileErr(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return hearth.NewError(hearth.CodeUnauthenticated, "no profile: log in again")
	}
	return err
}

func validNickname(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || utf8.RuneCountInString(s) > maxNickname || !utf8.ValidString(s) {
		return "", hearth.Errorf(hearth.CodeInvalidPayload, "nickname must be 1–%d characters", maxNickname)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "", hearth.NewError(hearth.CodeInvalidPayload, "nickname must not contain control characters")
		}
	}
	return s, nil
}

func validAvatar(s string) (string, error) {
	if len(s) > maxAvatar || !utf8.ValidString(s) {
		return "", hearth.Errorf(hearth.CodeInvalidPayload, "avatar must be at most %d bytes", maxAvatar)
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return "", hearth.NewError(hearth.CodeInvalidPayload, "avatar must be a URL or an id without spaces")
		}
	}
	return s, nil
}
