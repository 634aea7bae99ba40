package niuniu

import (
	"strconv"
	"unicode/utf8"
)

// A table pushes every seat its own View on every change, so the view's
// encoding is on the hottest path of a running table: AppendJSON writes the
// same bytes as encoding/json would (TestViewJSONMatchesEncodingJSON and
// FuzzViewJSON hold it to that) without reflection, and hearth's Room.Push
// uses it through hearth.JSONAppender.

// AppendJSON appends v's JSON encoding to dst (hearth.JSONAppender).
func (v View) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"phase":`...)
	dst = appendJSONString(dst, v.Phase)
	dst = append(dst, `,"deadline_ms":`...)
	dst = strconv.AppendInt(dst, v.DeadlineMS, 10)
	if v.Round != "" {
		dst = append(dst, `,"round":`...)
		dst = appendJSONString(dst, v.Round)
	}
	if v.Seed != 0 {
		dst = append(dst, `,"seed":`...)
		dst = strconv.AppendUint(dst, v.Seed, 10)
	}
	dst = append(dst, `,"base":`...)
	dst = strconv.AppendInt(dst, v.Base, 10)
	dst = append(dst, `,"you":`...)
	dst = strconv.AppendInt(dst, int64(v.You), 10)
	dst = append(dst, `,"banker":`...)
	dst = strconv.AppendInt(dst, int64(v.Banker), 10)
	dst = append(dst, `,"banker_grab":`...)
	dst = strconv.AppendInt(dst, int64(v.BankerGrab), 10)
	dst = append(dst, `,"seats":`...)
	if v.Seats == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i := range v.Seats {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = v.Seats[i].appendJSON(dst)
		}
		dst = append(dst, ']')
	}
	if v.Error != "" {
		dst = append(dst, `,"error":`...)
		dst = appendJSONString(dst, v.Error)
	}
	return append(dst, '}')
}

func (s *SeatView) appendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	if s.User != "" {
		dst = append(dst, `"user":`...)
		dst = appendJSONString(dst, s.User)
		dst = append(dst, ',')
	}
	dst = append(dst, `"online":`...)
	dst = strconv.AppendBool(dst, s.Online)
	dst = append(dst, `,"ready":`...)
	dst = strconv.AppendBool(dst, s.Ready)
	dst = append(dst, `,"playing":`...)
	dst = strconv.AppendBool(dst, s.Playing)
	dst = append(dst, `,"grab":`...)
	dst = strconv.AppendInt(dst, int64(s.Grab), 10)
	dst = append(dst, `,"bet":`...)
	dst = strconv.AppendInt(dst, int64(s.Bet), 10)
	dst = append(dst, `,"opened":`...)
	dst = strconv.AppendBool(dst, s.Opened)
	if len(s.Cards) > 0 {
		dst = append(dst, `,"cards":[`...)
		for i, c := range s.Cards {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '"')
			if c.Valid() {
				dst = append(append(dst, rankText[c.Rank]...), suitText[c.Suit]...)
			} else {
				dst = append(dst, c.String()...)
			}
			dst = append(dst, '"')
		}
		dst = append(dst, ']')
	}
	if s.Hand != nil {
		dst = append(dst, `,"hand":{"type":"`...)
		dst = append(dst, s.Hand.Type.String()...)
		dst = append(dst, `","value":`...)
		dst = strconv.AppendInt(dst, int64(s.Hand.Value), 10)
		dst = append(dst, '}')
	}
	if s.Delta != 0 {
		dst = append(dst, `,"delta":`...)
		dst = strconv.AppendInt(dst, s.Delta, 10)
	}
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string escaped as encoding/json
// escapes it: quotes, backslashes and control characters, <, > and & (safe
// in HTML), U+2028 and U+2029, and invalid UTF-8 as U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
