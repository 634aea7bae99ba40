// Command testnode is the game server the end-to-end tests run: hearth's
// own command line (a copy of cmd/hearth/main.go) with two services of its
// own, as a game developer would build one.
//
//	count.add   {"key":"k"}            counts k in this process: {"node":"<id>","n":<count>}
//	count.slow  {"ms":50,"key":"k"}    sleeps, then counts k (when given) the same way
//	count.bind  {"node":"<id>"}        routes the session's count requests to that node
//	count.dump  {}                     {"node":"<id>","counts":{"k":n,…}}
//	acct.login  "user"                 Session.SetUser
//	acct.join   "channel"              Session.Join
//	acct.sit    {}                     binds the session's count requests to this node
//	acct.push   {"user":"u","n":1}     Node.Push(user, "acct.note", Tick{n}); 1001 when offline
//	acct.publish {"channel":"c","n":1} Node.Publish(channel, "acct.news", Tick{n})
//	table.where {}                     a 4-seat room type (table.go)
//
// Payloads are JSON: the tests use JSON sessions.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/cli"
	"github.com/hearth-server/hearth/pb/syspb"
)

// CodeOffline is the application's answer to a push to an offline user.
const CodeOffline hearth.Code = 1001

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.Options{Services: func(*hearth.Config) []*hearth.Service {
		node := &nodeRef{}
		return []*hearth.Service{countService(node), acctService(node), tableService()}
	}})
	stop()
	os.Exit(code)
}

// nodeRef is the running node, for handlers that reach beyond their own
// session (Push, Publish) and answer with the node's id. OnStart sets it
// before the service takes requests.
type nodeRef struct{ p atomic.Pointer[hearth.Node] }

func (r *nodeRef) get() *hearth.Node { return r.p.Load() }

func (r *nodeRef) set(svc *hearth.Service) {
	svc.OnStart(func(_ context.Context, n *hearth.Node) error {
		r.p.Store(n)
		return nil
	})
}

type nodeN struct {
	Node string `json:"node"`
	N    int    `json:"n,omitempty"`
}

func decode(payload []byte, v any) error {
	if err := json.Unmarshal(payload, v); err != nil {
		return hearth.NewError(hearth.CodeInvalidPayload, "invalid payload: "+err.Error())
	}
	return nil
}

func countService(node *nodeRef) *hearth.Service {
	var (
		mu     sync.Mutex
		counts = map[string]int{}
	)
	add := func(key string) int {
		mu.Lock()
		defer mu.Unlock()
		counts[key]++
		return counts[key]
	}
	svc := hearth.NewService("count")
	node.set(svc)
	hearth.HandleRaw(svc, "add", func(ctx context.Context, s *hearth.Session, payload []byte) ([]byte, error) {
		var req struct{ Key string }
		if err := decode(payload, &req); err != nil {
			return nil, err
		}
		return json.Marshal(nodeN{Node: node.get().ID(), N: add(req.Key)})
	})
	hearth.HandleRaw(svc, "slow", func(ctx context.Context, s *hearth.Session, payload []byte) ([]byte, error) {
		var req struct {
			MS  int
			Key string
		}
		if err := decode(payload, &req); err != nil {
			return nil, err
		}
		select {
		case <-time.After(time.Duration(req.MS) * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		out := nodeN{Node: node.get().ID()}
		if req.Key != "" {
			out.N = add(req.Key)
		}
		return json.Marshal(out)
	})
	hearth.HandleRaw(svc, "bind", func(ctx context.Context, s *hearth.Session, payload []byte) ([]byte, error) {
		var req struct{ Node string }
		if err := decode(payload, &req); err != nil {
			return nil, err
		}
		if err := s.Bind(ctx, "count", req.Node); err != nil {
			return nil, err
		}
		return json.Marshal(nodeN{Node: node.get().ID()})
	})
	hearth.HandleRaw(svc, "dump", func(ctx context.Context, s *hearth.Session, _ []byte) ([]byte, error) {
		mu.Lock()
		c := maps.Clone(counts)
		mu.Unlock()
		return json.Marshal(struct {
			Node   string         `json:"node"`
			Counts map[string]int `json:"counts"`
		}{node.get().ID(), c})
	})
	return svc
}

func acctService(node *nodeRef) *hearth.Service {
	svc := hearth.NewService("acct")
	node.set(svc)
	hearth.HandleRaw(svc, "login", func(ctx context.Context, s *hearth.Session, payload []byte) ([]byte, error) {
		var user string
		if err := decode(payload, &user); err != nil {
			return nil, err
		}
		if user == "" {
			return nil, hearth.NewError(hearth.CodeInvalidPayload, "empty user id")
		}
		if err := s.SetUser(ctx, user); err != nil {
			return nil, err
		}
		return json.Marshal(nodeN{Node: node.get().ID()})
	})
	hearth.HandleRaw(svc, "join", func(ctx context.Context, s *hearth.Session, payload []byte) ([]byte, error) {
		var ch string
		if err := decode(payload, &ch); err != nil {
			return nil, err
		}
		if err := s.Join(ctx, ch); err != nil {
			return nil, hearth.NewError(hearth.CodeInvalidPayload, err.Error())
		}
		return json.Marshal(nodeN{Node: node.get().ID()})
	})
	hearth.HandleRaw(svc, "sit", func(ctx context.Context, s *hearth.Session, _ []byte) ([]byte, error) {
		id := node.get().ID()
		if err := s.Bind(ctx, "count", id); err != nil {
			return nil, err
		}
		return json.Marshal(nodeN{Node: id})
	})
	hearth.HandleRaw(svc, "push", func(ctx context.Context, s *hearth.Session, payload []byte) ([]byte, error) {
		var req struct {
			User string
			N    uint32
		}
		if err := decode(payload, &req); err != nil {
			return nil, err
		}
		err := node.get().Push(ctx, req.User, "acct.note", &syspb.Tick{N: req.N})
		if errors.Is(err, hearth.ErrOffline) {
			return nil, hearth.Errorf(CodeOffline, "user %s is offline", req.User)
		}
		if err != nil {
			return nil, err
		}
		return json.Marshal(nodeN{Node: node.get().ID()})
	})
	hearth.HandleRaw(svc, "publish", func(ctx context.Context, s *hearth.Session, payload []byte) ([]byte, error) {
		var req struct {
			Channel string
			N       uint32
		}
		if err := decode(payload, &req); err != nil {
			return nil, err
		}
		if err := node.get().Publish(ctx, req.Channel, "acct.news", &syspb.Tick{N: req.N}); err != nil {
			return nil, err
		}
		return json.Marshal(nodeN{Node: node.get().ID()})
	})
	return svc
}
