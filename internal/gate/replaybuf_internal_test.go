package gate

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// The replay ring's entries and the response cache's slots must hold no
// pointer: the garbage collector then neither scans them nor follows
// anything from them, which is why they exist (pushRing, respCache).
func TestReplayEntriesHoldNoPointer(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[ringEntry](), reflect.TypeFor[respSlot]()} {
		for i := range typ.NumField() {
			f := typ.Field(i)
			switch f.Type.Kind() {
			case reflect.Bool, reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			default:
				t.Errorf("%s.%s is a %s: it must stay pointer-free", typ.Name(), f.Name, f.Type)
			}
		}
	}
}

// The ring against a model (a plain slice of entries): random pushes of
// random sizes, own and shared payloads, bounds that shrink and grow (as
// the gate's budget does), floors that forbid dropping, and hand-overs
// (entries out, cleared, in again). After every step the ring keeps what
// the model keeps, byte for byte, counts its bytes as the model does, and
// the gate's gauge holds exactly the slots, the buffers and each shared
// payload once; it returns to 0 when the rings are cleared.
func TestPushRingModel(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			var gate atomic.Int64
			const rings = 3
			var rs [rings]pushRing
			var model [rings][]pushEntry
			seq := [rings]uint64{}
			shared := &sharedPayload{}
			sharedBody := bytes.Repeat([]byte{'s'}, 300)
			for step := range 3000 {
				k := rng.IntN(rings)
				r, m := &rs[k], &model[k]
				switch op := rng.IntN(100); {
				case op < 2: // a hand-over: out, cleared, in again
					out := r.entries()
					require.Equal(t, modelOrNil(*m), modelOrNil(out), "step %d", step)
					r.clear(&gate)
					for _, e := range out {
						r.add(e, 1<<20, 1<<30, math.MaxUint64, &gate)
					}
				case op < 4:
					r.clear(&gate)
					*m = nil
				default:
					seq[k]++
					e := pushEntry{Seq: seq[k], Route: "room.state", Count: seq[k]}
					if rng.IntN(4) == 0 {
						e.ID = fmt.Sprint("m", rng.IntN(1000))
						e.Origin = "node-1.x"
					}
					if rng.IntN(5) == 0 {
						e.Payload, e.shared = sharedBody, shared
					} else {
						e.Payload = bytes.Repeat([]byte{byte('a' + step%26)}, rng.IntN(2000))
					}
					maxItems, maxBytes := 1+rng.IntN(64), 512+rng.IntN(64<<10)
					floor := uint64(math.MaxUint64)
					if rng.IntN(4) == 0 {
						floor = seq[k] - uint64(rng.IntN(8)) - 1
					}
					want := modelAdd(m, e, maxItems, maxBytes, floor)
					got := r.add(e, maxItems, maxBytes, floor, &gate)
					require.Equal(t, want, got, "step %d: overflow", step)
				}
				require.Equal(t, modelOrNil(*m), modelOrNil(r.entries()), "step %d: ring %d keeps other entries", step, k)
				require.Equal(t, modelBytes(*m), r.bytes, "step %d: ring %d counts", step, k)
				require.Equal(t, gaugeOf(rs[:], shared), gate.Load(), "step %d: the gate's gauge", step)
				// Its slices stay within twice what they hold (at most 64
				// entries here), however long the ring lives.
				require.LessOrEqual(t, cap(r.ents), 2*64, "step %d: ring %d's entries grew", step, k)
				require.LessOrEqual(t, cap(r.shared), 2*64, "step %d: ring %d's shared payloads grew", step, k)
				if e := r.entries(); len(e) > 0 {
					require.True(t, r.has(e[len(e)-1].ID) || e[len(e)-1].ID == "")
				}
			}
			for k := range rs {
				rs[k].clear(&gate)
			}
			require.Zero(t, gate.Load(), "the gauge returns to 0 when the rings are cleared")
			require.Zero(t, shared.refs.Load())
		})
	}
}

// modelAdd is pushRing.add on a slice.
func modelAdd(m *[]pushEntry, e pushEntry, maxItems, maxBytes int, floor uint64) bool {
	size := entrySize(&e)
	for len(*m) > 0 && (len(*m)+1 > maxItems || modelBytes(*m)+size > maxBytes) {
		if (*m)[0].Seq > floor {
			return true
		}
		*m = (*m)[1:]
	}
	if size > maxBytes && floor == 0 {
		return true
	}
	*m = append(*m, e)
	return false
}

func modelBytes(m []pushEntry) int {
	n := 0
	for i := range m {
		n += entrySize(&m[i])
	}
	return n
}

func modelOrNil(m []pushEntry) []pushEntry {
	if len(m) == 0 {
		return nil
	}
	return m
}

// gaugeOf is what the gate's gauge must hold for rs: every entry's slot,
// every buffer's capacity, and the shared payload once if any ring holds it.
func gaugeOf(rs []pushRing, shared *sharedPayload) int64 {
	var n int64
	for i := range rs {
		n += int64(rs[i].len()*entryOverhead + rs[i].data.size())
	}
	if shared.refs.Load() > 0 {
		n += 300
	}
	return n
}

// The response cache against a model (the cache as it was, a slice of
// entries with payloads of their own): random responses, some too large to
// keep, some gone, under random bounds; after every step the cache keeps
// the same entries in the same order, byte for byte, counts the same bytes,
// has forgotten the same seqs, and the gate's gauge is its buffer's
// capacity.
func TestResponseCacheModel(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 2))
			l := Limits{ResponseCache: 1 + rng.IntN(16), ResponseCacheBytes: 1 + rng.IntN(8<<10), ResponseCacheItem: 1 + rng.IntN(4<<10), ResponseCacheGate: 1 << 30}
			var gate atomic.Int64
			var c respCache
			var m respModel
			for step := range 2000 {
				seq := uint32(step + 1)
				switch op := rng.IntN(100); {
				case op < 3:
					c.clear(&gate)
					m = respModel{}
				case op < 10:
					if x := rng.IntN(step + 1); x > 0 {
						got, ok := c.take(uint32(x))
						want, wok := m.take(uint32(x))
						require.Equal(t, wok, ok, "step %d: take %d", step, x)
						require.Equal(t, want, got, "step %d: take %d", step, x)
					}
				default:
					e := respEntry{Seq: seq, Status: 0, Payload: bytes.Repeat([]byte{byte('a' + step%26)}, rng.IntN(5<<10)), Prev: rng.IntN(2) == 0, Sent: rng.IntN(2) == 0}
					if rng.IntN(10) == 0 {
						e.Gone, e.Payload = true, nil
					}
					c.add(e, &l, &gate)
					m.add(e, &l)
				}
				require.Equal(t, m.ordered(), c.entries(), "step %d", step)
				require.Equal(t, m.bytes, c.bytes, "step %d: bytes", step)
				require.Equal(t, m.forgotten, c.forgotten, "step %d: forgotten", step)
				require.Equal(t, int64(c.data.size()), gate.Load(), "step %d: the gate's gauge", step)
				// A chunk's skipped tail is smaller than the record after
				// it: what is held is at most twice what is kept, plus the
				// first and last chunks' unused parts and the spares.
				b, big := l.ResponseCacheBytes, max(chunkSize(l.ResponseCacheBytes), l.ResponseCacheItem)
				require.LessOrEqual(t, c.data.size(), 2*b+b/4+3*big, "step %d: the buffer outgrew twice the bound and its spare chunks", step)
			}
			c.clear(&gate)
			require.Zero(t, gate.Load())
		})
	}
}

// respModel is the response cache as it was before its buffer: entries
// with payloads of their own, counted by length.
type respModel struct {
	items     []respEntry
	next      int
	bytes     int
	forgotten uint32
}

func (m *respModel) add(e respEntry, l *Limits) {
	if e.Gone || len(e.Payload) > l.ResponseCacheItem {
		e.Payload, e.Gone = nil, true
	}
	e.Payload = bytes.Clone(e.Payload)
	if len(e.Payload) == 0 {
		e.Payload = nil
	}
	drop := func(x *respEntry) {
		m.bytes -= len(x.Payload)
		x.Payload, x.Gone = nil, true
	}
	for i := 0; m.bytes+len(e.Payload) > l.ResponseCacheBytes && i < len(m.items); i++ {
		drop(&m.items[(m.next+i)%len(m.items)])
	}
	if len(m.items) < l.ResponseCache {
		m.items = append(m.items, e)
	} else {
		old := &m.items[m.next]
		drop(old)
		m.forgotten = max(m.forgotten, old.Seq)
		m.items[m.next] = e
		m.next = (m.next + 1) % len(m.items)
	}
	m.bytes += len(e.Payload)
}

func (m *respModel) take(seq uint32) (respEntry, bool) {
	for i := range m.items {
		if m.items[i].Seq == seq {
			e := m.items[i]
			m.items[i].Sent = true
			return e, true
		}
	}
	return respEntry{}, false
}

func (m *respModel) ordered() []respEntry {
	out := make([]respEntry, 0, len(m.items))
	for i := range m.items {
		out = append(out, m.items[(m.next+i)%len(m.items)])
	}
	return out
}

// A buffer never moves a record it holds, and allocates only to grow: a
// steady queue of records much smaller than its bound reads back as
// written at every step, each record where it was put, the buffer stays
// within 1.25 × its bound plus three chunks, and once full it appends
// without allocating (a buffer that grew by doubling copied and zeroed
// twice what it ended with).
func TestWrapBufNeverMovesARecord(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 3))
		bound := 8<<10 + rng.IntN(256<<10)
		keep := bound/2 + rng.IntN(bound/2) // the live bytes the queue settles at
		maxRec := max(1, chunkSize(bound)/8)
		var w wrapBuf
		type rec struct {
			off, n int
			at     *byte
		}
		live := make([]rec, 0, 1<<16) // oldest first, from live[head]
		head, liveBytes := 0, 0
		noise := make([]byte, 2*bound)
		for i := range noise {
			noise[i] = byte(rng.Uint32())
		}
		fill := func(off, n int) []byte { return noise[off%bound:][:n] } // by offset: a record overwritten shows other bytes
		step := func(i int) {
			n := 1 + rng.IntN(maxRec)
			for liveBytes+n > keep && head < len(live) {
				liveBytes -= live[head].n
				head++
			}
			if head == len(live) || len(live) == cap(live) {
				live, head = live[:copy(live, live[head:])], 0
			}
			start := w.end
			if head < len(live) {
				start = live[head].off
			}
			// Plain checks: require's per-call bookkeeping made this test
			// slow under the race detector.
			off, _, ok := w.reserve(n, start, bound, nil)
			if !ok {
				t.Fatalf("seed %d step %d: refused with no budget to check", seed, i)
			}
			if end := w.put(off, fill(off, n)); end != off+n {
				t.Fatalf("seed %d step %d: put ended at %d, not %d", seed, i, end, off+n)
			}
			live, liveBytes = append(live, rec{off, n, unsafe.SliceData(w.bytes(off, n))}), liveBytes+n
			if limit := bound + bound/4 + 3*chunkSize(bound); w.size() > limit {
				t.Fatalf("seed %d step %d: the buffer (%d) outgrew 1.25 × its bound %d and three chunks", seed, i, w.size(), bound)
			}
			old := live[head]
			if got := w.bytes(old.off, old.n); unsafe.SliceData(got) != old.at || !bytes.Equal(fill(old.off, old.n), got) {
				t.Fatalf("seed %d step %d: the oldest record moved or changed", seed, i)
			}
		}
		i := 0
		for ; i < 4*bound/maxRec; i++ { // fill it, and around again
			step(i)
		}
		allocs := testing.AllocsPerRun(20, func() {
			for range 200 {
				step(i)
				i++
			}
		})
		require.Zero(t, allocs, "seed %d: a full buffer allocated as it appended", seed)
		for _, r := range live[head:] {
			require.Equal(t, fill(r.off, r.n), w.bytes(r.off, r.n), "seed %d: record at %d changed", seed, r.off)
		}
	}
}

// A bound that falls a little at a time (a session's share of the gate's
// budget as sessions arrive) takes the buffer's capacity down with it,
// with no record moved.
func TestWrapBufFollowsAFallingBound(t *testing.T) {
	var w wrapBuf
	bound, n := 256<<10, 1000
	var live []int // stream offsets, oldest first
	for step := range 20000 {
		if step%10 == 0 {
			bound -= bound / 1000 // 256 KiB to ~35 KiB over the run
		}
		for (len(live)+1)*n > bound && len(live) > 0 {
			live = live[1:]
		}
		start := w.end
		if len(live) > 0 {
			start = live[0]
		}
		var oldest *byte
		if len(live) > 0 {
			oldest = unsafe.SliceData(w.bytes(live[0], n))
		}
		off, _, ok := w.reserve(n, start, bound, nil)
		require.True(t, ok)
		if len(live) > 0 {
			require.Same(t, oldest, unsafe.SliceData(w.bytes(live[0], n)), "step %d: the oldest record moved", step)
		}
		w.put(off, bytes.Repeat([]byte{byte(step)}, n))
		live = append(live, off)
		require.LessOrEqual(t, w.size(), bound+bound/4+3*chunkSize(bound)+n, "step %d: the buffer stayed far above its bound", step)
	}
	require.Less(t, bound, 40<<10)
	for i, off := range live {
		require.Equal(t, bytes.Repeat([]byte{byte(20000 - len(live) + i)}, n), w.bytes(off, n), "record %d", i)
	}
}

// A ring that always holds some shared payloads (a session in a busy
// channel) keeps its slices bounded: the dropped front is reused, not
// carried along forever.
func TestPushRingLongLivedStaysBounded(t *testing.T) {
	var gate atomic.Int64
	var r pushRing
	shared := &sharedPayload{}
	body := bytes.Repeat([]byte{'s'}, 100)
	for i := range uint64(10000) {
		e := pushEntry{Seq: i + 1, Route: "chat.msg", ID: fmt.Sprint(i)}
		if i%2 == 0 {
			e.Payload, e.shared = body, shared
		} else {
			e.Payload = body
		}
		require.False(t, r.add(e, 4, 1<<20, math.MaxUint64, &gate))
	}
	require.Equal(t, 4, r.len())
	require.LessOrEqual(t, cap(r.ents), 8, "the entries slice grew")
	require.LessOrEqual(t, cap(r.shared), 8, "the shared payloads slice grew")
	r.clear(&gate)
	require.Zero(t, gate.Load())
}

// A lost channel message takes a push number and keeps no entry: a resume
// whose last_push lies after such a gap gets exactly the pushes after
// last_push, not some fewer found by counting from the oldest (which lost
// pushes, or with gaps enough asked for a negative capacity and panicked).
func TestPushRingAfterAGap(t *testing.T) {
	var gate atomic.Int64
	var r pushRing
	add := func(seq uint64) {
		r.add(pushEntry{Seq: seq, Route: "room.state", Payload: []byte(fmt.Sprint(seq))}, 1<<10, 1<<20, math.MaxUint64, &gate)
	}
	seq := uint64(0)
	for range 5 {
		seq++
		add(seq)
	}
	for range 3 { // three lost channel messages: 6, 7, 8
		seq++
		r.gapAt(seq)
	}
	for range 4 { // 9 … 12
		seq++
		add(seq)
	}
	for _, tc := range []struct {
		last uint64
		want []uint64
	}{
		{8, []uint64{9, 10, 11, 12}},
		{9, []uint64{10, 11, 12}},
		{11, []uint64{12}},
		{12, nil},
	} {
		got, err := r.after(tc.last, seq)
		require.NoError(t, err, "last_push %d", tc.last)
		var seqs []uint64
		for _, e := range got {
			seqs = append(seqs, e.Seq)
			require.Equal(t, fmt.Sprint(e.Seq), string(e.Payload))
		}
		require.Equal(t, tc.want, seqs, "last_push %d", tc.last)
	}
	_, err := r.after(5, seq)
	require.Error(t, err, "a resume from before the gap is refused")
	r.clear(&gate)
}

// BenchmarkPushRingFill is a session's replay ring from its first push to
// a minute of Niu Niu play: 100 pushes of ~1 KiB under a 53 KiB bound (a
// gate's 1 GiB budget over 10,000 sessions). B/op is what filling it
// allocates: the garbage a gate makes as sessions arrive.
//
//	go test -run '^$' -bench PushRingFill -benchmem ./internal/gate
func BenchmarkPushRingFill(b *testing.B) {
	payload := bytes.Repeat([]byte{'v'}, 1000)
	var gate atomic.Int64
	b.ReportAllocs()
	for b.Loop() {
		var r pushRing
		for i := range uint64(100) {
			r.add(pushEntry{Seq: i + 1, Route: "niuniu_100.state", Payload: payload, Origin: "tables.x", Count: i + 1}, 256, 53<<10, math.MaxUint64, &gate)
		}
		r.clear(&gate)
	}
}

// A full buffer whose bound wobbles a little (a connected session's share
// of the gate's budget, 1 GiB/2 over the gate's ~10,000 sessions, moves by
// a few bytes as sessions come and go) appends without allocating: its
// released chunks are reused though the usual chunk size moves with the
// bound. Each chunk made instead was garbage: at 20,000 Niu Niu bots a
// fifth of what the tables node allocated (docs/benchmarks.md § bots,
// session 41).
func TestWrapBufWobblingBoundReusesChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 41))
	bound := func() int { return (1 << 30) / 2 / (10_000 + rng.IntN(40) - 20) }
	const n = 700 // a Niu Niu state push
	var w wrapBuf
	live := make([]int, 0, 1<<16) // the records' stream offsets, oldest first, from live[head]
	head := 0
	step := func() {
		b := bound()
		for (len(live)-head+1)*n > b && head < len(live) {
			head++
		}
		if len(live) == cap(live) {
			live, head = live[:copy(live, live[head:])], 0
		}
		start := w.end
		if head < len(live) {
			start = live[head]
		}
		off, _, ok := w.reserve(n, start, b, nil)
		if !ok {
			t.Fatal("refused with no budget to check")
		}
		live = append(live, off)
	}
	for range 1000 { // full, and around several times
		step()
	}
	allocs := testing.AllocsPerRun(20, func() {
		for range 200 {
			step()
		}
	})
	require.Zero(t, allocs, "a full buffer made chunks as its bound wobbled")
	b := bound()
	require.LessOrEqual(t, w.size(), b+b/4+2*chunkSize(b), "the spares outgrew the buffer's limit")
}
