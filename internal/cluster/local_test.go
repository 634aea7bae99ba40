package cluster

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
)

// localRecorder is a local gate for tests: it keeps what it is handed, and
// answers requests (Reply set) with "ok:" and their data when answer is on.
type localRecorder struct {
	b      *Bus
	answer bool
	check  *orderCheck
	then   func(*nats.Msg) // called with each message taken, if set

	mu     sync.Mutex
	msgs   []*nats.Msg // mu
	closed bool        // mu
}

func (r *localRecorder) deliver(m *nats.Msg, _ *[]byte) bool {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false
	}
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	if r.check != nil {
		r.check.see(m)
	}
	if r.then != nil {
		r.then(m)
	}
	if r.answer && m.Reply != "" {
		go func() { _ = r.b.Respond(m, append([]byte("ok:"), m.Data...)) }()
	}
	return true
}

func (r *localRecorder) taken() []*nats.Msg {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*nats.Msg(nil), r.msgs...)
}

// What a node sends its own gate is handed over in-process, whichever API
// sends it, and never reaches the NATS server; what it sends other gates
// and subjects is published as before. Once the local gate stops taking
// messages, the bus publishes them again.
func TestLocalGate(t *testing.T) {
	b := connect(t, Config{Name: "n1"})
	viaNATS := make(chan *nats.Msg, 64)
	sub, err := b.Conn().ChanSubscribe(b.Subjects().Prefix+".gate.>", viaNATS)
	require.NoError(t, err)
	defer sub.Unsubscribe()
	require.NoError(t, b.Conn().Flush())

	r := &localRecorder{b: b}
	b.SetLocalGate("n1", r.deliver)
	reply := string(AppendReplyID([]byte(b.Subjects().GateReplyPrefix("n1")), 3))
	require.NoError(t, b.Push("n1", []string{"s1"}, "a.b", []byte("p"), nil))
	require.NoError(t, b.Send(reply, &Envelope{Type: TypeResponse, Seq: 3}))
	require.NoError(t, b.Kick("n1", "s1", 9, "bye"))
	require.NoError(t, b.Relay("n1", "", []byte("raw")))
	require.NoError(t, b.SendAfterSubscriptions(b.Subjects().GateControl("n1"), &Envelope{Type: TypeHandoverReady, Session: "s1"}))
	require.NoError(t, b.Bind("other", "s2", "room", "n1"))

	got := r.taken()
	require.Len(t, got, 5)
	for i, want := range []Type{TypePush, TypeResponse, TypeKick} {
		e, err := DecodeEnvelope(got[i].Data)
		require.NoError(t, err)
		require.Equal(t, want, e.Type, "message %d", i)
		require.Nil(t, got[i].Sub, "a local message has no subscription")
	}
	require.Equal(t, reply, got[1].Subject)
	require.Equal(t, "raw", string(got[3].Data))

	// Only the bind to the other gate went over NATS.
	select {
	case m := <-viaNATS:
		require.Equal(t, b.Subjects().GateControl("other"), m.Subject)
	case <-time.After(5 * time.Second):
		t.Fatal("the message to another gate was not published")
	}
	require.NoError(t, b.Flush(5*time.Second))
	require.NoError(t, b.Conn().Flush())
	require.Empty(t, viaNATS, "a message to the local gate went through the NATS server")

	// The gate stopped: the bus publishes again.
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	require.NoError(t, b.Kick("n1", "s1", 9, "bye"))
	select {
	case m := <-viaNATS:
		require.Equal(t, b.Subjects().GateControl("n1"), m.Subject)
	case <-time.After(5 * time.Second):
		t.Fatal("a message to a stopped local gate was not published")
	}
	b.SetLocalGate("n1", nil)
	require.NoError(t, b.Kick("n1", "s1", 9, "bye"))
	select {
	case <-viaNATS:
	case <-time.After(5 * time.Second):
		t.Fatal("with the local path off, a message to the gate was not published")
	}
	require.Len(t, r.taken(), 5)
}

// The data a local gate gets is its own: the sender's buffer is reused for
// the next message at once.
func TestLocalGateCopiesData(t *testing.T) {
	b := connect(t, Config{Name: "n1"})
	r := &localRecorder{b: b}
	b.SetLocalGate("n1", r.deliver)
	buf := []byte("first")
	require.NoError(t, b.Relay("n1", "", buf))
	copy(buf, "XXXXX")
	for i := range 10 {
		require.NoError(t, b.Push("n1", []string{"s" + strconv.Itoa(i)}, "a.b", []byte("payload-"+strconv.Itoa(i)), nil))
	}
	got := r.taken()
	require.Equal(t, "first", string(got[0].Data))
	for i, m := range got[1:] {
		e, err := DecodeEnvelope(m.Data)
		require.NoError(t, err)
		require.Equal(t, "payload-"+strconv.Itoa(i), string(e.Payload))
	}
}

// A request to the local gate (a join, a resume) is handed over with an
// inbox the gate answers on with Respond; the answer comes back over NATS,
// so a gate that relays the request to another gate over NATS has that
// gate answer the same inbox.
func TestLocalGateRequest(t *testing.T) {
	b := connect(t, Config{Name: "n1"})
	r := &localRecorder{b: b, answer: true}
	b.SetLocalGate("n1", r.deliver)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := b.Request(ctx, b.Subjects().GateControl("n1"), []byte("join"))
	require.NoError(t, err)
	require.Equal(t, "ok:join", string(m.Data))
	require.Len(t, r.taken(), 1)

	// Relayed: another gate, over NATS, answers the local request's inbox.
	other, err := b.Conn().Subscribe(b.Subjects().GateAll("n2"), func(m *nats.Msg) { _ = m.Respond([]byte("from n2")) })
	require.NoError(t, err)
	defer other.Unsubscribe()
	require.NoError(t, b.Conn().Flush())
	// As a gate does for a session that moved: relayed, reply subject and
	// all (deliver runs on the requester's goroutine, so before it waits).
	r.answer = false
	r.then = func(m *nats.Msg) {
		if err := b.Relay("n2", m.Reply, m.Data); err != nil {
			t.Error(err)
		}
	}
	m, err = b.Request(ctx, b.Subjects().GateControl("n1"), []byte("join"))
	require.NoError(t, err)
	require.Equal(t, "from n2", string(m.Data))

	// No answer: the caller's deadline, as over NATS.
	r.then = nil
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	_, err = b.Request(short, b.Subjects().GateControl("n1"), []byte("join"))
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// A stopped local gate: the request goes over NATS, where no one listens.
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	_, err = b.Request(ctx, b.Subjects().GateControl("n1"), []byte("join"))
	require.ErrorIs(t, err, nats.ErrNoResponders)
}

// Many goroutines sending to the local gate at once — pushes, replies,
// relays — are each handed over in the order they sent.
func TestLocalGateKeepsEachSendersOrder(t *testing.T) {
	b := connect(t, Config{Name: "n1"})
	check := &orderCheck{last: map[string]uint32{}}
	r := &localRecorder{b: b, check: check}
	b.SetLocalGate("n1", r.deliver)
	const senders, each = 32, 300
	reply := string(AppendReplyID([]byte(b.Subjects().GateReplyPrefix("n1")), 1))
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range each {
				e := &Envelope{Type: TypePush, Session: "sender" + strconv.Itoa(s), Seq: uint32(i + 1)}
				var err error
				switch i % 3 {
				case 0:
					err = b.Send(b.Subjects().GateControl("n1"), e)
				case 1:
					err = b.Send(reply, e)
				default:
					err = b.Relay("n1", "", e.Append(nil))
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	check.wait(t, senders*each)
}

// SendAfterSubscriptions to the local gate hands the message over only
// once the server has the subscriptions made before it: a publish from
// another connection made as the gate hears it reaches them.
func TestLocalSendAfterSubscriptions(t *testing.T) {
	b := connect(t, Config{Name: "n1", Listen: "127.0.0.1:0"})
	other, err := nats.Connect(b.ClientURL())
	require.NoError(t, err)
	defer other.Close()
	for i := range 20 {
		channel := b.Subjects().Channel("c" + strconv.Itoa(i))
		got := make(chan *nats.Msg, 1)
		sub, err := b.Conn().ChanSubscribe(channel, got)
		require.NoError(t, err)
		published := make(chan error, 1)
		b.SetLocalGate("n1", func(m *nats.Msg, _ *[]byte) bool {
			// As the old gate does on TypeHandoverReady: from now on the
			// publishes reach the new gate's subscription.
			err := other.Publish(channel, []byte("after"))
			if err == nil {
				err = other.Flush()
			}
			published <- err
			return true
		})
		require.NoError(t, b.SendAfterSubscriptions(b.Subjects().GateControl("n1"), &Envelope{Type: TypeHandoverReady}))
		require.NoError(t, <-published)
		select {
		case m := <-got:
			require.Equal(t, "after", string(m.Data))
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: a publish made once the gate heard the signal missed the subscription", i)
		}
		require.NoError(t, sub.Unsubscribe())
	}
}

// What the bus encodes for its local gate is handed over, not copied: the
// message's Data is the encoding buffer itself, given back with Recycle;
// what it passes on from others (an answer, Respond) is a copy, since the
// caller keeps its own.
func TestLocalGateGetsTheEncodingBuffer(t *testing.T) {
	b := connect(t, Config{Name: "n1"})
	type taken struct {
		m   *nats.Msg
		buf *[]byte
	}
	got := make(chan taken, 4)
	b.SetLocalGate("n1", func(m *nats.Msg, buf *[]byte) bool {
		got <- taken{m, buf}
		return true
	})
	require.NoError(t, b.Push("n1", []string{"s1"}, "a.b", []byte("p1"), nil))
	first := <-got
	require.NotNil(t, first.buf, "an encoded message comes with its buffer")
	require.Same(t, unsafe.SliceData(*first.buf), unsafe.SliceData(first.m.Data), "Data is the buffer, not a copy")
	e, err := DecodeEnvelope(first.m.Data)
	require.NoError(t, err)
	require.Equal(t, "p1", string(e.Payload))
	b.Recycle(first.buf)

	// The next message may reuse that buffer; the gate gave it back, so
	// it no longer reads it.
	require.NoError(t, b.Push("n1", []string{"s1"}, "a.b", []byte("p2"), nil))
	second := <-got
	e, err = DecodeEnvelope(second.m.Data)
	require.NoError(t, err)
	require.Equal(t, "p2", string(e.Payload))

	// An answer comes with its buffer too; what a gate may keep parts of
	// (a hand-over's import) comes as a copy, and the buffer stays with
	// the bus.
	require.NoError(t, b.Send(b.Subjects().GateControl("n1"), &Envelope{Type: TypeResponse, Seq: 7, Payload: []byte("r1")}))
	resp := <-got
	require.NotNil(t, resp.buf, "an answer comes with its buffer")
	require.Same(t, unsafe.SliceData(*resp.buf), unsafe.SliceData(resp.m.Data))
	b.Recycle(resp.buf)
	require.NoError(t, b.Send(b.Subjects().GateControl("n1"), &Envelope{Type: TypeImport, Session: "s1", Payload: []byte("state")}))
	imp := <-got
	require.Nil(t, imp.buf, "only pushes and answers come with their buffer")
	e, err = DecodeEnvelope(imp.m.Data)
	require.NoError(t, err)
	require.Equal(t, TypeImport, e.Type)
	require.Equal(t, "state", string(e.Payload))
	require.Less(t, cap(imp.m.Data), e.maxSize(), "a copy of its own size, not an encoding buffer (grown to maxSize)")

	answer := []byte("answer")
	require.NoError(t, b.Respond(&nats.Msg{Reply: b.Subjects().GateControl("n1")}, answer))
	third := <-got
	require.Nil(t, third.buf, "a message the bus did not encode is copied")
	answer[0] = 'X'
	require.Equal(t, "answer", string(third.m.Data))
}
