package gate

// White-box tests of the inbox: what the node's own services hand the gate
// in-process (cluster.Bus.SetLocalGate).

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth/internal/cluster"
	"github.com/hearth-server/hearth/wire"
)

// pushMsg is a push of {"src":src,"n":n} to sessions, as a bus message.
func pushMsg(src string, n int, sessions ...string) *nats.Msg {
	payload := []byte(`{"src":"` + src + `","n":` + strconv.Itoa(n) + `}`)
	e := cluster.Envelope{Type: cluster.TypePush, Sessions: sessions, Route: "t.tick", Payload: payload, JSON: payload}
	return &nats.Msg{Subject: "hearth.gate.gate-t.c", Data: e.Append(nil)}
}

type tick struct {
	Src string
	N   int
}

func ticks(t *testing.T, fs []wire.Frame) []tick {
	t.Helper()
	var out []tick
	for _, f := range fs {
		require.Equal(t, wire.KindPush, f.Kind)
		var k tick
		require.NoError(t, json.Unmarshal(f.Payload, &k))
		out = append(out, k)
	}
	return out
}

// Past its byte bound the inbox drops what comes (counted, logged once a
// second), as NATS drops for a slow consumer, and never makes the sender
// wait; what it holds is still delivered, in order, and once it has room
// again it takes messages as before.
func TestInboxDropsPastItsBound(t *testing.T) {
	g := replayGate(t, Limits{})
	var logs bytes.Buffer
	g.log = slog.New(slog.NewTextHandler(&logs, nil)) // written on this goroutine only
	_, cli := connectedSession(t, g, "s1")
	one := pushMsg("local", 0, "s1")
	g.inbox.init(3 * len(one.Data))
	for n := range 5 {
		require.True(t, g.deliver(pushMsg("local", n, "s1"), nil), "a full inbox still takes (and drops)")
	}
	require.Equal(t, 2.0, counterValue(t, g.m.inboxDrops))
	require.Contains(t, logs.String(), "gate fell behind its node's messages: dropped")
	go g.localLoop()
	got := ticks(t, readFrames(t, cli, 3))
	require.Equal(t, []tick{{"local", 0}, {"local", 1}, {"local", 2}}, got)

	require.True(t, g.deliver(pushMsg("local", 9, "s1"), nil))
	require.Equal(t, []tick{{"local", 9}}, ticks(t, readFrames(t, cli, 1)))
	g.closeInbox()
	require.False(t, g.deliver(pushMsg("local", 10, "s1"), nil), "a closed inbox refuses, and the bus publishes instead")
	require.Equal(t, 2.0, counterValue(t, g.m.inboxDrops))
}

// The two goroutines that handle bus messages — the subscription's, for
// what comes over NATS, and localLoop, for the node's own — take turns:
// each session gets every push of both, each source's in the order sent,
// with push numbers that never repeat (run with -race).
func TestInboxAndSubscriptionTakeTurns(t *testing.T) {
	g := replayGate(t, Limits{})
	g.inbox.init(inboxBytes)
	const sessions, each = 4, 300
	clients := make([]net.Conn, 0, sessions)
	ids := make([]string, sessions)
	for i := range ids {
		ids[i] = "s" + strconv.Itoa(i)
		_, cli := connectedSession(t, g, ids[i])
		clients = append(clients, cli)
	}
	go g.localLoop()
	var wg sync.WaitGroup
	wg.Go(func() {
		for n := range each {
			if !g.deliver(pushMsg("local", n, ids...), nil) {
				t.Error("the inbox refused a message")
				return
			}
		}
	})
	wg.Go(func() {
		for n := range each {
			g.onGateMsg(pushMsg("nats", n, ids...)) // no Sub: every message releases its batch
		}
	})
	wg.Wait()
	for i, c := range clients {
		fs := readFrames(t, c, 2*each)
		next := map[string]int{}
		var seq uint64
		for k, tk := range ticks(t, fs) {
			require.Equal(t, next[tk.Src], tk.N, "session %d: %s's pushes out of order", i, tk.Src)
			next[tk.Src]++
			require.Greater(t, fs[k].PushSeq, seq, "session %d: push_seq repeated", i)
			seq = fs[k].PushSeq
		}
		require.Equal(t, map[string]int{"local": each, "nats": each}, next)
	}
	g.closeInbox()
}

// A gate whose Start fails (its port is taken) gets no Shutdown: it takes
// the local path back itself, so the node's messages are not handed to a
// gate that never serves, and its inbox goroutine ends.
func TestFailedStartTakesTheLocalPathBack(t *testing.T) {
	bus, err := cluster.Connect(context.Background(), cluster.Config{Name: "gate-t", DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(bus.Close)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	g, err := New(bus, Config{ID: "gate-t", TCPAddr: taken.Addr().String(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	require.Error(t, g.Start())
	select {
	case <-g.inbox.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the inbox goroutine of a gate that failed to start is still running")
	}
	require.False(t, g.deliver(pushMsg("local", 0, "s1"), nil), "the failed gate's inbox is closed")
	require.Nil(t, g.poll, "the failed gate's read poller is stopped")
	// The bus publishes again: over NATS the gate's subscription is all
	// that is left, and a kick for no session there is dropped, not queued.
	require.NoError(t, bus.Kick("gate-t", "s1", 9, "bye"))
	require.Empty(t, g.inbox.q)
}

// A push the node hands over in its own encoding buffer is copied out of
// it, to every session it is for, before the gate gives the buffer back
// (cluster.Bus.Recycle): written over afterwards, as the bus's next
// message will, it changes neither what a client read nor what the
// sessions keep for replay or re-sent requests. Only pushes and answers
// are given back: anything else may keep parts of its message.
func TestInboxGivesBackOnlyWhatItCopied(t *testing.T) {
	bus, err := cluster.Connect(context.Background(), cluster.Config{Name: "gate-t", DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(bus.Close)
	g := replayGate(t, Limits{})
	g.bus = bus
	g.inbox.init(inboxBytes)
	g.pending.init()
	g.replyPrefix = bus.Subjects().GateReplyPrefix("gate-t")
	s1, cli := connectedSession(t, g, "s1")
	detached := replaySession(g, "s2", cluster.CodecJSON, StateDetached)
	go g.localLoop()
	t.Cleanup(g.closeInbox)

	for n := range 3 {
		m := pushMsg("local", n, "s1", "s2")
		buf := &m.Data
		require.True(t, g.deliver(m, buf))
		require.Equal(t, []tick{{"local", n}}, ticks(t, readFrames(t, cli, 1)))
		clear(*buf) // the bus reuses it
	}
	items, _ := kept(detached)
	require.Len(t, items, 3)
	for n, e := range items {
		require.JSONEq(t, `{"src":"local","n":`+strconv.Itoa(n)+`}`, string(e.Payload), "push %d kept for replay", n)
	}

	// An answer: written to its client and kept for a re-send, both
	// copies.
	s1.inflight.Add(1)
	g.pending.put(9, pending{s: s1, seq: 5, route: "t.move", start: time.Now().UnixNano()}, time.Now().Add(time.Minute).UnixNano())
	answer := &nats.Msg{
		Subject: string(cluster.AppendReplyID([]byte(g.replyPrefix), 9)),
		Data:    (&cluster.Envelope{Type: cluster.TypeResponse, Payload: []byte(`{"ok":true}`)}).Append(nil),
	}
	buf := &answer.Data
	require.True(t, g.deliver(answer, buf))
	fs := readFrames(t, cli, 1)
	require.Equal(t, wire.KindResponse, fs[0].Kind)
	require.Equal(t, uint32(5), fs[0].Seq)
	require.Equal(t, `{"ok":true}`, string(fs[0].Payload))
	clear(*buf)
	s1.mu.Lock()
	cached, ok := s1.resps.take(5)
	s1.mu.Unlock()
	require.True(t, ok, "the answer is kept for a re-send")
	require.Equal(t, `{"ok":true}`, string(cached.Payload))

	for _, tc := range []struct {
		name string
		m    *nats.Msg
		done bool
	}{
		{"push", pushMsg("x", 0, "s1"), true},
		{"push each", &nats.Msg{Subject: "hearth.gate.gate-t.c", Data: (&cluster.Envelope{Type: cluster.TypePushEach, Sessions: []string{"s2"}, Route: "t.tick", Payload: cluster.AppendPayloads(nil, [][]byte{[]byte(`{"n":1}`)})}).Append(nil)}, true},
		{"kick", &nats.Msg{Subject: "hearth.gate.gate-t.c", Data: (&cluster.Envelope{Type: cluster.TypeKick, Session: "nobody", Status: 9}).Append(nil)}, false},
		{"answer", &nats.Msg{Subject: string(cluster.AppendReplyID([]byte(g.replyPrefix), 7)), Data: []byte("late")}, true},
		{"import", &nats.Msg{Subject: "hearth.gate.gate-t.c", Data: (&cluster.Envelope{Type: cluster.TypeImport, Session: "s3"}).Append(nil)}, false},
	} {
		g.busMu.Lock()
		done := g.gateMsg(tc.m)
		g.batch.release()
		g.busMu.Unlock()
		require.Equal(t, tc.done, done, tc.name)
	}
}
