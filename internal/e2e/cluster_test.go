package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/wire"
)

// TestDiscovery: `hearth nodes` lists the 4 nodes with their roles; clients
// on both gates, over TCP and WebSocket, reach services on other nodes; every
// admin port lists the 2 gates least loaded first, as does sys.gates.
func TestDiscovery(t *testing.T) {
	eachBus(t, func(t *testing.T, b bus) {
		c := startCluster(t, b, standard...)

		// A node whose refresh the machine delays past the registry's
		// short test TTL drops out of the listing until its next one.
		want := map[string]string{"gate-a": "gate", "gate-b": "gate", "svc-1": "acct,count,sys", "svc-2": "acct,count,sys"}
		var listed map[string]string
		eventually(t, 5*time.Second, func() bool {
			listed = hearthNodes(t, c.NATS, c.Prefix)
			return fmt.Sprint(listed) == fmt.Sprint(want)
		}, func() string { return fmt.Sprintf("hearth nodes lists %v, want %v", listed, want) })

		// 3 sessions on gate-a, 1 on gate-b: gate-b is the least loaded.
		var players []*player
		for i, transport := range []string{"tcp", "ws", "tcp"} {
			players = append(players, dial(t, c.node("gate-a"), transport, fmt.Sprintf("a%d", i)))
		}
		players = append(players, dial(t, c.node("gate-b"), "ws", "b0"))
		served := map[string]bool{}
		for _, p := range players {
			var echo map[string]string
			p.must(t, "sys.ping", map[string]string{"hello": p.name}, &echo)
			if echo["hello"] != p.name {
				t.Fatalf("sys.ping echoed %v", echo)
			}
			for range 4 {
				var r nodeN
				p.must(t, "count.add", map[string]string{"key": "k-" + p.name}, &r)
				served[r.Node] = true
			}
		}
		if !served["svc-1"] || !served["svc-2"] || len(served) != 2 {
			t.Errorf("count.add served by %v, want both service nodes (and only them)", served)
		}

		for _, p := range c.Live() {
			var last []cluster.NodeInfo
			eventually(t, 5*time.Second, func() bool {
				gates, err := adminNodes(p.Admin, "/v1/gates")
				if err != nil {
					t.Fatalf("%s: %v", p.ID, err)
				}
				last = gates
				return len(gates) == 2 && gates[0].ID == "gate-b" && gates[0].Sessions == 1 &&
					gates[1].ID == "gate-a" && gates[1].Sessions == 3
			}, func() string {
				return fmt.Sprintf("GET %s/v1/gates = %+v, want gate-b (1 session) then gate-a (3)", p.Admin, last)
			})
			for i, g := range last {
				gp := c.node(g.ID)
				if g.TCP != gp.TCP || g.WS != gp.WS {
					t.Errorf("/v1/gates[%d] endpoints %s %s, the gate listens on %s %s", i, g.TCP, g.WS, gp.TCP, gp.WS)
				}
			}
		}
		var gates struct {
			Gates []struct {
				ID       string `json:"id"`
				TCP      string `json:"tcp"`
				Sessions int    `json:"sessions"`
			} `json:"gates"`
		}
		players[3].must(t, "sys.gates", map[string]any{}, &gates)
		if len(gates.Gates) != 2 || gates.Gates[0].ID != "gate-b" || gates.Gates[1].ID != "gate-a" ||
			gates.Gates[0].TCP != c.node("gate-b").TCP {
			t.Errorf("sys.gates = %+v, want gate-b then gate-a", gates.Gates)
		}
	})
}

// TestPushAcrossGates: a service node pushes to users wherever they are
// connected; a push to a user who is not online is refused clearly.
func TestPushAcrossGates(t *testing.T) {
	eachBus(t, func(t *testing.T, b bus) {
		c := startCluster(t, b, standard...)
		alice := dial(t, c.node("gate-a"), "tcp", "alice")
		bob := dial(t, c.node("gate-b"), "ws", "bob")
		alice.login(t)
		bob.login(t)

		// Each pushes to the other, several times so that both service
		// nodes send pushes.
		handledBy := map[string]bool{}
		const rounds = 8
		for i := 1; i <= rounds; i++ {
			var r nodeN
			alice.must(t, "acct.push", map[string]any{"user": "bob", "n": i}, &r)
			handledBy[r.Node] = true
			bob.must(t, "acct.push", map[string]any{"user": "alice", "n": 100 + i}, &r)
			handledBy[r.Node] = true
		}
		var wantBob, wantAlice []int
		for i := 1; i <= rounds; i++ {
			wantBob = append(wantBob, i)
			wantAlice = append(wantAlice, 100+i)
		}
		eventually(t, 5*time.Second, func() bool {
			return len(bob.pushes.ns("acct.note")) >= rounds && len(alice.pushes.ns("acct.note")) >= rounds
		}, func() string {
			return fmt.Sprintf("pushes: bob got %v, alice got %v", bob.pushes.ns("acct.note"), alice.pushes.ns("acct.note"))
		})
		time.Sleep(200 * time.Millisecond) // a duplicate would have arrived by now
		// Pushes from one node arrive in order; from two nodes they may
		// interleave. Compare as sets, each exactly once.
		for _, x := range []struct {
			p    *player
			want []int
		}{{bob, wantBob}, {alice, wantAlice}} {
			got := slices.Sorted(slices.Values(x.p.pushes.ns("acct.note")))
			if !slices.Equal(got, x.want) {
				t.Errorf("%s got pushes %v, want each of %v once", x.p.name, got, x.want)
			}
		}
		if len(handledBy) != 2 {
			t.Logf("all pushes were sent by %v", handledBy) // queue groups pick; not an error
		}

		err := alice.call("acct.push", map[string]any{"user": "nobody", "n": 1}, nil)
		if codeOf(err) != 1001 {
			t.Fatalf("push to an offline user: %v, want status 1001 (offline)", err)
		}

		// A user who logs out (closes) is offline for pushes.
		bob.Close()
		eventually(t, 5*time.Second, func() bool {
			return codeOf(alice.call("acct.push", map[string]any{"user": "bob", "n": 99}, nil)) == 1001
		}, func() string { return "bob's presence was not cleared when his session closed" })
	})
}

// TestChannelAcrossGates: members of a channel on both gates each receive
// every publish exactly once; sessions that did not join receive none.
func TestChannelAcrossGates(t *testing.T) {
	eachBus(t, func(t *testing.T, b bus) {
		c := startCluster(t, b, standard...)
		members := []*player{
			dial(t, c.node("gate-a"), "tcp", "m1"),
			dial(t, c.node("gate-a"), "ws", "m2"),
			dial(t, c.node("gate-b"), "tcp", "m3"),
		}
		outsiders := []*player{
			dial(t, c.node("gate-a"), "tcp", "o1"),
			dial(t, c.node("gate-b"), "ws", "o2"),
		}
		for _, m := range members {
			m.must(t, "acct.join", "lobby:news", nil)
		}
		// An outsider joins another channel: it must not get these either.
		outsiders[1].must(t, "acct.join", "lobby:other", nil)

		const publishes = 5
		var want []int
		for i := 1; i <= publishes; i++ {
			publisher := outsiders[i%2] // publishing does not need membership
			publisher.must(t, "acct.publish", map[string]any{"channel": "lobby:news", "n": i}, nil)
			want = append(want, i)
		}
		eventually(t, 5*time.Second, func() bool {
			for _, m := range members {
				if len(m.pushes.ns("acct.news")) < publishes {
					return false
				}
			}
			return true
		}, func() string {
			s := ""
			for _, m := range members {
				s += fmt.Sprintf(" %s:%v", m.name, m.pushes.ns("acct.news"))
			}
			return "members did not get every publish:" + s
		})
		time.Sleep(200 * time.Millisecond) // a duplicate would have arrived by now
		for _, m := range members {
			got := slices.Sorted(slices.Values(m.pushes.ns("acct.news")))
			if !slices.Equal(got, want) {
				t.Errorf("member %s got %v, want each of %v exactly once", m.name, got, want)
			}
		}
		for _, o := range outsiders {
			if got := o.pushes.ns("acct.news"); len(got) != 0 {
				t.Errorf("non-member %s got channel pushes %v", o.name, got)
			}
		}
	})
}

// TestStickyBinding: a session bound to a service node always reaches that
// node; once that node is killed, the next request fails with 301 (the
// binding is dropped, never silently moved) and the later ones are served
// by the surviving node.
func TestStickyBinding(t *testing.T) {
	eachBus(t, func(t *testing.T, b bus) {
		c := startCluster(t, b, standard...)
		players := []*player{
			dial(t, c.node("gate-a"), "tcp", "p1"),
			dial(t, c.node("gate-b"), "ws", "p2"),
		}
		// Sit until both service nodes host one player each (acct.sit goes
		// to any instance), so both gates hold a binding to the victim.
		hosts := map[string]*player{}
		for tries := 0; len(hosts) < 2; tries++ {
			if tries == 40 {
				t.Fatalf("acct.sit never spread over both service nodes: %v", hosts)
			}
			p := players[len(hosts)]
			var r nodeN
			p.must(t, "acct.sit", map[string]any{}, &r)
			if _, taken := hosts[r.Node]; !taken {
				hosts[r.Node] = p
			}
		}
		hostOf := map[*player]string{}
		for node, p := range hosts {
			hostOf[p] = node
		}
		for _, p := range players {
			for i := range 10 {
				var r nodeN
				p.must(t, "count.add", map[string]string{"key": p.name}, &r)
				if r.Node != hostOf[p] || r.N != i+1 {
					t.Fatalf("%s bound to %s: count.add #%d answered by %s with n=%d", p.name, hostOf[p], i+1, r.Node, r.N)
				}
			}
		}

		victim, survivor := "svc-1", "svc-2"
		bound := hosts[victim]
		other := hosts[survivor]
		c.kill(victim)
		// Gone: out of the registry (3 refresh intervals). A request sent in
		// the moment before NATS notices the dead connection is lost with
		// the node and ends 302, like any request in flight to it.
		c.waitNodes(3*registryInterval+2*time.Second, "gate-a", "gate-b", survivor)

		err := bound.call("count.add", map[string]string{"key": bound.name}, nil)
		if codeOf(err) != wire.CodeUnavailable {
			t.Fatalf("first request bound to the killed %s: %v, want 301 unavailable", victim, err)
		}
		for range 5 {
			var r nodeN
			bound.must(t, "count.add", map[string]string{"key": bound.name}, &r)
			if r.Node != survivor {
				t.Fatalf("after its binding was dropped, %s was served by %s, want %s", bound.name, r.Node, survivor)
			}
		}
		// The other player's binding is untouched.
		var r nodeN
		other.must(t, "count.add", map[string]string{"key": other.name}, &r)
		if r.Node != survivor || r.N != 11 {
			t.Fatalf("%s bound to %s: answered by %s with n=%d, want n=11", other.name, survivor, r.Node, r.N)
		}
	})
}
