package hearth_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/pb/syspb"
	"github.com/hearth-server/hearth/wire"
)

// accountService is a minimal login for tests: "acct.login" binds the
// session to the user named by the raw JSON string payload.
func accountService() *hearth.Service {
	svc := hearth.NewService("acct")
	hearth.HandleRaw(svc, "login", func(ctx context.Context, s *hearth.Session, payload []byte) ([]byte, error) {
		var user string
		if err := json.Unmarshal(payload, &user); err != nil || user == "" {
			return nil, hearth.NewError(hearth.CodeInvalidPayload, "payload must be a JSON string")
		}
		if err := s.SetUser(ctx, user); err != nil {
			return nil, err
		}
		return []byte(`{}`), nil
	})
	hearth.HandleRaw(svc, "join", func(ctx context.Context, s *hearth.Session, payload []byte) ([]byte, error) {
		var ch string
		if err := json.Unmarshal(payload, &ch); err != nil {
			return nil, hearth.NewError(hearth.CodeInvalidPayload, "payload must be a JSON string")
		}
		return []byte(`{}`), s.Join(ctx, ch)
	})
	return svc
}

// roomService answers with the id of the node that ran it, and binds the
// session's "room" requests to that node on "room.sit".
func roomService(nodeID string) *hearth.Service {
	svc := hearth.NewService("room")
	hearth.HandleRaw(svc, "where", func(ctx context.Context, s *hearth.Session, _ []byte) ([]byte, error) {
		return json.Marshal(nodeID)
	})
	hearth.HandleRaw(svc, "sit", func(ctx context.Context, s *hearth.Session, _ []byte) ([]byte, error) {
		if err := s.Bind(ctx, "room", nodeID); err != nil {
			return nil, err
		}
		return json.Marshal(nodeID)
	})
	return svc
}

// startCluster starts a hub node whose embedded NATS listens, and more
// nodes joined to it. Each cfg's NodeID must be set.
func startCluster(t *testing.T, hub hearth.Config, hubSvcs []*hearth.Service, others ...func(url string) (hearth.Config, []*hearth.Service)) []*hearthtest.Node {
	t.Helper()
	hub.NATSListen = "127.0.0.1:0"
	hub.RegistryInterval = 100 * time.Millisecond
	h := hearthtest.Start(t, hub, hubSvcs...)
	nodes := []*hearthtest.Node{h}
	for _, o := range others {
		cfg, svcs := o(h.NATSURL())
		cfg.RegistryInterval = 100 * time.Millisecond
		nodes = append(nodes, hearthtest.Start(t, cfg, svcs...))
	}
	// Every node sees every other.
	for _, n := range nodes {
		hearthtest.Eventually(t, 10*time.Second, func() error {
			if got := len(n.Nodes()); got != len(nodes) {
				return fmt.Errorf("node %s sees %d nodes, want %d", n.ID(), got, len(nodes))
			}
			return nil
		})
	}
	return nodes
}

func joined(id string, svcs ...*hearth.Service) func(string) (hearth.Config, []*hearth.Service) {
	return func(url string) (hearth.Config, []*hearth.Service) {
		return hearth.Config{NodeID: id, NATSURL: url}, svcs
	}
}

func call(t *testing.T, c *client.Client, route, payload string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := c.RequestRaw(ctx, route, []byte(payload))
	return string(out), err
}

func TestClusterRegistryAndGates(t *testing.T) {
	nodes := startCluster(t, hearth.Config{NodeID: "gate-a"}, nil, joined("gate-b"))
	a, b := nodes[0], nodes[1]

	// Load gate-a so that gate-b sorts first — in both nodes' copies of
	// the registry: sys.gates is answered by either, and each copy shows
	// a refresh a moment after it is written.
	for range 3 {
		a.Dial(t, "tcp")
	}
	for _, n := range nodes {
		hearthtest.Eventually(t, 5*time.Second, func() error {
			if g := n.Gates(); len(g) != 2 || g[0].ID != "gate-b" || g[1].Sessions != 3 {
				return fmt.Errorf("%s: gates not ordered by load: %+v", n.ID(), g)
			}
			return nil
		})
	}

	c := b.Dial(t, "ws")
	var resp syspb.GatesResp
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, c.Request(ctx, "sys.gates", &syspb.GatesReq{}, &resp))
	require.Len(t, resp.Gates, 2)
	require.Equal(t, "gate-b", resp.Gates[0].Id)
	require.Equal(t, "gate-a", resp.Gates[1].Id)
	require.Contains(t, resp.Gates[1].Tcp, "tcp://127.0.0.1:")
	require.Contains(t, resp.Gates[1].Ws, "/ws")

	for _, path := range []string{"/v1/nodes", "/v1/gates"} {
		res, err := http.Get(a.AdminURL() + path)
		require.NoError(t, err)
		var body map[string][]cluster.NodeInfo
		require.NoError(t, json.NewDecoder(res.Body).Decode(&body))
		res.Body.Close()
		for _, list := range body {
			require.Len(t, list, 2, path)
		}
	}

	// A node with a live node's id refuses to start.
	n, err := hearth.New(hearth.Config{NodeID: "gate-b", NATSURL: a.NATSURL(), TCPAddr: hearth.Off, WSAddr: hearth.Off, AdminAddr: hearth.Off, RegistryInterval: 100 * time.Millisecond, Logger: hearthtest.Logger(t, 8)})
	require.NoError(t, err)
	err = n.Run(context.Background())
	require.ErrorIs(t, err, cluster.ErrNodeIDTaken)

	// A node that leaves is gone from the others' view.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	require.NoError(t, b.Shutdown(ctx2))
	hearthtest.Eventually(t, 5*time.Second, func() bool { return len(a.Nodes()) == 1 }, "gate-b still listed after shutdown")
}

func TestClusterPushAcrossGates(t *testing.T) {
	nodes := startCluster(t, hearth.Config{NodeID: "g1", Roles: []string{"gate"}}, nil,
		joined("g2"), // gate + acct service
		func(url string) (hearth.Config, []*hearth.Service) {
			return hearth.Config{NodeID: "svc", NATSURL: url, Roles: []string{"acct", "sys"}}, []*hearth.Service{accountService()}
		},
	)
	g1, g2, svc := nodes[0], nodes[1], nodes[2]
	_ = g2.Register // g2 has no acct: login goes to the svc node over the bus

	var got sync.Map
	dial := func(n *hearthtest.Node, user string) *client.Client {
		c := n.Dial(t, "tcp", client.Options{Codec: wire.CodecProtobuf, OnPush: func(p client.Push) {
			v, _ := got.LoadOrStore(user, &atomic.Int32{})
			v.(*atomic.Int32).Add(1)
		}})
		_, err := call(t, c, "acct.login", `"`+user+`"`)
		require.NoError(t, err)
		return c
	}
	dial(g1, "alice")
	dial(g1, "bob")
	dial(g1, "carol")
	dial(g2, "dave")
	dial(g2, "erin")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// One user, found through presence, on another node's gate.
	require.NoError(t, svc.Push(ctx, "dave", "acct.note", &syspb.Tick{N: 1}))
	require.ErrorIs(t, svc.Push(ctx, "nobody", "acct.note", &syspb.Tick{N: 1}), hearth.ErrOffline)
	// That push may still be on its way (the node's bus connection buffers
	// publishes): let it arrive before the gate subjects are watched, or
	// the watcher counts it with the batch below.
	hearthtest.Eventually(t, 5*time.Second, func() bool {
		v, ok := got.Load("dave")
		return ok && v.(*atomic.Int32).Load() == 1
	}, "dave never got the push to him alone")

	// Many users: one bus message per gate. Count them on the gate subjects.
	watcher, err := nats.Connect(g1.NATSURL())
	require.NoError(t, err)
	defer watcher.Close()
	pushes := make(chan *nats.Msg, 16)
	sub, err := watcher.ChanSubscribe("hearth.gate.*.c", pushes)
	require.NoError(t, err)
	defer sub.Unsubscribe()
	require.NoError(t, watcher.Flush())
	online, err := svc.PushUsers(ctx, []string{"alice", "bob", "carol", "dave", "erin", "nobody"}, "acct.note", &syspb.Tick{N: 2})
	require.NoError(t, err)
	require.Equal(t, 5, online)

	perGate := map[string]int{}
	timeout := time.After(5 * time.Second)
	for len(perGate) < 2 {
		select {
		case m := <-pushes:
			e, err := cluster.DecodeEnvelope(m.Data)
			require.NoError(t, err)
			if e.Type == cluster.TypePush {
				perGate[m.Subject] += len(e.Sessions)
			}
		case <-timeout:
			t.Fatalf("pushes seen per gate: %v", perGate)
		}
	}
	require.Equal(t, map[string]int{"hearth.gate.g1.c": 3, "hearth.gate.g2.c": 2}, perGate)
	select {
	case m := <-pushes:
		t.Fatalf("more than one push message per gate: %s", m.Subject)
	case <-time.After(200 * time.Millisecond):
	}
	want := map[string]int32{"alice": 1, "bob": 1, "carol": 1, "dave": 2, "erin": 1}
	hearthtest.Eventually(t, 5*time.Second, func() bool {
		for u, n := range want {
			v, ok := got.Load(u)
			if !ok || v.(*atomic.Int32).Load() != n {
				return false
			}
		}
		return true
	}, "pushes per user differ from %v", want)
}

func TestClusterChannelAcrossGates(t *testing.T) {
	nodes := startCluster(t, hearth.Config{NodeID: "c1"}, []*hearth.Service{accountService()},
		joined("c2", accountService()), joined("c3", accountService()))
	var (
		mu  sync.Mutex
		got [4][]uint32 // ticks each client received: 3 members, then a non-member
	)
	clients := make([]*client.Client, len(got))
	for i := range got {
		n := nodes[i%3] // the non-member shares c1's gate with member 0
		clients[i] = n.Dial(t, hearthtest.Transports[i%2], client.Options{OnPush: func(p client.Push) {
			var tick struct{ N uint32 }
			if p.Route == "acct.news" && json.Unmarshal(p.Payload, &tick) == nil {
				mu.Lock()
				got[i] = append(got[i], tick.N)
				mu.Unlock()
			}
		}})
		if i < 3 {
			_, err := call(t, clients[i], "acct.join", `"news"`)
			require.NoError(t, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Two publishes from one node arrive in order: once a member has the
	// second, a duplicate of the first would have come before it.
	require.NoError(t, nodes[1].Publish(ctx, "news", "acct.news", &syspb.Tick{N: 1}))
	require.NoError(t, nodes[1].Publish(ctx, "news", "acct.news", &syspb.Tick{N: 2}))
	hearthtest.Eventually(t, 5*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		for i := range 3 {
			if len(got[i]) < 2 {
				return fmt.Errorf("member %d got %v so far", i, got[i])
			}
		}
		return nil
	})
	// c1's gate has fanned both out; an answer to the non-member now
	// follows anything that fan-out queued for it.
	_, err := call(t, clients[3], "sys.ping", `{}`)
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	for i := range 3 {
		require.Equal(t, []uint32{1, 2}, got[i], "member %d", i)
	}
	require.Empty(t, got[3], "non-member got the publish")
}

func TestClusterStickyBinding(t *testing.T) {
	nodes := startCluster(t, hearth.Config{NodeID: "gw", Roles: []string{"gate"}}, nil,
		joined("room-1", roomService("room-1")), joined("room-2", roomService("room-2")))
	gw, r1, r2 := nodes[0], nodes[1], nodes[2]
	c := gw.Dial(t, "tcp")

	host, err := call(t, c, "room.sit", "{}")
	require.NoError(t, err)
	for range 20 {
		where, err := call(t, c, "room.where", "{}")
		require.NoError(t, err)
		require.Equal(t, host, where, "a bound session's requests must go to its node")
	}
	// The bound node goes away: the next request fails with 301 and the
	// binding is dropped; the one after goes to the surviving node.
	victim, survivor := r1, `"room-2"`
	if host == `"room-2"` {
		victim, survivor = r2, `"room-1"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, victim.Shutdown(ctx))
	_, err = call(t, c, "room.where", "{}")
	var we *wire.Error
	require.ErrorAs(t, err, &we)
	require.Equal(t, wire.CodeUnavailable, we.Code)
	where, err := call(t, c, "room.where", "{}")
	require.NoError(t, err)
	require.Equal(t, survivor, where)
}

func TestClusterDuplicateLogin(t *testing.T) {
	nodes := startCluster(t, hearth.Config{NodeID: "d1"}, []*hearth.Service{accountService()}, joined("d2", accountService()))
	first := nodes[0].Dial(t, "tcp")
	_, err := call(t, first, "acct.login", `"zoe"`)
	require.NoError(t, err)
	second := nodes[1].Dial(t, "ws")
	_, err = call(t, second, "acct.login", `"zoe"`)
	require.NoError(t, err)
	select {
	case <-first.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("first session not kicked")
	}
	var we *wire.Error
	require.ErrorAs(t, first.Err(), &we)
	require.Equal(t, wire.CodeLoggedInElsewhere, we.Code)
	// The second session is the user's now.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pushed := make(chan struct{}, 1)
	second.OnPush("acct.note", func(client.Push) { pushed <- struct{}{} })
	require.NoError(t, nodes[0].Push(ctx, "zoe", "acct.note", &syspb.Tick{N: 1}))
	select {
	case <-pushed:
	case <-time.After(5 * time.Second):
		t.Fatal("push to the user did not reach the new session")
	}
}
