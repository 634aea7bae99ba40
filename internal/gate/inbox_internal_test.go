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
	"runtime"
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

// HandleInbox handles the inbox on the caller's goroutine: with no
// localLoop running, what was delivered reaches the client once it
// returns. While another goroutine holds busMu it returns at once, and
// the messages it left are not stranded: localLoop, which deliver woke,
// handles them once busMu is free.
func TestHandleInboxOnTheCaller(t *testing.T) {
	g := replayGate(t, Limits{})
	g.inbox.init(inboxBytes)
	_, cli := connectedSession(t, g, "s1")
	for n := range 3 {
		require.True(t, g.deliver(pushMsg("local", n, "s1"), nil))
	}
	g.HandleInbox()
	require.Equal(t, []tick{{"local", 0}, {"local", 1}, {"local", 2}}, ticks(t, readFrames(t, cli, 3)))
	g.inbox.mu.Lock()
	require.Empty(t, g.inbox.q, "handled, not left for localLoop")
	g.inbox.mu.Unlock()

	g.busMu.Lock() // as the bus subscription's goroutine does
	require.True(t, g.deliver(pushMsg("local", 3, "s1"), nil))
	returned := make(chan struct{})
	go func() {
		g.HandleInbox()
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("HandleInbox waited for busMu instead of leaving the messages to its holder")
	}
	g.inbox.mu.Lock()
	require.Len(t, g.inbox.q, 1, "left queued while busMu was held")
	g.inbox.mu.Unlock()
	go g.localLoop()
	g.busMu.Unlock()
	require.Equal(t, []tick{{"local", 3}}, ticks(t, readFrames(t, cli, 1)))
	g.closeInbox()
}

// Senders that each call HandleInbox after delivering leave nothing in the
// inbox once they have all returned, with no localLoop to catch what one
// queued while another held busMu: each holder looks again after it lets
// go. Run with -race -count=50.
func TestHandleInboxLeavesNothingBehind(t *testing.T) {
	g := replayGate(t, Limits{})
	g.inbox.init(inboxBytes)
	const senders, each = 4, 300
	ids, clients := connectedSessions(t, g, 1)
	var wg sync.WaitGroup
	for i := range senders {
		src := "room-" + strconv.Itoa(i)
		wg.Go(func() {
			for n := range each {
				require.True(t, g.deliver(pushMsg(src, n, ids...), nil))
				g.HandleInbox()
			}
		})
	}
	wg.Wait()
	g.inbox.mu.Lock()
	left := len(g.inbox.q)
	g.inbox.mu.Unlock()
	require.Zero(t, left, "messages left in the inbox after every sender's HandleInbox returned")
	got := map[string]int{}
	for _, tk := range ticks(t, readFrames(t, clients[0], senders*each)) {
		require.Equal(t, got[tk.Src], tk.N, "%s's pushes in order", tk.Src)
		got[tk.Src]++
	}

	// The narrow case, made to happen: a task queues a message after the
	// holder's drain found the inbox empty, and its HandleInbox finds
	// busMu still held.
	late := true
	g.inbox.emptied = func() {
		if !late {
			return
		}
		late = false
		require.True(t, g.deliver(pushMsg("late", 0, ids...), nil))
		done := make(chan bool)
		go func() { done <- g.busMu.TryLock() }()
		require.False(t, <-done, "busMu is held by the drain")
		g.HandleInbox() // returns at once: TryLock fails
	}
	require.True(t, g.deliver(pushMsg("first", 0, ids...), nil))
	g.HandleInbox()
	g.inbox.emptied = nil
	require.Equal(t, []tick{{"first", 0}, {"late", 0}}, ticks(t, readFrames(t, clients[0], 2)),
		"the holder handled what came as it let go")
}

// The goroutines that handle bus messages take turns: the subscription's,
// for what comes over NATS; localLoop, for what the node's own tasks hand
// the gate; and, in the second case, those tasks themselves once they have
// sent it (HandleInbox). Each session gets every push of every source
// once, each source's in the order sent, with push numbers that never
// repeat (run with -race).
func TestInboxHandlersTakeTurns(t *testing.T) {
	for _, tc := range []struct {
		name   string
		handle bool // the senders call HandleInbox, two messages in three
	}{
		{"localLoop alone", false},
		{"senders handle", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := replayGate(t, Limits{})
			g.inbox.init(inboxBytes)
			const each = 200
			ids, clients := connectedSessions(t, g, 4)
			go g.localLoop()
			srcs := []string{"room-a", "room-b", "nats"}
			var wg sync.WaitGroup
			for _, src := range srcs {
				wg.Go(func() {
					for n := range each {
						if src == "nats" {
							g.onGateMsg(pushMsg(src, n, ids...)) // no Sub: every message releases its batch
							continue
						}
						if !g.deliver(pushMsg(src, n, ids...), nil) {
							t.Error("the inbox refused a message")
							return
						}
						if tc.handle && n%3 != 0 {
							g.HandleInbox()
						}
					}
				})
			}
			wg.Wait()
			requireEachInOrder(t, clients, map[string]int{"room-a": each, "room-b": each, "nats": each})
			g.closeInbox()
		})
	}
}

// A release of many sessions shares their writes with helpers (goFn), and
// writes every session once whether or not a helper ever runs: here the
// helpers start only after release has returned, and find nothing left to
// take from the batch, which the gate has already reused.
func TestReleaseSharesWrites(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	}
	g := replayGate(t, Limits{})
	const sessions = 3 * releaseShare
	ids, clients := connectedSessions(t, g, sessions)
	var late []func()
	g.batch.goFn = func(fn func()) { late = append(late, fn) }
	g.onGateMsg(pushMsg("nats", 0, ids...))
	require.NotEmpty(t, late, "a release of %d sessions asks for helpers", sessions)
	require.Empty(t, g.batch.held, "the batch is emptied for reuse")
	for i, c := range clients {
		require.Equal(t, []tick{{"nats", 0}}, ticks(t, readFrames(t, c, 1)), "session %d", i)
	}
	g.batch.held = append(g.batch.held, nil) // reused: a late helper must not read it
	for _, fn := range late {
		fn()
	}
	g.batch.held = g.batch.held[:0]

	// Helpers that run at once, beside release: still one write each.
	g.batch.goFn = func(fn func()) { go fn() }
	for n := 1; n <= 20; n++ {
		g.onGateMsg(pushMsg("nats", n, ids...))
	}
	for i, c := range clients {
		got := ticks(t, readFrames(t, c, 20))
		for k, tk := range got {
			require.Equal(t, tick{"nats", k + 1}, tk, "session %d", i)
		}
	}
}

// connectedSessions connects n sessions, s0…, to g.
func connectedSessions(t *testing.T, g *Gate, n int) (ids []string, clients []net.Conn) {
	t.Helper()
	for i := range n {
		id := "s" + strconv.Itoa(i)
		_, cli := connectedSession(t, g, id)
		ids, clients = append(ids, id), append(clients, cli)
	}
	return ids, clients
}

// requireEachInOrder reads want's count of pushes from each source on
// every client and checks that each source's came in the order sent, with
// push numbers that never repeat.
func requireEachInOrder(t *testing.T, clients []net.Conn, want map[string]int) {
	t.Helper()
	total := 0
	for _, n := range want {
		total += n
	}
	for i, c := range clients {
		fs := readFrames(t, c, total)
		next := map[string]int{}
		var seq uint64
		for k, tk := range ticks(t, fs) {
			require.Equal(t, next[tk.Src], tk.N, "session %d: %s's pushes out of order", i, tk.Src)
			next[tk.Src]++
			require.Greater(t, fs[k].PushSeq, seq, "session %d: push_seq repeated", i)
			seq = fs[k].PushSeq
		}
		require.Equal(t, want, next, "session %d", i)
	}
}
