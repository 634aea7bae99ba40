package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/wire"
)

// TestRollingRestart restarts both gates of a 2-gate cluster, one after the
// other, under 200 clients that make requests and receive pushes. Each gate
// drains (KICK 303), its clients resume on the other gate, and nothing is
// lost, duplicated or executed twice: every client sees every push exactly
// once and in order, every request is answered once, and the service
// counted each request's key exactly once.
func TestRollingRestartTwoGates(t *testing.T) {
	eachBus(t, func(t *testing.T, b bus) {
		const (
			clients  = 200
			pushes   = 60
			interval = 100 * time.Millisecond
		)
		extra := []string{"--drain-timeout", "15s"}
		specs := []nodeSpec{{id: "svc-1", roles: "count,acct,sys"}, {id: "gate-a", roles: "gate"}, {id: "gate-b", roles: "gate"}}
		c := startCluster(t, b, specs...)
		restart := func(id string) { c.restart(nodeSpec{id: id, roles: "gate"}, extra...) }

		type player struct {
			c       *client.Client
			mu      sync.Mutex
			seqs    []uint64
			lost    error
			resumed int
		}
		players := make([]*player, clients)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for i := range players {
			p := &player{}
			gate := c.node([]string{"gate-a", "gate-b"}[i%2])
			addr := gate.TCP
			if i%4 >= 2 {
				addr = gate.WS
			}
			var err error
			p.c, err = client.Dial(ctx, addr, client.Options{
				Codec:     wire.CodecJSON,
				Reconnect: true,
				OnPush: func(push client.Push) {
					p.mu.Lock()
					p.seqs = append(p.seqs, push.Seq)
					p.mu.Unlock()
				},
				OnEvent: func(ev client.Event) {
					p.mu.Lock()
					defer p.mu.Unlock()
					switch ev.Kind {
					case client.Lost:
						p.lost = ev.Err
					case client.Resumed:
						p.resumed++
					}
				},
			})
			if err != nil {
				t.Fatalf("dial %d: %v", i, err)
			}
			t.Cleanup(func() { _ = p.c.Close() })
			players[i] = p
		}

		// Load: a push stream and a stream of requests per client.
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		answered := make([]int, clients)
		stop := make(chan struct{})
		for i, p := range players {
			if _, err := p.c.RequestRaw(ctx, "sys.push", []byte(fmt.Sprintf(`{"count":%d,"interval_ms":%d}`, pushes, interval.Milliseconds()))); err != nil {
				t.Fatalf("client %d: sys.push: %v", i, err)
			}
			wg.Go(func() {
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					case <-time.After(interval):
					}
					out, err := p.c.RequestRaw(ctx, "count.add", []byte(fmt.Sprintf(`{"key":"%d-%d"}`, i, n)))
					if err != nil {
						errs <- fmt.Errorf("client %d request %d: %w", i, n, err)
						return
					}
					var res nodeN
					if err := json.Unmarshal(out, &res); err != nil || res.N != 1 {
						errs <- fmt.Errorf("client %d request %d: answer %s: a request ran twice", i, n, out)
						return
					}
					answered[i]++
				}
			})
		}

		time.Sleep(time.Second)
		restart("gate-a")
		time.Sleep(500 * time.Millisecond)
		restart("gate-b")
		time.Sleep(time.Second)
		close(stop)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}

		// Every push, once, in order; every session resumed at least once.
		deadline := time.Now().Add(time.Duration(pushes)*interval + 20*time.Second)
		for i, p := range players {
			for {
				p.mu.Lock()
				n, lost := len(p.seqs), p.lost
				p.mu.Unlock()
				if n >= pushes || lost != nil || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			p.mu.Lock()
			if p.lost != nil {
				t.Fatalf("client %d lost its session: %v", i, p.lost)
			}
			if len(p.seqs) != pushes {
				t.Fatalf("client %d got %d pushes, want %d", i, len(p.seqs), pushes)
			}
			for j, s := range p.seqs {
				if s != uint64(j+1) {
					t.Fatalf("client %d: push %d has push_seq %d: lost or duplicated", i, j+1, s)
				}
			}
			if p.resumed == 0 {
				t.Fatalf("client %d never resumed: the restarts did not move it", i)
			}
			p.mu.Unlock()
		}

		// The service ran each request exactly once.
		probe, err := client.Dial(ctx, c.node("gate-a").TCP, client.Options{Codec: wire.CodecJSON, MaxFrame: 16 << 20})
		if err != nil {
			t.Fatal(err)
		}
		defer probe.Close()
		out, err := probe.RequestRaw(ctx, "count.dump", []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		var dump struct {
			Counts map[string]int `json:"counts"`
		}
		if err := json.Unmarshal(out, &dump); err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, n := range answered {
			total += n
		}
		for key, n := range dump.Counts {
			if n != 1 {
				t.Fatalf("key %s executed %d times", key, n)
			}
		}
		if len(dump.Counts) < total {
			t.Fatalf("%d requests answered but only %d executed", total, len(dump.Counts))
		}
		t.Logf("%d clients, %d requests, %d pushes each, two gate restarts: nothing lost, nothing twice", clients, total, pushes)
	})
}
