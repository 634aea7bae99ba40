package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/client"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/pb/authpb"
	"github.com/hearth-server/hearth/wire"
)

type seen struct {
	at       time.Time
	position uint32
}

type queuedClient struct {
	c        *client.Client
	mu       sync.Mutex
	queued   []seen
	admitted chan time.Time
}

// 500 clients against a queue admitting 50 logins/s: every one is
// admitted, in the order it queued; each sees its position only go down;
// the estimates the queue gives at one moment grow with the position, and
// no one is admitted sooner than its position allows at the rate. How close estimates come to the wait on an idle machine is
// measured by `hearth bench login`, not asserted here: timing belongs in
// benchmarks.
func TestLoginQueue(t *testing.T) {
	const n, rate = 500, 50
	st := hearthtest.Store(t, "sqlite")
	a, svc := New(st, Config{MaxWriteBacklog: -1, LoginRate: rate, LoginBurst: 1, NewAccountsPerIP: -1, MaxQueuedPerIP: -1})
	var mu sync.Mutex
	var enqueued, admitted []string
	firstPush := map[string]queueEvent{}
	byTick := map[time.Time][]queueEvent{} // position updates sent together
	admittedAt := map[string]time.Time{}
	a.observeQueue = func(ev queueEvent) {
		mu.Lock()
		defer mu.Unlock()
		switch ev.Event {
		case "enqueued":
			enqueued = append(enqueued, ev.Session)
		case "admitted":
			admitted = append(admitted, ev.Session)
			admittedAt[ev.Session] = ev.At
		case "position":
			if _, ok := firstPush[ev.Session]; !ok {
				firstPush[ev.Session] = ev
			}
			byTick[ev.At] = append(byTick[ev.At], ev)
		}
	}
	node := hearthtest.Start(t, hearth.Config{RequireUser: true, Limits: hearth.Limits{ConnRatePerIP: -1, RequestTimeout: 30 * time.Second}}, svc)

	clients := make([]*queuedClient, n)
	for i := range clients {
		qc := &queuedClient{admitted: make(chan time.Time, 1)}
		qc.c = node.Dial(t, hearthtest.Transports[i%2], client.Options{OnPush: func(p client.Push) {
			switch p.Route {
			case "auth.queued":
				var q authpb.Queued
				if qc.c.Decode(p.Payload, &q) == nil {
					qc.mu.Lock()
					qc.queued = append(qc.queued, seen{time.Now(), q.Position})
					qc.mu.Unlock()
				}
			case "auth.admitted":
				qc.admitted <- time.Now()
			}
		}})
		clients[i] = qc
	}

	login := func(qc *queuedClient, i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return qc.c.Request(ctx, "auth.guest", &authpb.GuestReq{DeviceId: fmt.Sprintf("queue-dev-%d", i)}, &authpb.LoginResp{})
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	waited := make([]bool, n)
	for i, qc := range clients {
		wg.Go(func() {
			err := login(qc, i)
			var we *wire.Error
			if errors.As(err, &we) && we.Code == wire.CodeQueued {
				waited[i] = true
				select {
				case <-qc.admitted:
				case <-time.After(60 * time.Second):
					errs <- fmt.Errorf("client %d never admitted", i)
					return
				}
				err = login(qc, i) // admitted: the same request goes through
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	// Admitted in the order they queued.
	mu.Lock()
	require.Len(t, admitted, len(enqueued))
	require.Equal(t, enqueued, admitted, "admission order differs from queue order")
	queuedCount := len(enqueued)
	mu.Unlock()
	require.Greater(t, queuedCount, n-rate, "most clients must have waited")

	// Each client saw its position only go down, and was
	// not admitted sooner than its position allows at the rate (less 25%).
	checked := 0
	mu.Lock()
	defer mu.Unlock()
	for i, qc := range clients {
		if !waited[i] {
			continue // admitted at once
		}
		qc.mu.Lock()
		events := slices.Clone(qc.queued)
		qc.mu.Unlock()
		require.NotEmpty(t, events, "client %d queued without a position push", i)
		for j := 1; j < len(events); j++ {
			require.Less(t, events[j].position, events[j-1].position, "client %d: positions %v not strictly decreasing", i, events)
		}
		first := firstPush[qc.c.SessionID()]
		scheduled := time.Duration(float64(first.Position-1) / rate * float64(time.Second))
		if scheduled < time.Second {
			continue // too short for a percentage to mean anything
		}
		actual := admittedAt[qc.c.SessionID()].Sub(first.At)
		require.GreaterOrEqual(t, actual, scheduled*3/4, "client %d: admitted after %s at position %d: faster than %d/s", i, actual, first.Position, rate)
		checked++
	}
	// Updates sent at one moment: a later position never waits less.
	for at, evs := range byTick {
		slices.SortFunc(evs, func(a, b queueEvent) int { return int(a.Position) - int(b.Position) })
		for j := 1; j < len(evs); j++ {
			require.GreaterOrEqual(t, evs[j].WaitMS, evs[j-1].WaitMS, "at %s: position %d estimated %d ms, position %d %d ms", at, evs[j].Position, evs[j].WaitMS, evs[j-1].Position, evs[j-1].WaitMS)
		}
	}
	require.GreaterOrEqual(t, checked, 20, "too few clients waited a second or more to check the rate on them")
	require.Equal(t, 0, a.QueueLength())
}

// A client that disconnects while queued leaves the queue.
func TestLoginQueueLeave(t *testing.T) {
	st := hearthtest.Store(t, "sqlite")
	a, svc := New(st, Config{MaxWriteBacklog: -1, LoginRate: 0.5, LoginBurst: 1})
	node := hearthtest.Start(t, hearth.Config{RequireUser: true}, svc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first := node.Dial(t, "tcp")
	require.NoError(t, first.Request(ctx, "auth.guest", &authpb.GuestReq{DeviceId: "a"}, nil))
	var cs []*client.Client
	for i := range 3 {
		c := node.Dial(t, "tcp")
		err := c.Request(ctx, "auth.guest", &authpb.GuestReq{DeviceId: fmt.Sprint("w", i)}, nil)
		var we *wire.Error
		require.ErrorAs(t, err, &we)
		require.Equal(t, wire.CodeQueued, we.Code)
		cs = append(cs, c)
	}
	require.Equal(t, 3, a.QueueLength())
	require.NoError(t, cs[1].Close())
	hearthtest.Eventually(t, 5*time.Second, func() bool { return a.QueueLength() == 2 }, "closed session still queued: %d", a.QueueLength())
}

// The queue survives its leader: when the auth node running it stops, the
// other auth node takes the lease, restores the waiting list from KV and
// admits the rest in the same order.
func TestLoginQueueFailover(t *testing.T) {
	st := hearthtest.Store(t, "postgres") // both auth nodes share one database
	hub := hearthtest.Start(t, hearth.Config{NodeID: "hub", Roles: []string{"gate", "sys"}, NATSListen: "127.0.0.1:0", RequireUser: true,
		RegistryInterval: 100 * time.Millisecond, Limits: hearth.Limits{RequestTimeout: 20 * time.Second}})
	var mu sync.Mutex
	var enqueued, admitted []string
	observe := func(ev queueEvent) {
		mu.Lock()
		defer mu.Unlock()
		switch ev.Event {
		case "enqueued":
			enqueued = append(enqueued, ev.Session)
		case "admitted":
			admitted = append(admitted, ev.Session)
		}
	}
	var services [2]*Service
	var nodes [2]*hearthtest.Node
	for i := range nodes {
		a, svc := New(st, Config{MaxWriteBacklog: -1, LoginRate: 2, LoginBurst: 1, NewAccountsPerIP: -1})
		a.observeQueue = observe
		services[i] = a
		nodes[i] = hearthtest.Start(t, hearth.Config{NodeID: fmt.Sprint("auth-", i), NATSURL: hub.NATSURL(), TCPAddr: hearth.Off, WSAddr: hearth.Off,
			Roles: []string{"auth"}, RegistryInterval: 100 * time.Millisecond}, svc)
	}
	const n = 8
	type waiting struct {
		c        *client.Client
		admitted chan struct{}
	}
	var ws []waiting
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first := hub.Dial(t, "tcp")
	require.NoError(t, first.Request(ctx, "auth.guest", &authpb.GuestReq{DeviceId: "first"}, nil))
	for i := range n {
		w := waiting{admitted: make(chan struct{}, 1)}
		w.c = hub.Dial(t, "tcp", client.Options{OnPush: func(p client.Push) {
			if p.Route == "auth.admitted" {
				w.admitted <- struct{}{}
			}
		}})
		err := w.c.Request(ctx, "auth.guest", &authpb.GuestReq{DeviceId: fmt.Sprint("dev-", i)}, nil)
		var we *wire.Error
		require.ErrorAs(t, err, &we)
		require.Equal(t, wire.CodeQueued, we.Code)
		ws = append(ws, w)
	}
	leader := 0
	if services[1].QueueLength() > 0 {
		leader = 1
	}
	require.Positive(t, services[leader].QueueLength())
	// Let one or two through, then stop the leader.
	<-ws[0].admitted
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	require.NoError(t, nodes[leader].Shutdown(sctx))

	for i, w := range ws {
		if i > 0 {
			select {
			case <-w.admitted:
			case <-ctx.Done():
				t.Fatalf("client %d never admitted after the leader stopped", i)
			}
		}
		require.NoError(t, w.c.Request(ctx, "auth.guest", &authpb.GuestReq{DeviceId: fmt.Sprint("dev-", i)}, nil))
	}
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, enqueued, admitted, "admission order changed across the failover")
	require.Positive(t, services[1-leader].QueueLength()+len(admitted))
}

// The login queue held by one address (issue 9f): many connections from one
// IP queue at most MaxQueuedPerIP logins, the rest get 200 at once, and a
// login from another address takes the place right behind them — it is
// admitted next, not after everyone the first address sent.
func TestLoginQueuePerIP(t *testing.T) {
	const perIP, attackers = 3, 12
	st := hearthtest.Store(t, "sqlite")
	a, svc := New(st, Config{MaxWriteBacklog: -1, LoginRate: 20, LoginBurst: 1, MaxQueuedPerIP: perIP, NewAccountsPerIP: -1})
	var mu sync.Mutex
	var admitted []string
	a.observeQueue = func(ev queueEvent) {
		if ev.Event == "admitted" {
			mu.Lock()
			admitted = append(admitted, ev.Session)
			mu.Unlock()
		}
	}
	node := hearthtest.Start(t, hearth.Config{RequireUser: true, Limits: hearth.Limits{ConnRatePerIP: -1}}, svc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clients := make([]*client.Client, attackers)
	for i := range clients {
		clients[i] = node.Dial(t, "tcp")
	}
	// Once the queue leads, stop admissions while the attack asks, so every
	// attacking login must queue or be refused.
	require.NoError(t, node.Dial(t, "tcp").Request(ctx, "auth.guest", &authpb.GuestReq{DeviceId: "primer"}, nil))
	q := a.queue
	q.mu.Lock()
	q.rate, q.tokens = 0, 0
	q.mu.Unlock()

	results := make(chan error, attackers)
	for i, c := range clients {
		go func() {
			results <- c.Request(ctx, "auth.guest", &authpb.GuestReq{DeviceId: fmt.Sprint("attacker-", i)}, nil)
		}()
	}
	codes := map[wire.Code]int{}
	for range attackers {
		var we *wire.Error
		require.ErrorAs(t, <-results, &we)
		codes[we.Code]++
	}
	require.Equal(t, map[wire.Code]int{wire.CodeQueued: perIP, wire.CodeRateLimited: attackers - perIP}, codes)
	require.Equal(t, perIP, a.QueueLength())

	// Another address asks: its place is right behind the attacker's cap,
	// and it is admitted right after those few.
	resp, err := q.admit(ctx, "victim-session", node.ID(), "192.0.2.7")
	require.NoError(t, err)
	require.Equal(t, uint32(perIP+1), resp.Position)
	q.mu.Lock()
	q.rate = 20
	q.mu.Unlock()
	hearthtest.Eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(admitted, "victim-session")
	}, "the other address was never admitted")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, perIP, slices.Index(admitted, "victim-session"), "admission order %v", admitted)
}
