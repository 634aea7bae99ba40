package hearth_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/pb/syspb"
	"github.com/hearth-server/hearth/wire"
)

type seatReq struct {
	Table string `json:"table"`
	Seat  int    `json:"seat"`
}

type seatResp struct {
	Table string   `json:"table"`
	Seat  int      `json:"seat"`
	Hand  []string `json:"hand,omitempty"`
}

// jsonService is a service written without protoc: plain structs in and
// out, and a plain struct pushed after the reply.
func jsonService() *hearth.Service {
	svc := hearth.NewService("cards")
	hearth.HandleJSON(svc, "sit", func(ctx context.Context, s *hearth.Session, req seatReq) (seatResp, error) {
		if req.Seat < 0 || req.Seat > 3 {
			return seatResp{}, hearth.Errorf(hearth.CodeApplication+1, "seat %d: want 0..3", req.Seat)
		}
		s.AfterReply(func() {
			_ = s.Push(context.Background(), "cards.dealt", seatResp{Table: req.Table, Seat: req.Seat, Hand: []string{"A♠", "K♥"}})
		})
		return seatResp{Table: req.Table, Seat: req.Seat}, nil
	})
	hearth.HandleJSON(svc, "ptr", func(ctx context.Context, s *hearth.Session, req *seatReq) (*seatResp, error) {
		return &seatResp{Table: req.Table, Seat: req.Seat}, nil
	})
	// A protobuf route beside it, for the protojson rules.
	hearth.Handle(svc, "push", func(ctx context.Context, s *hearth.Session, req *syspb.PushReq) (*syspb.PushResp, error) {
		return &syspb.PushResp{Count: req.Count}, nil
	})
	return svc
}

func request(t *testing.T, c *client.Client, route, payload string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := c.RequestRaw(ctx, route, []byte(payload))
	return string(out), err
}

func requireCode(t *testing.T, err error, code wire.Code, msg string) {
	t.Helper()
	var we *wire.Error
	require.True(t, errors.As(err, &we), "want a *wire.Error, got %v", err)
	require.Equal(t, code, we.Code, we.Message)
	require.Contains(t, we.Message, msg)
}

func TestHandleJSON(t *testing.T) {
	node := hearthtest.Start(t, hearth.Config{}, jsonService())
	for _, codec := range []string{wire.CodecJSON, wire.CodecProtobuf} {
		t.Run(codec, func(t *testing.T) {
			pushes := make(chan client.Push, 4)
			c := node.Dial(t, "tcp", client.Options{Codec: codec, OnPush: func(p client.Push) { pushes <- p }})

			// A JSON route speaks JSON in both codecs.
			out, err := request(t, c, "cards.sit", `{"table":"t1","seat":2}`)
			require.NoError(t, err)
			require.JSONEq(t, `{"table":"t1","seat":2}`, out)
			select {
			case p := <-pushes:
				require.Equal(t, "cards.dealt", p.Route)
				require.JSONEq(t, `{"table":"t1","seat":2,"hand":["A♠","K♥"]}`, string(p.Payload))
			case <-time.After(5 * time.Second):
				t.Fatal("no cards.dealt push")
			}

			out, err = request(t, c, "cards.ptr", `{"table":"t2"}`)
			require.NoError(t, err)
			require.JSONEq(t, `{"table":"t2","seat":0}`, out)
			out, err = request(t, c, "cards.ptr", ``)
			require.NoError(t, err, "an empty payload is {}")
			require.JSONEq(t, `{"table":"","seat":0}`, out)

			_, err = request(t, c, "cards.sit", `{"seat":9}`)
			requireCode(t, err, hearth.CodeApplication+1, "seat 9: want 0..3")
		})
	}
}

func TestHandleJSONRejects(t *testing.T) {
	node := hearthtest.Start(t, hearth.Config{}, jsonService())
	c := node.Dial(t, "tcp")
	for _, tt := range []struct {
		name, payload, msg string
	}{
		{"unknown field", `{"table":"t","saet":1}`, `unknown field "saet"`},
		{"wrong type", `{"seat":"1"}`, `field "seat": want an integer, got string`},
		{"fraction", `{"seat":1.5}`, `field "seat": want an integer, got number 1.5`},
		{"not an object", `[1]`, `want an object, got array`},
		{"not JSON", `{"seat":`, `not valid JSON`},
		{"two values", `{} {}`, `data after the JSON value`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := request(t, c, "cards.sit", tt.payload)
			requireCode(t, err, hearth.CodeInvalidPayload, "invalid payload: "+tt.msg)
		})
	}
	// The session is unharmed.
	_, err := request(t, c, "cards.sit", `{"seat":1}`)
	require.NoError(t, err)
}

// TestProtoJSONRules pins what a JSON session may send to a protobuf route
// (docs/protocol.md, "Codecs").
func TestProtoJSONRules(t *testing.T) {
	node := hearthtest.Start(t, hearth.Config{}, jsonService())
	c := node.Dial(t, "tcp")
	for _, tt := range []struct {
		name, payload, want, msg string
	}{
		{"proto names", `{"count":3,"interval_ms":5}`, `{"count":3}`, ""},
		{"camelCase names", `{"count":3,"intervalMs":5}`, `{"count":3}`, ""},
		{"numbers as strings", `{"count":"3"}`, `{"count":3}`, ""},
		{"empty payload", ``, `{}`, ""},
		{"unknown field", `{"count":3,"cuont":4}`, "", `unknown field "cuont"`},
		{"wrong type", `{"count":true}`, "", "invalid value for uint32 field count"},
		{"not JSON", `{"count":`, "", "invalid payload"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := request(t, c, "cards.push", tt.payload)
			if tt.msg != "" {
				requireCode(t, err, hearth.CodeInvalidPayload, tt.msg)
				return
			}
			require.NoError(t, err)
			require.JSONEq(t, tt.want, out)
		})
	}
}

func TestHandleJSONRefusesProtoMessages(t *testing.T) {
	svc := hearth.NewService("bad")
	require.PanicsWithValue(t, "hearth: *syspb.PushReq is a protobuf message: register it with Handle, not HandleJSON", func() {
		hearth.HandleJSON(svc, "x", func(context.Context, *hearth.Session, *syspb.PushReq) (seatResp, error) { return seatResp{}, nil })
	})
	require.Panics(t, func() {
		hearth.HandleNotifyJSON(svc, "y", func(context.Context, *hearth.Session, *syspb.Tick) error { return nil })
	})
	require.Empty(t, svc.Routes())
}

// TestPushPlainValues sends a plain Go value through every push path: both
// codecs get its encoding/json bytes.
func TestPushPlainValues(t *testing.T) {
	svc := hearth.NewService("acct")
	hearth.HandleJSON(svc, "login", func(ctx context.Context, s *hearth.Session, user string) (struct{}, error) {
		if err := s.SetUser(ctx, user); err != nil {
			return struct{}{}, err
		}
		return struct{}{}, s.Join(ctx, "news")
	})
	node := hearthtest.Start(t, hearth.Config{}, svc)
	type note struct {
		Text string `json:"text"`
	}
	want := `{"text":"hi"}`
	for _, codec := range []string{wire.CodecJSON, wire.CodecProtobuf} {
		t.Run(codec, func(t *testing.T) {
			pushes := make(chan client.Push, 8)
			c := node.Dial(t, "tcp", client.Options{Codec: codec, OnPush: func(p client.Push) { pushes <- p }})
			_, err := request(t, c, "acct.login", `"u-`+codec+`"`)
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			require.NoError(t, node.Push(ctx, "u-"+codec, "acct.user", note{"hi"}))
			online, err := node.PushUsers(ctx, []string{"u-" + codec}, "acct.users", note{"hi"})
			require.NoError(t, err)
			require.Equal(t, 1, online)
			require.NoError(t, node.PushSession(ctx, c.Ack().Node, c.SessionID(), "acct.session", note{"hi"}))
			require.NoError(t, node.Publish(ctx, "news", "acct.channel", note{"hi"}))
			// A channel message and a direct push are not ordered between them.
			got := map[string]string{}
			for len(got) < 4 {
				select {
				case p := <-pushes:
					got[p.Route] = string(p.Payload)
				case <-time.After(5 * time.Second):
					t.Fatalf("pushes missing: got %v", got)
				}
			}
			for _, route := range []string{"acct.user", "acct.users", "acct.session", "acct.channel"} {
				require.JSONEq(t, want, got[route], route)
			}
		})
	}
}

func TestJoinBadChannel(t *testing.T) {
	svc := hearth.NewService("room")
	hearth.HandleJSON(svc, "join", func(ctx context.Context, s *hearth.Session, req struct {
		Room string `json:"room"`
	}) (struct{}, error) {
		return struct{}{}, s.Join(ctx, "room."+req.Room) // the client's choice, passed straight through
	})
	node := hearthtest.Start(t, hearth.Config{}, svc)
	c := node.Dial(t, "tcp")
	for _, room := range []string{"", "a b", "x.*", "x..y", "ü", "a>", strings.Repeat("x", 200)} {
		_, err := request(t, c, "room.join", `{"room":"`+room+`"}`)
		requireCode(t, err, hearth.CodeInvalidPayload, "channel name must be 1–128 characters")
	}
	_, err := request(t, c, "room.join", `{"room":"lobby-1:a.b"}`)
	require.NoError(t, err)
}

// sys.time takes the empty request and answers 400 to anything else, like
// every typed route.
func TestSysTimePayload(t *testing.T) {
	node := hearthtest.Start(t, hearth.Config{})
	for _, codec := range []string{wire.CodecJSON, wire.CodecProtobuf} {
		c := node.Dial(t, "tcp", client.Options{Codec: codec})
		good, bad := []string{"", "{}"}, []string{"garbage", `{"x":1}`}
		if codec == wire.CodecProtobuf {
			good, bad = []string{""}, []string{"\xff\xff"}
		}
		for _, p := range good {
			_, err := request(t, c, "sys.time", p)
			require.NoError(t, err, "%s %q", codec, p)
		}
		for _, p := range bad {
			_, err := request(t, c, "sys.time", p)
			requireCode(t, err, hearth.CodeInvalidPayload, "sys.time takes an empty request")
		}
	}
}

// echoAnswer is an answer that encodes itself, of a length that varies
// with n, so answers of different requests differ in size and content.
type echoAnswer struct{ N int }

func (a echoAnswer) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"n":`...)
	dst = strconv.AppendInt(dst, int64(a.N), 10)
	dst = append(dst, `,"pad":"`...)
	dst = append(dst, strings.Repeat("ab", a.N%97)...)
	return append(dst, `"}`...)
}

// TestAnswersKeepTheirBytes: a typed handler's answer is encoded into a
// scratch buffer that the node reuses once the answer is sent. Many
// concurrent requests, each with its own answer, must each get exactly
// theirs (JSON by AppendJSON, protobuf and protojson).
func TestAnswersKeepTheirBytes(t *testing.T) {
	svc := hearth.NewService("echo")
	hearth.HandleJSON(svc, "json", func(ctx context.Context, s *hearth.Session, req struct{ N int }) (echoAnswer, error) {
		return echoAnswer{N: req.N}, nil
	})
	hearth.Handle(svc, "proto", func(ctx context.Context, s *hearth.Session, req *syspb.PushReq) (*syspb.PushResp, error) {
		return &syspb.PushResp{Count: req.Count}, nil
	})
	node := hearthtest.Start(t, hearth.Config{}, svc)

	const clients, each = 8, 150
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		codec := "json"
		if c%2 == 1 {
			codec = "protobuf"
		}
		cl := node.Dial(t, "tcp", client.Options{Codec: codec})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				n := c*1000 + i
				want := string(echoAnswer{N: n}.AppendJSON(nil))
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				out, err := cl.RequestRaw(ctx, "echo.json", []byte(`{"n":`+strconv.Itoa(n)+`}`))
				if err == nil && string(out) != want {
					err = fmt.Errorf("echo.json %d answered %q", n, out)
				}
				if err == nil {
					var resp syspb.PushResp
					err = cl.Request(ctx, "echo.proto", &syspb.PushReq{Count: uint32(n)}, &resp)
					if err == nil && resp.Count != uint32(n) {
						err = fmt.Errorf("echo.proto %d answered %d", n, resp.Count)
					}
				}
				cancel()
				if err != nil {
					errs <- fmt.Errorf("client %d (%s): %w", c, codec, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}
