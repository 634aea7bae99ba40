package gate

// White-box tests of what the replay buffers keep: they look inside the
// rings, at the bytes each entry's payload holds on to.

import (
	"bytes"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth/internal/cluster"
)

// replayGate is a gate without a bus or listeners: enough to deliver
// pushes to sessions that have no connection.
func replayGate(t *testing.T, l Limits) *Gate {
	t.Helper()
	g := &Gate{cfg: Config{ID: "gate-t", Limits: l}, stop: make(chan struct{})}
	g.cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	g.cfg.setDefaults()
	g.log, g.m = g.cfg.Logger, newMetrics(nil)
	g.sessMap.init()
	g.chans.init(16)
	g.chans.g = g
	return g
}

// replaySession adds a session in state st (never active: nothing is
// written) to g's table. A handshaking one may drop any push (as a resuming
// session past its last_push), a detached one none.
func replaySession(g *Gate, id string, codec cluster.Codec, st State) *Session {
	s := &Session{g: g, id: id, codec: codec}
	s.setStateLocked(st)
	if st == StateHandshaking {
		s.replayFrom = math.MaxUint64
	}
	g.sessMap.add(s)
	return s
}

// joinAll makes sessions the local members of channel name.
func joinAll(g *Gate, name string, sessions ...*Session) {
	ch := &channel{idx: map[*Session]int{}}
	for i, s := range sessions {
		ch.idx[s], ch.list = i, append(ch.list, s)
	}
	g.chans.m[name] = ch
}

// pinned reports the bytes p keeps alive: all of msg when p is a slice of
// it, else p's own array (a copy made by append, whose cap is what it
// allocated).
func pinned(p, msg []byte) (base unsafe.Pointer, size int) {
	if cap(p) == 0 {
		return nil, 0
	}
	start, end := uintptr(unsafe.Pointer(unsafe.SliceData(msg))), uintptr(unsafe.Pointer(unsafe.SliceData(msg)))+uintptr(cap(msg))
	if at := uintptr(unsafe.Pointer(unsafe.SliceData(p))); at >= start && at < end {
		return unsafe.Pointer(unsafe.SliceData(msg)), cap(msg)
	}
	return unsafe.Pointer(unsafe.SliceData(p)), cap(p)
}

// kept returns what s's ring holds, under its lock.
func kept(s *Session) (items []pushEntry, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pushes.entries(), s.pushes.bytes
}

func clearRing(s *Session) {
	s.mu.Lock()
	s.pushes.clear(&s.g.pushBytes)
	s.mu.Unlock()
}

// A push's bus message carries both encodings (and the list of its
// sessions); what each path keeps for replay is counted in full, by the
// session's bound and by the gate's gauge, and a payload several sessions
// share is counted once by the gauge. Overwriting the bus message after the
// delivery leaves every kept payload as it was: none is a slice of it.
func TestReplayEntriesCountWhatTheyPin(t *testing.T) {
	pb := bytes.Repeat([]byte{'p'}, 3000)
	js := bytes.Repeat([]byte{'j'}, 7000)
	codecs := []cluster.Codec{cluster.CodecJSON, cluster.CodecProtobuf, cluster.CodecJSON, cluster.CodecJSON}
	paths := []struct {
		name     string
		sessions int
		deliver  func(g *Gate, msg []byte)
		envelope func(ids []string) *cluster.Envelope
	}{
		{"push to one session", 1, deliverPush, func(ids []string) *cluster.Envelope {
			return &cluster.Envelope{Type: cluster.TypePush, Sessions: ids, Route: "room.state", Payload: pb, JSON: js, Origin: "node-1.x", Counts: []uint64{1}}
		}},
		{"push to several sessions", 4, deliverPush, func(ids []string) *cluster.Envelope {
			return &cluster.Envelope{Type: cluster.TypePush, Sessions: ids, Route: "room.state", Payload: pb, JSON: js, Origin: "node-1.x", Counts: []uint64{1, 1, 1, 1}}
		}},
		{"forwarded channel message", 1, deliverPush, func(ids []string) *cluster.Envelope {
			return &cluster.Envelope{Type: cluster.TypePush, Sessions: ids, Route: "room.state", Payload: pb, JSON: js, MsgID: "m1"}
		}},
		{"channel message", 4, func(g *Gate, msg []byte) {
			g.chans.fanout(&nats.Msg{Data: msg}, nil)
		}, func([]string) *cluster.Envelope {
			return &cluster.Envelope{Type: cluster.TypePublish, Channel: "room", Route: "room.state", Payload: pb, JSON: js, MsgID: "m1"}
		}},
		{"broadcast", 4, func(g *Gate, msg []byte) {
			g.onBroadcast(&nats.Msg{Data: msg})
		}, func([]string) *cluster.Envelope {
			return &cluster.Envelope{Type: cluster.TypePublish, Route: "room.state", Payload: pb, JSON: js}
		}},
	}
	for _, path := range paths {
		t.Run(path.name, func(t *testing.T) {
			g := replayGate(t, Limits{})
			var ss []*Session
			var ids []string
			for i := range path.sessions {
				s := replaySession(g, "s"+strconv.Itoa(i), codecs[i], StateDetached)
				ss, ids = append(ss, s), append(ids, s.id)
			}
			joinAll(g, "room", ss...)
			msg := path.envelope(ids).Append(nil)
			path.deliver(g, msg)

			gatePinned := map[unsafe.Pointer]int{} // payload arrays, each once
			strs := 0
			for _, s := range ss {
				items, counted := kept(s)
				require.Len(t, items, 1, "session %s keeps the push", s.id)
				base, size := pinned(items[0].Payload, msg)
				require.GreaterOrEqual(t, counted, size+len(items[0].Route), "session %s counts less than its ring keeps", s.id)
				gatePinned[base] = size
				strs += len(items[0].Route) + len(items[0].ID) + len(items[0].Origin)
			}
			var payloads int
			for _, n := range gatePinned {
				payloads += n
			}
			gauge := int(g.pushBytes.Load())
			require.GreaterOrEqual(t, gauge, payloads+strs, "the gate counts less than its rings keep")
			// Counted once: beyond the payloads, no more than the entries
			// themselves (a few hundred bytes each).
			require.LessOrEqual(t, gauge, payloads+strs+512*len(ss), "a payload the sessions share is counted once")

			clear(msg) // the bus message's buffer, reused
			for _, s := range ss {
				items, _ := kept(s)
				want := js
				if s.codec == cluster.CodecProtobuf {
					want = pb
				}
				require.Equal(t, want, items[0].Payload, "session %s's kept payload changed with the bus message", s.id)
			}

			for i, s := range ss {
				clearRing(s)
				if i < len(ss)-1 {
					require.Positive(t, g.pushBytes.Load(), "the other sessions still keep the push")
				}
			}
			require.Zero(t, g.pushBytes.Load(), "the gauge returns to 0 when the rings are cleared")
		})
	}
}

func deliverPush(g *Gate, msg []byte) {
	var e cluster.Envelope
	if err := e.Decode(msg); err != nil {
		panic(err)
	}
	g.onPush(&e, nil)
}

// The gate's count of a shared payload stays exact while the sessions
// sharing it add and drop it concurrently: the fan-out goroutine and the
// bus goroutine fill rings that drop their oldest entries, while sessions
// end (their rings cleared) or are handed over on the gate (their entries
// move to a new ring). Once every ring is cleared the gauge is 0.
func TestReplaySharedCountConcurrent(t *testing.T) {
	g := replayGate(t, Limits{ResumePushes: 3})
	const members, messages = 8, 300
	codecs := []cluster.Codec{cluster.CodecJSON, cluster.CodecProtobuf}
	var ss []*Session
	var ids []string
	for i := range members {
		s := replaySession(g, "s"+strconv.Itoa(i), codecs[i%2], StateHandshaking)
		ss, ids = append(ss, s), append(ids, s.id)
	}
	joinAll(g, "room", ss...)
	pb, js := bytes.Repeat([]byte{'p'}, 500), bytes.Repeat([]byte{'j'}, 900)

	var wg sync.WaitGroup
	wg.Add(3)
	go func() { // the fan-out goroutine
		defer wg.Done()
		for i := range messages {
			msg := (&cluster.Envelope{Type: cluster.TypePublish, Channel: "room", Route: "room.state", Payload: pb, JSON: js, MsgID: strconv.Itoa(i)}).Append(nil)
			g.chans.fanout(&nats.Msg{Data: msg}, nil)
		}
	}()
	go func() { // the bus goroutine
		defer wg.Done()
		for range messages {
			deliverPush(g, (&cluster.Envelope{Type: cluster.TypePush, Sessions: ids, Route: "room.deal", Payload: pb, JSON: js}).Append(nil))
		}
	}()
	go func() { // sessions ending, and handed over on the gate
		defer wg.Done()
		for i := range messages {
			s := ss[i%members]
			if i%2 == 0 {
				clearRing(s)
				continue
			}
			// exportSession and importState: the ring moves to the
			// session's successor, here the session itself.
			s.mu.Lock()
			items := s.pushes.entries()
			s.pushes.clear(&g.pushBytes)
			for _, e := range items {
				s.pushes.add(e, g.cfg.ResumePushes, g.cfg.ResumeBytes, math.MaxUint64, &g.pushBytes)
			}
			s.mu.Unlock()
		}
	}()
	wg.Wait()
	require.Positive(t, g.pushBytes.Load())
	for _, s := range ss {
		clearRing(s)
	}
	require.Zero(t, g.pushBytes.Load(), "the gauge returns to 0 when the rings are cleared")
}

// A cached response keeps a copy of its payload, not the bus message it
// was sliced from (whose envelope the count would miss), and what it keeps
// is what the session's and the gate's byte counts hold.
func TestResponseCacheKeepsNoMessage(t *testing.T) {
	cfg := Config{}
	cfg.setDefaults()
	l := cfg.Limits
	var gateBytes atomic.Int64
	var c respCache
	msg := bytes.Repeat([]byte{'h'}, 300) // an envelope's header, then the payload
	copy(msg[200:], bytes.Repeat([]byte{'p'}, 100))
	c.add(respEntry{Seq: 1, Payload: msg[200:]}, &l, &gateBytes)
	e, ok := c.take(1)
	require.True(t, ok)
	require.Equal(t, bytes.Repeat([]byte{'p'}, 100), e.Payload)
	msg[200] = 'x'
	require.Equal(t, byte('p'), e.Payload[0], "the cached payload shares the message's array")
	require.Equal(t, cap(e.Payload), c.bytes)
	require.Equal(t, int64(c.bytes), gateBytes.Load())
	require.GreaterOrEqual(t, c.bytes, 100)

	c.clear(&gateBytes)
	require.Zero(t, gateBytes.Load(), "the gate's count after the cache is cleared")
}
