package hearth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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

// logBuffer collects a node's JSON log lines.
type logBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// line returns the first log line whose msg is msg and whose fields start
// with the values in kv (key, value prefix, …), decoded.
func (b *logBuffer) line(msg string, kv ...string) (map[string]any, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
next:
	for _, l := range strings.Split(b.buf.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil || m["msg"] != msg {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if v, ok := m[kv[i]].(string); !ok || !strings.HasPrefix(v, kv[i+1]) {
				continue next
			}
		}
		return m, nil
	}
	return nil, fmt.Errorf("no log line %q %v yet", msg, kv)
}

type sessionInfo struct {
	Trace   string `json:"trace"`
	Session string `json:"session"`
	User    string `json:"user"`
	Node    string `json:"node"`
	Bound   bool   `json:"bound"`
}

// sessionService exercises the Session methods from handlers.
func sessionService(notified chan<- uint32) *hearth.Service {
	svc := hearth.NewService("sess")
	info := func(ctx context.Context, s *hearth.Session) sessionInfo {
		node, bound := s.Binding("sess")
		return sessionInfo{Trace: hearth.TraceID(ctx), Session: s.ID(), User: s.UserID(), Node: node, Bound: bound}
	}
	hearth.HandleJSON(svc, "info", func(ctx context.Context, s *hearth.Session, _ struct{}) (sessionInfo, error) {
		hearth.Logger(ctx).Info("request log", "n", 1)
		s.Logger().Info("session log")
		return info(ctx, s), nil
	})
	hearth.HandleJSON(svc, "login", func(ctx context.Context, s *hearth.Session, user string) (sessionInfo, error) {
		return info(ctx, s), s.SetUser(ctx, user)
	})
	hearth.HandleJSON(svc, "bind", func(ctx context.Context, s *hearth.Session, _ struct{}) (sessionInfo, error) {
		err := s.Bind(ctx, "sess", s.Node().ID())
		return info(ctx, s), err
	})
	hearth.HandleJSON(svc, "unbind", func(ctx context.Context, s *hearth.Session, _ struct{}) (sessionInfo, error) {
		err := s.Unbind(ctx, "sess")
		return info(ctx, s), err
	})
	hearth.HandleJSON(svc, "fail", func(ctx context.Context, s *hearth.Session, _ struct{}) (struct{}, error) {
		return struct{}{}, errors.New("disk on fire")
	})
	hearth.HandleJSON(svc, "kick", func(ctx context.Context, s *hearth.Session, _ struct{}) (struct{}, error) {
		s.AfterReply(func() { _ = s.Kick(context.Background(), hearth.CodeApplication+7, "game over") })
		return struct{}{}, nil
	})
	hearth.HandleNotify(svc, "tick", func(ctx context.Context, s *hearth.Session, req *syspb.Tick) error {
		notified <- req.N
		if req.N == 0 {
			return errors.New("tick zero") // logged only
		}
		return nil
	})
	return svc
}

func infoOf(t *testing.T, c *client.Client, route, payload string) sessionInfo {
	t.Helper()
	out, err := request(t, c, route, payload)
	require.NoError(t, err)
	var si sessionInfo
	require.NoError(t, json.Unmarshal([]byte(out), &si))
	return si
}

func TestSessionFromHandlers(t *testing.T) {
	logs := &logBuffer{}
	notified := make(chan uint32, 4)
	node := hearthtest.Start(t, hearth.Config{Logger: slog.New(slog.NewJSONHandler(logs, nil))}, sessionService(notified))
	c := node.Dial(t, "tcp", client.Options{Codec: wire.CodecProtobuf})

	// TraceID: one per request, in the request's log lines.
	a := infoOf(t, c, "sess.info", "")
	b := infoOf(t, c, "sess.info", "")
	require.NotEmpty(t, a.Trace)
	require.NotEqual(t, a.Trace, b.Trace)
	require.Equal(t, c.SessionID(), a.Session)
	var line map[string]any
	hearthtest.Eventually(t, 5*time.Second, func() (err error) { line, err = logs.line("request log"); return err })
	require.Equal(t, a.Trace, line["trace"])
	require.Equal(t, "sess.info", line["route"])
	require.Equal(t, c.SessionID(), line["session"])

	// A plain error is a 500 naming the trace id, and logged with it.
	_, err := request(t, c, "sess.fail", "")
	requireCode(t, err, hearth.CodeInternal, "internal error (trace ")
	trace := err.(*wire.Error).Message[len("internal error (trace ") : len(err.(*wire.Error).Message)-1]
	hearthtest.Eventually(t, 5*time.Second, func() (err error) { line, err = logs.line("handler failed"); return err })
	require.Equal(t, trace, line["trace"])
	require.Equal(t, "disk on fire", line["err"])

	// Session.Logger carries the session, user and gate; UserID follows SetUser.
	require.Empty(t, infoOf(t, c, "sess.login", `"ann"`).User, "the user is set by this request")
	require.Equal(t, "ann", infoOf(t, c, "sess.info", "").User)
	hearthtest.Eventually(t, 5*time.Second, func() (err error) { line, err = logs.line("session log"); return err })
	require.Equal(t, c.SessionID(), line["session"])
	require.Equal(t, node.ID(), line["gate"])

	// Binding, Bind and Unbind: what the next request sees.
	require.False(t, infoOf(t, c, "sess.info", "").Bound)
	require.Equal(t, sessionInfo{Node: node.ID(), Bound: true}, pick(infoOf(t, c, "sess.bind", "")))
	require.Equal(t, sessionInfo{Node: node.ID(), Bound: true}, pick(infoOf(t, c, "sess.info", "")))
	require.Equal(t, sessionInfo{}, pick(infoOf(t, c, "sess.unbind", "")))
	require.Equal(t, sessionInfo{}, pick(infoOf(t, c, "sess.info", "")))

	// HandleNotify: delivered; an error is only logged; a bad
	// payload reaches no handler and leaves the session up.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, c.NotifyRaw(ctx, "sess.tick", []byte{0xff}))
	require.NoError(t, c.Notify(ctx, "sess.tick", &syspb.Tick{N: 0}))
	require.NoError(t, c.Notify(ctx, "sess.tick", &syspb.Tick{N: 2}))
	require.ElementsMatch(t, []uint32{0, 2}, []uint32{<-notified, <-notified}, "handlers run concurrently")
	hearthtest.Eventually(t, 5*time.Second, func() (err error) {
		_, err = logs.line("notify handler failed", "err", "tick zero")
		return err
	})
	hearthtest.Eventually(t, 5*time.Second, func() (err error) {
		_, err = logs.line("notify handler failed", "err", "hearth: 400 invalid payload: proto")
		return err
	})
	_ = infoOf(t, c, "sess.info", "")

	// Session.Kick, after the reply.
	_, err = request(t, c, "sess.kick", "")
	require.NoError(t, err)
	requireKicked(t, c, hearth.CodeApplication+7, "game over")
}

// pick keeps the binding fields of a sessionInfo.
func pick(si sessionInfo) sessionInfo { return sessionInfo{Node: si.Node, Bound: si.Bound} }

func requireKicked(t *testing.T, c *client.Client, code hearth.Code, reason string) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the client was not kicked")
	}
	var we *wire.Error
	require.ErrorAs(t, c.Err(), &we)
	require.Equal(t, code, we.Code)
	require.Equal(t, reason, we.Message)
}

func TestNodeKickAndSessionEvents(t *testing.T) {
	events := make(chan hearth.SessionEvent, 32)
	svc := sessionService(make(chan uint32, 1))
	svc.OnSessionEvent(func(_ context.Context, ev hearth.SessionEvent) { events <- ev })
	node := hearthtest.Start(t, hearth.Config{}, svc)
	next := func(kind string) hearth.SessionEvent {
		t.Helper()
		for {
			select {
			case ev := <-events:
				if ev.Kind == kind {
					return ev
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no %q session event", kind)
			}
		}
	}

	c := node.Dial(t, "ws")
	opened := next("opened")
	require.Equal(t, hearth.SessionEvent{Kind: "opened", Session: c.SessionID(), Gate: node.ID()}, opened)
	_ = infoOf(t, c, "sess.login", `"bob"`)
	require.Equal(t, hearth.SessionEvent{Kind: "user", Session: c.SessionID(), User: "bob", Gate: node.ID()}, next("user"))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, node.Kick(ctx, node.ID(), c.SessionID(), hearth.CodeApplication+1, "table closed"))
	requireKicked(t, c, hearth.CodeApplication+1, "table closed")
	closed := next("closed")
	require.Equal(t, c.SessionID(), closed.Session)

	// A second client that closes by itself ends its session too.
	c2 := node.Dial(t, "tcp")
	require.Equal(t, c2.SessionID(), next("opened").Session)
	require.NoError(t, c2.Close())
	require.Equal(t, c2.SessionID(), next("closed").Session)

	// An ended context sends nothing.
	cancel()
	require.ErrorIs(t, node.Kick(ctx, node.ID(), "whatever", 1001, "x"), context.Canceled)
}

// Methods that take a ctx do nothing once it has ended.
func TestEndedContext(t *testing.T) {
	node := hearthtest.Start(t, hearth.Config{})
	c := node.Dial(t, "tcp")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	msg := struct{}{}
	for name, err := range map[string]error{
		"Publish":     node.Publish(ctx, "news", "x.y", msg),
		"Broadcast":   node.Broadcast(ctx, "x.y", msg),
		"PushSession": node.PushSession(ctx, node.ID(), c.SessionID(), "x.y", msg),
		"Push":        node.Push(ctx, "ann", "x.y", msg),
		"Kick":        node.Kick(ctx, node.ID(), c.SessionID(), 1001, "x"),
	} {
		require.ErrorIs(t, err, context.Canceled, name)
	}
	// A kick sent before would reach the gate before this request's answer.
	_, err := request(t, c, "sys.ping", "{}")
	require.NoError(t, err, "the session was left alone")
}
