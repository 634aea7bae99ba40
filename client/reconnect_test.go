package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hearth-server/hearth/wire"
)

// recorder logs what the push goroutine sees, pushes and events in one
// order, and hands events to the test.
type recorder struct {
	mu     sync.Mutex
	log    []string
	events chan Event
}

func newRecorder() *recorder { return &recorder{events: make(chan Event, 32)} }

func (r *recorder) push(p Push) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, fmt.Sprintf("push %d", p.Seq))
}

func (r *recorder) event(e Event) {
	r.mu.Lock()
	r.log = append(r.log, e.Kind.String())
	r.mu.Unlock()
	r.events <- e
}

func (r *recorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.log...)
}

// next returns the next event and fails unless it is of kind k.
func (r *recorder) next(t *testing.T, k EventKind) Event {
	t.Helper()
	e := recv(t, r.events)
	require.Equal(t, k, e.Kind, "event %+v", e)
	return e
}

// waitLog waits until the log has n entries and returns it.
func (r *recorder) waitLog(t *testing.T, n int) []string {
	t.Helper()
	require.Eventually(t, func() bool { return len(r.snapshot()) >= n }, hang, time.Millisecond)
	return r.snapshot()
}

// reconnectOpts: reconnect with short waits, everything recorded.
func reconnectOpts(r *recorder) Options {
	return Options{
		Reconnect: true,
		Backoff:   Backoff{Min: 2 * time.Millisecond, Max: 20 * time.Millisecond},
		OnPush:    r.push,
		OnEvent:   r.event,
	}
}

func ackWith(token string, resumed bool) wire.HandshakeAck {
	a := testAck()
	a.Resume = token
	a.Resumed = resumed
	return a
}

func pushLog(from, to uint64) []string {
	var l []string
	for s := from; s <= to; s++ {
		l = append(l, fmt.Sprintf("push %d", s))
	}
	return l
}

// wait is for peer scripts: it waits for ch to close, but not forever, so
// that a failed test does not hang its peer.
func wait(ch <-chan struct{}) {
	select {
	case <-ch:
	case <-time.After(hang):
	}
}

func pendingCount(c *Client) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// TestResumeAfterDrop drops the connection twice (first by a close or a
// reset, then by a close): each time the client resumes with the latest
// token and its last push, sees every push exactly once and in order (the
// peer replays one it already had), and sends its unanswered requests
// again with their original seq and payload, before anything new; with
// Options.PushOnReader too.
func TestResumeAfterDrop(t *testing.T) {
	for _, kind := range transports {
		for _, how := range []string{"close", "reset", "close/on-reader", "reset/on-reader"} {
			t.Run(kind+"/"+how, func(t *testing.T) {
				how, onReader := strings.CutSuffix(how, "/on-reader")
				type req struct {
					seq     uint32
					route   string
					payload string
				}
				first := make(chan req, 1)
				hs2 := make(chan wire.Handshake, 1)
				hs3 := make(chan wire.Handshake, 1)
				release2 := make(chan struct{})
				errs := make(chan string, 10)
				p := newPeer(t, kind, func(pc *pconn) {
					switch pc.n {
					case 1:
						if hs := pc.handshake(ackWith("tok-1", false)); hs.Resume != "" {
							errs <- "first handshake resumes " + hs.Resume
						}
						f := pc.expect(wire.KindRequest)
						first <- req{f.Seq, route(f), string(f.Payload)}
						for s := uint64(1); s <= 5; s++ {
							pc.push(s)
						}
						if how == "reset" {
							pc.reset()
						} else {
							pc.c.Close()
						}
					case 2:
						hs := pc.readHandshake()
						hs2 <- hs
						wait(release2)
						pc.ack(ackWith("tok-2", true))
						// Replay from one before last_push: the client must
						// drop the duplicate.
						for s := max(hs.LastPush, 2) - 1; s <= 8; s++ {
							pc.push(s)
						}
						a := pc.expect(wire.KindRequest)
						b := pc.expect(wire.KindRequest)
						n := pc.expect(wire.KindNotify)
						if string(n.Payload) != "note" {
							errs <- fmt.Sprintf("notify payload %q", n.Payload)
						}
						pc.send(wire.AppendResponse(nil, b.Seq, 0, append([]byte("done-"), b.Payload...)))
						pc.send(wire.AppendResponse(nil, a.Seq, 0, []byte(fmt.Sprintf("done-%d-%s-%s", a.Seq, route(a), a.Payload))))
						pc.push(9)
						pc.push(10)
						pc.c.Close()
					case 3:
						hs3 <- pc.handshake(ackWith("tok-3", true))
						pc.push(11)
						pc.push(12)
						pc.serve(func(f wire.Frame) (wire.Code, []byte, bool) { return 0, f.Payload, true })
					default:
						errs <- fmt.Sprintf("unexpected connection %d", pc.n)
					}
				})
				r := newRecorder()
				opts := reconnectOpts(r)
				opts.PushOnReader = onReader
				c := dial(t, p.addr, opts)
				require.Equal(t, "tok-1", c.ResumeToken())

				resA := make(chan string, 1)
				go func() {
					b, err := c.RequestRaw(context.Background(), "game.slow", []byte(`"A"`))
					resA <- fmt.Sprintf("%s %v", b, err)
				}()
				a := recv(t, first)

				e := r.next(t, Disconnected)
				require.Error(t, e.Err)
				require.Equal(t, p.addr, e.Addr)
				var we *wire.Error
				require.False(t, errors.As(e.Err, &we), "a dropped connection is not a kick: %v", e.Err)

				// Disconnected: new calls wait for the resume.
				resB := make(chan string, 1)
				go func() {
					b, err := c.RequestRaw(context.Background(), "game.other", []byte(`"B"`))
					resB <- fmt.Sprintf("%s %v", b, err)
				}()
				notified := make(chan error, 1)
				nctx := ctxT(t)
				go func() { notified <- c.NotifyRaw(nctx, "game.note", []byte("note")) }()
				hs := recv(t, hs2)
				require.Equal(t, "tok-1", hs.Resume)
				require.Equal(t, "json", hs.Codec)
				require.Equal(t, DefaultName, hs.Client)
				require.LessOrEqual(t, hs.LastPush, uint64(5))
				if how == "close" { // everything before the FIN arrives
					require.Equal(t, uint64(5), hs.LastPush)
				}
				require.Eventually(t, func() bool { return pendingCount(c) == 2 }, hang, time.Millisecond)
				close(release2)

				require.Equal(t, fmt.Sprintf(`done-%d-game.slow-"A" <nil>`, a.seq), recv(t, resA))
				require.Equal(t, `done-"B" <nil>`, recv(t, resB))
				require.NoError(t, recv(t, notified))
				e = r.next(t, Resumed)
				require.NoError(t, e.Err)
				require.Equal(t, p.addr, e.Addr)

				// The second drop: resume with the newest token.
				r.next(t, Disconnected)
				require.Equal(t, wire.Handshake{Version: 1, Codec: "json", Client: DefaultName, Resume: "tok-2", LastPush: 10, MaxFrame: wire.DefaultMaxFrame}, recv(t, hs3))
				r.next(t, Resumed)
				b, err := c.RequestRaw(ctxT(t), "game.echo", []byte("after"))
				require.NoError(t, err)
				require.Equal(t, "after", string(b))

				l := hs.LastPush
				want := append(pushLog(1, l), "disconnected", "resumed")
				want = append(want, pushLog(l+1, 10)...)
				want = append(want, "disconnected", "resumed", "push 11", "push 12")
				require.Equal(t, want, r.waitLog(t, len(want)))
				require.Equal(t, uint64(12), c.LastPush())
				require.Equal(t, "tok-3", c.ResumeToken())
				require.True(t, c.Ack().Resumed)
				require.Equal(t, "sess-1", c.SessionID())
				require.NoError(t, c.Err())
				require.Equal(t, int32(3), p.conns.Load())
				close(errs)
				for e := range errs {
					t.Error("peer:", e)
				}
			})
		}
	}
}

// TestResumeDrain: KICK 303 names another gate's addresses; the client
// resumes there over the transport it uses (or the other if that is all
// there is), with its request re-encoded for the new gate's route ids.
func TestResumeDrain(t *testing.T) {
	for _, kind := range transports {
		other := map[string]string{"tcp": "ws", "ws": "tcp", "polled": "ws"}[kind]
		for _, offer := range []string{"both", "other"} {
			t.Run(kind+"/"+offer, func(t *testing.T) {
				seqs := make(chan uint32, 1)
				gateB := func(pc *pconn) {
					hs := pc.readHandshake()
					if hs.Resume != "tok-1" || hs.LastPush != 3 {
						pc.t.Errorf("peer B: handshake %+v", hs)
					}
					ack := ackWith("tok-2", true)
					ack.Node = "gate-b"
					ack.Routes = map[string]uint16{"game.slow": 42}
					pc.ack(ack)
					pc.push(4)
					f := pc.expect(wire.KindRequest)
					if !f.HasRouteID() || f.RouteID != 42 {
						pc.t.Errorf("peer B: request route %q id %d, want id 42", f.Route, f.RouteID)
					}
					var want uint32
					select {
					case want = <-seqs:
					case <-time.After(hang):
						pc.t.Errorf("peer B: no seq from gate A")
					}
					pc.send(wire.AppendResponse(nil, f.Seq, 0, fmt.Appendf(nil, "B:%v:%s", f.Seq == want, f.Payload)))
					pc.serve(func(f wire.Frame) (wire.Code, []byte, bool) { return 0, []byte("B"), true })
				}
				bSame, bOther := newPeer(t, kind, gateB), newPeer(t, other, gateB)
				reason := "drain: reconnect to " + bOther.addr
				if offer == "both" {
					reason = fmt.Sprintf("drain: reconnect to %s %s", bOther.addr, bSame.addr)
				}
				a := newPeer(t, kind, func(pc *pconn) {
					if pc.n > 1 {
						pc.t.Errorf("client came back to the draining gate")
						return
					}
					pc.handshake(ackWith("tok-1", false))
					seqs <- pc.expect(wire.KindRequest).Seq
					for s := uint64(1); s <= 3; s++ {
						pc.push(s)
					}
					pc.send(wire.AppendKick(nil, wire.CodeReconnectElsewhere, reason))
					pc.c.Close()
				})
				r := newRecorder()
				o := reconnectOpts(r)
				o.UseRouteIDs = true
				c := dial(t, a.addr, o)
				res := make(chan string, 1)
				go func() {
					b, err := c.RequestRaw(context.Background(), "game.slow", []byte("x"))
					res <- fmt.Sprintf("%s %v", b, err)
				}()
				e := r.next(t, Disconnected)
				require.Equal(t, &wire.Error{Code: wire.CodeReconnectElsewhere, Message: reason}, e.Err)
				require.Equal(t, a.addr, e.Addr)
				want := bSame
				if offer == "other" {
					want = bOther
				}
				require.Equal(t, want.addr, r.next(t, Resumed).Addr)
				require.Equal(t, "B:true:x <nil>", recv(t, res))
				require.Equal(t, "gate-b", c.Ack().Node)
				b, err := c.RequestRaw(ctxT(t), "game.echo", nil)
				require.NoError(t, err)
				require.Equal(t, "B", string(b))
				require.Equal(t, append(pushLog(1, 3), "disconnected", "resumed", "push 4"), r.waitLog(t, 6))
				require.Equal(t, int32(1), a.conns.Load())
				require.Equal(t, int32(1), want.conns.Load())
				require.NoError(t, c.Err())
			})
		}
	}
}

// TestResumeLost: a resume the server refuses (KICK 304, or an ack that is
// not a resume) ends the client: Lost, and the pending request fails with
// 304.
func TestResumeLost(t *testing.T) {
	for _, kind := range transports {
		for _, answer := range []string{"kick", "not resumed", "other session"} {
			t.Run(kind+"/"+answer, func(t *testing.T) {
				held := make(chan struct{}, 1)
				p := newPeer(t, kind, func(pc *pconn) {
					switch pc.n {
					case 1:
						pc.handshake(ackWith("tok-1", false))
						pc.expect(wire.KindRequest)
						held <- struct{}{}
						pc.c.Close()
					case 2:
						if hs := pc.readHandshake(); hs.Resume != "tok-1" {
							pc.t.Errorf("peer: resume %q", hs.Resume)
						}
						if answer == "kick" {
							pc.send(wire.AppendKick(nil, wire.CodeSessionLost, "session lost"))
							pc.c.Close()
						} else {
							a := ackWith("tok-9", answer == "other session")
							if answer == "other session" {
								a.Session = "sess-2"
							}
							pc.ack(a)
						}
					default:
						pc.t.Errorf("peer: connection %d after a lost session", pc.n)
					}
				})
				r := newRecorder()
				c := dial(t, p.addr, reconnectOpts(r))
				errc := make(chan error, 1)
				go func() { errc <- c.Request(context.Background(), "game.slow", nil, nil) }()
				recv(t, held)
				r.next(t, Disconnected)
				e := r.next(t, Lost)
				require.ErrorIs(t, e.Err, &wire.Error{Code: wire.CodeSessionLost})
				require.Equal(t, p.addr, e.Addr)
				if answer == "kick" {
					require.Equal(t, &wire.Error{Code: wire.CodeSessionLost, Message: "session lost"}, e.Err)
				}
				err := recv(t, errc)
				require.Equal(t, e.Err, err)
				waitDone(t, c)
				require.Equal(t, e.Err, c.Err())
				require.Equal(t, e.Err, c.Request(ctxT(t), "game.x", nil, nil))
				require.Equal(t, int32(2), p.conns.Load())
				require.Equal(t, []string{"disconnected", "lost"}, r.snapshot())
			})
		}
	}
}

// TestKickEndsSession: KICKs other than 7 and 303 end the session even with
// Reconnect: no reconnect, Lost, pending requests fail with the kick.
func TestKickEndsSession(t *testing.T) {
	for _, kind := range transports {
		for _, code := range []wire.Code{wire.CodeShuttingDown, wire.CodeLoggedInElsewhere, wire.CodeSlowConsumer} {
			t.Run(fmt.Sprintf("%s/%d", kind, code), func(t *testing.T) {
				p := newPeer(t, kind, func(pc *pconn) {
					pc.handshake(ackWith("tok-1", false))
					pc.expect(wire.KindRequest)
					pc.send(wire.AppendKick(nil, code, "bye"))
					pc.c.Close()
				})
				r := newRecorder()
				c := dial(t, p.addr, reconnectOpts(r))
				err := c.Request(ctxT(t), "game.slow", nil, nil)
				want := &wire.Error{Code: code, Message: "bye"}
				require.Equal(t, want, err)
				e := r.next(t, Lost)
				require.Equal(t, want, e.Err)
				waitDone(t, c)
				require.Equal(t, want, c.Err())
				require.Equal(t, int32(1), p.conns.Load())
				require.Equal(t, []string{"lost"}, r.snapshot())
			})
		}
	}
}

// TestKick7Resumes: KICK 7 (the server heard nothing for 3 heartbeats)
// leaves the session resumable.
func TestKick7Resumes(t *testing.T) {
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) {
			p := newPeer(t, kind, func(pc *pconn) {
				if pc.n == 1 {
					pc.handshake(ackWith("tok-1", false))
					pc.send(wire.AppendKick(nil, wire.CodeHeartbeatTimeout, "silent"))
					pc.c.Close()
					return
				}
				if hs := pc.handshake(ackWith("tok-2", true)); hs.Resume != "tok-1" {
					pc.t.Errorf("peer: resume %q", hs.Resume)
				}
				pc.serve(func(f wire.Frame) (wire.Code, []byte, bool) { return 0, []byte("ok"), true })
			})
			r := newRecorder()
			c := dial(t, p.addr, reconnectOpts(r))
			require.Equal(t, &wire.Error{Code: wire.CodeHeartbeatTimeout, Message: "silent"}, r.next(t, Disconnected).Err)
			r.next(t, Resumed)
			b, err := c.RequestRaw(ctxT(t), "game.x", nil)
			require.NoError(t, err)
			require.Equal(t, "ok", string(b))
			require.Equal(t, "tok-2", c.ResumeToken())
		})
	}
}

// TestReconnectTimeout: with no server to resume at, the client gives up
// after ReconnectTimeout.
func TestReconnectTimeout(t *testing.T) {
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) {
			held := make(chan struct{}, 1)
			p := newPeer(t, kind, func(pc *pconn) {
				pc.handshake(ackWith("tok-1", false))
				pc.expect(wire.KindRequest)
				held <- struct{}{}
			})
			r := newRecorder()
			o := reconnectOpts(r)
			o.ReconnectTimeout = 100 * time.Millisecond
			c := dial(t, p.addr, o)
			errc := make(chan error, 1)
			go func() { errc <- c.Request(context.Background(), "game.slow", nil, nil) }()
			recv(t, held)
			p.stop()
			r.next(t, Disconnected)
			e := r.next(t, Lost)
			require.ErrorIs(t, e.Err, ErrReconnectTimeout)
			require.Equal(t, e.Err, recv(t, errc))
			waitDone(t, c)
			require.ErrorIs(t, c.Err(), ErrReconnectTimeout)
			require.Equal(t, int32(1), p.conns.Load())
		})
	}
}

// TestResumeAtOtherAddr: the gate dies; the client resumes at the next
// address of Options.Addrs.
func TestResumeAtOtherAddr(t *testing.T) {
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) {
			held := make(chan uint32, 1)
			a := newPeer(t, kind, func(pc *pconn) {
				pc.handshake(ackWith("tok-1", false))
				held <- pc.expect(wire.KindRequest).Seq
			})
			b := newPeer(t, kind, func(pc *pconn) {
				if hs := pc.handshake(ackWith("tok-2", true)); hs.Resume != "tok-1" {
					pc.t.Errorf("peer B: resume %q", hs.Resume)
				}
				f := pc.expect(wire.KindRequest)
				pc.send(wire.AppendResponse(nil, f.Seq, 0, fmt.Appendf(nil, "%d", f.Seq)))
			})
			r := newRecorder()
			o := reconnectOpts(r)
			o.Addrs = []string{"tcp://127.0.0.1:1", b.addr}
			c := dial(t, a.addr, o)
			res := make(chan string, 1)
			go func() {
				b, err := c.RequestRaw(context.Background(), "game.slow", nil)
				res <- fmt.Sprintf("%s %v", b, err)
			}()
			seq := recv(t, held)
			a.stop()
			r.next(t, Disconnected)
			require.Equal(t, b.addr, r.next(t, Resumed).Addr)
			require.Equal(t, fmt.Sprintf("%d <nil>", seq), recv(t, res))
			require.Equal(t, "tok-2", c.ResumeToken())
		})
	}
}

// TestCloseWhileReconnecting: Close stops a client waiting to reconnect or
// in a resume handshake at once; its pending request fails with ErrClosed
// (goleak in TestMain checks that nothing is left running).
func TestCloseWhileReconnecting(t *testing.T) {
	for _, kind := range transports {
		for _, during := range []string{"backoff", "handshake"} {
			t.Run(kind+"/"+during, func(t *testing.T) {
				held := make(chan struct{}, 1)
				resuming := make(chan struct{}, 1)
				p := newPeer(t, kind, func(pc *pconn) {
					if pc.n == 1 {
						pc.handshake(ackWith("tok-1", false))
						pc.expect(wire.KindRequest)
						held <- struct{}{}
						pc.c.Close()
						return
					}
					pc.readHandshake() // and never answer
					resuming <- struct{}{}
				})
				r := newRecorder()
				o := reconnectOpts(r)
				o.HandshakeTimeout = time.Hour
				o.ReconnectTimeout = time.Hour
				if during == "backoff" {
					o.Backoff = Backoff{Min: time.Hour}
				}
				c := dial(t, p.addr, o)
				errc := make(chan error, 1)
				go func() { errc <- c.Request(context.Background(), "game.slow", nil, nil) }()
				recv(t, held)
				r.next(t, Disconnected)
				if during == "handshake" {
					recv(t, resuming)
				}
				closed := make(chan error, 1)
				go func() { closed <- c.Close() }()
				require.NoError(t, recv(t, closed))
				require.ErrorIs(t, recv(t, errc), ErrClosed)
				waitDone(t, c)
				require.NoError(t, c.Err())
				require.ErrorIs(t, c.Request(ctxT(t), "game.x", nil, nil), ErrClosed)
				require.ErrorIs(t, c.Notify(ctxT(t), "game.x", nil), ErrClosed)
				want := int32(1)
				if during == "handshake" {
					want = 2
				}
				require.Equal(t, want, p.conns.Load())
			})
		}
	}
}

// TestRequestContextWhileReconnecting: a request waiting for a resume is
// bounded by its ctx, and is not sent after the resume.
func TestRequestContextWhileReconnecting(t *testing.T) {
	release := make(chan struct{})
	got := make(chan string, 4)
	p := newPeer(t, "tcp", func(pc *pconn) {
		if pc.n == 1 {
			pc.handshake(ackWith("tok-1", false))
			pc.c.Close()
			return
		}
		pc.readHandshake()
		wait(release)
		pc.ack(ackWith("tok-2", true))
		pc.serve(func(f wire.Frame) (wire.Code, []byte, bool) {
			got <- route(f)
			return 0, nil, true
		})
	})
	r := newRecorder()
	c := dial(t, p.addr, reconnectOpts(r))
	r.next(t, Disconnected)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Request(ctx, "game.abandoned", nil, nil) }()
	require.Eventually(t, func() bool { return pendingCount(c) == 1 }, hang, time.Millisecond)
	cancel()
	require.ErrorIs(t, recv(t, errc), context.Canceled)
	require.Equal(t, 0, pendingCount(c))
	close(release)
	r.next(t, Resumed)
	require.NoError(t, c.Request(ctxT(t), "game.after", nil, nil))
	require.Equal(t, "game.after", recv(t, got))
}

// TestHeartbeatAcrossReconnect: a server silent for 3 heartbeats is a
// dropped connection; the client resumes and keeps heartbeating on the new
// connection with its heartbeat interval.
func TestHeartbeatAcrossReconnect(t *testing.T) {
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) {
			p := newPeer(t, kind, func(pc *pconn) {
				if pc.n == 1 {
					a := ackWith("tok-1", false)
					a.HeartbeatMS = 20
					pc.handshake(a) // then silence
					return
				}
				a := ackWith(fmt.Sprint("tok-", pc.n), true)
				a.HeartbeatMS = 200
				pc.handshake(a)
				pc.serve(func(f wire.Frame) (wire.Code, []byte, bool) { return 0, nil, true })
			})
			r := newRecorder()
			o := reconnectOpts(r)
			c := dial(t, p.addr, o)
			require.ErrorIs(t, r.next(t, Disconnected).Err, ErrHeartbeatTimeout)
			r.next(t, Resumed)
			// The peer answers PINGs on connection 2: RTT is measured there.
			require.Eventually(t, func() bool { return c.RTT() > 0 }, hang, time.Millisecond)
			require.NoError(t, c.Request(ctxT(t), "game.x", nil, nil))
			require.NoError(t, c.Err())
		})
	}
}

// TestReconnectOff: without Reconnect a dropped connection ends the client
// as before, with no second connection and no events.
func TestReconnectOff(t *testing.T) {
	for _, kind := range transports {
		t.Run(kind, func(t *testing.T) {
			p := newPeer(t, kind, func(pc *pconn) {
				pc.handshake(ackWith("tok-1", false))
				pc.expect(wire.KindRequest)
				pc.c.Close()
			})
			r := newRecorder()
			o := reconnectOpts(r)
			o.Reconnect = false
			c := dial(t, p.addr, o)
			err := c.Request(ctxT(t), "game.x", nil, nil)
			require.Error(t, err)
			waitDone(t, c)
			require.Equal(t, err, c.Err())
			require.Equal(t, int32(1), p.conns.Load())
			require.Empty(t, r.snapshot())
			require.Equal(t, "tok-1", c.ResumeToken())
		})
	}
}

func TestSuggestedAddr(t *testing.T) {
	for _, tc := range []struct {
		reason, cur, want string
		tls               bool
	}{
		{"drain: reconnect to tcp://10.0.0.2:7200 ws://10.0.0.2:7201/ws", "tcp://10.0.0.1:7200", "tcp://10.0.0.2:7200", false},
		{"drain: reconnect to tcp://10.0.0.2:7200 ws://10.0.0.2:7201/ws", "ws://10.0.0.1:7201/ws", "ws://10.0.0.2:7201/ws", false},
		{"drain: reconnect to tcp://10.0.0.2:7200", "ws://10.0.0.1:7201/ws", "tcp://10.0.0.2:7200", false},
		{"drain: reconnect to tcp://10.0.0.2:7200, wss://h:1/ws.", "ws://10.0.0.1:7201/ws", "wss://h:1/ws", false},
		{"drain: reconnect to (tls://h:1)", "10.0.0.1:7200", "tls://h:1", false},
		// An encrypted connection is not moved to a plain-text one.
		{"drain: reconnect to tcp://h:1 ws://h:2/ws", "wss://h:3/ws", "", false},
		{"drain: reconnect to tcp://h:1 tls://h:2", "wss://h:3/ws", "tls://h:2", false},
		{"drain: reconnect to tcp://h:1 ws://h:2/ws", "tls://h:3", "tcp://h:1", true},
		{"drain: reconnect to udp://h:1 http://h:2 tcp://h:3/x", "tcp://h:4", "", false},
		{"drain", "tcp://h:4", "", false},
	} {
		c := &Client{}
		if tc.tls {
			_, c.opts.TLS = testTLS(t)
		}
		require.Equal(t, tc.want, c.suggested(tc.reason, tc.cur), "%q from %s", tc.reason, tc.cur)
	}
}

func TestBackoff(t *testing.T) {
	o := Options{Reconnect: true}
	require.NoError(t, reconnectDefaults(&o))
	require.Equal(t, Backoff{Min: DefaultBackoffMin, Max: DefaultBackoffMax}, o.Backoff)
	require.Equal(t, DefaultReconnectTimeout, o.ReconnectTimeout)
	c := &Client{opts: o}
	for n, d := range []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000} {
		d *= time.Millisecond
		if n == 7 {
			n = 1000
		}
		for range 20 {
			b := c.backoff(n)
			require.GreaterOrEqual(t, b, d/2, "round %d", n)
			require.LessOrEqual(t, b, d, "round %d", n)
		}
	}
	o = Options{Reconnect: true, Addrs: []string{"tcp://h:1/x"}}
	require.ErrorContains(t, reconnectDefaults(&o), "bad address")
	_, err := Dial(ctxT(t), "tcp://127.0.0.1:1", Options{Reconnect: true, Addrs: []string{"udp://h:1"}})
	require.ErrorContains(t, err, "scheme")
	require.Equal(t, "lost", Lost.String())
}
