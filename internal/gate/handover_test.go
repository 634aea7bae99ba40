package gate_test

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth"
	"github.com/hearth-server/hearth/hearthtest"
	"github.com/hearth-server/hearth/wire"
)

// mover is a TCP client that keeps one session while moving it between
// gates, checking every push it reads. It reports failures as errors: it
// runs on its own goroutine, where require must not be used.
type mover struct {
	gates  []string // TCP addresses
	rng    *rand.Rand
	conn   net.Conn
	br     *bufio.Reader
	token  string
	sess   string
	last   uint64         // last push_seq read
	next   map[string]int // route → next n expected
	moves  int
	trace  []string
	others []net.Conn // replaced connections, closed at the end
}

func (m *mover) dial(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, waitLong)
	if err != nil {
		return err
	}
	m.conn, m.br = conn, bufio.NewReader(conn)
	return nil
}

func (m *mover) write(body []byte) error {
	_ = m.conn.SetWriteDeadline(time.Now().Add(waitLong))
	_, err := m.conn.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...))
	return err
}

func (m *mover) read() (wire.Frame, error) {
	_ = m.conn.SetReadDeadline(time.Now().Add(waitLong))
	body, err := wire.ReadTCP(m.br, nil, 1<<20)
	if err != nil {
		return wire.Frame{}, err
	}
	return wire.Decode(body)
}

// handshake opens (token "") or resumes the session on the current
// connection and returns the ACK.
func (m *mover) handshake() error {
	hs, _ := json.Marshal(wire.Handshake{Version: 1, Codec: wire.CodecJSON, Resume: m.token, LastPush: m.last})
	if err := m.write(wire.AppendHandshake(nil, hs)); err != nil {
		return err
	}
	f, err := m.read()
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if f.Kind != wire.KindHandshakeAck {
		return fmt.Errorf("handshake (resume %v after push %d, move %d): got %v %d %q; trace %v", m.token != "", m.last, m.moves, f.Kind, f.Status, f.Payload, m.tail())
	}
	var ack wire.HandshakeAck
	if err := json.Unmarshal(f.Payload, &ack); err != nil {
		return err
	}
	if m.token != "" && (!ack.Resumed || ack.Session != m.sess) {
		return fmt.Errorf("resume gave session %s resumed=%v, want %s", ack.Session, ack.Resumed, m.sess)
	}
	m.token, m.sess = ack.Resume, ack.Session
	return nil
}

// call sends a request and reads until its response, checking pushes on
// the way.
func (m *mover) call(seq uint32, route, payload string) error {
	if err := m.write(wire.AppendRequest(nil, seq, route, []byte(payload))); err != nil {
		return err
	}
	for {
		f, err := m.read()
		if err != nil {
			return err
		}
		if f.Kind == wire.KindResponse && f.Seq == seq {
			if f.Status != wire.OK {
				return fmt.Errorf("%s: %d %q", route, f.Status, f.Payload)
			}
			return nil
		}
		if err := m.check(f); err != nil {
			return err
		}
	}
}

// check verifies one frame: push_seq without gap or repeat, and each
// route's n in order from 1.
func (m *mover) check(f wire.Frame) error {
	switch f.Kind {
	case wire.KindPush:
		var p struct{ N int }
		if err := json.Unmarshal(f.Payload, &p); err != nil {
			return err
		}
		route := string(f.Route)
		m.trace = append(m.trace, fmt.Sprintf("%d:%s:%d", f.PushSeq, route, p.N))
		if f.PushSeq != m.last+1 {
			return fmt.Errorf("push_seq %d after %d (move %d); trace %v", f.PushSeq, m.last, m.moves, m.tail())
		}
		if p.N != m.next[route] {
			return fmt.Errorf("%s n=%d, want %d (move %d); trace %v", route, p.N, m.next[route], m.moves, m.tail())
		}
		m.last = f.PushSeq
		m.next[route]++
	case wire.KindPing:
		return m.write(wire.AppendPong(nil, f.Clock))
	case wire.KindResponse, wire.KindPong:
	default:
		return fmt.Errorf("unexpected %v %d %q", f.Kind, f.Status, f.Payload)
	}
	return nil
}

func (m *mover) tail() []string {
	if len(m.trace) > 12 {
		return m.trace[len(m.trace)-12:]
	}
	return m.trace
}

// move takes the session to a random gate: after cutting its connection,
// or (overlap) while the old one is still open, which the gate then closes
// with KICK 305.
func (m *mover) move() error {
	m.moves++
	old := m.conn
	overlap := m.rng.IntN(3) == 0
	if !overlap {
		_ = old.Close()
	} else {
		m.others = append(m.others, old)
	}
	if err := m.dial(m.gates[m.rng.IntN(len(m.gates))]); err != nil {
		return err
	}
	return m.handshake()
}

// TestHandoverStress moves sessions between two gates every few
// milliseconds — to the same gate and the other, by abrupt cuts and by
// resuming while the old connection is open — while a service streams
// direct pushes to each and a speaker publishes to a channel they are all
// in. Every push must arrive exactly once and in order: push_seq without a
// gap, each stream's numbers 1, 2, 3, ….
func TestHandoverStress(t *testing.T) {
	t.Parallel()
	// The replay buffer is sized for the stream: this test is about order
	// and exactly-once, not about a client too slow for its buffer (a
	// session that outgrows it is told 304, tested in TestResumeLost). Nor
	// is it about the per-address limits: eight sessions moving every few
	// milliseconds open more than the default 100 connections a second
	// from one address on a fast machine (tested in TestPerIPLimits).
	c := startResumeCluster(t, hearth.Limits{RequestRate: -1, ConnRatePerIP: -1, MaxConnsPerIP: -1, ResumePushes: 8192, ResumeBytes: 8 << 20})
	gates := []string{c.a.Addr("tcp").String(), c.b.Addr("tcp").String()}
	const sessions, ticks, said = 8, 300, 1000
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)

	ready := make(chan struct{}, sessions)
	errs := make(chan error, sessions)
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := &mover{gates: gates, rng: rand.New(rand.NewPCG(seed, uint64(i))), next: map[string]int{"sys.tick": 1, "count.said": 1}}
			defer func() {
				for _, c := range append(m.others, m.conn) {
					if c != nil {
						_ = c.Close()
					}
				}
			}()
			err := func() error {
				if err := m.dial(gates[i%2]); err != nil {
					return err
				}
				if err := m.handshake(); err != nil {
					return err
				}
				if err := m.call(1, "count.join", `{}`); err != nil {
					return err
				}
				if err := m.call(2, "sys.push", fmt.Sprintf(`{"count":%d,"interval_ms":2}`, ticks)); err != nil {
					return err
				}
				ready <- struct{}{}
				nextMove := time.Now().Add(time.Duration(2+m.rng.IntN(6)) * time.Millisecond)
				for m.next["sys.tick"] <= ticks || m.next["count.said"] <= said {
					f, err := m.read()
					if err != nil {
						return fmt.Errorf("read (move %d, last push %d): %w; trace %v", m.moves, m.last, err, m.tail())
					}
					if err := m.check(f); err != nil {
						return err
					}
					if time.Now().After(nextMove) {
						if err := m.move(); err != nil {
							return err
						}
						nextMove = time.Now().Add(time.Duration(2+m.rng.IntN(6)) * time.Millisecond)
					}
				}
				if m.moves < 10 {
					return fmt.Errorf("only %d moves: the test did not exercise hand-overs", m.moves)
				}
				return nil
			}()
			if err != nil {
				ready <- struct{}{} // never block the speaker
				errs <- fmt.Errorf("session %d: %w", i, err)
			}
		}()
	}
	for range sessions {
		<-ready
	}
	speaker := dialRaw(t, c.a, "tcp")
	speaker.handshake(wire.CodecJSON)
	for n := 1; n <= said; n++ {
		speaker.send(wire.AppendRequest(nil, uint32(n), "count.say", []byte(fmt.Sprintf(`{"n":%d}`, n))))
		require.Equal(t, wire.OK, speaker.response(uint32(n)).Status)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(4 * waitLong):
		t.Fatal("movers did not finish")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// The movers' connections are closed: each session is now detached on
	// exactly one gate, and no stub counts as a session anywhere.
	hearthtest.Eventually(t, waitLong, func() error {
		a, b := scrape(t, c.a), scrape(t, c.b)
		conn := a[`hearth_sessions{transport="tcp"}`] + b[`hearth_sessions{transport="tcp"}`]
		detached := a["hearth_sessions_detached"] + b["hearth_sessions_detached"]
		if conn != 1 || detached != sessions {
			return fmt.Errorf("connected %v, detached %v; want the speaker connected and each of %d movers detached once", conn, detached, sessions)
		}
		return nil
	})
}
