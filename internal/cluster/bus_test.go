package cluster

import (
	"context"
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
	require.NoError(t, b.Forward("ghost", reply, &Envelope{Type: TypeRequest, Route: "ghost.x"}))
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
