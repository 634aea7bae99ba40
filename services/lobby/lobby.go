// Package lobby is hearth's built-in lobby service (the seeds' hall): the
// player's profile — nickname, avatar and currency balance.
//
//	lobby.profile {"nickname"?, "avatar"?} → Profile
//
// Without fields it reads the profile; with them it updates those fields.
// The balance is read-only here: currency moves only through the store's
// idempotent ledger, which game services settle into.
package lobby

import (
	"context"
	"errors"
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
	return svc
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
