package cluster

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
)

func connect(t *testing.T, cfg Config) *Bus {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	b, err := Connect(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(b.Close)
	return b
}

// A request forwarded to a service with no subscriber comes back to the
// reply subject as a no-responders status, which the gate turns into 301.
func TestForwardNoResponders(t *testing.T) {
	b := connect(t, Config{Name: "n1"})
	replies := make(chan *nats.Msg, 1)
	sub, err := b.Conn().ChanSubscribe(b.Subjects().GateAll("n1"), replies)
	require.NoError(t, err)
	defer sub.Unsubscribe()
	reply := string(AppendReplyID([]byte(b.Subjects().GateReplyPrefix("n1")), 7))
	// With a session, as a gate forwards: the 503 comes only to the
	// publishing connection's own subscription to the reply subject.
	require.Len(t, b.pubs, defaultPublishers)
	require.NoError(t, b.Forward("ghost", reply, &Envelope{Type: TypeRequest, Route: "ghost.x", Session: "s1"}))
	select {
	case m := <-replies:
		require.Equal(t, "503", m.Header.Get("Status"))
		id, ok := ParseReplyID(m.Subject, b.Subjects().GateReplyPrefix("n1"))
		require.True(t, ok)
		require.EqualValues(t, 7, id)
	case <-time.After(5 * time.Second):
		t.Fatal("no no-responders reply")
	}
}

// Forward honours a session's binding: the request goes to the bound node's
// subject, not the service's queue.
func TestForwardBinding(t *testing.T) {
	b := connect(t, Config{Name: "n1"})
	queue := make(chan *nats.Msg, 1)
	bound := make(chan *nats.Msg, 1)
	s1, err := b.Conn().ChanQueueSubscribe(b.Subjects().Service("room"), "room", queue)
	require.NoError(t, err)
	defer s1.Unsubscribe()
	s2, err := b.Conn().ChanSubscribe(b.Subjects().NodeService("node-7", "room"), bound)
	require.NoError(t, err)
	defer s2.Unsubscribe()

	require.NoError(t, b.Forward("room", "", &Envelope{Type: TypeRequest, Route: "room.join"}))
	require.NoError(t, b.Forward("room", "", &Envelope{Type: TypeRequest, Route: "room.bet", Bindings: []Binding{{"room", "node-7"}}}))
	for _, want := range []struct {
		ch    chan *nats.Msg
		route string
	}{{queue, "room.join"}, {bound, "room.bet"}} {
		select {
		case m := <-want.ch:
			e, err := DecodeEnvelope(m.Data)
			require.NoError(t, err)
			require.Equal(t, want.route, e.Route)
		case <-time.After(5 * time.Second):
			t.Fatalf("%s not delivered", want.route)
		}
	}
}

// An embedded server that listens lets a second process (here: a second
// connection over TCP) join the same bus.
func TestEmbeddedListen(t *testing.T) {
	b := connect(t, Config{Name: "n1", Listen: "127.0.0.1:0"})
	require.True(t, b.Embedded())
	url := b.ClientURL()
	require.NotEmpty(t, url)
	other := connect(t, Config{Name: "n2", URL: url})
	got := make(chan *nats.Msg, 1)
	sub, err := b.Conn().ChanSubscribe(b.Subjects().Channel("lobby"), got)
	require.NoError(t, err)
	defer sub.Unsubscribe()
	require.NoError(t, b.Flush(time.Second))
	require.NoError(t, other.Publish("lobby", "chat.msg", []byte{1}, []byte(`{}`)))
	select {
	case m := <-got:
		e, err := DecodeEnvelope(m.Data)
		require.NoError(t, err)
		require.Equal(t, "lobby", e.Channel)
		require.Equal(t, []byte{1}, e.Payload)
		require.Equal(t, `{}`, string(e.JSON))
	case <-time.After(5 * time.Second):
		t.Fatal("publish across connections not delivered")
	}
	require.ErrorContains(t, other.Publish("bad..name", "a.b", nil, nil), "channel name")
}

func TestConnectExternalFailsClearly(t *testing.T) {
	_, err := Connect(context.Background(), Config{URL: "nats://127.0.0.1:1", Options: []nats.Option{nats.Timeout(200 * time.Millisecond)}})
	require.ErrorContains(t, err, "is the server running")
}

// Push counts, taken from many goroutines for overlapping sessions, number
// each session's pushes 1, 2, 3… with no gap and no repeat; a forgotten
// session starts again at 1.
func TestPushCountsPerSession(t *testing.T) {
	b := connect(t, Config{Name: "n1"})
	const goroutines, rounds, seats = 8, 500, 5
	sessions := make([]string, 200)
	for i := range sessions {
		sessions[i] = "s" + strconv.Itoa(i)
	}
	type given struct {
		session string
		count   uint64
	}
	got := make([][]given, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := make([]string, seats) // a table's seats, overlapping other goroutines' tables
			for r := range rounds {
				for k := range batch {
					batch[k] = sessions[(g*7+r*seats+k)%len(sessions)]
				}
				for k, c := range b.appendCounts(nil, batch) {
					got[g] = append(got[g], given{batch[k], c})
				}
			}
		}()
	}
	wg.Wait()
	bySession := map[string][]uint64{}
	for _, gs := range got {
		for _, x := range gs {
			bySession[x.session] = append(bySession[x.session], x.count)
		}
	}
	require.Len(t, bySession, len(sessions))
	for s, counts := range bySession {
		slices.Sort(counts)
		for i, c := range counts {
			if c != uint64(i+1) {
				t.Fatalf("session %s: counts %v…: want 1..%d, no gap, no repeat", s, counts[:min(len(counts), i+3)], len(counts))
			}
		}
	}
	b.ForgetSession("s0")
	require.Equal(t, []uint64{1, uint64(len(bySession["s1"]) + 1)}, b.appendCounts(nil, []string{"s0", "s1"}),
		"a forgotten session starts again at 1; the others go on")
}

// The KV buckets and their watches use the bus's JetStream connection,
// never the one that carries pushes and answers.
func TestKVOnItsOwnConnection(t *testing.T) {
	b := connect(t, Config{Name: "n1"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := b.OpenKV(ctx, "rooms", 0)
	require.NoError(t, err)
	w, err := kv.WatchAll(ctx)
	require.NoError(t, err)
	defer func() { _ = w.Stop() }()
	require.Nil(t, <-w.Updates(), "an empty bucket's watch starts with its end-of-initial-values marker")

	before, jsBefore := b.nc.Stats(), b.jsc.Stats()
	const puts = 50
	for i := range puts {
		_, err := kv.Put(ctx, "r.room"+strconv.Itoa(i), []byte("{}"))
		require.NoError(t, err)
	}
	for range puts {
		select {
		case e := <-w.Updates():
			require.NotNil(t, e)
		case <-ctx.Done():
			t.Fatal("the watch did not deliver every put")
		}
	}
	after, jsAfter := b.nc.Stats(), b.jsc.Stats()
	require.Equal(t, before.OutMsgs, after.OutMsgs, "registry writes went out on the push connection")
	require.Equal(t, before.InMsgs, after.InMsgs, "registry acks or watch updates came in on the push connection")
	require.GreaterOrEqual(t, jsAfter.OutMsgs-jsBefore.OutMsgs, uint64(puts))
	require.GreaterOrEqual(t, jsAfter.InMsgs-jsBefore.InMsgs, uint64(2*puts), "acks and watch updates")
	require.Equal(t, "n1/js", b.jsc.Opts.Name)
}

// orderCheck records, per sender, whether messages numbered 1, 2, 3… came
// in that order. Each subscription's handler runs on one goroutine, but a
// check may be shared by several subscriptions, so it locks.
type orderCheck struct {
	mu   sync.Mutex
	last map[string]uint32 // sender → last number seen
	bad  []string          // mu
	n    int               // mu: messages seen
}

func (o *orderCheck) see(m *nats.Msg) {
	e, err := DecodeEnvelope(m.Data)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n++
	if err != nil {
		o.bad = append(o.bad, err.Error())
		return
	}
	if want := o.last[e.Session] + 1; e.Seq != want && len(o.bad) < 10 {
		o.bad = append(o.bad, e.Session+": got "+strconv.Itoa(int(e.Seq))+" after "+strconv.Itoa(int(want-1)))
	}
	o.last[e.Session] = e.Seq
}

func (o *orderCheck) wait(t *testing.T, want int) {
	t.Helper()
	eventuallyf(t, 10*time.Second, func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.n >= want
	}, func() string {
		o.mu.Lock()
		defer o.mu.Unlock()
		return fmt.Sprintf("%d of %d messages arrived (out of order: %v)", o.n, want, o.bad)
	})
	o.mu.Lock()
	defer o.mu.Unlock()
	require.Equal(t, want, o.n)
	require.Empty(t, o.bad, "out of order")
}

// A node publishes on several connections, yet what it sends to one gate —
// pushes, replies, relayed control messages, from many goroutines at once
// — reaches the gate's one subscription in the order each goroutine sent
// it, as on one connection: a handler's pushes still come before its
// response.
func TestGateMessagesKeepTheirOrderOnSeveralPublishers(t *testing.T) {
	b := connect(t, Config{Name: "n1", Publishers: 4})
	require.Len(t, b.pubs, 4)
	const gates, senders, each = 8, 32, 300
	check := &orderCheck{last: map[string]uint32{}}
	conns := map[*nats.Conn]bool{}
	for g := range gates {
		gate := "g" + strconv.Itoa(g)
		sub, err := b.Conn().Subscribe(b.Subjects().GateAll(gate), check.see)
		require.NoError(t, err)
		require.NoError(t, sub.SetPendingLimits(-1, -1))
		conns[b.pub(b.Subjects().GateControl(gate))] = true
	}
	// The other connections' messages must not reach the server before
	// it knows of the subscriptions (Node.Run flushes for the same reason).
	require.NoError(t, b.Conn().Flush())
	require.Len(t, conns, 3, "8 gates are spread over the 3 connections that are not nc")
	require.False(t, conns[b.nc], "nc keeps the gates' forwards")
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			gate := "g" + strconv.Itoa(s%gates)
			reply := string(AppendReplyID([]byte(b.Subjects().GateReplyPrefix(gate)), uint64(s)))
			for i := range each {
				e := &Envelope{Type: TypePush, Session: "sender" + strconv.Itoa(s), Seq: uint32(i + 1)}
				var err error
				switch i % 3 {
				case 0:
					err = b.Send(b.Subjects().GateControl(gate), e)
				case 1:
					err = b.Send(reply, e)
				default:
					err = b.Relay(gate, "", e.Append(nil))
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, b.Flush(5*time.Second))
	check.wait(t, senders*each)
}

// Gates get a connection of their own turn up to maxPinnedGates; past it
// they share by hash. Either way a gate always gets the same one, and never
// the one that forwards requests.
func TestGatePinsAreBounded(t *testing.T) {
	b := connect(t, Config{Name: "n1", Publishers: 3})
	first := map[string]*nats.Conn{}
	for range 2 {
		for g := range maxPinnedGates + 500 {
			subject := b.Subjects().GateControl("g" + strconv.Itoa(g))
			c := b.pub(subject)
			require.NotSame(t, b.nc, c, "gate g%d shares the connection of the forwards", g)
			if was, ok := first[subject]; ok {
				require.Same(t, was, c, "gate g%d moved to another connection", g)
			}
			first[subject] = c
		}
	}
	require.EqualValues(t, maxPinnedGates, b.pinned.Load())
	require.Same(t, b.pub(b.Subjects().GateControl("g1")), b.pub(string(AppendReplyID([]byte(b.Subjects().GateReplyPrefix("g1")), 9))),
		"a gate's replies take its control subject's connection")
	require.Same(t, b.nc, b.pub(b.Subjects().Channel("lobby")), "what is not for a gate goes on the subscribing connection")

	one := connect(t, Config{Name: "n2", Publishers: 1})
	require.Len(t, one.pubs, 1)
	require.Same(t, one.nc, one.pub(one.Subjects().GateControl("g1")))

	// What waits for a reconnect is bounded over all the connections.
	require.Equal(t, reconnectBuffer, one.nc.Opts.ReconnectBufSize)
	for _, c := range b.pubs {
		require.Equal(t, reconnectBuffer/3, c.Opts.ReconnectBufSize)
	}
}

// A gate that subscribed and then says so must not be heard before its
// subscription takes effect: SendAfterSubscriptions goes on the connection
// that subscribed, whatever the subject, and Send to a gate does not.
func TestSendAfterSubscriptionsFollowsTheSubscriptions(t *testing.T) {
	b := connect(t, Config{Name: "n1", Publishers: 4})
	e := &Envelope{Type: TypeHandoverReady, Session: "s1"}
	subject := b.Subjects().GateControl("g1")
	out := func() []uint64 {
		var n []uint64
		for _, c := range b.pubs {
			n = append(n, c.Stats().OutMsgs)
		}
		return n
	}
	before := out()
	require.NoError(t, b.SendAfterSubscriptions(subject, e))
	after := out()
	require.Equal(t, before[0]+1, after[0], "on the subscribing connection")
	require.Equal(t, before[1:], after[1:])

	require.NoError(t, b.Send(subject, e))
	pinned := out()
	require.Equal(t, after[0], pinned[0], "Send to a gate takes the gate's own connection")
}
