package e2e

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hearth-server/hearth/wire"
)

// outcome is what one request got.
type outcome struct {
	key   string
	start time.Time
	node  string // the node that answered OK
	n     int
	err   error
}

// TestKillServiceUnderLoad: 20 clients on 2 gates keep slow requests in
// flight; one service node is killed. Every request gets exactly one answer
// — OK, or 302/301 for those the dead node held — none hangs; after
// recovery every request succeeds on the survivor; and no request was
// executed twice (each key counted once, on one node).
func TestKillServiceUnderLoad(t *testing.T) {
	eachBus(t, func(t *testing.T, b bus) {
		c := startCluster(t, b, standard...)
		const clients = 20
		players := make([]*player, clients)
		for i := range players {
			gate, transport := c.node("gate-a"), "tcp"
			if i%2 == 1 {
				gate, transport = c.node("gate-b"), "ws"
			}
			players[i] = dial(t, gate, transport, fmt.Sprintf("load%d", i))
		}

		var (
			mu       sync.Mutex
			outcomes []outcome
			stop     = make(chan struct{})
			wg       sync.WaitGroup
		)
		for i, p := range players {
			wg.Go(func() {
				for seq := 0; ; seq++ {
					select {
					case <-stop:
						return
					default:
					}
					o := outcome{key: fmt.Sprintf("c%d-%d", i, seq), start: time.Now()}
					var r nodeN
					o.err = p.call("count.slow", map[string]any{"ms": 50, "key": o.key}, &r)
					o.node, o.n = r.Node, r.N
					mu.Lock()
					outcomes = append(outcomes, o)
					mu.Unlock()
				}
			})
		}
		okFrom := func(node string) int {
			mu.Lock()
			defer mu.Unlock()
			n := 0
			for _, o := range outcomes {
				if o.err == nil && o.node == node {
					n++
				}
			}
			return n
		}
		// Load on both nodes before the kill.
		eventually(t, 10*time.Second, func() bool { return okFrom("svc-1") >= 40 && okFrom("svc-2") >= 40 },
			func() string {
				return fmt.Sprintf("no load on both nodes: svc-1 %d, svc-2 %d", okFrom("svc-1"), okFrom("svc-2"))
			})

		victim, survivor := "svc-2", "svc-1"
		killedAt := time.Now()
		c.kill(victim)
		// Requests the victim held end with 302 after the request timeout;
		// leave the load running past that, then stop it.
		time.Sleep(requestTimeout + 1500*time.Millisecond)
		close(stop)
		wg.Wait()

		// Recovered: everything now succeeds, on the survivor.
		for _, p := range players {
			for k := range 3 {
				var r nodeN
				key := fmt.Sprintf("%s-after-%d", p.name, k)
				p.must(t, "count.add", map[string]string{"key": key}, &r)
				if r.Node != survivor || r.N != 1 {
					t.Fatalf("after recovery: %s answered by %s with n=%d, want %s with n=1", key, r.Node, r.N, survivor)
				}
			}
		}

		recovered := killedAt.Add(requestTimeout + 500*time.Millisecond)
		var failed, lateOK, early, timeouts int
		okKeys := map[string]string{} // key → node
		for _, o := range outcomes {
			switch {
			case o.err == nil:
				if o.n != 1 {
					t.Errorf("%s answered by %s with n=%d: executed more than once", o.key, o.node, o.n)
				}
				okKeys[o.key] = o.node
				if o.start.After(killedAt) {
					lateOK++
				}
			case codeOf(o.err) == wire.CodeTimeout || codeOf(o.err) == wire.CodeUnavailable:
				failed++
				if codeOf(o.err) == wire.CodeTimeout {
					timeouts++
				}
				if o.start.After(recovered) {
					t.Errorf("%s, sent %s after the kill (past recovery), failed: %v", o.key, o.start.Sub(killedAt).Round(time.Millisecond), o.err)
				}
			default:
				t.Errorf("%s: %v — want OK, 302 or 301 (a request must never end otherwise)", o.key, o.err)
			}
			if o.err != nil && o.start.Before(killedAt.Add(-time.Second)) {
				early++
			}
		}
		if early > 0 {
			t.Errorf("%d requests sent well before the kill failed", early)
		}
		if lateOK == 0 {
			t.Errorf("no request sent after the kill succeeded")
		}
		t.Logf("%d requests: %d failed (%d timed out) around the kill of %s, %d answered after it", len(outcomes), failed, timeouts, victim, lateOK)

		// No request ran twice: the survivor counted each of its keys once,
		// and none that the victim had already answered.
		var dump struct {
			Node   string         `json:"node"`
			Counts map[string]int `json:"counts"`
		}
		p := players[0]
		p.must(t, "count.bind", map[string]string{"node": survivor}, nil)
		p.must(t, "count.dump", map[string]any{}, &dump)
		if dump.Node != survivor {
			t.Fatalf("count.dump bound to %s answered by %s", survivor, dump.Node)
		}
		for key, n := range dump.Counts {
			if n != 1 {
				t.Errorf("%s counted %d times on %s", key, n, survivor)
			}
			if node, ok := okKeys[key]; ok && node != survivor {
				t.Errorf("%s was answered by %s and executed again on %s", key, node, survivor)
			}
		}
		for key, node := range okKeys {
			if _, ok := dump.Counts[key]; node == survivor && !ok {
				t.Errorf("%s answered by %s but not in its counts", key, survivor)
			}
		}
		for _, p := range players {
			select {
			case <-p.Done():
				t.Errorf("client %s lost its connection: %v", p.name, p.Err())
			default:
			}
		}
	})
}

// TestKillGate: when a gate is killed, its users' presence is gone within
// the registry TTL (a push to them is refused as offline), its entry leaves
// the registry (`hearth nodes`), and the other gate's users are unaffected.
func TestKillGate(t *testing.T) {
	eachBus(t, func(t *testing.T, b bus) {
		c := startCluster(t, b, standard...)
		// gate-a holds the embedded NATS on that bus: kill gate-b.
		ann := dial(t, c.node("gate-a"), "tcp", "ann")
		ben := dial(t, c.node("gate-b"), "tcp", "ben")
		cat := dial(t, c.node("gate-b"), "ws", "cat")
		for _, p := range []*player{ann, ben, cat} {
			p.login(t)
		}
		ann.must(t, "acct.push", map[string]any{"user": "ben", "n": 1}, nil)
		eventually(t, 5*time.Second, func() bool { return len(ben.pushes.ns("acct.note")) == 1 },
			func() string { return "ben did not get the push before the kill" })

		c.kill("gate-b")
		killedAt := time.Now()
		select {
		case <-cat.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("a client of the killed gate is still connected")
		}
		within := 3*registryInterval + 2*time.Second
		for _, user := range []string{"ben", "cat"} {
			var last error
			eventually(t, within, func() bool {
				last = ann.call("acct.push", map[string]any{"user": user, "n": 2}, nil)
				return codeOf(last) == 1001
			}, func() string { return fmt.Sprintf("push to %s, on the killed gate: %v, want 1001 offline", user, last) })
			if !strings.Contains(last.Error(), "offline") {
				t.Errorf("push to %s: %q does not say the user is offline", user, last)
			}
		}
		t.Logf("users of the killed gate offline %s after the kill", time.Since(killedAt).Round(time.Millisecond))
		// Exactly the live nodes. Polled: with a 600 ms TTL, a live node's
		// refresh delayed by a loaded CI machine can drop it for an instant
		// (CI saw gate-a missing once); it must be listed again.
		var listed map[string]string
		eventually(t, within, func() bool {
			listed = hearthNodes(t, c.NATS, c.Prefix)
			_, a := listed["gate-a"]
			_, b := listed["gate-b"]
			_, s1 := listed["svc-1"]
			_, s2 := listed["svc-2"]
			return len(listed) == 3 && a && !b && s1 && s2
		}, func() string {
			return fmt.Sprintf("hearth nodes lists %v, want gate-a, svc-1, svc-2 (gate-b killed)", listed)
		})

		// The dead gate's entries are purged from the presence bucket, not
		// only hidden, once its registry entry has stayed gone for a TTL and
		// the time a live node needs to reconnect (cluster.Registry.Gone).
		kv := presenceBucket(t, c.NATS, c.Prefix)
		purgeWithin := 2*3*registryInterval + 2*time.Second + 3*time.Second
		eventually(t, purgeWithin, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			for _, user := range []string{"ben", "cat"} {
				if _, err := kv.Get(ctx, "u."+user); !errors.Is(err, jetstream.ErrKeyNotFound) {
					return false
				}
			}
			return true
		}, func() string { return "the killed gate's users are still in the presence bucket" })

		// The surviving gate's user is still reachable.
		ann2 := dial(t, c.node("gate-a"), "ws", "ann2")
		ann2.must(t, "acct.push", map[string]any{"user": "ann", "n": 3}, nil)
		eventually(t, 5*time.Second, func() bool { return len(ann.pushes.ns("acct.note")) == 1 },
			func() string { return fmt.Sprintf("ann got %v, want the push", ann.pushes.ns("acct.note")) })
		c.waitNodes(within, "gate-a", "svc-1", "svc-2")
	})
}

// presenceBucket opens a cluster's presence bucket.
func presenceBucket(t *testing.T, url, prefix string) jetstream.KeyValue {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, prefix+"_presence")
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// startNATS runs a nats-server with JetStream in the test process.
func startNATS(t *testing.T, port int, dir string) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatalf("nats-server on :%d not ready", port)
	}
	return srv
}

// TestNATSRestart: the NATS server (one this test runs, never the shared
// one) goes away and comes back on the same port; without restarting any
// hearth process, requests succeed again within 10s, the nodes are back in
// the registry, and logins and pushes work.
func TestNATSRestart(t *testing.T) {
	port := freePort(t)
	dir := filepath.Join(t.TempDir(), "jetstream")
	srv := startNATS(t, port, dir)
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)

	c := startClusterOn(t, url, "e2e", nodeSpec{id: "gate-1", roles: "gate"}, nodeSpec{id: "svc-1", roles: "count,acct,sys"})

	gate := c.node("gate-1")
	alice := dial(t, gate, "tcp", "alice")
	bob := dial(t, gate, "ws", "bob")
	alice.login(t)
	bob.login(t)
	var r nodeN
	alice.must(t, "count.add", map[string]string{"key": "before"}, &r)
	bob.must(t, "acct.push", map[string]any{"user": "alice", "n": 1}, nil)
	eventually(t, 5*time.Second, func() bool { return len(alice.pushes.ns("acct.note")) == 1 },
		func() string { return "push before the restart did not arrive" })

	srv.Shutdown()
	srv.WaitForShutdown()
	// Away longer than the registry TTL: every registry entry expires.
	time.Sleep(time.Second)
	srv = startNATS(t, port, dir)
	restarted := time.Now()

	// Requests succeed again within 10s, over the same client connections.
	var last error
	eventually(t, 10*time.Second, func() bool {
		last = alice.call("count.add", map[string]string{"key": "after"}, nil)
		return last == nil
	}, func() string { return fmt.Sprintf("count.add after the NATS restart: %v", last) })
	t.Logf("requests succeed %s after the NATS restart", time.Since(restarted).Round(time.Millisecond))
	for i := range 5 {
		alice.must(t, "count.add", map[string]string{"key": fmt.Sprintf("after-%d", i)}, nil)
	}

	// The registry is rebuilt by the nodes.
	c.waitNodes(10*time.Second, c.ids()...)
	listed := hearthNodes(t, url, c.Prefix)
	if len(listed) != 2 || listed["gate-1"] != "gate" || listed["svc-1"] != "acct,count,sys" {
		t.Errorf("after the restart, hearth nodes lists %v", listed)
	}

	// Logins and pushes work: a new session, and the sessions that stayed
	// connected through the restart.
	carol := dial(t, gate, "tcp", "carol")
	carol.login(t)
	eventually(t, 10*time.Second, func() bool {
		last = alice.call("acct.push", map[string]any{"user": "carol", "n": 2}, nil)
		return last == nil
	}, func() string { return fmt.Sprintf("push to a user who logged in after the restart: %v", last) })
	eventually(t, 5*time.Second, func() bool { return len(carol.pushes.ns("acct.note")) == 1 },
		func() string { return "carol did not get the push" })
	eventually(t, 10*time.Second, func() bool {
		last = carol.call("acct.push", map[string]any{"user": "alice", "n": 3}, nil)
		return last == nil
	}, func() string {
		return fmt.Sprintf("push to alice, logged in before the restart and still connected: %v", last)
	})
	eventually(t, 5*time.Second, func() bool { return len(alice.pushes.ns("acct.note")) == 2 },
		func() string { return fmt.Sprintf("alice got %v", alice.pushes.ns("acct.note")) })
}
