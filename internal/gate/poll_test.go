//go:build linux

package gate_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/internal/gate"
	"github.com/hearth-server/hearth/wire"
)

// parkAlways makes every TCP session park on the gate's poller whenever it
// has nothing to read, so each of these tests' reads goes through it.
var parkAlways = hearth.Limits{ParkGap: time.Nanosecond}

func parked(t testing.TB, node *hearthtest.Node) float64 {
	return scrape(t, node)["hearth_sessions_parked"]
}

// Sessions that are waiting for a frame have no goroutine: 200 parked
// sessions cost the process far fewer than 200 goroutines, and each still
// answers its next request. A session with ParkGap negative keeps its
// goroutine and never parks; with the default one, an idle session parks
// right after its handshake.
func TestParkedSessionsHaveNoGoroutine(t *testing.T) {
	node := hearthtest.Start(t, hearth.Config{Limits: parkAlways})
	base := runtime.NumGoroutine()
	const n = 200
	rcs := make([]*rawClient, n)
	for i := range rcs {
		rcs[i] = dialRaw(t, node, "tcp")
		rcs[i].handshake(wire.CodecJSON)
		rcs[i].send(wire.AppendRequest(nil, 1, "sys.ping", []byte(`{"i":1}`)))
		require.Equal(t, wire.OK, rcs[i].response(1).Status)
	}
	hearthtest.Eventually(t, waitLong, func() error {
		p, g := parked(t, node), runtime.NumGoroutine()-base
		if p != n || g > n/4 {
			return fmt.Errorf("%v of %d sessions parked, %d goroutines more than before they connected", p, n, g)
		}
		return nil
	})
	for i, rc := range rcs {
		body := fmt.Appendf(nil, `{"i":%d}`, i)
		rc.send(wire.AppendRequest(nil, 2, "sys.ping", body))
		f := rc.response(2)
		require.Equal(t, wire.OK, f.Status)
		require.Equal(t, body, f.Payload)
	}

	// With the default gap, a session that has sent nothing since its
	// handshake parks too.
	def := hearthtest.Start(t, hearth.Config{})
	dialRaw(t, def, "tcp").handshake(wire.CodecJSON)
	hearthtest.Eventually(t, waitLong, func() error {
		if p := parked(t, def); p != 1 {
			return fmt.Errorf("%v sessions parked after a handshake, want 1", p)
		}
		return nil
	})

	blocking := hearthtest.Start(t, hearth.Config{Limits: hearth.Limits{ParkGap: -1}})
	rc := dialRaw(t, blocking, "tcp")
	rc.handshake(wire.CodecJSON)
	rc.send(wire.AppendRequest(nil, 1, "sys.ping", []byte(`{}`)))
	require.Equal(t, wire.OK, rc.response(1).Status)
	require.Zero(t, parked(t, blocking), "ParkGap < 0: no session parks")
}

// A client that sends frames close together keeps its reader goroutine
// (blocked on the socket, no epoll wake-up per frame); after a pause
// longer than ParkGap its next frame parks it. A frame read in two pieces
// counts as one arrival, not as two close together.
func TestBusySessionParksAfterAPause(t *testing.T) {
	node := hearthtest.Start(t, hearth.Config{Limits: hearth.Limits{ParkGap: 20 * time.Millisecond}})
	rc := dialRaw(t, node, "tcp")
	rc.handshake(wire.CodecJSON)
	payload := []byte(`{"a long enough payload":"to be read in two pieces"}`)
	for seq := uint32(1); seq <= 20; seq++ {
		rc.send(wire.AppendRequest(nil, seq, "sys.ping", payload))
		require.Equal(t, payload, rc.response(seq).Payload)
	}
	// The pause is the scenario: a client that stops talking for a while.
	time.Sleep(60 * time.Millisecond)
	rc.send(wire.AppendRequest(nil, 21, "sys.ping", payload))
	require.Equal(t, payload, rc.response(21).Payload)
	hearthtest.Eventually(t, waitLong, func() error {
		if p := parked(t, node); p != 1 {
			return fmt.Errorf("%v sessions parked after a pause, want 1", p)
		}
		return nil
	})
}

// A frame may arrive in pieces with the session parked in between: one
// byte at a time, a header split from its body, a body larger than the
// read buffer, several frames in one write. Every request is answered
// once, with its payload intact.
func TestParkedSessionsReassembleFrames(t *testing.T) {
	node := hearthtest.Start(t, hearth.Config{Limits: parkAlways})
	big := bytes.Repeat([]byte("x"), 20<<10)
	bigJSON := append(append([]byte(`"`), big...), '"')
	cases := []struct {
		name   string
		frames [][]byte // request payloads, seq 1, 2, …
		cut    func(stream []byte) [][]byte
	}{
		{"byte at a time", [][]byte{[]byte(`{"a":1}`), []byte(`{"b":2}`)}, func(b []byte) [][]byte {
			var out [][]byte
			for i := range b {
				out = append(out, b[i:i+1])
			}
			return out
		}},
		{"header apart from body", [][]byte{[]byte(`{"a":1}`)}, func(b []byte) [][]byte {
			return [][]byte{b[:2], b[2:wire.LengthSize], b[wire.LengthSize:]}
		}},
		{"larger than the read buffer", [][]byte{bigJSON, []byte(`{"after":1}`)}, func(b []byte) [][]byte {
			return [][]byte{b[:100], b[100 : 9<<10], b[9<<10:]}
		}},
		{"three frames in one write", [][]byte{[]byte(`1`), bigJSON, []byte(`3`)}, func(b []byte) [][]byte { return [][]byte{b} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, node, "tcp")
			rc.handshake(wire.CodecJSON)
			rc.send(wire.AppendRequest(nil, 100, "sys.ping", []byte(`{}`)))
			require.Equal(t, wire.OK, rc.response(100).Status)
			var stream []byte
			for i, p := range tc.frames {
				body := wire.AppendRequest(nil, uint32(i+1), "sys.ping", p)
				stream = binary.BigEndian.AppendUint32(stream, uint32(len(body)))
				stream = append(stream, body...)
			}
			for _, piece := range tc.cut(stream) {
				rc.writeRaw(piece)
			}
			// Answers come as the requests finish, not in order.
			got := map[uint32][]byte{}
			for range tc.frames {
				f := rc.next()
				require.Equal(t, wire.KindResponse, f.Kind)
				require.Equal(t, wire.OK, f.Status)
				require.NotContains(t, got, f.Seq, "one answer per request")
				got[f.Seq] = f.Payload
			}
			for i, p := range tc.frames {
				require.True(t, bytes.Equal(p, got[uint32(i+1)]), "request %d: sent %d bytes, echoed %d", i+1, len(p), len(got[uint32(i+1)]))
			}
		})
	}
}

// Whatever ends a parked session's connection ends it as it would a
// session with a goroutine: the client's close detaches it (resumable), an
// oversized frame's header gets KICK 4 while the others keep being served,
// a missed heartbeat KICK 7, and Shutdown KICK 8 to every parked one.
func TestParkedSessionsEnd(t *testing.T) {
	open := func(node *hearthtest.Node) *rawClient {
		rc := dialRaw(t, node, "tcp")
		rc.handshake(wire.CodecJSON)
		rc.send(wire.AppendRequest(nil, 1, "sys.ping", []byte(`{}`)))
		require.Equal(t, wire.OK, rc.response(1).Status)
		return rc
	}
	waitParked := func(node *hearthtest.Node, n float64) {
		hearthtest.Eventually(t, waitLong, func() error {
			if p := parked(t, node); p != n {
				return fmt.Errorf("%v sessions parked, want %v", p, n)
			}
			return nil
		})
	}

	t.Run("client closes", func(t *testing.T) {
		node := hearthtest.Start(t, hearth.Config{Limits: parkAlways})
		rc := open(node)
		waitParked(node, 1)
		require.NoError(t, rc.conn.Close())
		hearthtest.Eventually(t, waitLong, func() error {
			m := scrape(t, node)
			if m["hearth_sessions_detached"] != 1 || m["hearth_sessions_parked"] != 0 {
				return fmt.Errorf("%v detached, %v parked", m["hearth_sessions_detached"], m["hearth_sessions_parked"])
			}
			return nil
		})
	})
	t.Run("oversized frame", func(t *testing.T) {
		node := hearthtest.Start(t, hearth.Config{Limits: parkAlways})
		other, bad := open(node), open(node)
		waitParked(node, 2)
		bad.writeRaw(binary.BigEndian.AppendUint32(nil, 1<<30))
		bad.expectKick(wire.CodeFrameTooLarge)
		other.send(wire.AppendRequest(nil, 2, "sys.ping", []byte(`"still"`)))
		require.Equal(t, []byte(`"still"`), other.response(2).Payload)
	})
	t.Run("missed heartbeats", func(t *testing.T) {
		limits := parkAlways
		limits.Heartbeat = 100 * time.Millisecond
		node := hearthtest.Start(t, hearth.Config{Limits: limits})
		rc := open(node)
		rc.seePings = true
		// The client answers no PING: after 3 heartbeats the sweep kicks
		// it, parked.
		f := rc.next()
		for f.Kind == wire.KindPing {
			f = rc.next()
		}
		require.Equal(t, wire.KindKick, f.Kind)
		require.Equal(t, wire.CodeHeartbeatTimeout, f.Status, "kick reason %q", f.Payload)
		rc.expectClosed()
	})
	t.Run("shutdown", func(t *testing.T) {
		node := hearthtest.Start(t, hearth.Config{Limits: parkAlways})
		rcs := []*rawClient{open(node), open(node), open(node)}
		waitParked(node, 3)
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		require.NoError(t, node.Shutdown(ctx), "Shutdown waits for parked sessions and ends them")
		for _, rc := range rcs {
			rc.expectKick(wire.CodeShuttingDown)
		}
	})
}

// Many sessions, each sending requests at random moments, some together
// and some after a pause, park and wake concurrently: every request gets
// its answer, whatever bounds the gate's readers of woken sessions
// (Limits.Readers). Run with -race -count=50.
func TestParkedSessionsConcurrent(t *testing.T) {
	for _, readers := range []int{0, 1, -1} {
		t.Run(fmt.Sprintf("readers %d", readers), func(t *testing.T) {
			parkedConcurrent(t, hearth.Limits{ParkGap: time.Millisecond, Readers: readers})
		})
	}
}

func parkedConcurrent(t *testing.T, limits hearth.Limits) {
	node := hearthtest.Start(t, hearth.Config{Limits: limits})
	const clients, requests = 40, 30
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		rc := dialRaw(t, node, "tcp")
		rc.handshake(wire.CodecJSON)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			for seq := uint32(1); seq <= requests; seq++ {
				if rng.IntN(3) == 0 {
					// A pause longer than ParkGap parks the session.
					time.Sleep(time.Duration(1+rng.IntN(3)) * time.Millisecond)
				}
				body := fmt.Appendf(nil, `{"c":%d,"s":%d}`, c, seq)
				if err := writeFrame(rc, wire.AppendRequest(nil, seq, "sys.ping", body)); err != nil {
					errs <- err
					return
				}
				f, err := rc.readWithin(waitLong)
				if err != nil || f.Kind != wire.KindResponse || f.Seq != seq || !bytes.Equal(f.Payload, body) {
					errs <- fmt.Errorf("client %d seq %d: %v %v %d %q", c, seq, err, f.Kind, f.Seq, f.Payload)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// With one reader for every woken session, a client whose frames come
// close together (its reader then blocks on the connection) does not hold
// that reader: a parked session woken meanwhile is still read and answered.
func TestBlockingReaderLeavesTheReadQueue(t *testing.T) {
	// A gap of an hour: from its third frame on, the talker's reader
	// blocks on its connection.
	reg := prometheus.NewRegistry()
	node := hearthtest.Start(t, hearth.Config{Roles: []string{"sys"}, NATSListen: "127.0.0.1:0"})
	g := startGate(t, node, gate.Config{
		ID:      "rq-gate",
		TCPAddr: "127.0.0.1:0",
		Metrics: gate.NewMetrics(reg),
		Limits:  gate.Limits{ParkGap: time.Hour, Readers: 1},
	})
	addr := g.Addr("tcp").String()
	talker, quiet := dialRawAddr(t, "tcp", addr), dialRawAddr(t, "tcp", addr)
	talker.handshake(wire.CodecJSON)
	quiet.handshake(wire.CodecJSON)
	hearthtest.Eventually(t, waitLong, func() error {
		if p := gauge(t, reg, "hearth_sessions_parked"); p != 2 {
			return fmt.Errorf("%v sessions parked after their handshakes, want 2", p)
		}
		return nil
	})
	for seq := uint32(1); seq <= 3; seq++ {
		talker.send(wire.AppendRequest(nil, seq, "sys.ping", []byte(`{}`)))
		require.Equal(t, wire.OK, talker.response(seq).Status)
	}
	// The talker's reader now waits on its connection, not parked.
	hearthtest.Eventually(t, waitLong, func() error {
		if p := gauge(t, reg, "hearth_sessions_parked"); p != 1 {
			return fmt.Errorf("%v sessions parked, want 1 (the quiet one)", p)
		}
		return nil
	})
	for seq := uint32(1); seq <= 3; seq++ {
		quiet.send(wire.AppendRequest(nil, seq, "sys.ping", []byte(`{"q":1}`)))
		f := quiet.response(seq)
		require.Equal(t, wire.OK, f.Status, "the quiet session's request %d", seq)
		require.Equal(t, `{"q":1}`, string(f.Payload))
	}
	require.Zero(t, gauge(t, reg, "hearth_read_queue"), "no woken session left waiting for a reader")
	talker.send(wire.AppendRequest(nil, 4, "sys.ping", []byte(`{}`)))
	require.Equal(t, wire.OK, talker.response(4).Status, "the talker still read")
}

// writeFrame is rawClient.send for a goroutine other than the test's.
func writeFrame(rc *rawClient, body []byte) error {
	_ = rc.conn.SetWriteDeadline(time.Now().Add(waitLong))
	_, err := rc.conn.Write(binary.BigEndian.AppendUint32(nil, uint32(len(body))))
	if err == nil {
		_, err = rc.conn.Write(body)
	}
	return err
}

// A gate starts the readers of parked sessions that wake (and its output
// flushes) with Config.Go, to which a node passes its workers, which keep
// their grown stacks: every request of a session that parks between
// requests is read by a reader Go started.
func TestGateStartsReadersWithConfigGo(t *testing.T) {
	node := hearthtest.Start(t, hearth.Config{Roles: []string{"sys"}, NATSListen: "127.0.0.1:0"})
	var reads atomic.Int64
	reg := prometheus.NewRegistry()
	g := startGate(t, node, gate.Config{
		ID:      "go-gate",
		TCPAddr: "127.0.0.1:0",
		Metrics: gate.NewMetrics(reg),
		Limits:  gate.Limits{ParkGap: time.Nanosecond},
		Go: func(fn func()) {
			if strings.Contains(runtime.FuncForPC(reflect.ValueOf(fn).Pointer()).Name(), "(*readQueue).") {
				reads.Add(1)
			}
			go fn()
		},
	})

	rc := dialRawAddr(t, "tcp", g.Addr("tcp").String())
	rc.handshake(wire.CodecJSON)
	const n = 20
	for i := range n {
		// Parked before each request: the gate's poller wakes it.
		hearthtest.Eventually(t, waitLong, func() error {
			if p := gauge(t, reg, "hearth_sessions_parked"); p != 1 {
				return fmt.Errorf("request %d: %v sessions parked, want 1", i, p)
			}
			return nil
		})
		rc.send(wire.AppendRequest(nil, uint32(i+1), "sys.ping", []byte(`{}`)))
		require.Equal(t, wire.OK, rc.response(uint32(i+1)).Status)
	}
	require.GreaterOrEqual(t, reads.Load(), int64(n), "readers started with Config.Go for %d wakes", n)
}

// gauge reads a gauge without labels from reg.
func gauge(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// A PONG is no sign of a client that talks often: it answers the gate's
// own PING, which comes right behind a push. A session that answers one
// moments after its request parks again instead of keeping a goroutine
// blocked until its next frame.
func TestPongKeepsSessionParked(t *testing.T) {
	t.Parallel()
	node := hearthtest.Start(t, hearth.Config{Limits: hearth.Limits{ResumeAckBytes: 1}})
	rc := dialRaw(t, node, "tcp")
	rc.seePings = true
	rc.handshake(wire.CodecJSON)
	waitFor := func(n float64) {
		hearthtest.Eventually(t, waitLong, func() error {
			if p := parked(t, node); p != n {
				return fmt.Errorf("%v sessions parked, want %v", p, n)
			}
			return nil
		})
	}
	waitFor(1)
	rc.send(wire.AppendRequest(nil, 1, "sys.push", []byte(`{"count":1,"interval_ms":0}`)))
	var ping wire.Frame
	for ping.Kind != wire.KindPing {
		ping = rc.next()
	}
	framesIn := func() float64 { return scrape(t, node)[`hearth_frames_total{direction="in",kind="any"}`] }
	before := framesIn()
	rc.send(wire.AppendPong(nil, ping.Clock))
	hearthtest.Eventually(t, waitLong, func() error {
		if n := framesIn(); n != before+1 {
			return fmt.Errorf("%v frames in, want %v: the PONG was not read", n, before+1)
		}
		return nil
	})
	waitFor(1)
	rc.send(wire.AppendRequest(nil, 2, "sys.ping", []byte(`"still"`)))
	require.Equal(t, []byte(`"still"`), rc.response(2).Payload)
}

// The poller's goroutine waits for its set on the runtime's poller, as a
// socket's reader does ("IO wait"), not blocked in epoll_wait: a goroutine
// in a system call holds a thread, and each wake-up handed Ps between
// threads before a woken session could be read.
func TestPollerWaitsOnTheRuntimesPoller(t *testing.T) {
	node := hearthtest.Start(t, hearth.Config{Limits: parkAlways})
	rc := dialRaw(t, node, "tcp")
	rc.handshake(wire.CodecJSON)
	rc.send(wire.AppendRequest(nil, 1, "sys.ping", []byte(`1`)))
	require.Equal(t, []byte(`1`), rc.response(1).Payload)
	hearthtest.Eventually(t, waitLong, func() error {
		if p := parked(t, node); p != 1 {
			return fmt.Errorf("%v sessions parked, want 1", p)
		}
		states := hearthtest.GoroutineStates("gate.(*readPoller).run")
		if len(states) == 0 || slices.ContainsFunc(states, func(s string) bool { return s != "IO wait" }) {
			return fmt.Errorf("the pollers' goroutines are in %q, want each in IO wait", states)
		}
		return nil
	})
	rc.send(wire.AppendRequest(nil, 2, "sys.ping", []byte(`2`)))
	require.Equal(t, []byte(`2`), rc.response(2).Payload)
}

// More parked sessions than the poller takes in one call (256) wake at
// once: every one is read and answered.
func TestParkedSessionsWakeTogether(t *testing.T) {
	limits := parkAlways
	limits.ConnRatePerIP = -1 // 600 connections at once
	node := hearthtest.Start(t, hearth.Config{Limits: limits})
	const n = 600
	rcs := make([]*rawClient, n)
	for i := range rcs {
		rcs[i] = dialRaw(t, node, "tcp")
		rcs[i].handshake(wire.CodecJSON)
	}
	hearthtest.Eventually(t, waitLong, func() error {
		if p := parked(t, node); p != n {
			return fmt.Errorf("%v of %d sessions parked", p, n)
		}
		return nil
	})
	for round := uint32(1); round <= 3; round++ {
		for i, rc := range rcs {
			rc.send(wire.AppendRequest(nil, round, "sys.ping", fmt.Appendf(nil, `[%d,%d]`, i, round)))
		}
		for i, rc := range rcs {
			require.Equal(t, fmt.Appendf(nil, `[%d,%d]`, i, round), rc.response(round).Payload, "session %d, round %d", i, round)
		}
	}
}
